"""SDP (RFC 4566/8866) for audio calls: the session model, a tolerant parser and a symmetric serializer.

Owns the line grammar (v, o, s, c, b, t, m and the attributes a call needs: rtpmap, fmtp, ptime, maxptime,
direction, rtcp, rtcp-mux; everything else is kept verbatim) and `SdpError`. Must not negotiate (offer_answer.py),
open sockets or know SIP: it turns text into frozen dataclasses and back, `parse(str(x)) == x`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "format_events",
    "parse_events",
]

_NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})
_SESSION_EARLY = "iuep"  # optional session lines between s= and c=, in RFC order
_EXTRACTED = frozenset({"rtpmap", "fmtp", "ptime", "maxptime", "rtcp", "rtcp-mux"})
_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


class SdpError(ValueError):
    """A body that is not SDP we can read (a malformed required line or attribute)."""


class Direction(enum.StrEnum):
    """Media direction attribute, from the point of view of the SDP's author."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.of(self.receives, self.sends)


@dataclass(frozen=True, slots=True)
class Origin:
    """o=<username> <sess-id> <sess-version> IN <IP4|IP6> <address>."""

    username: str
    session_id: int
    version: int
    address: str
    address_type: str = "IP4"
    net_type: str = "IN"

    def __str__(self) -> str:
        return f"{self.username} {self.session_id} {self.version} {self.net_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class Connection:
    """c=IN <IP4|IP6> <address> (a multicast TTL/count suffix stays part of `address`)."""

    address: str
    address_type: str = "IP4"
    net_type: str = "IN"

    @property
    def is_null(self) -> bool:
        """0.0.0.0 (or ::): RFC 2543-style hold, "do not send to me"."""
        return self.address in _NULL_ADDRESSES

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IP6" if ":" in address else "IP4")

    def __str__(self) -> str:
        return f"{self.net_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """a=rtpmap:<pt> <encoding>/<clock>[/<channels>]."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True)
class MediaDescription:
    """One m= section. The attributes a call needs are fields; any other `a=` line stays in `attributes`
    (name, value or None for a flag) in order, and other lines (i=, k=) in `other`."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    rtpmaps: dict[int, RtpMap] = field(default_factory=dict)
    fmtps: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    maxptime: int | None = None
    direction: Direction | None = None
    rtcp_port: int | None = None
    rtcp_connection: Connection | None = None
    rtcp_mux: bool = False
    attributes: tuple[tuple[str, str | None], ...] = ()
    other: tuple[tuple[str, str], ...] = ()

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as RTP payload types (SdpError if one is not a number 0..127)."""
        try:
            pts = tuple(int(f) for f in self.formats)
        except ValueError:
            raise SdpError(f"m={self.media} formats are not RTP payload types: {self.formats}") from None
        if any(not 0 <= pt <= 127 for pt in pts):
            raise SdpError(f"payload type out of range in {self.formats}")
        return pts

    def attribute(self, name: str) -> str | None:
        """Value of the first other attribute `name` ('' for a flag), or None if absent."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def lines(self) -> list[str]:
        ports = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.media} {ports} {' '.join([self.proto, *self.formats])}"]
        out += [f"{k}={v}" for k, v in self.other if k == "i"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"{k}={v}" for k, v in self.other if k != "i"]
        for pt, rtpmap in self.rtpmaps.items():
            out.append(f"a=rtpmap:{rtpmap}")
            if pt in self.fmtps:
                out.append(f"a=fmtp:{pt} {self.fmtps[pt]}")
        out += [f"a=fmtp:{pt} {v}" for pt, v in self.fmtps.items() if pt not in self.rtpmaps]
        if self.ptime is not None:
            out.append(f"a=ptime:{self.ptime}")
        if self.maxptime is not None:
            out.append(f"a=maxptime:{self.maxptime}")
        if self.rtcp_port is not None:
            where = f" {self.rtcp_connection}" if self.rtcp_connection is not None else ""
            out.append(f"a=rtcp:{self.rtcp_port}{where}")
        if self.rtcp_mux:
            out.append("a=rtcp-mux")
        out += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes]
        if self.direction is not None:
            out.append(f"a={self.direction}")
        return out


@dataclass(frozen=True)
class SessionDescription:
    """A whole SDP body. `str(x)` is the CRLF text; `SessionDescription.parse(str(x)) == x`."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: tuple[tuple[int, int], ...] = ((0, 0),)
    media: tuple[MediaDescription, ...] = ()
    bandwidths: tuple[str, ...] = ()
    direction: Direction | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()
    other: tuple[tuple[str, str], ...] = ()
    """Other session lines (i, u, e, p, r, z, k) as (type, value), in order."""

    def __str__(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        lines += [f"{k}={v}" for k, v in self.other if k in _SESSION_EARLY]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines += [f"t={start} {stop}" for start, stop in self.timing]
        lines += [f"{k}={v}" for k, v in self.other if k in "rz"]
        lines += [f"{k}={v}" for k, v in self.other if k == "k"]
        lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes]
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        for m in self.media:
            lines += m.lines()
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode()

    def media_connection(self, m: MediaDescription) -> Connection | None:
        """The connection that applies to `m`: its own c= line, else the session's."""
        return m.connection if m.connection is not None else self.connection

    def media_direction(self, m: MediaDescription) -> Direction:
        """The direction that applies to `m`: its own attribute, else the session's, else sendrecv."""
        return m.direction or self.direction or Direction.SENDRECV

    @classmethod
    def parse(cls, body: str | bytes) -> SessionDescription:
        """Parse an SDP body. Tolerates LF-only line ends, blank lines, trailing spaces and unknown lines or
        attributes (kept); raises SdpError when v=0 is not first or o=, c=, t=, m=, a=rtpmap, a=fmtp,
        a=ptime/maxptime or a=rtcp are malformed, or o= or m= is missing where required."""
        return _Parser(body).parse()


def parse_events(fmtp: str | None) -> frozenset[int]:
    """RFC 4733 event list of a telephone-event fmtp ("0-15", "0-16", "0-15,66,70"); absent means 0-15."""
    if fmtp is None or not fmtp.strip():
        return frozenset(range(16))
    events: set[int] = set()
    for part in fmtp.replace(" ", "").split(","):
        try:
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
        except ValueError:
            raise SdpError(f"bad telephone-event list {fmtp!r}") from None
        if not 0 <= first <= last <= 255:
            raise SdpError(f"bad telephone-event range {part!r}")
        events.update(range(first, last + 1))
    return frozenset(events)


def format_events(events: Iterable[int]) -> str:
    """Compact ranges: {0..16} -> "0-16"."""
    out: list[str] = []
    run: list[int] = []
    for e in sorted(set(events)):
        if run and e == run[-1] + 1:
            run.append(e)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [e]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SdpError(f"{what}: {text!r} is not a number") from None


def _connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}")
    return Connection(parts[2], parts[1], parts[0])


@dataclass
class _Media:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    rtpmaps: dict[int, RtpMap] = field(default_factory=dict)
    fmtps: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    maxptime: int | None = None
    direction: Direction | None = None
    rtcp_port: int | None = None
    rtcp_connection: Connection | None = None
    rtcp_mux: bool = False
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    def freeze(self) -> MediaDescription:
        return MediaDescription(
            self.media,
            self.port,
            self.proto,
            self.formats,
            self.port_count,
            self.connection,
            tuple(self.bandwidths),
            self.rtpmaps,
            self.fmtps,
            self.ptime,
            self.maxptime,
            self.direction,
            self.rtcp_port,
            self.rtcp_connection,
            self.rtcp_mux,
            tuple(self.attributes),
            tuple(self.other),
        )


class _Parser:
    def __init__(self, body: str | bytes) -> None:
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        self.lines = [line.strip() for line in body.splitlines() if line.strip()]

    def parse(self) -> SessionDescription:
        if not self.lines or self.lines[0] != "v=0":
            raise SdpError("SDP must start with v=0")
        origin: Origin | None = None
        name = "-"
        connection: Connection | None = None
        timing: list[tuple[int, int]] = []
        bandwidths: list[str] = []
        direction: Direction | None = None
        attributes: list[tuple[str, str | None]] = []
        other: list[tuple[str, str]] = []
        media: list[_Media] = []
        for line in self.lines[1:]:
            kind, eq, value = line.partition("=")
            if len(kind) != 1 or not eq:
                continue  # not an SDP line: ignored, as RFC 4566 asks for unknown ones
            m = media[-1] if media else None
            if kind == "m":
                media.append(self._m_line(value))
            elif kind == "a":
                name_, _, val = value.partition(":")
                attr = (name_, val if _ else None)
                if m is not None:
                    self._media_attribute(m, *attr)
                elif attr[0] in _DIRECTIONS and attr[1] is None:
                    direction = Direction(attr[0])
                else:
                    attributes.append(attr)
            elif kind == "c":
                if m is not None:
                    m.connection = _connection(value)
                else:
                    connection = _connection(value)
            elif kind == "b":
                (m.bandwidths if m is not None else bandwidths).append(value)
            elif m is not None:
                m.other.append((kind, value))
            elif kind == "o":
                origin = self._origin(value)
            elif kind == "s":
                name = value
            elif kind == "t":
                parts = value.split()
                if len(parts) != 2:
                    raise SdpError(f"bad t= line {value!r}")
                timing.append((_int(parts[0], "t= start"), _int(parts[1], "t= stop")))
            else:
                other.append((kind, value))
        if origin is None:
            raise SdpError("SDP without an o= line")
        return SessionDescription(
            origin,
            name,
            connection,
            tuple(timing) or ((0, 0),),
            tuple(m.freeze() for m in media),
            tuple(bandwidths),
            direction,
            tuple(attributes),
            tuple(other),
        )

    @staticmethod
    def _origin(value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6 or parts[4] not in ("IP4", "IP6"):
            raise SdpError(f"bad o= line {value!r}")
        return Origin(
            parts[0], _int(parts[1], "o= session id"), _int(parts[2], "o= version"), parts[5], parts[4], parts[3]
        )

    @staticmethod
    def _m_line(value: str) -> _Media:
        parts = value.split()
        if len(parts) < 3:
            raise SdpError(f"bad m= line {value!r}")
        port_text, _, count_text = parts[1].partition("/")
        port = _int(port_text, "m= port")
        if not 0 <= port <= 65535:
            raise SdpError(f"m= port {port} out of range")
        count = _int(count_text, "m= port count") if count_text else None
        return _Media(parts[0], port, parts[2], tuple(parts[3:]), count)

    @staticmethod
    def _media_attribute(m: _Media, name: str, value: str | None) -> None:
        if name in _DIRECTIONS and value is None:
            m.direction = Direction(name)
        elif name not in _EXTRACTED:
            m.attributes.append((name, value))
        elif name == "rtcp-mux":
            m.rtcp_mux = True
        elif value is None:
            raise SdpError(f"a={name} without a value")
        elif name == "rtpmap":
            pt_text, _, spec = value.strip().partition(" ")
            pieces = spec.strip().split("/")
            if len(pieces) not in (2, 3) or not pieces[0]:
                raise SdpError(f"bad a=rtpmap:{value}")
            pt = _int(pt_text, "rtpmap payload type")
            channels = _int(pieces[2], "rtpmap channels") if len(pieces) == 3 else None
            m.rtpmaps[pt] = RtpMap(pt, pieces[0], _int(pieces[1], "rtpmap clock rate"), channels)
        elif name == "fmtp":
            pt_text, _, params = value.strip().partition(" ")
            m.fmtps[_int(pt_text, "fmtp payload type")] = params.strip()
        elif name in ("ptime", "maxptime"):
            ms = round(float(value)) if value.replace(".", "", 1).strip().isdigit() else None
            if ms is None or ms <= 0:
                raise SdpError(f"bad a={name}:{value}")
            setattr(m, name, ms)
        else:  # rtcp
            port_text, _, where = value.strip().partition(" ")
            m.rtcp_port = _int(port_text, "a=rtcp port")
            m.rtcp_connection = _connection(where) if where.strip() else None
