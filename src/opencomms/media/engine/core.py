"""MediaEngine: the legs, their rows and the per-tick pipeline that runs the other modules' steps in order.
Owns the leg table, the work buffers, mute, listeners, DSP banks and the events pending for the next tick. Must not
read a clock, sleep, start threads or do any I/O: `tick(now)` is a pure step driven by `clock.EngineThread` (or a
test loop), and `now` is only ever the time of the frame being made. Not thread-safe: every method must be called
on the thread that ticks (EngineThread.call does that).

Per tick, for the rows in use (the prefix `[:n]`, n = one past the highest row in use):

1. OUTPUT `(n, 320)` int32 = inbound frame (`inbound`) + prompt player (`player`), or DTMF tones while a leg
   sends them (`tones`, see `tones_replace_output`); muted rows are zeroed afterwards (their player and tones
   still advance).
2. INPUT = for each mix, the sum of its members' OUTPUTs minus the leg's own, clipped to int16 range (`mixing`);
   a leg in no mix (or alone in one) hears silence. A leg that takes DTMF out of band (`set_out_of_band_dtmf`)
   does not hear the other members' tones: it gets an OutOfBandKey event per key instead (only work when some
   leg sends tones and some leg is out of band).
3. One float32 copy of the INPUT of the *analysed* legs feeds the DTMF bank and the VAD bank (both process only
   the prefix of their channels). A leg is analysed unless added with `analysed=False` (`set_analysed`): a phone's
   leg, whose INPUT is what the phone hears, has no one to report its keys or speech to; a leg that records or
   watches speech is analysed while it does. The banks' channels are their own compact table (`_dsp_row`), so legs
   that are not analysed cost nothing there.
4. Recordings (`recorder`) read the INPUT of their own legs; then the listeners (`listeners`: any number per leg
   and per kind, by `subscribe`) get read-only views of INPUT and OUTPUT, per-leg ones first, then batch ones.
5. RFC 4733 keys pushed by a listener (`push_key`, the RTP bank) become ToneDetected on the legs that hear the
   sender in-band, in this tick; the key is then played in-band on the sender's OUTPUT (from the next tick) for
   the members that need to hear it, and kept out of the DTMF detector of those already told (`keys`).

Conferences (mixes of more than `talkers.select_above` members): step 2 mixes only the K loudest active members
(`talkers`), emits DominantSpeakerChanged, and adds what is played to the whole mix (`play_to_mix`, `mixops`);
`record_mix` records a mix's total. Server mute (`set_server_muted`) and the leg's own mute (`set_muted`) both keep
a leg's OUTPUT out of every mix. `HeardTalkers` listeners get the talkers' own frames with their `set_source_id`.

Speech events: SpeechStarted/SpeechStopped are emitted for legs that are capturing a recording, and for legs
that opted in with `watch_speech(leg_id, True)`. ToneDetected is emitted for every analysed leg (in-band keys) and
for every leg hearing an out-of-band key (`push_key`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from ..dtmf.config import DtmfDetectorConfig
from ..dtmf.detector import DtmfDetectorBank, DtmfKeyDetected
from ..frames import FRAME_SAMPLES, SAMPLE_RATE
from ..slots import SlotTable
from ..vad import VadBank, VadConfig
from .events import (
    DominantSpeakerChanged,
    EngineFull,
    EngineStats,
    MediaEvent,
    OutOfBandKey,
    Samples,
    SpeechStarted,
    SpeechStopped,
    ToneDetected,
)
from .inbound import InboundQueues
from .keys import ReceivedKeys
from .legs import Leg
from .listeners import MAX_FAILURES, Listener, Listeners, Subscription
from .mixing import Exclusions, Mixes
from .mixops import MixPlayer, MixRecorder
from .player import Player
from .recorder import Recorder
from .talkers import TalkerConfig
from .tones import Sounding, ToneSender

__all__ = ["MediaEngine"]

log = logging.getLogger("opencomms.media")

_N = FRAME_SAMPLES


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
        listener_max_failures: int = MAX_FAILURES,
        talkers: TalkerConfig | None = None,
    ) -> None:
        if capacity < 1 or inbound_queue_frames < 1:
            raise ValueError("capacity and inbound_queue_frames must be positive")
        self._slots = SlotTable(capacity)
        self._dtmf = DtmfDetectorBank(capacity, SAMPLE_RATE, dtmf_config)
        self._vad = VadBank(capacity, vad_config)
        self._legs: dict[str, Leg] = {}
        self._by_row: list[Leg | None] = [None] * capacity
        # Per-row state read by the batched steps (each step owns its own; these two are the core's).
        self._muted = np.zeros(capacity, dtype=np.bool_)
        self._speech_mask = np.zeros(capacity, dtype=np.bool_)
        self._inbound = InboundQueues(capacity, inbound_queue_frames)
        self._player = Player(capacity, self._by_row)
        self._tones = ToneSender(tones_replace_output)
        self._mixes = Mixes(capacity, talkers)
        self._mix_player = MixPlayer()
        self._mix_recorder = MixRecorder(self._mixes)
        self._source = np.zeros(capacity, dtype=np.int64)  # per row: the leg's sourceId (set_source_id)
        self._recorder = Recorder(self._speech_mask)
        # Work buffers (only the prefix [:n] is used).
        self._out = np.zeros((capacity, _N), dtype=np.int32)
        self._inp = np.zeros((capacity, _N), dtype=np.int32)
        self._x = np.zeros((capacity, _N), dtype=np.float32)
        self._listeners = Listeners(
            capacity, self._mixes, max_failures=listener_max_failures, by_row=self._by_row, sources=self._source
        )
        self._keys = ReceivedKeys(self._mixes, self._recorder, self._tones)
        self._row_gen = np.zeros(capacity, dtype=np.int64)  # per row: which add_leg put its leg there (0: free)
        self._gen = 0
        self._pending: list[Callable[[float], MediaEvent]] = []
        self._muted_count = 0
        self._oob_count = 0  # legs that take DTMF out of band
        self._oob_keys: list[OutOfBandKey] = []
        self._ticks = 0
        self._dsp_rows = 0
        # The DSP channels (DTMF and VAD banks, in step): channel -> engine row and leg (free: row 0, None).
        self._dsp_row = np.zeros(capacity, dtype=np.intp)
        self._dsp_leg: list[Leg | None] = [None] * capacity
        self._heard_active = np.zeros(capacity, dtype=np.bool_)
        self._dsp_lent: dict[Leg, None] = {}  # legs not analysed with a channel while they record or watch speech

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
            mixes=len(self._mixes),
            ticks=self._ticks,
            playing=sum(1 for leg in self._legs.values() if leg.plays),
            recording=len(self._recorder.legs),
            inbound_dropped=self._inbound.dropped,
            dsp_rows=self._dsp_rows,
            tap_errors=self._listeners.faults.total,
            clips=len(self._player.clips),
            listeners=len(self._listeners),
            listeners_dropped=self._listeners.dropped,
            keys_dropped=self._keys.dropped,
        )

    def has_leg(self, leg_id: str) -> bool:
        """Whether `leg_id` is in the engine."""
        return leg_id in self._legs

    def add_leg(self, leg_id: str, *, analysed: bool = True) -> None:
        """Add a leg in the lowest free row, in no mix, unmuted, idle, its INPUT analysed for keys and speech unless
        `analysed` is False (`set_analysed`). EngineFull when full; ValueError if it exists."""
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} already exists")
        if len(self._legs) >= self.capacity:
            raise EngineFull(f"all {self.capacity} media legs are in use")
        row = self._slots.add()
        self._player.reset(row)
        self._muted[row] = False
        self._source[row] = 0
        self._mixes.reset(row)
        self._speech_mask[row] = False
        self._inbound.reset(row)
        leg = Leg(leg_id, row)
        self._gen += 1
        self._row_gen[row] = self._gen
        self._legs[leg_id] = leg
        self._by_row[row] = leg
        leg.analysed = analysed
        self._sync_dsp(leg)

    def set_analysed(self, leg_id: str, on: bool) -> None:
        """Whether the leg's INPUT goes through the DTMF and VAD banks (ToneDetected for in-band keys, speech
        events). Off for a leg no one hears for (a phone's own leg); a recording or `watch_speech` keeps it on
        while they last. Turning it on starts the detectors afresh."""
        leg = self._leg(leg_id)
        leg.analysed = on
        self._sync_dsp(leg)

    def _sync_dsp(self, leg: Leg) -> None:
        """Give the leg a DSP channel when it needs analysis, free it when not (never during a tick)."""
        lent = not leg.analysed and (leg.watch_speech or leg.recording is not None)
        if lent:
            self._dsp_lent[leg] = None
        else:
            self._dsp_lent.pop(leg, None)
        wanted = leg.analysed or lent
        if wanted and leg.dsp < 0:
            channel = self._dtmf.add_channel()
            vad_channel = self._vad.add_channel()
            assert channel == vad_channel, "DTMF and VAD channels out of step"
            leg.dsp = channel
            self._dsp_row[channel] = leg.row
            self._dsp_leg[channel] = leg
        elif not wanted and leg.dsp >= 0:
            self._free_dsp(leg)

    def _free_dsp(self, leg: Leg) -> None:
        channel, leg.dsp = leg.dsp, -1
        self._dtmf.remove_channel(channel)
        self._vad.remove_channel(channel)
        self._dsp_row[channel] = 0
        self._dsp_leg[channel] = None

    def remove_leg(self, leg_id: str) -> None:
        """Remove a leg and free its row; its player, tones and recording are dropped silently (no events).
        Does nothing for an unknown leg."""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        row = leg.row
        self._mixes.join(leg, None)
        self._player.drop(leg)
        self._tones.drop(leg)
        self._recorder.drop(leg)
        self._listeners.drop_leg(leg)
        if leg.muted:
            self._muted_count -= 1
        if leg.out_of_band_dtmf:
            self._oob_count -= 1
        self._inbound.clear(row)
        self._muted[row] = False
        self._speech_mask[row] = False
        self._by_row[row] = None
        self._row_gen[row] = 0
        self._slots.remove(row)
        if leg.dsp >= 0:
            self._free_dsp(leg)
        self._dsp_lent.pop(leg, None)
        self._mixes.reset(row)

    def _leg(self, leg_id: str) -> Leg:
        try:
            return self._legs[leg_id]
        except KeyError:
            raise KeyError(f"no media leg {leg_id!r}") from None

    def join(self, leg_id: str, mix_id: str | None) -> None:
        """Put the leg in mix `mix_id` (a conversation), leaving any other; None leaves every mix."""
        self._mixes.join(self._leg(leg_id), mix_id)

    def set_muted(self, leg_id: str, muted: bool) -> None:
        """A muted leg contributes silence to its mix; its player and tones still advance and finish on time."""
        leg = self._leg(leg_id)
        leg.self_muted = muted
        self._apply_mute(leg)

    def set_server_muted(self, leg_id: str, muted: bool) -> None:
        """Server mute (a meeting participant muted by someone else): as `set_muted`, but kept apart from the
        leg's own mute, so that the leg unmuting itself does not undo it."""
        leg = self._leg(leg_id)
        leg.server_muted = muted
        self._apply_mute(leg)

    def _apply_mute(self, leg: Leg) -> None:
        muted = leg.self_muted or leg.server_muted
        if leg.muted != muted:
            leg.muted = muted
            self._muted[leg.row] = muted
            self._muted_count += 1 if muted else -1

    def set_source_id(self, leg_id: str, source_id: int) -> None:
        """The leg's sourceId (the roster's mediaStreams sourceId), reported with its frames (`HeardTalkers`) and
        in DominantSpeakerChanged."""
        self._source[self._leg(leg_id).row] = source_id

    # -- conferences -----------------------------------------------------------------------------------------

    def talkers(self, mix_id: str) -> list[str]:
        """The legs mixed in the last tick of conference `mix_id` (empty for a smaller or unknown mix)."""
        by_row = self._by_row
        return [leg.id for row in self._mixes.talkers_of(mix_id) if (leg := by_row[row]) is not None]

    def play_to_mix(self, mix_id: str, tag: str, clips: Sequence[Samples]) -> None:
        """Queue clips (1-D int16, 16 kHz, not copied) that every member of mix `mix_id` hears (a prompt to a
        whole meeting), back to back after the mix's earlier plays. MixPlayFinished(tag, completed=True) in the
        tick that mixes the last sample. It plays on while the mix has no members."""
        self._mix_player.play(mix_id, tag, clips, self._pending)

    def stop_mix_play(self, mix_id: str, tag: str | None = None) -> None:
        """Stop the mix's plays with `tag`, or all; MixPlayFinished(completed=False) for each."""
        self._mix_player.stop(mix_id, tag, self._pending)

    def record_mix(self, mix_id: str, tag: str, *, max_seconds: float) -> None:
        """Record what mix `mix_id` sounds like to a member that is not talking (its talkers and its plays), from
        the next tick: MixRecordingFinished(MAX_DURATION) after `max_seconds`, or CANCELLED by `stop_mix_recording`
        (or a second record_mix). Silence while the mix has no members."""
        self._mix_recorder.record(mix_id, tag, max_seconds, self._pending)

    def stop_mix_recording(self, mix_id: str, tag: str | None = None) -> None:
        """Finish the mix's recording (if `tag` is None or matches) with CANCELLED, keeping what was captured."""
        self._mix_recorder.stop(mix_id, tag, self._pending)

    def set_out_of_band_dtmf(self, leg_id: str, on: bool) -> None:
        """Whether the leg takes DTMF out of band (an RFC 4733 peer): tones the other members of its mix send are
        kept out of its INPUT, and each key starting is reported as OutOfBandKey(leg_id, ...) in the tick that
        outputs the tone's first sample (also listed in `out_of_band_keys` during that tick's listeners). Off: the
        leg hears the tones in-band like any other."""
        leg = self._leg(leg_id)
        if leg.out_of_band_dtmf != on:
            leg.out_of_band_dtmf = on
            self._oob_count += 1 if on else -1

    @property
    def out_of_band_keys(self) -> list[OutOfBandKey]:
        """The OutOfBandKey events of the tick in progress, for listeners (the RTP bank); read-only use."""
        return self._oob_keys

    def subscribe(self, listener: Listener) -> Subscription:
        """Add a listener (`Heard`, `Said`, `HeardParts` on a leg, or `Batch`; see `listeners`), called once per
        tick from the next one on, on the ticking thread, with read-only frames valid only during the call (copy
        what you keep). Any number per leg and per kind. Returns the handle for `unsubscribe`; KeyError for an
        unknown leg. A listener that raises is counted (`stats.tap_errors`), and unsubscribed after
        `listener_max_failures` failures in a row; the others still run. Keep listeners cheap."""
        leg_id = getattr(listener, "leg_id", None)
        return self._listeners.add(listener, None if leg_id is None else self._leg(leg_id))

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a listener (idempotent: also fine once its leg is gone or it was dropped after failures)."""
        self._listeners.remove(subscription)

    def leg_key(self, leg_id: str) -> tuple[int, int]:
        """(row, generation) of a leg: the generation is unique to this leg's stay in that row, so a batch listener can
        tell, with `row_generations[row] == generation`, that the leg is still there (KeyError if unknown)."""
        row = self._leg(leg_id).row
        return row, int(self._row_gen[row])

    @property
    def row_generations(self) -> npt.NDArray[np.int64]:
        """Per row, the generation of the leg in it (0: free); see `leg_key`. Read-only use."""
        return self._row_gen

    def watch_speech(self, leg_id: str, on: bool) -> None:
        """Emit SpeechStarted/SpeechStopped for this leg even when it is not recording."""
        leg = self._leg(leg_id)
        leg.watch_speech = on
        self._recorder.update_speech_mask(leg)
        self._sync_dsp(leg)

    # -- inbound -----------------------------------------------------------------------------------------------

    def push_inbound(self, leg_id: str, frame: Samples) -> None:
        """Queue one far-end frame (int16, 320 samples) for the leg's OUTPUT. The queue holds at most
        `inbound_queue_frames`; when full, the oldest frame is dropped (and counted)."""
        self._inbound.push(self._leg(leg_id).row, frame)

    def push_inbound_rows(self, rows: npt.NDArray[np.intp], frames: npt.NDArray[np.int16]) -> None:
        """`push_inbound` for many legs at once, by row (`leg_key`): `rows` distinct rows in use, `frames` one
        `(len(rows), 320)` int16 frame each. For batch listeners, on the ticking thread; rows are not checked."""
        self._inbound.push_rows(rows, frames)

    def push_key(self, leg_id: str, key: str, at: float) -> None:
        """A DTMF key the leg's far end sent out of band (an RFC 4733 event starting at `at`, one call per press),
        for a listener that decodes it (the RTP bank), on the ticking thread. Pushed during a tick's listeners, it
        is reported in that tick (else in the next): ToneDetected(other, key, at) for every member of the leg's mix
        that hears DTMF in-band (and a recording of theirs that stops on the key stops), then the key is played
        in-band on the leg's OUTPUT (100 ms, from the next tick) for whoever hears the leg, except that the DTMF
        detector of the members already told does not see it; out-of-band members get OutOfBandKey as for any
        tone. A muted leg's keys reach no one; nor do those of a leg with 16 keys waiting to sound (a flood,
        counted in `stats.keys_dropped`). Keys with no in-band form ('!', flash) and unknown legs are
        ignored."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._keys.push(leg, key, at)

    # -- player --------------------------------------------------------------------------------------------

    def play(self, leg_id: str, tag: str, clips: Sequence[Samples]) -> None:
        """Queue clips (1-D int16, 16 kHz) on the leg's player; they play back to back, sample-exact, after
        whatever is queued before. PlayFinished(tag, completed=True) comes in the tick that outputs the last
        sample. Clips are not copied per leg: the same array object played on many legs is stored once and
        must not be modified afterwards."""
        self._player.play(self._leg(leg_id), tag, clips)

    def stop_play(self, leg_id: str, tag: str | None = None) -> None:
        """Stop the plays with `tag` (queued or playing), or all of them; PlayFinished(completed=False) for each.
        The next queued play, if any, starts at the next tick."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._player.stop(leg, tag, self._pending)

    # -- tones ---------------------------------------------------------------------------------------------

    def send_tones(self, leg_id: str, tag: str, keys: str, *, tone_ms: int = 100, gap_ms: int = 100) -> None:
        """Queue in-band DTMF for the leg's OUTPUT (a FIFO independent of the player, which keeps advancing):
        each key `tone_ms` long, then `gap_ms` of silence. TonesFinished(tag, completed=True) after the last
        gap. Raises DtmfKeyError (a ValueError) for a character that is not a key."""
        self._tones.send(self._leg(leg_id), tag, keys, tone_ms, gap_ms)

    def stop_tones(self, leg_id: str, tag: str | None = None) -> None:
        """Stop tone sequences with `tag`, or all; TonesFinished(completed=False) for each."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._tones.stop(leg, tag, self._pending)

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

        One recording per leg: a second record() finishes the first with CANCELLED. The leg is analysed while
        it records (`set_analysed`)."""
        leg = self._leg(leg_id)
        self._recorder.record(
            leg,
            tag,
            max_seconds=max_seconds,
            initial_silence_seconds=initial_silence_seconds,
            max_silence_seconds=max_silence_seconds,
            stop_keys=stop_keys,
            after_play=after_play,
            pending=self._pending,
        )
        self._sync_dsp(leg)

    def stop_recording(self, leg_id: str, tag: str | None = None) -> None:
        """Finish the leg's recording (if `tag` is None or matches) with CANCELLED, keeping what was captured."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.recording is None or (tag is not None and leg.recording.tag != tag):
            return
        self._recorder.cancel(leg, self._pending)
        self._sync_dsp(leg)

    # -- the tick ---------------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[MediaEvent]:
        """Make one 20 ms frame for every leg; `now` is the time of the frame's first sample. Returns the events
        of this tick (and those caused by calls since the last one) in order: stops requested between ticks,
        player and tone ends, recording starts, DTMF, speech changes, recording ends, then the keys received out
        of band (ToneDetected, and the recordings they stop)."""
        events: list[MediaEvent] = [make(now) for make in self._pending]
        self._pending.clear()
        self._ticks += 1
        n = self._slots.end
        self._dsp_rows = 0
        if self._oob_keys:
            self._oob_keys = []
        if n == 0:
            return events

        # 1. OUTPUT of every leg.
        out = self._out[:n]
        out.fill(0)
        inbound = self._inbound.step(out, n)
        self._player.step(out, n, inbound, now, events)
        sounding: list[Sounding] | None = None
        if self._tones.legs:
            sounding = []
            self._tones.step(out, now, events, sounding)
        if self._muted_count:
            out[self._muted[:n]] = 0
        self._recorder.start(now, events)

        # 2. INPUT: the mix minus the leg's own contribution (and minus tones for out-of-band legs); conferences
        # from their talkers; prompts played to whole mixes.
        inp = self._inp[:n]
        fed = self._mix_player.step(now, events) if len(self._mix_player) else None
        self._mixes.step(
            out,
            inp,
            self._out_of_band(sounding, events) if sounding and self._oob_count else None,
            muted=self._muted[:n] if self._muted_count else None,
            fed=fed,
        )
        for mix_id, row in self._mixes.dominant:
            speaker = self._by_row[row] if row >= 0 else None
            source = None if speaker is None else int(self._source[row])
            events.append(DominantSpeakerChanged(mix_id, None if speaker is None else speaker.id, source, now))

        # 3. DTMF and VAD on one float32 copy of the analysed legs' INPUT (without the keys already reported out
        # of band).
        keys: dict[int, list[DtmfKeyDetected]] = {}
        active = self._analyse(inp, sounding, now, events, keys) if self._dtmf.end else None

        # 4. Recordings and listeners.
        if self._recorder.legs:
            if active is None:  # no leg analysed (a recording lends its leg a channel: not expected)
                active = self._heard_active[:n]
                active.fill(False)
            self._recorder.capture(inp, active, keys, now, events)
        if len(self._mix_recorder):
            self._mix_recorder.capture(now, events)
        self._listeners.step(inp, out, now)
        if self._dsp_lent:  # recordings that ended in this tick give their channel back
            for leg in [leg for leg in self._dsp_lent if leg.recording is None and not leg.watch_speech]:
                self._sync_dsp(leg)

        # 5. RFC 4733 keys pushed by the listeners (or since the last tick).
        if self._keys.pending:
            self._keys.flush(self._legs, now, events)
        return events

    def _analyse(
        self,
        inp: npt.NDArray[np.int32],
        sounding: list[Sounding] | None,
        now: float,
        events: list[MediaEvent],
        keys: dict[int, list[DtmfKeyDetected]],
    ) -> npt.NDArray[np.bool_]:
        """Step 3 on the DSP channels in use: ToneDetected and speech events, each key by engine row in `keys`;
        returns the VAD's verdict per engine row (rows not analysed: False)."""
        k = self._dtmf.end
        self._dsp_rows = k
        x = self._x[:k]
        x[...] = inp[self._dsp_row[:k]]
        dsp_leg = self._dsp_leg
        if sounding:
            self._keys.hide(sounding, x)
        for press in self._dtmf.process(x, now):
            leg = dsp_leg[press.channel]
            if leg is None:
                continue
            events.append(ToneDetected(leg.id, press.key, press.start_time))
            keys.setdefault(leg.row, []).append(press)
        vad = self._vad.process(x)
        speech = self._speech_mask
        for channel in np.flatnonzero(vad.changed).tolist():
            leg = dsp_leg[channel]
            if leg is not None and speech[leg.row]:
                events.append(SpeechStarted(leg.id, now) if vad.active[channel] else SpeechStopped(leg.id, now))
        active = self._heard_active[: self._slots.end]
        active.fill(False)
        live = self._dtmf.active[:k]
        active[self._dsp_row[:k][live]] = vad.active[:k][live]
        return active

    def _out_of_band(self, sounding: list[Sounding], events: list[MediaEvent]) -> Exclusions:
        """For each leg sending a tone frame, the out-of-band members of its mix: the frame to keep out of their
        INPUT, and an OutOfBandKey for each key starting. A muted sender's tones reach no one, in-band or not."""
        exclude: Exclusions = []
        for item in sounding:
            leg = item.leg
            if leg.mix is None or leg.muted:
                continue
            for other in self._mixes.members(leg.mix):
                if other is leg or not other.out_of_band_dtmf:
                    continue
                exclude.append((other.row, leg.row, item.frame))
                for key, duration_ms, at in item.starts:
                    event = OutOfBandKey(other.id, key, duration_ms, at, leg.id)
                    events.append(event)
                    self._oob_keys.append(event)
        return exclude
