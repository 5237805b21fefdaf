"""TCP stream framing by Content-Length (RFC 3261 §18.3): split, partial feeds, keep-alives, and bounded errors."""

from __future__ import annotations

from opencomms.sip.parser import ParseLimits, parse
from opencomms.sip.transport import KEEPALIVE_PING, FramingError, StreamFramer


def message(body: bytes = b"", call_id: str = "c1", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return (
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\n"
        f"To: <sip:a@b>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nl: {n}\r\n\r\n"
    ).encode() + body


def test_splits_concatenated_messages_and_partial_feeds() -> None:
    a, b = message(b"hello\r\n\r\nworld", "a"), message(b"", "b")
    stream = a + b
    framer = StreamFramer()
    out: list[bytes | FramingError] = []
    for i in range(0, len(stream), 7):  # dribble the stream in small pieces
        out.extend(framer.feed(stream[i : i + 7]))
    assert out == [a, b] and framer.buffered == 0
    assert parse(a, stream=True).body == b"hello\r\n\r\nworld"


def test_keepalive_ping_and_leading_crlf() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [KEEPALIVE_PING]
    assert framer.feed(b"\r\n" + message()) == [message()]


def test_waits_for_the_body() -> None:
    framer = StreamFramer()
    full = message(b"0123456789")
    assert framer.feed(full[:-3]) == []
    assert framer.feed(full[-3:]) == [full]


def test_missing_or_bad_content_length_breaks_the_stream() -> None:
    framer = StreamFramer()
    head = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n"
    (error,) = framer.feed(head + message())
    assert isinstance(error, FramingError) and error.status == 400 and error.head.startswith(b"OPTIONS")
    assert framer.broken and framer.feed(message()) == [] and framer.buffered == 0
    (bad,) = StreamFramer().feed(message().replace(b"l: 0", b"l: -5"))
    assert isinstance(bad, FramingError) and bad.reason == "Invalid Content-Length"
    (two,) = StreamFramer().feed(message().replace(b"l: 0", b"l: 0\r\nContent-Length: 9"))
    assert isinstance(two, FramingError) and two.status == 400


def test_size_limits() -> None:
    limits = ParseLimits(max_message=300)
    (too_big,) = StreamFramer(limits).feed(message(length=10_000))
    assert isinstance(too_big, FramingError) and too_big.status == 413 and too_big.head
    endless = StreamFramer(limits)
    assert endless.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"y" * 200) == []
    (error,) = endless.feed(b"y" * 200)  # no end of headers within the limit
    assert isinstance(error, FramingError) and error.status == 513 and endless.buffered == 0
