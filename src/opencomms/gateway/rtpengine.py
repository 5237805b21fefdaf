"""rtpengine's ng control protocol: bencode, the cookie framing, the WebRTC <-> plain-RTP flags, a small client.

The ng protocol is one UDP datagram per request, `<cookie> <bencoded dictionary>`, answered by `<cookie>
<bencoded dictionary>` whose "result" is "ok", "pong" or "error" (then "error-reason" says why). `NgProtocol` is
the sans-I/O core (requests out as bytes, datagrams in, a response matched to its request by cookie); the asyncio
skin `RtpEngineClient` sends, retransmits on silence and gives up after `timeout` seconds with `NgUnavailable`, so
a dead rtpengine fails a call quickly instead of hanging it.

Owns: the flags that turn a browser's offer (ICE, DTLS-SRTP, Opus, rtcp-mux) into plain RTP/AVP with G.722 (16
kHz: the engine's own rate) or G.711 for the node (`webrtc_to_plain`, `WEBRTC_TO_PLAIN`), and the node's answer back
into what the browser offered (`PLAIN_TO_WEBRTC`).
Must not: know SIP transactions or calls; parse SDP (rtpengine does that; the node parses what it gets back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("opencomms.rtpengine")

__all__ = [
    "PLAIN_TO_WEBRTC",
    "WEBRTC_TO_PLAIN",
    "WEBRTC_TO_PLAIN_OPUS",
    "WEBRTC_TO_PLAIN_RELAY",
    "BencodeError",
    "NgError",
    "NgProtocol",
    "NgRejected",
    "NgUnavailable",
    "RtpEngineClient",
    "bdecode",
    "bencode",
    "webrtc_to_plain",
]

Bencodable = int | bytes | str | list[Any] | dict[str, Any]

MAX_DEPTH = 16
MAX_DATAGRAM = 65_000


class BencodeError(ValueError):
    """Bytes that are not a (bounded) bencoded value."""


class NgError(Exception):
    """An ng request failed."""


class NgUnavailable(NgError):
    """rtpengine did not answer in time (not running, wrong address, overloaded)."""


class NgRejected(NgError):
    """rtpengine answered "error" (e.g. an SDP it cannot handle); `reason` is its error-reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- bencode ------------------------------------------------------------------------------------------------------


def bencode(value: Bencodable) -> bytes:
    """Bencode ints, strings (UTF-8), bytes, lists and dicts (keys sorted, as the format requires)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    if isinstance(value, int):
        out += b"i%de" % value
    elif isinstance(value, str | bytes):
        raw = value.encode() if isinstance(value, str) else value
        out += b"%d:" % len(raw) + raw
    elif isinstance(value, list | tuple):
        out += b"l"
        for item in value:
            _encode(item, out)
        out += b"e"
    elif isinstance(value, dict):
        out += b"d"
        for key in sorted(value, key=lambda k: k.encode() if isinstance(k, str) else k):
            _encode(key, out)
            _encode(value[key], out)
        out += b"e"
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value that spans all of `data`; strings come back as bytes, dict keys as str."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError("trailing bytes after the bencoded value")
    return value


def _decode(data: bytes, i: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("nested too deeply")
    if i >= len(data):
        raise BencodeError("truncated")
    lead = data[i : i + 1]
    if lead == b"i":
        end = data.find(b"e", i)
        if end < 0 or end - i > 21:
            raise BencodeError("bad integer")
        try:
            return int(data[i + 1 : end]), end + 1
        except ValueError:
            raise BencodeError("bad integer") from None
    if lead == b"l":
        items: list[Any] = []
        i += 1
        while data[i : i + 1] != b"e":
            item, i = _decode(data, i, depth + 1)
            items.append(item)
        return items, i + 1
    if lead == b"d":
        result: dict[str, Any] = {}
        i += 1
        while data[i : i + 1] != b"e":
            key, i = _decode(data, i, depth + 1)
            if not isinstance(key, bytes):
                raise BencodeError("dictionary key is not a string")
            result[key.decode("utf-8", "replace")], i = _decode(data, i, depth + 1)
        return result, i + 1
    if lead.isdigit():
        colon = data.find(b":", i)
        if colon < 0 or colon - i > 10:
            raise BencodeError("bad string length")
        start = colon + 1
        end = start + int(data[i:colon])
        if end > len(data):
            raise BencodeError("truncated string")
        return data[start:end], end
    raise BencodeError(f"unexpected byte {lead!r}")


# --- flags --------------------------------------------------------------------------------------------------------

_PLAIN: Mapping[str, Any] = {
    "transport-protocol": "RTP/AVP",
    "ICE": "remove",
    "rtcp-mux": ["demux"],
    "replace": ["origin", "session-connection"],
}


def webrtc_to_plain(node_codecs: tuple[str, ...] = ("G722", "PCMU"), opus_spec: str = "") -> dict[str, Any]:
    """Offer flags for a browser's offer going to the node: plain RTP/AVP, no ICE, RTCP on its own port, and the
    node offered only `node_codecs` (in this order; the node answers with the first it supports) + RFC 4733.
    Every codec of the browser is masked from the node's side, and `accept: opus` answers the browser with Opus
    whenever it offered Opus, so rtpengine transcodes Opus (48 kHz) <-> G.722 (16 kHz) or G.711 (8 kHz) between
    the two; a browser without Opus is answered with what it offered of `node_codecs`. `opus_spec` (e.g.
    `opus/48000/2/24000///compression_level=3`, gateway/opus_tuning.py) sets the bitrate and encoder options of
    the Opus rtpengine sends the browser (`codec: {set: [...]}`)."""
    transcode = [*node_codecs, "telephone-event"]
    codec: dict[str, Any] = {"mask": ["all"], "transcode": transcode, "accept": ["opus"]}
    if opus_spec:
        codec["set"] = [opus_spec]
    return {**_PLAIN, "codec": codec}


WEBRTC_TO_PLAIN: Mapping[str, Any] = webrtc_to_plain()
"""`webrtc_to_plain()` with its default: G.722 toward the node (wideband end to end), PCMU as the fallback."""

WEBRTC_TO_PLAIN_RELAY: Mapping[str, Any] = {
    **_PLAIN,
    "codec": {"strip": ["all"], "except": ["PCMU", "PCMA", "telephone-event"]},
}
"""As WEBRTC_TO_PLAIN, but the browser is left only the G.711 it offered: rtpengine relays without transcoding."""

WEBRTC_TO_PLAIN_OPUS: Mapping[str, Any] = {
    **_PLAIN,
    "codec": {"strip": ["all"], "except": ["opus", "PCMU", "PCMA", "telephone-event"]},
}
"""As WEBRTC_TO_PLAIN_RELAY, keeping the browser's Opus too (first, as browsers offer it): the node answers Opus
(`webrtc.opus_in_node`) and codes it itself; rtpengine relays without transcoding."""

PLAIN_TO_WEBRTC: Mapping[str, Any] = {
    "replace": ["origin", "session-connection"],
    "rtcp-mux": ["require"],
}
"""Answer flags for the node's answer going back to the browser (rtpengine restores the browser's ICE, DTLS-SRTP
and codecs from the offer it saw)."""


# --- sans-I/O core ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NgResponse:
    cookie: str
    body: dict[str, Any]


class NgProtocol:
    """Builds requests and matches responses by cookie. Pure: no sockets, no clock."""

    def __init__(self) -> None:
        self.pending: set[str] = set()

    def request(self, command: str, params: Mapping[str, Any]) -> tuple[str, bytes]:
        cookie = secrets.token_hex(8)
        body = bencode({"command": command, **params})
        self.pending.add(cookie)
        return cookie, cookie.encode() + b" " + body

    def receive(self, datagram: bytes) -> NgResponse | None:
        """The response in `datagram` if it answers a pending request (else None: stray, duplicate, garbage)."""
        cookie_raw, sep, rest = datagram.partition(b" ")
        cookie = cookie_raw.decode("ascii", "replace")
        if not sep or cookie not in self.pending:
            return None
        try:
            body = bdecode(rest)
        except BencodeError:
            log.warning("rtpengine sent an undecodable response")
            return None
        if not isinstance(body, dict):
            return None
        self.pending.discard(cookie)
        return NgResponse(cookie, body)

    def forget(self, cookie: str) -> None:
        self.pending.discard(cookie)


def result_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` if its result is "ok" or "pong"; NgRejected with the reason otherwise."""
    result = body.get("result", b"")
    if result in (b"ok", b"pong"):
        return dict(body)
    reason = body.get("error-reason", body.get("warning", b"unknown error"))
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    raise NgRejected(text)


# --- asyncio skin -------------------------------------------------------------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: RtpEngineClient) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._received(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: rtpengine is not there
        log.debug("rtpengine control socket: %s", exc)


class RtpEngineClient:
    """Talks ng to one rtpengine at `address` over UDP. Every call raises NgUnavailable after `timeout` seconds
    without an answer (the request is re-sent every `retransmit` seconds meanwhile) or NgRejected."""

    def __init__(self, address: tuple[str, int], *, timeout: float = 2.0, retransmit: float = 0.5) -> None:
        self.address = address
        self.timeout = timeout
        self.retransmit = retransmit
        self.protocol = NgProtocol()
        self._transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.failures = 0
        self.last_ok: bool | None = None
        """Whether the last exchange got an answer (None: none yet); the node's health shows it."""

    async def _ensure(self) -> asyncio.DatagramTransport:
        if self._transport is None or self._transport.is_closing():
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), remote_addr=self.address)
        return self._transport

    def _received(self, data: bytes) -> None:
        response = self.protocol.receive(data)
        if response is None:
            return
        future = self._waiting.pop(response.cookie, None)
        if future is not None and not future.done():
            future.set_result(response.body)

    async def request(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        transport = await self._ensure()
        cookie, datagram = self.protocol.request(command, params)
        if len(datagram) > MAX_DATAGRAM:
            self.protocol.forget(cookie)
            raise NgRejected("request too large for one datagram")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cookie] = future
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            while True:
                with contextlib.suppress(OSError):
                    transport.sendto(datagram)
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    self.failures += 1
                    self.last_ok = False
                    raise NgUnavailable(f"rtpengine at {self.address[0]}:{self.address[1]} did not answer")
                try:
                    body = await asyncio.wait_for(asyncio.shield(future), min(self.retransmit, left))
                    break
                except TimeoutError:
                    continue
        finally:
            self._waiting.pop(cookie, None)
            self.protocol.forget(cookie)
            if not future.done():
                future.cancel()
        self.last_ok = True
        return result_of(body)

    async def ping(self) -> bool:
        try:
            await self.request("ping", {})
        except NgError:
            return False
        return True

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, flags: Mapping[str, Any] = WEBRTC_TO_PLAIN) -> bytes:
        body = await self.request("offer", {"call-id": call_id, "from-tag": from_tag, "sdp": sdp, **flags})
        return _sdp(body)

    async def answer(
        self, call_id: str, from_tag: str, to_tag: str, sdp: bytes, flags: Mapping[str, Any] = PLAIN_TO_WEBRTC
    ) -> bytes:
        params = {"call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "sdp": sdp, **flags}
        return _sdp(await self.request("answer", params))

    async def delete(self, call_id: str) -> None:
        """Forget a call (its ports go back); an unknown call is not an error worth raising."""
        with contextlib.suppress(NgRejected):
            await self.request("delete", {"call-id": call_id})

    def close(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._waiting.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _sdp(body: Mapping[str, Any]) -> bytes:
    sdp = body.get("sdp")
    if not isinstance(sdp, bytes) or not sdp:
        raise NgRejected("rtpengine answered without an SDP")
    return sdp
