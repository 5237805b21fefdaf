"""SDP offer/answer (RFC 3264) for one G.711 or G.722 audio stream with RFC 4733 telephone-event.

Owns codec choice (PCMU/PCMA/G722, the offerer's order or ours, its payload-type numbers), telephone-event matching
(same clock as the codec, event ranges intersected with 0-16), direction rules (hold: sendonly -> recvonly, inactive ->
inactive, RFC 2543 c=0.0.0.0), rejected streams (port 0), the 488 error, and the origin version of our own SDP in
a dialog (`LocalSdp`). Must not parse text (sdp.py), touch sockets or know SIP transactions: SDP objects in, SDP
objects and a `NegotiatedAudio` for the RTP session out.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .address import AddressError, media_host
from .sdp import (
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    format_events,
    parse_events,
)

__all__ = [
    "ALL_CODECS",
    "DEFAULT_CODECS",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "SUPPORTED_EVENTS",
    "Answer",
    "Codec",
    "LocalSdp",
    "NegotiatedAudio",
    "NegotiationError",
    "accept_answer",
    "answer",
    "codecs_named",
    "make_offer",
]

TELEPHONE_EVENT = "telephone-event"
SUPPORTED_EVENTS = frozenset(range(17))
"""RFC 4733 events we send and receive: DTMF 0-15 and hook flash 16."""
_STATIC = {0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}
_STATIC |= {13: ("CN", 8000), 18: ("G729", 8000)}
_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})


@dataclass(frozen=True, slots=True)
class Codec:
    """An audio codec and the payload type it travels under."""

    name: str
    payload_type: int
    clock_rate: int = 8000


PCMU = Codec("PCMU", 0)
PCMA = Codec("PCMA", 8)
G722 = Codec("G722", 9)
"""G.722: 16 kHz audio, yet 8000 in the SDP and RTP clock (RFC 3551 §4.5.2)."""
OPUS = Codec("opus", 111, 48000)
"""Opus (RFC 7587: `opus/48000/2` in the SDP, a 48 kHz RTP clock, the dynamic payload type the offer gives): browsers'
codec, carried straight to the node when rtpengine only relays (`webrtc.opus_in_node`); the bank codes it at 16 kHz.
Not in ALL_CODECS: only a relayed browser's leg is offered it."""
DEFAULT_CODECS: tuple[Codec, ...] = (PCMU, PCMA)
ALL_CODECS: tuple[Codec, ...] = (PCMU, PCMA, G722)
"""Every codec the RTP engine carries (our answer reader recognises any of them in our own offers)."""
_BY_NAME = {c.name: c for c in ALL_CODECS}


def codecs_named(names: Sequence[str]) -> tuple[Codec, ...]:
    """Codecs by name ("PCMU", "PCMA", "G722"; any case), in the given order; ValueError for another name."""
    out: list[Codec] = []
    for name in names:
        codec = _BY_NAME.get(name.upper())
        if codec is None:
            raise ValueError(f"unknown codec {name!r} (known: {', '.join(_BY_NAME)})")
        if codec not in out:
            out.append(codec)
    if not out:
        raise ValueError("at least one codec is needed")
    return tuple(out)


class NegotiationError(SdpError):
    """No acceptable audio stream: answer the INVITE with `sip_status` (488 Not Acceptable Here) and a Warning
    header with `warning_code` (304 media type not available, 305 incompatible media format) and the message."""

    sip_status = 488

    def __init__(self, message: str, warning_code: int = 305) -> None:
        super().__init__(message)
        self.warning_code = warning_code


@dataclass(frozen=True, slots=True)
class NegotiatedAudio:
    """What the RTP session needs from a completed offer/answer."""

    codec: Codec
    """The codec we send, with the payload type the peer listed it under."""
    direction: Direction
    """Our direction: `sends` = we send audio, `receives` = we accept it."""
    remote_rtp: tuple[str, int] | None
    """Where to send RTP (until symmetric RTP learns the real source); None: on hold by c=0.0.0.0, or port 0."""
    remote_rtcp: tuple[str, int] | None
    """Where to send RTCP: a=rtcp if given, else RTP port + 1 (we never multiplex)."""
    telephone_event: int | None
    """Payload type to send RFC 4733 events with (the peer's number), None: DTMF goes in-band."""
    receive_payload_types: Mapping[int, str]
    """Payload types we accept and what they carry: "PCMU", "PCMA", "G722" or "telephone-event"."""
    events: frozenset[int] = frozenset()
    """RFC 4733 events both sides support."""
    remote_ptime: int | None = None
    """The peer's a=ptime (a preference for what it receives; we always send 20 ms, and re-frame what we get)."""
    remote_maxptime: int | None = None
    media_index: int = 0
    """Index of the audio m= line in the SDP."""


@dataclass(frozen=True, slots=True)
class Answer:
    """Our answer SDP and the negotiated stream."""

    sdp: SessionDescription
    media: NegotiatedAudio


def _format(m: MediaDescription, pt: int) -> tuple[str, int, int | None] | None:
    rtpmap = m.rtpmaps.get(pt)
    if rtpmap is not None:
        return rtpmap.encoding.upper(), rtpmap.clock_rate, rtpmap.channels
    static = _STATIC.get(pt)
    return None if static is None else (static[0], static[1], None)


def _match(fmt: tuple[str, int, int | None] | None, codecs: Sequence[Codec]) -> Codec | None:
    if fmt is None or (fmt[2] not in (None, 1) and not (fmt[0] == "OPUS" and fmt[2] == 2)):
        return None
    for c in codecs:
        if fmt[0] == c.name.upper() and fmt[1] == c.clock_rate:
            return c
    return None


def _choose(m: MediaDescription, supported: Sequence[Codec], prefer_ours: bool) -> Codec | None:
    """The codec to answer `m` with: the offerer's first that we support, or (`prefer_ours`) our first it offers."""
    if prefer_ours:
        offered = [c for pt in m.payload_types if (c := _match(_format(m, pt), supported))]
        return next((c for c in supported if c in offered), None)
    return next((c for pt in m.payload_types if (c := _match(_format(m, pt), supported))), None)


def _telephone_event(m: MediaDescription, clock_rate: int, allowed: frozenset[int]) -> tuple[int, frozenset[int]]:
    for pt in m.payload_types:
        rtpmap = m.rtpmaps.get(pt)
        if rtpmap is not None and rtpmap.encoding.lower() == TELEPHONE_EVENT and rtpmap.clock_rate == clock_rate:
            events = parse_events(m.fmtps.get(pt)) & allowed
            if events:
                return pt, events
    return -1, frozenset()


def _effective_direction(sdp: SessionDescription, m: MediaDescription) -> Direction:
    """The author's direction, with c=0.0.0.0 (RFC 2543 hold) meaning "do not send to me"."""
    d = sdp.media_direction(m)
    conn = sdp.media_connection(m)
    if conn is not None and conn.is_null:
        d = Direction.of(d.sends, False)
    return d


def _host(conn: Connection) -> str:
    """The checked host of a c= line (AddressError: multicast, undecodable, wrong family ...)."""
    return media_host(conn.address, conn.address_type)


def _remote(sdp: SessionDescription, m: MediaDescription) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    conn = sdp.media_connection(m)
    if conn is None:
        raise SdpError(f"no c= line for the m={m.media} stream")
    if conn.is_null or m.port == 0:
        return None, None
    rtcp_conn = m.rtcp_connection or conn
    rtcp_port = m.rtcp_port or m.port + 1
    if not 1 <= rtcp_port <= 65535:
        raise AddressError(f"RTCP port {rtcp_port} out of range")
    rtcp = None if rtcp_conn.is_null else (_host(rtcp_conn), rtcp_port)
    return (_host(conn), m.port), rtcp


def _receive_map(m: MediaDescription, codecs: Sequence[Codec], te: int | None) -> dict[int, str]:
    """PTs we accept: those our SDP `m` binds to our codecs, the static PCMU/PCMA, and telephone-event."""
    out = {c.payload_type: c.name for c in codecs if c.payload_type < 96}
    for pt in m.payload_types:
        codec = _match(_format(m, pt), codecs)
        if codec is not None:
            out[pt] = codec.name
    if te is not None:
        out[te] = TELEPHONE_EVENT
    return out


def _channels(codec: Codec) -> int | None:
    """The rtpmap's channel count: Opus is always `opus/48000/2` (RFC 7587)."""
    return 2 if codec.name == OPUS.name else None


def _audio_media(
    port: int,
    proto: str,
    codecs: Sequence[Codec],
    te_pt: int | None,
    events: frozenset[int],
    direction: Direction,
    ptime: int | None,
) -> MediaDescription:
    formats = [str(c.payload_type) for c in codecs]
    rtpmaps = {c.payload_type: RtpMap(c.payload_type, c.name, c.clock_rate, _channels(c)) for c in codecs}
    fmtps: dict[int, str] = {}
    if te_pt is not None:
        formats.append(str(te_pt))
        rtpmaps[te_pt] = RtpMap(te_pt, TELEPHONE_EVENT, codecs[0].clock_rate)
        fmtps[te_pt] = format_events(events)
    return MediaDescription(
        "audio", port, proto, tuple(formats), rtpmaps=rtpmaps, fmtps=fmtps, ptime=ptime, direction=direction
    )


def _session(
    local_ip: str, session_id: int, version: int, username: str, name: str, media: Sequence[MediaDescription]
) -> SessionDescription:
    conn = Connection.for_address(local_ip)
    origin = Origin(username, session_id, version, local_ip, conn.address_type)
    return SessionDescription(origin, name, conn, ((0, 0),), tuple(media))


def _origin_numbers(session_id: int | None, version: int | None) -> tuple[int, int]:
    sid = secrets.randbits(62) if session_id is None else session_id
    return sid, sid if version is None else version


def make_offer(
    local_ip: str,
    local_port: int,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    *,
    session_id: int | None = None,
    version: int | None = None,
    direction: Direction = Direction.SENDRECV,
    telephone_event_pt: int | None = 101,
    ptime: int | None = 20,
    username: str = "-",
    session_name: str = "-",
) -> SessionDescription:
    """An offer for one audio stream: `codecs` in preference order, telephone-event 0-16 on
    `telephone_event_pt` (None: no RFC 4733), `direction` (sendonly to hold, inactive...). Without a
    `session_id` a random one is drawn, and `version` defaults to it; use LocalSdp to keep them across a dialog."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    session_id, version = _origin_numbers(session_id, version)
    events = SUPPORTED_EVENTS if telephone_event_pt is not None else frozenset()
    media = _audio_media(local_port, "RTP/AVP", codecs, telephone_event_pt, events, direction, ptime)
    return _session(local_ip, session_id, version, username, session_name, [media])


def answer(
    offer: SessionDescription,
    local_ip: str,
    local_port: int,
    supported: Sequence[Codec] = DEFAULT_CODECS,
    *,
    session_id: int | None = None,
    version: int | None = None,
    direction: Direction = Direction.SENDRECV,
    telephone_event: bool = True,
    ptime: int | None = 20,
    username: str = "-",
    session_name: str = "-",
    prefer_ours: bool = False,
) -> Answer:
    """Answer `offer`: accept the first audio stream (RTP/AVP or RTP/AVPF) offering one of `supported`, choosing
    the first such codec in the offerer's order (with `prefer_ours`: the first of `supported` it offers) under
    the offerer's payload type, plus its telephone-event at the
    same clock (events intersected with 0-16); every other m= line is rejected with port 0. Our direction is
    what the offer allows of `direction` (our wish, e.g. sendonly when we hold): an offer that does not receive
    (sendonly, inactive, or c=0.0.0.0) gets no audio from us. Raises NegotiationError (488) when no stream can be
    accepted, SdpError when the accepted stream has no connection address, AddressError (488, Warning 301) when
    its address is unusable (multicast, undecodable, wrong family, RTCP port out of range; a host name passes and
    is the caller's to resolve). Origin numbers as in make_offer."""
    session_id, version = _origin_numbers(session_id, version)
    chosen: NegotiatedAudio | None = None
    media: list[MediaDescription] = []
    reasons: list[str] = []
    for index, m in enumerate(offer.media):
        accepted = None
        if chosen is not None or m.media != "audio" or m.port == 0:
            pass
        elif m.proto.upper() not in _PROFILES:
            reasons.append(f"{m.proto} is not supported (plain RTP/AVP only)")
        else:
            codec = _choose(m, supported, prefer_ours)
            if codec is None:
                offered = ", ".join("/".join(map(str, f[:2])) for pt in m.payload_types if (f := _format(m, pt)))
                reasons.append(f"no common codec (offered {offered or 'none'})")
            else:
                pt = next(p for p in m.payload_types if _match(_format(m, p), [codec]))
                codec = Codec(codec.name, pt, codec.clock_rate)
                te, events = (-1, frozenset[int]())
                if telephone_event:
                    te, events = _telephone_event(m, codec.clock_rate, SUPPORTED_EVENTS)
                te_pt = te if te >= 0 else None
                offered_dir = _effective_direction(offer, m)
                ours = Direction.of(offered_dir.receives and direction.sends, offered_dir.sends and direction.receives)
                accepted = _audio_media(local_port, m.proto, [codec], te_pt, events, ours, ptime)
                rtp, rtcp = _remote(offer, m)
                chosen = NegotiatedAudio(
                    codec,
                    ours,
                    rtp,
                    rtcp,
                    te_pt,
                    _receive_map(accepted, supported, te_pt),
                    events,
                    m.ptime,
                    m.maxptime,
                    index,
                )
        media.append(accepted or MediaDescription(m.media, 0, m.proto, m.formats or ("0",)))
    if chosen is None:
        what = "; ".join(reasons) if reasons else "no audio stream offered"
        supported_names = ", ".join(c.name for c in supported)
        raise NegotiationError(f"{what}; we accept {supported_names}", 305 if reasons else 304)
    sdp = _session(local_ip, session_id, version, username, session_name, media)
    return Answer(sdp, chosen)


def accept_answer(offer: SessionDescription, answer_sdp: SessionDescription) -> NegotiatedAudio:
    """Read the peer's answer to our `offer`: the codec it picked (sent with its payload type), its
    telephone-event, where to send, and our direction (what we offered, limited by what it answered). Raises
    NegotiationError if it rejected the audio stream or answered something we did not offer."""
    index = next((i for i, m in enumerate(offer.media) if m.media == "audio" and m.port), None)
    if index is None:
        raise ValueError("the offer has no audio stream")
    if len(answer_sdp.media) <= index:
        raise NegotiationError("the answer has fewer m= lines than the offer", 304)
    om, am = offer.media[index], answer_sdp.media[index]
    if am.media != "audio" or am.port == 0:
        raise NegotiationError("the peer rejected the audio stream", 304)
    ours = [c for pt in om.payload_types if (c := _match(_format(om, pt), ALL_CODECS + _dynamic(om)))]
    picked = next(((pt, c) for pt in am.payload_types if (c := _match(_format(am, pt), ours))), None)
    if picked is None:
        raise NegotiationError("the answer names no codec we offered")
    codec = Codec(picked[1].name, picked[0], picked[1].clock_rate)
    offered_te, offered_events = _telephone_event(om, codec.clock_rate, SUPPORTED_EVENTS)
    te, events = _telephone_event(am, codec.clock_rate, offered_events) if offered_te >= 0 else (-1, frozenset())
    offered_dir = offer.media_direction(om)
    theirs = _effective_direction(answer_sdp, am)
    direction = Direction.of(theirs.receives and offered_dir.sends, theirs.sends and offered_dir.receives)
    rtp, rtcp = _remote(answer_sdp, am)
    receive = _receive_map(om, ours, offered_te if te >= 0 else None)
    return NegotiatedAudio(
        codec,
        direction,
        rtp,
        rtcp,
        te if te >= 0 else None,
        receive,
        events,
        am.ptime,
        am.maxptime,
        index,
    )


def _dynamic(m: MediaDescription) -> tuple[Codec, ...]:
    """Our G.711 codecs under dynamic payload types, if an offer of ours used any."""
    out = []
    for pt, rtpmap in m.rtpmaps.items():
        if pt >= 96 and rtpmap.encoding.upper() in ("PCMU", "PCMA") and rtpmap.clock_rate == 8000:
            out.append(Codec(rtpmap.encoding.upper(), pt))
    return tuple(out)


class LocalSdp:
    """Our side of the SDP in one dialog: a fixed session id and an origin version that goes up by one whenever
    the SDP we send differs from the last one (RFC 3264 §8: an unchanged re-offer, e.g. a session refresh,
    keeps its version). Remembers our last offer so the peer's answer can be read with `accept_answer`."""

    def __init__(
        self,
        local_ip: str,
        local_port: int,
        codecs: Sequence[Codec] = DEFAULT_CODECS,
        *,
        telephone_event_pt: int | None = 101,
        ptime: int | None = 20,
        username: str = "-",
        session_name: str = "-",
        session_id: int | None = None,
        prefer_ours: bool = False,
    ) -> None:
        self.prefer_ours = prefer_ours
        """Answers take the first of `codecs` an offer contains, not the offerer's first (see `answer`)."""
        self.local_ip = local_ip
        self.local_port = local_port
        self.codecs = tuple(codecs)
        self.telephone_event_pt = telephone_event_pt
        self.ptime = ptime
        self.username = username
        self.session_name = session_name
        self.session_id = session_id if session_id is not None else secrets.randbits(62)
        self.version = self.session_id
        self._last: SessionDescription | None = None
        self._offer: SessionDescription | None = None

    def offer(self, direction: Direction = Direction.SENDRECV) -> SessionDescription:
        """A (re-)offer: sendonly or inactive to hold, sendrecv to resume."""
        sdp = make_offer(
            self.local_ip,
            self.local_port,
            self.codecs,
            session_id=self.session_id,
            version=self.version,
            direction=direction,
            telephone_event_pt=self.telephone_event_pt,
            ptime=self.ptime,
            username=self.username,
            session_name=self.session_name,
        )
        self._offer = self._stamp(sdp)
        return self._offer

    def answer(self, offer: SessionDescription, direction: Direction = Direction.SENDRECV) -> Answer:
        """Answer the peer's (re-)offer (NegotiationError -> 488; the version is not used up then)."""
        result = answer(
            offer,
            self.local_ip,
            self.local_port,
            self.codecs,
            session_id=self.session_id,
            version=self.version,
            direction=direction,
            telephone_event=self.telephone_event_pt is not None,
            ptime=self.ptime,
            username=self.username,
            session_name=self.session_name,
            prefer_ours=self.prefer_ours,
        )
        return Answer(self._stamp(result.sdp), result.media)

    def accept_answer(self, answer_sdp: SessionDescription) -> NegotiatedAudio:
        """The peer's answer to our last `offer()`."""
        if self._offer is None:
            raise RuntimeError("no offer of ours is outstanding")
        return accept_answer(self._offer, answer_sdp)

    def _stamp(self, sdp: SessionDescription) -> SessionDescription:
        last = self._last
        if last is not None and _unversioned(last) != _unversioned(sdp):
            self.version += 1
        stamped = dataclasses.replace(sdp, origin=dataclasses.replace(sdp.origin, version=self.version))
        self._last = stamped
        return stamped


def _unversioned(sdp: SessionDescription) -> SessionDescription:
    return dataclasses.replace(sdp, origin=dataclasses.replace(sdp.origin, version=0))
