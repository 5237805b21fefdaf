"""The node's media engine core: every leg's 20 ms of audio per tick, mixed, analysed and recorded in numpy batches.

Owns the legs (one compact row each), their inbound queues, prompt players, DTMF tone generators, mute flags,
mixes (conversations), the DTMF detection and VAD run on every leg's input, recordings, taps and the events
all of these produce. Must not read a clock, sleep, start threads or do any I/O: `tick(now)` is a pure step
driven by `clock.EngineThread` (or by a test loop), and `now` is only ever the time of the frame being made.
Not thread-safe: every method must be called on the thread that ticks (EngineThread.call does that).

Per tick, for the rows in use (the prefix `[:n]`, n = one past the highest row in use):

1. OUTPUT `(n, 320)` int32 = inbound frame (a bounded ring per leg) + prompt player, or DTMF tones while a
   leg sends them (see `tones_replace_output`); muted rows are zeroed afterwards (their player and tones
   still advance). The player gathers one frame per leg with
   one fancy-index per distinct clip being played (rows of a strided frame view of the clip); only legs
   whose clip ends during the frame (or that have tones) get per-leg Python work.
2. INPUT = for each mix, the sum of its members' OUTPUTs minus the leg's own, clipped to int16 range; a leg
   in no mix (or alone in one) hears silence. The mix topology is cached until join/leave/add/remove changes
   it, with mixes grouped by size: pairs (the usual call) are two gather/scatters, or plain strided copies
   when every pair sits in neighbouring rows; larger mixes one gather, sum and scatter per size.
3. One float32 copy of INPUT feeds the DTMF bank and the VAD bank (both process only the prefix).
4. Recordings and taps read the INPUT of their own legs (per-leg work, only for those legs).

Speech events: SpeechStarted/SpeechStopped are emitted for legs that are capturing a recording, and for legs
that opted in with `watch_speech(leg_id, True)`. ToneDetected is emitted for every leg.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from ..domain.media import RecordStop
from .dtmf.config import DtmfDetectorConfig
from .dtmf.detector import DtmfDetectorBank, DtmfKeyDetected
from .dtmf.tones import ToneSequencer, normalize_key
from .frames import FRAME_SAMPLES, SAMPLE_RATE
from .slots import SlotTable
from .vad import VadBank, VadConfig

__all__ = [
    "EngineFull",
    "EngineStats",
    "MediaEngine",
    "MediaEvent",
    "PlayFinished",
    "RecordingFinished",
    "RecordingStarted",
    "SpeechStarted",
    "SpeechStopped",
    "Tap",
    "ToneDetected",
    "TonesFinished",
]

log = logging.getLogger("opencomms.media")

Samples = npt.NDArray[np.int16]
Tap = Callable[[str, Samples, float], None]
"""A leg's INPUT sink: called once per tick with (leg_id, the 320-sample int16 frame it hears, frame time)."""

_N = FRAME_SAMPLES
_INT16_MIN, _INT16_MAX = -32768, 32767


class EngineFull(Exception):
    """Every row of the engine is in use: no leg can be added until one is removed."""


# -- events ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToneDetected:
    """An in-band DTMF key heard on the leg's INPUT (every leg; the caller decides what it means)."""

    leg_id: str
    key: str
    """'0'-'9', '*', '#', 'A'-'D'."""
    at: float
    """Estimated start of the tone (the event itself comes once the tone has lasted ~35 ms)."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """VAD turned active on the leg's INPUT (only for recording or watched legs)."""

    leg_id: str
    at: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """VAD turned inactive on the leg's INPUT (after its hangover; only for recording or watched legs)."""

    leg_id: str
    at: float


@dataclass(frozen=True, slots=True)
class PlayFinished:
    """A play() ended: `completed` when its last sample was output in the frame at `at`, else it was stopped."""

    leg_id: str
    tag: str
    completed: bool
    at: float


@dataclass(frozen=True, slots=True)
class TonesFinished:
    """A send_tones() ended: `completed` after its last tone's gap, else it was stopped."""

    leg_id: str
    tag: str
    completed: bool
    at: float


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    """Capture of the leg's INPUT began with the frame at `at`."""

    leg_id: str
    tag: str
    at: float


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """A recording ended; `samples` is what was captured (16 kHz mono, read-only)."""

    leg_id: str
    tag: str
    reason: RecordStop
    samples: Samples = field(compare=False, repr=False)
    speech_detected: bool
    at: float


MediaEvent = (
    ToneDetected | SpeechStarted | SpeechStopped | PlayFinished | TonesFinished | RecordingStarted | RecordingFinished
)
"""Everything `tick()` reports."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters of a MediaEngine (a snapshot)."""

    capacity: int
    legs: int
    rows: int
    """Rows processed per tick: one past the highest row in use."""
    mixes: int
    ticks: int
    playing: int
    """Legs with a prompt queued or playing."""
    recording: int
    """Legs with a recording waiting or capturing."""
    inbound_dropped: int
    """Inbound frames dropped because a leg's queue was full (the oldest goes)."""
    dsp_rows: int
    """Rows handed to the DTMF and VAD banks in the last tick."""
    tap_errors: int
    """Exceptions raised by tap callbacks (logged and swallowed)."""
    clips: int
    """Distinct clip arrays held for queued or playing prompts."""


# -- per-leg state -----------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Play:
    tag: str
    clips: list[int]
    """Slots in the clip registry."""
    index: int = -1
    """Clip being played; -1 before the first."""


@dataclass(slots=True, eq=False)
class _Tones:
    tag: str
    sequencer: ToneSequencer


@dataclass(slots=True, eq=False)
class _Recording:
    tag: str
    max_samples: int
    initial_silence: int
    """Samples without speech from the start that end the recording; 0 = never."""
    max_silence: int
    """Samples of silence after speech that end the recording; 0 = never."""
    stop_keys: frozenset[str]
    waiting_for: str | None
    """Play tag whose end starts the capture; None = start at the next tick."""
    started: bool = False
    start_time: float = 0.0
    frames: list[Samples] = field(default_factory=list)
    captured: int = 0
    speech: bool = False
    silence_run: int = 0

    def samples(self, limit: int | None = None) -> Samples:
        out = np.concatenate(self.frames) if self.frames else np.zeros(0, dtype=np.int16)
        if limit is not None:
            out = out[: max(0, limit)].copy()
        out.flags.writeable = False
        return out


@dataclass(slots=True, eq=False)
class _Leg:
    id: str
    row: int
    mix: str | None = None
    muted: bool = False
    plays: deque[_Play] = field(default_factory=deque)
    tones: deque[_Tones] = field(default_factory=deque)
    recording: _Recording | None = None
    tap: Tap | None = None
    watch_speech: bool = False


class _Clips:
    """The distinct clip arrays queued anywhere, each stored once, zero-padded by one frame so a frame starting
    anywhere in the clip can be read whole. `windows(slot)[p]` is the frame starting at sample p (a strided
    view: gathering frames for many legs copies whole rows). Keyed by the identity of the caller's array (held,
    so the id stays unique) and reference-counted by queued plays."""

    def __init__(self) -> None:
        self._slot_of: dict[int, int] = {}
        self._source: list[Samples | None] = []
        self._padded: list[Samples] = []
        self._windows: list[npt.NDArray[np.int16]] = []
        self._refs: list[int] = []
        self._free: list[int] = []
        self.lengths = np.zeros(16, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._slot_of)

    def acquire(self, clip: Samples) -> int:
        slot = self._slot_of.get(id(clip))
        if slot is not None:
            self._refs[slot] += 1
            return slot
        padded = np.zeros(clip.size + _N, dtype=np.int16)
        padded[: clip.size] = clip
        step = padded.strides[0]
        windows = np.lib.stride_tricks.as_strided(padded, (clip.size + 1, _N), (step, step), writeable=False)
        if self._free:
            slot = self._free.pop()
            self._source[slot], self._padded[slot], self._windows[slot], self._refs[slot] = clip, padded, windows, 1
        else:
            slot = len(self._padded)
            self._source.append(clip)
            self._padded.append(padded)
            self._windows.append(windows)
            self._refs.append(1)
            if slot >= self.lengths.size:
                self.lengths = np.concatenate([self.lengths, np.zeros(self.lengths.size, dtype=np.int64)])
        self.lengths[slot] = clip.size
        self._slot_of[id(clip)] = slot
        return slot

    def release(self, slot: int) -> None:
        self._refs[slot] -= 1
        if self._refs[slot] == 0:
            source = self._source[slot]
            assert source is not None
            del self._slot_of[id(source)]
            self._source[slot] = None
            self._padded[slot] = self._windows[slot] = np.zeros(0, dtype=np.int16)
            self._free.append(slot)

    def padded(self, slot: int) -> Samples:
        return self._padded[slot]

    def windows(self, slot: int) -> npt.NDArray[np.int16]:
        return self._windows[slot]


@dataclass(frozen=True, slots=True)
class _Topology:
    """The cached shape of every conversation: which rows hear which, grouped by mix size so each size is a
    few whole-array operations. Recomputed only after join/leave/add/remove."""

    pairs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
    """Mixes of two (the usual call): row a[i] hears b[i] and b[i] hears a[i]."""
    adjacent_pairs: bool
    """Every row of the prefix is in a pair with its neighbour (0-1, 2-3, ...): no gather needed."""
    groups: list[npt.NDArray[np.intp]]
    """Larger mixes, one `(mixes, size)` array of rows per size."""
    silent: bool
    """Some rows are in no mix (or alone in one): they hear silence."""


def _topology(mix: npt.NDArray[np.int64]) -> _Topology:
    """Group the rows of the prefix by mix (`mix[row]`, -1 for none), then the mixes by size."""
    n = mix.size
    rows = np.flatnonzero(mix >= 0)
    order = np.argsort(mix[rows], kind="stable")
    rows, keys = rows[order], mix[rows][order]
    first = np.ones(rows.size, dtype=np.bool_)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, rows.size))
    groups: list[npt.NDArray[np.intp]] = []
    pairs = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    covered = 0
    for size in np.unique(sizes).tolist():
        if size < 2:
            continue
        members = rows[starts[sizes == size][:, None] + np.arange(size)]
        covered += members.size
        if size == 2:
            pairs = (members[:, 0].copy(), members[:, 1].copy())
        else:
            groups.append(members)
    low, high = np.minimum(*pairs), np.maximum(*pairs)
    adjacent = covered == n == 2 * low.size and bool(
        (np.sort(low) == np.arange(0, n, 2)).all() and (high - low == 1).all()
    )
    return _Topology(pairs, adjacent, groups, covered < n)


def _seconds_to_samples(seconds: float) -> int:
    return max(0, round(seconds * SAMPLE_RATE))


# -- the engine --------------------------------------------------------------------------------------------------


class MediaEngine:
    """Mixes, plays, generates tones, detects DTMF and speech, and records for up to `capacity` legs, one 20 ms
    frame per `tick(now)`. See the module docstring for the per-tick pipeline.

    Methods other than `tick` only change state; the audio effects start with the next tick. Events caused by
    them (a stopped play, a cancelled recording) are returned by the next `tick`, stamped with its `now`.
    Methods on an unknown leg raise KeyError, except `remove_leg` and the `stop_*` ones, which do nothing.

    `tones_replace_output` (default True): while a leg sends DTMF, its tone sequence replaces the rest of its
    OUTPUT (prompt and inbound audio, which still advance), as a phone keypad mutes the microphone. A tone
    summed with a loud prompt fails the detector's purity test (a 300 Hz prompt at -12 dBFS already hides a
    -10 dBFS tone pair), so the far end would not hear the key. False sums the tones with the rest.
    """

    def __init__(
        self,
        capacity: int = 4096,
        *,
        inbound_queue_frames: int = 8,
        dtmf_config: DtmfDetectorConfig | None = None,
        vad_config: VadConfig | None = None,
        tones_replace_output: bool = True,
    ) -> None:
        if capacity < 1 or inbound_queue_frames < 1:
            raise ValueError("capacity and inbound_queue_frames must be positive")
        self._slots = SlotTable(capacity)
        self._dtmf = DtmfDetectorBank(capacity, SAMPLE_RATE, dtmf_config)
        self._vad = VadBank(capacity, vad_config)
        self._legs: dict[str, _Leg] = {}
        self._by_row: list[_Leg | None] = [None] * capacity
        # Per-row state read by the batched steps.
        self._clip = np.full(capacity, -1, dtype=np.int64)
        self._pos = np.zeros(capacity, dtype=np.int64)
        self._muted = np.zeros(capacity, dtype=np.bool_)
        self._mix = np.full(capacity, -1, dtype=np.int64)
        self._speech_mask = np.zeros(capacity, dtype=np.bool_)
        # Inbound ring: (capacity, Q, 320), with each row's head and length.
        self._tones_replace = tones_replace_output
        self._queue_frames = inbound_queue_frames
        self._ring = np.zeros((capacity, inbound_queue_frames, _N), dtype=np.int16)
        self._head = np.zeros(capacity, dtype=np.int64)
        self._qlen = np.zeros(capacity, dtype=np.int64)
        self._queued = 0
        # Work buffers (only the prefix [:n] is used).
        self._out = np.zeros((capacity, _N), dtype=np.int32)
        self._inp = np.zeros((capacity, _N), dtype=np.int32)
        self._x = np.zeros((capacity, _N), dtype=np.float32)
        self._clips = _Clips()
        self._mix_index: dict[str, int] = {}
        self._mix_size: dict[str, int] = {}
        self._free_mix: list[int] = []
        self._topology: _Topology | None = None
        self._starting: dict[_Leg, None] = {}  # players to (re)start at the next tick (ordered set)
        self._toning: dict[_Leg, None] = {}
        self._recorders: dict[_Leg, None] = {}
        self._tapped: dict[_Leg, None] = {}
        self._pending: list[Callable[[float], MediaEvent]] = []
        self._muted_count = 0
        self._ticks = 0
        self._dropped = 0
        self._dsp_rows = 0
        self._tap_errors = 0

    # -- legs ------------------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Most legs the engine holds at once."""
        return self._slots.capacity

    @property
    def legs(self) -> int:
        """Legs in the engine."""
        return len(self._legs)

    @property
    def rows(self) -> int:
        """Rows processed per tick: one past the highest row in use."""
        return self._slots.end

    @property
    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        return EngineStats(
            capacity=self.capacity,
            legs=len(self._legs),
            rows=self._slots.end,
            mixes=len(self._mix_index),
            ticks=self._ticks,
            playing=sum(1 for leg in self._legs.values() if leg.plays),
            recording=len(self._recorders),
            inbound_dropped=self._dropped,
            dsp_rows=self._dsp_rows,
            tap_errors=self._tap_errors,
            clips=len(self._clips),
        )

    def has_leg(self, leg_id: str) -> bool:
        """Whether `leg_id` is in the engine."""
        return leg_id in self._legs

    def add_leg(self, leg_id: str) -> None:
        """Add a leg in the lowest free row, in no mix, unmuted, idle. EngineFull when full; ValueError if it
        exists."""
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} already exists")
        if len(self._legs) >= self.capacity:
            raise EngineFull(f"all {self.capacity} media legs are in use")
        row = self._slots.add()
        dtmf_row, vad_row = self._dtmf.add_channel(), self._vad.add_channel()
        assert dtmf_row == row == vad_row, "engine and DSP bank rows out of step"
        self._clip[row] = -1
        self._pos[row] = 0
        self._muted[row] = False
        self._mix[row] = -1
        self._speech_mask[row] = False
        self._head[row] = 0
        self._qlen[row] = 0
        leg = _Leg(leg_id, row)
        self._legs[leg_id] = leg
        self._by_row[row] = leg
        self._topology = None

    def remove_leg(self, leg_id: str) -> None:
        """Remove a leg and free its row; its player, tones and recording are dropped silently (no events).
        Does nothing for an unknown leg."""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        row = leg.row
        self._set_mix(leg, None)
        for play in leg.plays:
            self._release(play)
        leg.plays.clear()
        leg.tones.clear()
        leg.recording = None
        leg.tap = None
        for registry in (self._starting, self._toning, self._recorders, self._tapped):
            registry.pop(leg, None)
        if leg.muted:
            self._muted_count -= 1
        self._queued -= int(self._qlen[row])
        self._qlen[row] = 0
        self._clip[row] = -1
        self._muted[row] = False
        self._speech_mask[row] = False
        self._by_row[row] = None
        self._slots.remove(row)
        self._dtmf.remove_channel(row)
        self._vad.remove_channel(row)
        self._topology = None

    def _leg(self, leg_id: str) -> _Leg:
        try:
            return self._legs[leg_id]
        except KeyError:
            raise KeyError(f"no media leg {leg_id!r}") from None

    def join(self, leg_id: str, mix_id: str | None) -> None:
        """Put the leg in mix `mix_id` (a conversation), leaving any other; None leaves every mix."""
        self._set_mix(self._leg(leg_id), mix_id)

    def _set_mix(self, leg: _Leg, mix_id: str | None) -> None:
        if leg.mix == mix_id:
            return
        if leg.mix is not None:
            self._mix_size[leg.mix] -= 1
            if self._mix_size[leg.mix] == 0:
                del self._mix_size[leg.mix]
                self._free_mix.append(self._mix_index.pop(leg.mix))
        leg.mix = mix_id
        if mix_id is None:
            self._mix[leg.row] = -1
        else:
            if mix_id not in self._mix_index:
                self._mix_index[mix_id] = self._free_mix.pop() if self._free_mix else len(self._mix_index)
                self._mix_size[mix_id] = 0
            self._mix_size[mix_id] += 1
            self._mix[leg.row] = self._mix_index[mix_id]
        self._topology = None

    def set_muted(self, leg_id: str, muted: bool) -> None:
        """A muted leg contributes silence to its mix; its player and tones still advance and finish on time."""
        leg = self._leg(leg_id)
        if leg.muted != muted:
            leg.muted = muted
            self._muted[leg.row] = muted
            self._muted_count += 1 if muted else -1

    def set_tap(self, leg_id: str, fn: Tap | None) -> None:
        """Call `fn(leg_id, input_frame, now)` once per tick with what the leg hears (None removes the tap).
        The frame is a fresh int16 array the tap may keep. Runs on the ticking thread: keep it cheap."""
        leg = self._leg(leg_id)
        leg.tap = fn
        if fn is None:
            self._tapped.pop(leg, None)
        else:
            self._tapped[leg] = None

    def watch_speech(self, leg_id: str, on: bool) -> None:
        """Emit SpeechStarted/SpeechStopped for this leg even when it is not recording."""
        leg = self._leg(leg_id)
        leg.watch_speech = on
        self._update_speech_mask(leg)

    def _update_speech_mask(self, leg: _Leg) -> None:
        capturing = leg.recording is not None and leg.recording.started
        self._speech_mask[leg.row] = leg.watch_speech or capturing

    # -- inbound -----------------------------------------------------------------------------------------------

    def push_inbound(self, leg_id: str, frame: Samples) -> None:
        """Queue one far-end frame (int16, 320 samples) for the leg's OUTPUT. The queue holds at most
        `inbound_queue_frames`; when full, the oldest frame is dropped (and counted)."""
        leg = self._leg(leg_id)
        if frame.shape != (_N,) or frame.dtype != np.int16:
            raise ValueError(f"expected an int16 ({_N},) frame, got {frame.dtype} {frame.shape}")
        row, q = leg.row, self._queue_frames
        length, head = int(self._qlen[row]), int(self._head[row])
        self._ring[row, (head + length) % q] = frame
        if length == q:  # wrote over the oldest: the queue now starts one later
            self._head[row] = (head + 1) % q
            self._dropped += 1
        else:
            self._qlen[row] = length + 1
            self._queued += 1

    # -- player --------------------------------------------------------------------------------------------

    def play(self, leg_id: str, tag: str, clips: Sequence[Samples]) -> None:
        """Queue clips (1-D int16, 16 kHz) on the leg's player; they play back to back, sample-exact, after
        whatever is queued before. PlayFinished(tag, completed=True) comes in the tick that outputs the last
        sample. Clips are not copied per leg: the same array object played on many legs is stored once and
        must not be modified afterwards."""
        leg = self._leg(leg_id)
        for clip in clips:
            if not isinstance(clip, np.ndarray) or clip.ndim != 1 or clip.dtype != np.int16:
                raise ValueError("clips must be 1-D int16 arrays")
        leg.plays.append(_Play(tag, [self._clips.acquire(clip) for clip in clips]))
        if self._clip[leg.row] < 0:
            self._starting[leg] = None

    def stop_play(self, leg_id: str, tag: str | None = None) -> None:
        """Stop the plays with `tag` (queued or playing), or all of them; PlayFinished(completed=False) for each.
        The next queued play, if any, starts at the next tick."""
        leg = self._legs.get(leg_id)
        if leg is None or not leg.plays:
            return
        stopped = [p for p in leg.plays if tag is None or p.tag == tag]
        if not stopped:
            return
        head_stopped = leg.plays[0] is stopped[0]
        leg.plays = deque(p for p in leg.plays if tag is not None and p.tag != tag)
        for play in stopped:
            self._release(play)
            self._pending.append(partial(PlayFinished, leg.id, play.tag, False))
            self._play_done(leg, play.tag)
        if head_stopped:
            self._clip[leg.row] = -1
            self._pos[leg.row] = 0
            if leg.plays:
                self._starting[leg] = None

    def _release(self, play: _Play) -> None:
        for slot in play.clips:
            self._clips.release(slot)

    def _play_done(self, leg: _Leg, tag: str) -> None:
        rec = leg.recording
        if rec is not None and rec.waiting_for == tag:
            rec.waiting_for = None

    def _next_clip(self, leg: _Leg, now: float, events: list[MediaEvent]) -> int | None:
        """Step the leg's player to its next clip, finishing plays that run out; the clip's slot or None."""
        while leg.plays:
            play = leg.plays[0]
            play.index += 1
            if play.index < len(play.clips):
                return play.clips[play.index]
            leg.plays.popleft()
            self._release(play)
            events.append(PlayFinished(leg.id, play.tag, True, now))
            self._play_done(leg, play.tag)
        return None

    def _continue_player(
        self, leg: _Leg, out: npt.NDArray[np.int32], remaining: int, now: float, events: list[MediaEvent]
    ) -> None:
        """The leg's clip ended with `remaining` samples of this frame still free: fill them from the next
        clips (back to back) and leave the player on the clip that continues into the next frame."""
        row = leg.row
        while True:
            slot = self._next_clip(leg, now, events)
            if slot is None:
                self._clip[row] = -1
                self._pos[row] = 0
                return
            length = int(self._clips.lengths[slot])
            if length == 0:
                continue
            if remaining == 0:
                self._clip[row] = slot
                self._pos[row] = 0
                return
            take = min(length, remaining)
            at = _N - remaining
            out[row, at : at + take] += self._clips.padded(slot)[:take]
            remaining -= take
            if take < length:
                self._clip[row] = slot
                self._pos[row] = take
                return

    def _play_step(self, out: npt.NDArray[np.int32], n: int, add: bool, now: float, events: list[MediaEvent]) -> None:
        """Write every playing leg's next frame into `out` (added to it when `add`, else assigned)."""
        for leg in self._starting:
            self._continue_player(leg, out, 0, now, events)
        self._starting.clear()
        clip = self._clip[:n]
        playing = np.flatnonzero(clip >= 0)
        if playing.size == 0:
            return
        slots = clip[playing]
        pos = self._pos[playing]
        order = np.argsort(slots, kind="stable")
        sorted_slots = slots[order]
        bounds = np.flatnonzero(sorted_slots[1:] != sorted_slots[:-1]) + 1
        starts = [0, *bounds.tolist()]
        stops = [*bounds.tolist(), playing.size]
        for a, b in zip(starts, stops, strict=True):
            idx = order[a:b]
            rows = playing[idx]
            frames = self._clips.windows(int(sorted_slots[a]))[pos[idx]]
            if add:
                out[rows] += frames
            else:
                out[rows] = frames
        pos += _N
        self._pos[playing] = pos
        lengths = self._clips.lengths[slots]
        for i in np.flatnonzero(pos >= lengths).tolist():
            ended = self._by_row[int(playing[i])]
            assert ended is not None
            self._continue_player(ended, out, int(pos[i] - lengths[i]), now, events)

    # -- tones ---------------------------------------------------------------------------------------------

    def send_tones(self, leg_id: str, tag: str, keys: str, *, tone_ms: int = 100, gap_ms: int = 100) -> None:
        """Queue in-band DTMF for the leg's OUTPUT (a FIFO independent of the player, which keeps advancing):
        each key `tone_ms` long, then `gap_ms` of silence. TonesFinished(tag, completed=True) after the last
        gap. Raises DtmfKeyError (a ValueError) for a character that is not a key."""
        leg = self._leg(leg_id)
        sequencer = ToneSequencer(keys, tone_ms=tone_ms, gap_ms=gap_ms)
        leg.tones.append(_Tones(tag, sequencer))
        self._toning[leg] = None

    def stop_tones(self, leg_id: str, tag: str | None = None) -> None:
        """Stop tone sequences with `tag`, or all; TonesFinished(completed=False) for each."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        for item in [t for t in leg.tones if tag is None or t.tag == tag]:
            leg.tones.remove(item)
            self._pending.append(partial(TonesFinished, leg.id, item.tag, False))
        if not leg.tones:
            self._toning.pop(leg, None)

    def _tone_step(self, out: npt.NDArray[np.int32], now: float, events: list[MediaEvent]) -> None:
        done: list[_Leg] = []
        for leg in self._toning:
            while leg.tones and leg.tones[0].sequencer.done:  # empty sequences finish without a frame
                events.append(TonesFinished(leg.id, leg.tones.popleft().tag, True, now))
            if not leg.tones:
                done.append(leg)
                continue
            item = leg.tones[0]
            if self._tones_replace:
                out[leg.row] = item.sequencer.next_frame()
            else:
                out[leg.row] += item.sequencer.next_frame()
            if item.sequencer.done:
                leg.tones.popleft()
                events.append(TonesFinished(leg.id, item.tag, True, now))
                if not leg.tones:
                    done.append(leg)
        for leg in done:
            del self._toning[leg]

    # -- recording -------------------------------------------------------------------------------------------

    def record(
        self,
        leg_id: str,
        tag: str,
        *,
        max_seconds: float,
        initial_silence_seconds: float,
        max_silence_seconds: float,
        stop_keys: str = "",
        after_play: str | None = None,
    ) -> None:
        """Record the leg's INPUT. Capture starts at the next tick, or with the tick in which play `after_play`
        finishes (completed or stopped) if that play is queued on the leg. RecordingStarted when capture
        begins; RecordingFinished with the reason (RecordStop) when it ends:

        - STOP_TONE: a key of `stop_keys` was detected; the samples from the key's estimated start are dropped.
        - INITIAL_SILENCE: no speech (VAD) within `initial_silence_seconds` of the start (<= 0: never).
        - MAX_SILENCE: speech was heard, then `max_silence_seconds` without (<= 0: never).
        - MAX_DURATION: `max_seconds` of audio captured (exactly that many samples are kept).

        One recording per leg: a second record() finishes the first with CANCELLED."""
        leg = self._leg(leg_id)
        if max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        keys = frozenset(normalize_key(k) for k in stop_keys)
        waiting = after_play if after_play is not None and any(p.tag == after_play for p in leg.plays) else None
        if leg.recording is not None:
            self._cancel_recording(leg)
        leg.recording = _Recording(
            tag=tag,
            max_samples=max(1, _seconds_to_samples(max_seconds)),
            initial_silence=_seconds_to_samples(initial_silence_seconds),
            max_silence=_seconds_to_samples(max_silence_seconds),
            stop_keys=keys,
            waiting_for=waiting,
        )
        self._recorders[leg] = None

    def stop_recording(self, leg_id: str, tag: str | None = None) -> None:
        """Finish the leg's recording (if `tag` is None or matches) with CANCELLED, keeping what was captured."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.recording is None or (tag is not None and leg.recording.tag != tag):
            return
        self._cancel_recording(leg)

    def _cancel_recording(self, leg: _Leg) -> None:
        rec = leg.recording
        assert rec is not None
        self._pending.append(
            partial(RecordingFinished, leg.id, rec.tag, RecordStop.CANCELLED, rec.samples(), rec.speech)
        )
        leg.recording = None
        self._recorders.pop(leg, None)
        self._update_speech_mask(leg)

    def _start_recordings(self, now: float, events: list[MediaEvent]) -> None:
        for leg in self._recorders:
            rec = leg.recording
            if rec is not None and not rec.started and rec.waiting_for is None:
                rec.started, rec.start_time = True, now
                events.append(RecordingStarted(leg.id, rec.tag, now))
                self._update_speech_mask(leg)

    def _capture(
        self,
        inp: npt.NDArray[np.int32],
        active: npt.NDArray[np.bool_],
        keys: dict[int, list[DtmfKeyDetected]],
        now: float,
        events: list[MediaEvent],
    ) -> None:
        finished: list[_Leg] = []
        for leg in self._recorders:
            rec = leg.recording
            if rec is None or not rec.started:
                continue
            row = leg.row
            rec.frames.append(inp[row].astype(np.int16))
            rec.captured += _N
            if active[row]:
                rec.speech = True
                rec.silence_run = 0
            else:
                rec.silence_run += _N
            reason: RecordStop | None = None
            limit: int | None = None
            stop = [k for k in keys.get(row, ()) if k.key in rec.stop_keys]
            if stop:
                reason = RecordStop.STOP_TONE
                limit = min(rec.captured, round((stop[0].start_time - rec.start_time) * SAMPLE_RATE))
            elif rec.captured >= rec.max_samples:
                reason, limit = RecordStop.MAX_DURATION, rec.max_samples
            elif not rec.speech and rec.initial_silence and rec.captured >= rec.initial_silence:
                reason = RecordStop.INITIAL_SILENCE
            elif rec.speech and rec.max_silence and rec.silence_run >= rec.max_silence:
                reason = RecordStop.MAX_SILENCE
            if reason is not None:
                events.append(RecordingFinished(leg.id, rec.tag, reason, rec.samples(limit), rec.speech, now))
                finished.append(leg)
        for leg in finished:
            leg.recording = None
            del self._recorders[leg]
            self._update_speech_mask(leg)

    # -- the tick ---------------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[MediaEvent]:
        """Make one 20 ms frame for every leg; `now` is the time of the frame's first sample. Returns the events
        of this tick (and those caused by calls since the last one) in order: stops requested between ticks,
        player and tone ends, recording starts, DTMF, speech changes, recording ends."""
        events: list[MediaEvent] = [make(now) for make in self._pending]
        self._pending.clear()
        self._ticks += 1
        n = self._slots.end
        self._dsp_rows = 0
        if n == 0:
            return events

        # 1. OUTPUT of every leg.
        out = self._out[:n]
        out.fill(0)
        inbound = self._inbound_step(out, n)
        self._play_step(out, n, inbound, now, events)
        if self._toning:
            self._tone_step(out, now, events)
        if self._muted_count:
            out[self._muted[:n]] = 0
        self._start_recordings(now, events)

        # 2. INPUT: the mix minus the leg's own contribution.
        inp = self._inp[:n]
        self._mix_step(out, inp)

        # 3. DTMF and VAD on one float32 copy.
        x = self._x[:n]
        x[...] = inp
        self._dsp_rows = n
        keys: dict[int, list[DtmfKeyDetected]] = {}
        for press in self._dtmf.process(x, now):
            leg = self._by_row[press.channel]
            assert leg is not None
            events.append(ToneDetected(leg.id, press.key, press.start_time))
            keys.setdefault(press.channel, []).append(press)
        vad = self._vad.process(x)
        for row in np.flatnonzero(vad.changed & self._speech_mask[:n]).tolist():
            leg = self._by_row[row]
            assert leg is not None
            events.append(SpeechStarted(leg.id, now) if vad.active[row] else SpeechStopped(leg.id, now))

        # 4. Sinks.
        if self._recorders:
            self._capture(inp, vad.active, keys, now, events)
        for leg in list(self._tapped) if self._tapped else ():  # a tap may change the taps
            tap = leg.tap
            if tap is None:
                continue
            try:
                tap(leg.id, inp[leg.row].astype(np.int16), now)
            except Exception:
                self._tap_errors += 1
                log.exception("media tap failed", extra={"call_id": leg.id})
        return events

    def _mix_step(self, out: npt.NDArray[np.int32], inp: npt.NDArray[np.int32]) -> None:
        """INPUT of every row: the sum of the other members' OUTPUT, clipped to int16 range."""
        if self._topology is None:
            self._topology = _topology(self._mix[: out.shape[0]])
        topo = self._topology
        if topo.silent:
            inp.fill(0)
        if topo.adjacent_pairs:
            pairs_in, pairs_out = inp.reshape(-1, 2, _N), out.reshape(-1, 2, _N)
            pairs_in[:, 0] = pairs_out[:, 1]
            pairs_in[:, 1] = pairs_out[:, 0]
        elif topo.pairs[0].size:
            a, b = topo.pairs
            inp[a] = out[b]
            inp[b] = out[a]
        for members in topo.groups:
            contributions = out[members]
            totals = contributions.sum(axis=1, dtype=np.int32)
            inp[members] = totals[:, None, :] - contributions
        np.clip(inp, _INT16_MIN, _INT16_MAX, out=inp)

    def _inbound_step(self, out: npt.NDArray[np.int32], n: int) -> bool:
        """Move each queued leg's oldest inbound frame into `out`; whether any leg had one."""
        if not self._queued:
            return False
        rows = np.flatnonzero(self._qlen[:n] > 0)
        heads = self._head[rows]
        out[rows] = self._ring[rows, heads]
        self._head[rows] = (heads + 1) % self._queue_frames
        self._qlen[rows] -= 1
        self._queued -= rows.size
        return True
