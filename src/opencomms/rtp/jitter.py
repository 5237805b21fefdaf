"""Adaptive jitter buffer for one received RTP audio stream whose payload is one byte per sample (G.711), sans-I/O.

Owns reordering, duplicate and late-packet handling, timestamp unwrapping, SSRC changes and timestamp jumps,
re-framing any packet size (10, 20, 30 ms...) into 20 ms frames, the playout point and the target delay (adapted
from the RFC 3550 interarrival jitter estimate and from late arrivals). Must not decode audio, conceal losses
(the caller repeats/fades or plays silence when told LOST), read a clock or do I/O: times are passed in.

This file is the reference (`OPENCOMMS_COMPILED=0`); `jitter.pyx` is the same class compiled with Cython by `make
compiled` (listed in _compiled/modules.txt), the packets held in C arrays. JitterConfig and LOST live in
jitter_types.py, shared by both.
"""

from __future__ import annotations

import bisect
from typing import Final, final

from .jitter_types import LOST, JitterConfig, Lost
from .packet import RtpPacket

__all__ = ["LOST", "JitterBuffer", "JitterConfig", "Lost"]

_TS_MOD: Final = 1 << 32
_HALF: Final = 1 << 31
_PEAK_DECAY: Final = 0.998  # per pop


@final
class JitterBuffer:
    """Put packets in as they arrive (`put`, any order, any size); `pop(now)` once per 20 ms tick returns:

    - bytes: the next 20 ms frame (`frame_samples` bytes; samples lost inside it are `fill`);
    - LOST: audio was due and nothing arrived for it: the caller conceals (repeat/fade the last frame);
    - None: nothing to play (buffering the start of a talkspurt, or idle): the caller plays silence.

    `pop_into` is `pop` writing the frame into the caller's buffer (1, 2, 0 for frame, LOST, None).

    The playout point only advances on a frame that was played or declared lost because later audio is already
    buffered; when the buffer runs dry it waits (each such pop is an underflow, reported LOST), so a late
    packet still plays and the delay grows by a frame. The target delay is `frame + 4 J` (J the RFC 3550
    interarrival jitter) or the worst recent lateness + a frame, whichever is larger, clamped to
    [min_delay_ms, max_delay_ms]; a buffer that stays a frame above target for a window is trimmed by a frame.
    """

    def __init__(self, config: JitterConfig | None = None) -> None:
        self.config = c = config or JitterConfig()
        self.frame_samples = c.clock_rate * c.frame_ms // 1000
        if not 0 < c.min_delay_ms <= c.max_delay_ms or c.capacity < 2 or c.idle_after_frames < 1:
            raise ValueError("need 0 < min_delay_ms <= max_delay_ms, capacity >= 2, idle_after_frames >= 1")
        if self.frame_samples < 1:
            raise ValueError("need a frame of at least one sample (clock_rate * frame_ms >= 1000)")
        self._rate = c.clock_rate
        self._min = c.min_delay_ms * c.clock_rate / 1000.0
        self._max = c.max_delay_ms * c.clock_rate / 1000.0
        self._jump = c.jump_ms * c.clock_rate / 1000.0
        self._fill = bytes([c.fill]) * self.frame_samples
        self._ssrc: int | None = None
        self._old_ssrc: int | None = None
        self._switched = 0.0
        self._packets: dict[int, bytes] = {}
        self._order: list[int] = []  # extended timestamps, sorted
        self._raw: int | None = None  # newest unwrapped RTP timestamp (the unwrapping reference)
        self._shift = 0  # added to unwrapped timestamps: re-anchors the stream after a timestamp jump
        self._end = 0  # end of the newest audio, in buffer time (unwrapped + shift)
        self._play: int | None = None  # extended timestamp of the next frame to output; None: not playing
        self._since = 0.0  # arrival of the first packet of the current talkspurt (buffering)
        self._stalled = 0  # underflow pops since the last frame played (frames the playout point is behind)
        self._transit: float | None = None
        self._jitter = 0.0  # RFC 3550 J, timestamp units
        self._peak = 0.0  # worst recent lateness + a frame, decaying
        self._target = self._min
        self._window_min = float("inf")
        self._window_pops = 0
        self._window_len = c.shrink_window_frames
        # Counters.
        self.received = 0
        self.duplicates = 0
        self.late = 0
        self.stale = 0
        """Packets of the previous SSRC arriving within 2 x max_delay_ms of a switch (ignored)."""
        self.lost = 0
        """Frames reported LOST (gaps and underflows)."""
        self.underflows = 0
        self.overflow_dropped = 0
        self.latency_dropped = 0
        self.ssrc_changes = 0
        self.jumps = 0

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._play is not None

    @property
    def idle(self) -> bool:
        """Nothing buffered and not playing: `pop` returns None (and only decays the lateness peak) until `put`."""
        return self._play is None and not self._order

    def rest(self, pops: int) -> None:
        """Account for `pops` calls of `pop` skipped while idle (their only effect: the lateness peak decays)."""
        if pops > 0 and self._peak:
            self._peak *= _PEAK_DECAY**pops

    @property
    def target_ms(self) -> float:
        """Target playout delay, as of the last `pop` (it follows the jitter measured by the packets put)."""
        self._retarget()
        return self._target * 1000.0 / self._rate

    @property
    def jitter(self) -> float:
        """RFC 3550 interarrival jitter J of the packets put, in timestamp units (its transit reference restarts
        with each talkspurt and after a timestamp jump, where the RFC's would count the gap as jitter)."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter of the packets put, in milliseconds."""
        return self._jitter * 1000.0 / self._rate

    @property
    def level_ms(self) -> float:
        """Audio buffered beyond the playout point, in milliseconds."""
        if self._play is None or not self._order:
            return 0.0
        return max(0, self._end - self._play) * 1000.0 / self._rate

    def __len__(self) -> int:
        return len(self._order)

    def reset(self) -> None:
        """Forget the stream (packets, playout point, SSRC); the jitter estimate and target are kept."""
        self._restart()
        self._ssrc = self._old_ssrc = None

    def _restart(self) -> None:
        self._packets.clear()
        self._order.clear()
        self._raw = None
        self._shift = 0
        self._end = 0
        self._play = None
        self._stalled = 0
        self._transit = None
        self._window_min, self._window_pops = float("inf"), 0

    # -- input ---------------------------------------------------------------------------------------------------

    def put_packet(self, packet: RtpPacket, arrival: float) -> None:
        """`put` for a parsed packet."""
        self.put(packet.ssrc, packet.timestamp, packet.payload, arrival)

    def put(self, ssrc: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """Add one packet's payload (RTP timestamp, arrival time in seconds)."""
        n = len(payload)
        if n == 0:
            return
        if ssrc != self._ssrc:
            if ssrc == self._old_ssrc and arrival - self._switched < self.config.max_delay_ms / 500.0:
                self.stale += 1  # a straggler of the stream just replaced (later, switching back is allowed)
                return
            if self._ssrc is not None:
                self.ssrc_changes += 1
                self._old_ssrc = self._ssrc
                self._switched = arrival
            self._ssrc = ssrc
            self._restart()
        raw_ref = self._raw
        if raw_ref is None:
            raw = self._raw = timestamp
        else:
            delta = (timestamp - raw_ref) % _TS_MOD
            raw = raw_ref + (delta - _TS_MOD if delta >= _HALF else delta)
            if raw > raw_ref:
                self._raw = raw
        ext = raw + self._shift
        play = self._play
        order = self._order
        if order or play is not None:
            anchor = order[0] if play is None else play
            if ext - self._end > self._jump or anchor - ext > self._jump:
                # The sender's clock jumped (no new SSRC): continue its audio right after what is buffered.
                self.jumps += 1
                target = max(self._end, anchor)
                self._shift += target - ext
                ext = target
                self._transit = None
        self.received += 1
        # RFC 3550 A.8 interarrival jitter, in timestamp units (inline: this runs for every packet).
        transit = arrival * self._rate - ext
        last = self._transit
        if last is not None:
            d = transit - last if transit > last else last - transit
            if d < self._jump:  # a jump in transit is a clock change, not jitter
                self._jitter += (d - self._jitter) * 0.0625
        self._transit = transit
        if play is not None and ext + n <= play:
            self.late += 1
            self._peak = max(self._peak, play - ext + self.frame_samples)
            return
        packets = self._packets
        if ext in packets:
            self.duplicates += 1
            return
        if not packets and play is None:
            self._since = arrival
        packets[ext] = payload
        if not order or ext > order[-1]:
            order.append(ext)
        else:
            bisect.insort(order, ext)
        if ext + n > self._end:
            self._end = ext + n
        if len(order) > self.config.capacity:
            oldest = order.pop(0)
            gone = packets.pop(oldest)
            self.overflow_dropped += 1
            if play is not None and play < oldest + len(gone):
                self._play = oldest + len(gone)

    def _retarget(self) -> None:
        want = max(self.frame_samples + 4.0 * self._jitter, self._peak)
        self._target = min(self._max, max(self._min, want))

    # -- output --------------------------------------------------------------------------------------------------

    def pop(self, now: float) -> bytes | Lost | None:
        """The next 20 ms frame, LOST, or None (see the class docstring). Call once per 20 ms."""
        frame = self.frame_samples
        self._peak *= _PEAK_DECAY  # ~7 s half-life at 50 pops/s
        play = self._play
        if play is None:
            if not self._order:  # idle (most ticks of a leg the far end sends nothing to): no target needed
                return None
            self._retarget()  # the target is read only here, in _watch_level and target_ms: computed when needed
            if (now - self._since) * self._rate < self._target - 1e-6:
                return None
            play = self._play = self._order[0]
            self._stalled = 0
        data = self._take(play)
        if data is None and self._order:
            nxt = self._order[0]
            gap = (nxt - play) // frame
            if self._stalled:  # the frames we waited through were a gap in the stream, not lateness
                skip = min(gap, self._stalled)
                play += skip * frame
                gap -= skip
                self._stalled = 0
            if (nxt - play) > self._jump:
                self.jumps += 1
                play = nxt
            elif gap >= 1:
                self._play = play + frame
                self.lost += 1
                return LOST
            self._play = play
            data = self._take(play)
        if data is not None:
            self._stalled = 0
            play += frame
            self._play = play
            self._watch_level(play)
            return data
        self.underflows += 1
        self._stalled += 1
        if self._stalled > self.config.idle_after_frames:
            self._play = None
            self._stalled = 0
            self._end = 0  # the next talkspurt starts afresh (it may start anywhere on the sender's clock)
            self._transit = None  # and the silence between is not jitter
            return None
        self.lost += 1
        return LOST

    def pop_into(self, now: float, out: bytearray, offset: int) -> int:
        """`pop`, the frame written into `out[offset : offset + frame_samples]` instead of returned: 1 when a frame
        was written, 2 for LOST, 0 for None (`out` untouched then). Raises ValueError, before popping, when that
        slice is not inside `out`. The compiled twin copies the frame without making a bytes object."""
        frame = self.frame_samples
        if offset < 0 or offset + frame > len(out):
            raise ValueError(f"out[{offset} : {offset} + {frame}] is outside the buffer of {len(out)} bytes")
        data = self.pop(now)
        if data is None:
            return 0
        if data is LOST:
            return 2
        out[offset : offset + frame] = data
        return 1

    def upcoming(self) -> bytes | None:
        """The frame the next `pop` returns if it is buffered already, without taking it (None otherwise): after a
        LOST for a gap, the packet that followed the lost frame (Opus rebuilds the lost one from its in-band FEC)."""
        play, order = self._play, self._order
        if play is None or not order or order[0] != play:
            return None
        data = self._packets[play]
        return data if len(data) == self.frame_samples else None

    def _watch_level(self, play: int) -> None:
        level = float(self._end - play)
        if level < self._window_min:
            self._window_min = level
        self._window_pops += 1
        if self._window_pops < self._window_len:
            return
        self._retarget()
        excess = self._window_min - self._target
        self._window_min, self._window_pops = float("inf"), 0
        # A large excess (after a network stall) is cut quickly: one frame per 5 pops instead of per window.
        self._window_len = 5 if excess > 4 * self.frame_samples else self.config.shrink_window_frames
        if excess > self.frame_samples:
            self._take(play)  # drop the next frame: the delay shrinks by one frame
            self._play = play + self.frame_samples
            self.latency_dropped += 1

    def _take(self, play: int) -> bytes | None:
        """The frame at `play` from whatever packets cover it (None if none does); consumed packets are removed."""
        frame = self.frame_samples
        packets, order = self._packets, self._order
        if not order:
            return None
        data = packets.get(play)
        if data is not None and len(data) == frame and order[0] == play:
            del packets[play]
            del order[0]
            return data
        stop = play + frame
        out: bytearray | None = None
        done = 0
        for ts in order:
            if ts >= stop:
                break
            payload = packets[ts]
            end = ts + len(payload)
            if end > play:
                a, b = max(ts, play), min(end, stop)
                if out is None:
                    out = bytearray(self._fill)
                out[a - play : b - play] = payload[a - ts : b - ts]
            if end <= stop:
                done += 1
            else:
                break
        if done:
            for ts in order[:done]:
                del packets[ts]
            del order[:done]
        return None if out is None else bytes(out)
