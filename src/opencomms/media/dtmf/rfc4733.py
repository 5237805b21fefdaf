"""RFC 4733 telephone-event (DTMF over RTP): the 4-byte payload, a sans-I/O sender and a receiver.

Owns the payload format and the event timing rules (start timestamp, updates, three end reports, long-event
segments, loss handling by timestamp and timeout). Must not build RTP headers, pick sequence numbers or
read a clock: the RTP session numbers the packets, callers pass `now` (seconds) in and get packets out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .tones import event_code, key_for_event

__all__ = [
    "MAX_DURATION",
    "OutgoingTelephoneEvent",
    "TelephoneEvent",
    "TelephoneEventEnded",
    "TelephoneEventError",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "TelephoneEventStarted",
]

MAX_DURATION = 0xFFFF
"""Largest `duration` one report can carry (8.19 s at 8 kHz); longer events are split into segments."""
_TS_MOD = 1 << 32
_DEFAULT_INTERVAL_MS = 50  # RFC 4733 update interval when the audio packet interval is unknown
_END_REPORTS = 3
_QUIETEST_DTMF_VOLUME = 55  # volume field values above this (below -55 dBm0) are rejected for DTMF


class TelephoneEventError(ValueError):
    """A malformed telephone-event payload or an invalid field value."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One event report: `bytes(x)` gives the 4-byte payload and `TelephoneEvent.parse` reads it back."""

    event: int
    """Event code: 0-9 digits, 10 '*', 11 '#', 12-15 A-D, 16 hook flash (others: not DTMF)."""
    end: bool
    """E bit: this is the final report of the event."""
    volume: int
    """Tone power as 0..63, meaning 0..-63 dBm0 (larger is quieter)."""
    duration: int
    """Duration so far in RTP timestamp units, from the event's (or segment's) timestamp; 0..65535."""

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise TelephoneEventError(f"event code {self.event} is not 0..255")
        if not 0 <= self.volume <= 63:
            raise TelephoneEventError(f"volume {self.volume} is not 0..63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise TelephoneEventError(f"duration {self.duration} is not 0..65535")

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> TelephoneEvent:
        """Read a payload. The R bit is ignored; a payload shorter than 4 bytes is an error, and bytes
        after the first report (e.g. padding) are ignored."""
        if len(data) < 4:
            raise TelephoneEventError(f"telephone-event payload needs 4 bytes, got {len(data)}")
        event, flags, duration = struct.unpack_from("!BBH", data)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class OutgoingTelephoneEvent:
    """A packet the RTP session should send now, on the audio stream's SSRC with the next sequence number."""

    timestamp: int
    """RTP timestamp: the start of the event (or of its current segment), the same in every report."""
    marker: bool
    """RTP marker bit: set on the first packet of a new event only."""
    payload: TelephoneEvent


@dataclass(frozen=True, slots=True)
class TelephoneEventStarted:
    """The first report of a new event arrived (or the first one that survived loss)."""

    key: str
    """'0'-'9', '*', '#', 'A'-'D', or tones.FLASH_KEY for hook flash."""
    timestamp: int
    """RTP timestamp of the event's start."""


@dataclass(frozen=True, slots=True)
class TelephoneEventEnded:
    """The event ended: on its first E=1 report, when a newer event replaced it, or after a timeout."""

    key: str
    timestamp: int
    """RTP timestamp of the event's start (its first segment)."""
    duration: int
    """Total duration in RTP timestamp units (across segments), the last one reported."""
    duration_ms: float
    """The same in milliseconds (duration / (clock rate / 1000))."""
    timed_out: bool
    """True if no end report arrived: the duration is the last update seen."""


ReceivedEvent = TelephoneEventStarted | TelephoneEventEnded


def _check_interval(clock_rate: int, ptime_ms: int | None) -> int:
    if clock_rate <= 0:
        raise ValueError("clock rate must be positive")
    interval = _DEFAULT_INTERVAL_MS if ptime_ms is None else ptime_ms
    if interval <= 0:
        raise ValueError("ptime must be positive")
    return interval


class TelephoneEventSender:
    """Produces the packets of one event at a time.

    `start(key, timestamp, now, duration_ms)` begins an event whose RTP timestamp is `timestamp` (the
    audio clock at the event's start); `poll(now)` returns every packet due by `now`; `next_deadline()`
    says when to poll next. Reports go out every `ptime_ms` (the audio packet interval) or every 50 ms
    when it is unknown, each carrying the duration covered once that interval has played (so the first
    packet, with the marker, says one interval, as Asterisk and most gateways do). At the end the final
    report (E=1, total duration) is sent three times, one interval apart. With `duration_ms=None` the
    event lasts until `stop(now)` (a key held on an in-band leg being relayed). Events longer than
    0xFFFF units are split into segments: each segment's last report is repeated three times and the
    next segment's timestamp is the old one + 0xFFFF.
    """

    def __init__(self, clock_rate: int = 8000, ptime_ms: int | None = None, volume: int = 10) -> None:
        self.clock_rate = clock_rate
        self._interval = _check_interval(clock_rate, ptime_ms) / 1000.0
        self._units = round(self._interval * clock_rate)
        if not 0 <= volume <= 63:
            raise TelephoneEventError("volume must be 0..63")
        self.volume = volume
        self._code = 0
        self._start = 0.0
        self._ts = 0  # current segment's timestamp
        self._offset = 0  # units before the current segment
        self._total: int | None = None  # event length in units, once known
        self._ticks = 0  # updates sent
        self._last = 0  # last duration reported in the current segment
        self._queue: list[tuple[float, OutgoingTelephoneEvent]] = []
        self._active = False

    @property
    def busy(self) -> bool:
        """True while an event (including its end reports) is still being sent."""
        return self._active or bool(self._queue)

    def start(self, key: str, timestamp: int, now: float, duration_ms: float | None = None) -> None:
        """Begin an event for `key` now; raises RuntimeError if one is still being sent."""
        if self.busy:
            raise RuntimeError("a telephone event is already being sent")
        if duration_ms is not None and duration_ms <= 0:
            raise ValueError("duration must be positive")
        self._code = event_code(key)
        self._start = now
        self._ts = timestamp % _TS_MOD
        self._offset = 0
        self._total = None if duration_ms is None else max(1, round(duration_ms * self.clock_rate / 1000))
        self._ticks = 0
        self._last = 0
        self._active = True

    def stop(self, now: float) -> None:
        """End an open-ended event now (no effect on a fixed-duration one or when idle)."""
        if self._active and self._total is None:
            elapsed = round((now - self._start) * self.clock_rate)
            self._total = max(elapsed, self._offset + self._last, 1)

    def next_deadline(self) -> float | None:
        """When `poll` next has something to send, or None when idle."""
        times = [t for t, _ in self._queue]
        if self._active:
            times.append(self._next_update_time())
        return min(times) if times else None

    def poll(self, now: float) -> list[OutgoingTelephoneEvent]:
        """Every packet due at or before `now`, in sending order."""
        while self._active and self._next_update_time() <= now + 1e-9:
            self._tick()
        due = [p for t, p in self._queue if t <= now + 1e-9]
        self._queue = [(t, p) for t, p in self._queue if t > now + 1e-9]
        return due

    def _next_update_time(self) -> float:
        if self._total is not None and self._ticks * self._units >= self._total:
            return self._start + self._total / self.clock_rate  # the end report is due at the end
        return self._start + self._ticks * self._interval

    def _tick(self) -> None:
        at = self._next_update_time()
        if self._total is not None and self._ticks * self._units >= self._total:
            self._segment_end(at, self._total - self._offset, end=True)
            self._active = False
            return
        covered = (self._ticks + 1) * self._units
        if self._total is not None:
            covered = min(covered, self._total)
        while covered - self._offset > MAX_DURATION:
            self._segment_end(at, MAX_DURATION, end=False)
            self._ts = (self._ts + MAX_DURATION) % _TS_MOD
            self._offset += MAX_DURATION
            self._last = 0
        self._last = covered - self._offset
        marker = self._ticks == 0
        self._emit(at, marker, TelephoneEvent(self._code, False, self.volume, self._last))
        self._ticks += 1

    def _segment_end(self, at: float, duration: int, end: bool) -> None:
        report = TelephoneEvent(self._code, end, self.volume, duration)
        for i in range(_END_REPORTS):
            self._emit(at + i * self._interval, False, report)

    def _emit(self, at: float, marker: bool, payload: TelephoneEvent) -> None:
        self._queue.append((at, OutgoingTelephoneEvent(self._ts, marker, payload)))
        self._queue.sort(key=lambda item: item[0])


@dataclass(slots=True)
class _Current:
    key: str
    code: int
    first_ts: int
    ts: int
    offset: int
    duration: int
    last_seen: float
    ended: bool


def _newer(a: int, b: int) -> bool:
    """RTP timestamp a is after b (serial-number arithmetic on 32 bits)."""
    return 0 < (a - b) % _TS_MOD < (1 << 31)


class TelephoneEventReceiver:
    """Turns received telephone-event reports into one Started and one Ended per event.

    A new event is recognised by a new RTP timestamp (the marker may be lost), so a lost first packet
    only delays Started to the first report that arrives. Repeated end reports and late updates of an
    event already ended are ignored. If no report arrives for `timeout_ms` the event ends with the last
    duration seen (`timed_out=True`); a newer event also ends the current one. A report whose timestamp
    continues the current event's segment (old timestamp + its duration) extends it instead of starting
    a new one. DTMF reports quieter than -55 dBm0 (volume > 55) and unknown event codes are ignored.
    """

    def __init__(self, clock_rate: int = 8000, timeout_ms: float = 200.0) -> None:
        if clock_rate <= 0 or timeout_ms <= 0:
            raise ValueError("clock rate and timeout must be positive")
        self.clock_rate = clock_rate
        self._timeout = timeout_ms / 1000.0
        self._current: _Current | None = None

    def next_deadline(self) -> float | None:
        """When `poll` may time the current event out, or None."""
        cur = self._current
        return None if cur is None or cur.ended else cur.last_seen + self._timeout

    def poll(self, now: float) -> list[ReceivedEvent]:
        """End the current event if its reports stopped arriving `timeout_ms` ago."""
        cur = self._current
        if cur is not None and not cur.ended and now - cur.last_seen >= self._timeout - 1e-9:
            return [self._finish(cur, timed_out=True)]
        return []

    def receive(
        self, payload: bytes | bytearray | memoryview | TelephoneEvent, timestamp: int, now: float
    ) -> list[ReceivedEvent]:
        """Process one received report (its RTP timestamp and arrival time); returns what it completes."""
        report = payload if isinstance(payload, TelephoneEvent) else TelephoneEvent.parse(payload)
        key = key_for_event(report.event)
        if key is None or (report.event < 16 and report.volume > _QUIETEST_DTMF_VOLUME):
            return []
        ts = timestamp % _TS_MOD
        out: list[ReceivedEvent] = []
        cur = self._current
        if cur is not None:
            if ts == cur.ts:
                if cur.ended:
                    return []  # repeated end report, or a late update of a finished event
                cur.duration = max(cur.duration, report.duration)
                cur.last_seen = now
                if report.end:
                    out.append(self._finish(cur, timed_out=False))
                return out
            if not _newer(ts, cur.ts):
                return []  # a late report of an older event
            if not cur.ended and report.event == cur.code and ts == (cur.ts + cur.duration) % _TS_MOD:
                cur.offset += cur.duration  # next segment of a long event
                cur.ts, cur.duration, cur.last_seen = ts, report.duration, now
                if report.end:
                    out.append(self._finish(cur, timed_out=False))
                return out
            if not cur.ended:
                out.append(self._finish(cur, timed_out=False))
        cur = _Current(key, report.event, ts, ts, 0, report.duration, now, False)
        self._current = cur
        out.append(TelephoneEventStarted(key, ts))
        if report.end:
            out.append(self._finish(cur, timed_out=False))
        return out

    def _finish(self, cur: _Current, timed_out: bool) -> TelephoneEventEnded:
        cur.ended = True
        total = cur.offset + cur.duration
        ms = total / (self.clock_rate / 1000.0)
        return TelephoneEventEnded(cur.key, cur.first_ts, total, ms, timed_out)
