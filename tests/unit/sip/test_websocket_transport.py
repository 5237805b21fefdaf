"""The endpoint's WebSocket transport table: messages in carry the connection's transport and peer; sends go to the
attached connection (False when gone or full); the cap refuses extra connections."""

from __future__ import annotations

from opencomms.sip.destination import Destination
from opencomms.sip.websocket import WsConnection, WsTransport


def test_messages_in_and_out_follow_the_connection() -> None:
    got: list[tuple[bytes, Destination]] = []
    sent: list[str] = []
    ws = WsTransport(lambda data, source: got.append((data, source)), max_connections=1)
    conn = WsConnection(("127.0.0.1", 5555), "wss", lambda text: sent.append(text) is None)
    assert ws.attach(conn)
    assert not ws.attach(WsConnection(("127.0.0.1", 6666), "ws", lambda text: True))  # over the cap
    ws.received(conn, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    assert got == [(b"OPTIONS sip:x SIP/2.0\r\n\r\n", Destination("wss", "127.0.0.1", 5555))]
    assert got[0][1].reliable
    assert ws.send(b"SIP/2.0 200 OK\r\n\r\n", ("127.0.0.1", 5555)) and sent == ["SIP/2.0 200 OK\r\n\r\n"]
    ws.detach(conn)
    assert not ws.send(b"late", ("127.0.0.1", 5555))


def test_a_failing_handler_or_sender_does_not_escape() -> None:
    def boom(*_: object) -> bool:
        raise RuntimeError("boom")

    ws = WsTransport(boom)
    conn = WsConnection(("127.0.0.1", 1), "ws", boom)
    ws.attach(conn)
    ws.received(conn, b"x")
    assert ws.send(b"x", ("127.0.0.1", 1)) is False
