"""What a virtual phone hears: received audio kept as 16 kHz PCM, DTMF keys recognised, speech and silence found.

Owns the 8 -> 16 kHz conversion of received audio, the in-band DTMF detector (the media engine's Goertzel
detector), the voice activity detector (the engine's energy VAD), speech segments and the waiters that tests
block on. Time here is media time: seconds of audio received, so results do not depend on scheduling.
Must not touch sockets, SIP or the wall clock (callers bound their waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opencomms.media.dtmf.detector import DtmfDetector
from opencomms.media.frames import FRAME_SAMPLES, SAMPLE_RATE
from opencomms.media.resample import Resampler
from opencomms.media.vad import VadBank, VadConfig

__all__ = ["HeardTone", "Listener", "SpeechSegment"]

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class HeardTone:
    """A DTMF key the far end sent."""

    key: str
    """'0'-'9', '*', '#', 'A'-'D'."""
    at: float
    """Media time (seconds of audio received) at which the tone started; for RFC 4733, when it arrived."""
    method: str
    """"inband" (recognised in the audio) or "rfc4733" (telephone-event packets)."""


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """A stretch of sound (speech, a prompt, tones) the voice activity detector found, in media time."""

    start: float
    end: float | None
    """None while it is still going on."""


class Listener:
    """Feed it received 8 kHz audio with `feed` (16 kHz with `feed_wide`); read `audio()`, `tones`, `segments`;
    wait with `until`."""

    def __init__(self, vad: VadConfig | None = None) -> None:
        self._resampler = Resampler(8000, SAMPLE_RATE)
        self._dtmf = DtmfDetector()
        self._vad = VadBank(1, vad or VadConfig())
        self._vad.add_channel()
        self._vad.process(np.zeros((1, FRAME_SAMPLES), dtype=np.int16))  # a quiet line until proven otherwise:
        # without this, sound from the very first frame would set the noise floor and go unnoticed
        self._chunks: list[Samples] = []
        self._pending = np.zeros(0, dtype=np.int16)
        self.samples = 0
        """16 kHz samples analysed so far."""
        self.tones: list[HeardTone] = []
        self.segments: list[SpeechSegment] = []
        self.speaking = False
        self._quiet_since = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.closed = False
        self.on_note: Callable[[str], None] | None = None
        """Called with a short description of each tone heard and each start and end of sound."""

    @property
    def seconds(self) -> float:
        """Media time: seconds of audio received."""
        return self.samples / SAMPLE_RATE

    @property
    def quiet_for(self) -> float:
        """Seconds since the last sound ended (0 while sound is going on)."""
        return 0.0 if self.speaking else (self.samples - self._quiet_since) / SAMPLE_RATE

    def audio(self, start: float = 0.0, end: float | None = None) -> Samples:
        """Everything heard between media times `start` and `end` (seconds), 16 kHz mono int16."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        whole = self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)
        lo = max(0, round(start * SAMPLE_RATE))
        hi = whole.size if end is None else min(whole.size, round(end * SAMPLE_RATE))
        return whole[lo:hi].copy()

    def feed(self, samples: Samples) -> None:
        """Received audio, 8 kHz int16, in stream order."""
        if self.closed or samples.size == 0:
            return
        wide = self._resampler.process(np.ascontiguousarray(samples, dtype=np.int16))
        pending = np.concatenate([self._pending, wide]) if self._pending.size else wide
        whole = pending.size - pending.size % FRAME_SAMPLES
        for at in range(0, whole, FRAME_SAMPLES):
            self._frame(pending[at : at + FRAME_SAMPLES])
        self._pending = pending[whole:]
        self._wake()

    def feed_wide(self, samples: Samples) -> None:
        """Received audio, 16 kHz int16 (a G.722 call), in stream order."""
        if self.closed or samples.size == 0:
            return
        wide = np.ascontiguousarray(samples, dtype=np.int16)
        pending = np.concatenate([self._pending, wide]) if self._pending.size else wide
        whole = pending.size - pending.size % FRAME_SAMPLES
        for at in range(0, whole, FRAME_SAMPLES):
            self._frame(pending[at : at + FRAME_SAMPLES])
        self._pending = pending[whole:]
        self._wake()

    def key_received(self, key: str) -> None:
        """An RFC 4733 key from the far end."""
        if not self._repeat(key, self.seconds, "inband"):
            self.tones.append(HeardTone(key, self.seconds, "rfc4733"))
            self._note(f"heard DTMF {key} (RFC 4733)")
        self._wake()

    def _repeat(self, key: str, at: float, method: str) -> bool:
        """The same key just came the other way (a far end that sends RFC 4733 and the tone): count it once."""
        last = self.tones[-1] if self.tones else None
        return last is not None and last.key == key and last.method == method and abs(at - last.at) < 0.3

    def _frame(self, frame: Samples) -> None:
        now = self.seconds
        self._chunks.append(frame)
        for hit in self._dtmf.process(frame, now):
            if not self._repeat(hit.key, hit.start_time, "rfc4733"):
                self.tones.append(HeardTone(hit.key, round(hit.start_time, 3), "inband"))
                self._note(f"heard DTMF {hit.key} (in-band)")
        result = self._vad.process(frame.reshape(1, -1))
        self.samples += frame.size
        active = bool(result.active[0])
        if active and not self.speaking:
            onset = max(0.0, now - self._vad.config.onset_ms / 1000.0)
            self.segments.append(SpeechSegment(round(onset, 3), None))
            self._note("sound started")
        elif self.speaking and not active:
            last = self.segments[-1]
            end = round(max(last.start, now - self._vad.config.hangover_ms / 1000.0), 3)
            self.segments[-1] = SpeechSegment(last.start, end)
            self._quiet_since = self.samples - round(self._vad.config.hangover_ms * SAMPLE_RATE / 1000)
            self._note(f"sound ended ({end - last.start:.1f} s)")
        self.speaking = active

    def _note(self, text: str) -> None:
        if self.on_note is not None:
            self.on_note(text)

    # -- waiting

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Return once `predicate()` holds (checked after every frame); TimeoutError naming `what` after
        `timeout` seconds of wall-clock time, or at once if the call's media has ended without it holding."""
        if predicate():
            return
        if self.closed:
            raise self._ended(what)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if self.closed:
                raise self._ended(what) from None
            raise TimeoutError(f"{what}: not within {timeout:g} s (heard {self.seconds:.2f} s of audio)") from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _ended(self, what: str) -> TimeoutError:
        return TimeoutError(f"{what}: the call's media ended first (heard {self.seconds:.2f} s of audio)")

    def close(self) -> None:
        """No more audio: waiters whose condition is still false fail now."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        for entry in list(self._waiters):
            predicate, future = entry
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            elif self.closed:
                future.set_exception(TimeoutError("the call ended"))
