"""The prompt library: turns a `PromptSpec` into ready-to-play 16 kHz mono int16 audio, cached.

Owns the cache (LRU bounded by bytes, keyed by `PromptSpec.cache_key()`), single flight (concurrent loads of
one key share one task), background prefetching, and the generated tones (`beep`, `silence`).
Must not fetch, decode or synthesize itself (it drives a fetcher, `decode_wav` and a synthesizer) and must not
cache failures. It owns its fetcher: `close()` closes it (the synthesizer holds nothing open between calls).
Arrays it returns are read-only and shared between callers.
With a `MemoryBudget`, every load reserves its upper bound before it fetches (the body size limit) or synthesizes
(the longest prompt), then, fetched, the body plus what decoding it needs (from the WAV header), and gives it all
back when it ends: a load that does not fit fails with PromptFailure.OVER_BUDGET instead of allocating. A load
nobody waits for any more (every caller cancelled, not a prefetch) is cancelled: its download stops, its bytes
are released.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from opencomms.domain.media import PromptError, PromptFailure, PromptSpec

from .budget import MemoryBudget, Reservation
from .frames import SAMPLE_RATE
from .wav import decode_wav, read_format

__all__ = ["Fetcher", "PromptLibrary", "PromptStats", "Synthesizer", "beep", "silence"]

log = logging.getLogger("opencomms.media")

Audio = npt.NDArray[np.int16]

_INLINE_DECODE_BYTES = 256 * 1024
"""Bodies up to this size are decoded on the event loop; larger ones (which may need seconds of resampling)
in a worker thread, so the 20 ms media tick is not held up."""

PREFETCH_BUDGET_SHARE = 0.5
"""Prefetches (preFetchMedia) only start while the memory budget is less than half used: warming the cache must
never take the room that prompts about to play need."""
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_RESAMPLE_CHUNK_BYTES = 12 << 20
"""Working memory of media.resample.resample besides its input and output (its windows of taps, in float64)."""


class Fetcher(Protocol):
    """What the library needs of `SafeFetcher`."""

    async def fetch(self, url: str) -> bytes: ...

    async def close(self) -> None: ...


class Synthesizer(Protocol):
    """What the library needs of `Voices` (or `Tts`): `speed` is passed only when the prompt gives one."""

    async def synthesize(
        self, text: str, voice: str | None, language: str | None, speed: float | None = None
    ) -> Audio: ...


@dataclass(frozen=True, slots=True)
class PromptStats:
    hits: int
    """Loads served from the cache or by joining a load already in flight."""
    misses: int
    """Loads that started a fetch or synthesis (prefetches included)."""
    failures: int
    """Started loads that failed."""
    bytes: int
    """Bytes of audio held in the cache."""
    entries: int


class PromptLibrary:
    """Loads prompts through a fetcher (media prompts) or a synthesizer (text prompts), with a shared cache."""

    def __init__(
        self,
        fetcher: Fetcher,
        tts: Synthesizer,
        *,
        max_prompt_seconds: float = 300.0,
        max_cache_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        budget: MemoryBudget | None = None,
        max_fetch_bytes: int = 8 << 20,
    ) -> None:
        if max_prompt_seconds <= 0 or max_cache_bytes < 0:
            raise ValueError("max_prompt_seconds must be positive and max_cache_bytes not negative")
        self._fetcher = fetcher
        self._tts = tts
        self.max_prompt_seconds = max_prompt_seconds
        self.max_cache_bytes = max_cache_bytes
        self._clock = clock
        self.budget = budget
        self._max_fetch_bytes = max_fetch_bytes
        self._waiters: collections.Counter[str] = collections.Counter()
        self._cache: collections.OrderedDict[str, Audio] = collections.OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Task[Audio]] = {}
        self._background: set[asyncio.Task[Audio]] = set()
        self._hits = 0
        self._misses = 0
        self._failures = 0
        self._closed = False

    @property
    def stats(self) -> PromptStats:
        return PromptStats(self._hits, self._misses, self._failures, self._bytes, len(self._cache))

    def cached(self, spec: PromptSpec) -> bool:
        """Whether `spec`'s audio is in the cache (loaded, not evicted)."""
        return spec.cache_key() in self._cache

    async def load(self, spec: PromptSpec) -> Audio:
        """The prompt's audio (16 kHz mono int16, read-only), from the cache or loaded now.

        Raises `PromptError` when it cannot be loaded; the failure is not cached, a later load retries.
        Cancelling one caller does not cancel a load other callers (or a prefetch) are waiting for.
        """
        if self._closed:
            raise RuntimeError("prompt library is closed")
        key = spec.cache_key()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self._hits += 1
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = self._start(key, spec)
        else:
            self._hits += 1
        self._waiters[key] += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._waiters[key] == 1 and not task.done() and task not in self._background:
                task.cancel()  # the last one waiting for it left: stop the download, free its bytes
            raise
        finally:
            self._waiters[key] -= 1
            if self._waiters[key] <= 0:
                del self._waiters[key]

    def prefetch(self, specs: Iterable[PromptSpec]) -> None:
        """Start loading `specs` in the background (call from the event loop); failures are only logged."""
        if self._closed:
            return
        for spec in specs:
            key = spec.cache_key()
            if key in self._cache or key in self._inflight:
                continue
            if self.budget is not None and not self.budget.fits(self._upper_bound(spec), share=PREFETCH_BUDGET_SHARE):
                log.info("prefetch of prompt %s skipped: the prompt memory budget is over half used", _describe(spec))
                continue  # skipped here, not failed later: a load joining it would share its failure
            task = self._start(key, spec, share=PREFETCH_BUDGET_SHARE)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Cancel loads in flight, drop the cache and close the fetcher. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._cache.clear()
        self._bytes = 0
        await self._fetcher.close()

    def _start(self, key: str, spec: PromptSpec, share: float = 1.0) -> asyncio.Task[Audio]:
        self._misses += 1
        task = asyncio.get_running_loop().create_task(
            self._load(key, spec, share), name=f"prompt-load {_describe(spec)}"
        )
        self._inflight[key] = task
        task.add_done_callback(functools.partial(self._finished, key, spec))
        return task

    def _finished(self, key: str, spec: PromptSpec, task: asyncio.Task[Audio]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so an unawaited prefetch never warns
        if error is not None:
            self._failures += 1
            if isinstance(error, PromptError):
                log.info("prompt %s failed to load: %s (%s)", _describe(spec), error.message, error.failure.value)
            else:
                log.warning("prompt %s failed to load", _describe(spec), exc_info=error)

    def _reserve(self, spec: PromptSpec, share: float) -> Reservation | None:
        """Take the load's upper bound from the budget (None without a budget); PromptError when it does not fit
        within `share` of the budget."""
        if self.budget is None:
            return None
        nbytes = self._upper_bound(spec)
        reservation = self.budget.reserve(nbytes, share=share)
        if reservation is None:
            raise self._over_budget(nbytes)
        return reservation

    def _upper_bound(self, spec: PromptSpec) -> int:
        """What a load reserves before it starts: the longest prompt (text), or the body size limit (media)."""
        return int(self.max_prompt_seconds * SAMPLE_RATE) * 2 if spec.text is not None else self._max_fetch_bytes

    def _over_budget(self, nbytes: int) -> PromptError:
        budget = self.budget
        assert budget is not None
        return PromptError(
            PromptFailure.OVER_BUDGET,
            f"the node's prompt memory budget is exhausted ({budget.held / 2**20:.1f} of {budget.limit >> 20} MiB "
            f"held; this load needs up to {nbytes / 2**20:.1f} MiB)",
        )

    def _decode_bytes(self, body: bytes) -> int:
        """Upper bound of the memory decoding `body` takes, following decode_wav's path: the int16 copy, or the
        float copy of every channel and the mix; the resampler's float64 input, output and work chunk; the result
        (0 for what decode refuses from the header, before allocating)."""
        try:
            fmt = read_format(body)
        except PromptError:
            return 0
        if fmt.seconds > self.max_prompt_seconds:
            return 0
        frames = fmt.frames
        if fmt.channels == 1 and fmt.bits <= 16 and fmt.format_tag != _WAVE_FORMAT_IEEE_FLOAT:
            work = frames * 2
        else:
            work = frames * fmt.channels * 4 + frames * 6
        if fmt.rate != SAMPLE_RATE:
            out = -(-frames * SAMPLE_RATE // fmt.rate)
            work += frames * 8 + out * 10 + _RESAMPLE_CHUNK_BYTES
        return work

    async def _load(self, key: str, spec: PromptSpec, share: float) -> Audio:
        reservation = self._reserve(spec, share)
        try:
            return await self._load_reserved(key, spec, reservation)
        finally:
            if reservation is not None:
                reservation.release()

    async def _load_reserved(self, key: str, spec: PromptSpec, reservation: Reservation | None) -> Audio:
        started = self._clock()
        if spec.text is not None:
            if spec.speed is None:
                audio = await self._tts.synthesize(spec.text, spec.voice, spec.language)
            else:
                audio = await self._tts.synthesize(spec.text, spec.voice, spec.language, speed=spec.speed)
            seconds = audio.size / SAMPLE_RATE
            if seconds > self.max_prompt_seconds:
                raise PromptError(
                    PromptFailure.TOO_LONG,
                    f"speech lasts {seconds:.1f} s, longer than the limit of {self.max_prompt_seconds:g} s",
                )
        else:
            if not spec.uri:
                raise PromptError(PromptFailure.BAD_URL, "media prompt without a uri")
            body = await self._fetcher.fetch(spec.uri)
            if reservation is not None:
                needed = len(body) + self._decode_bytes(body)
                if not reservation.resize(needed):
                    raise self._over_budget(needed)
            if len(body) <= _INLINE_DECODE_BYTES:
                audio = decode_wav(body, max_seconds=self.max_prompt_seconds)
            else:
                audio = await self._decode_in_thread(body, reservation)
        if audio.flags.writeable:  # a synthesizer might hand back its own array
            audio = audio.copy()
            audio.flags.writeable = False
        self._store(key, audio)
        log.debug(
            "prompt %s loaded: %.2f s of audio in %.0f ms",
            _describe(spec),
            audio.size / SAMPLE_RATE,
            1000 * (self._clock() - started),
        )
        return audio

    async def _decode_in_thread(self, body: bytes, reservation: Reservation | None) -> Audio:
        """Decode in a worker thread. If the load is cancelled meanwhile, the thread still runs to its end: its
        bytes stay reserved until then (the reservation moves to the thread's completion)."""
        decode = functools.partial(decode_wav, body, max_seconds=self.max_prompt_seconds)
        future = asyncio.get_running_loop().run_in_executor(None, decode)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if reservation is not None:
                moved = reservation.detach()  # the thread's share, released when it ends
                future.add_done_callback(lambda _: moved.release())
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieve, never warn
            raise

    def _store(self, key: str, audio: Audio) -> None:
        if self._closed or audio.nbytes > self.max_cache_bytes:
            return
        old = self._cache.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._cache[key] = audio
        self._bytes += audio.nbytes
        while self._bytes > self.max_cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._bytes -= evicted.nbytes


def _describe(spec: PromptSpec) -> str:
    """A log-safe name: resourceId or host, never the text, a full URL or its query."""
    if spec.text is not None:
        speed = "" if spec.speed is None else f", speed={spec.speed:g}"
        return f"text({len(spec.text)} chars, voice={spec.voice or spec.language or 'default'}{speed})"
    if spec.resource_id:
        return f"resource {spec.resource_id}"
    uri = spec.uri or ""
    return f"uri {uri.split('?', 1)[0][:120]}"


def _read_only(samples: npt.NDArray[np.int16]) -> Audio:
    samples.flags.writeable = False
    return samples


@functools.lru_cache(maxsize=16)
def beep(duration_ms: int = 300, freq: float = 1000.0) -> Audio:
    """A sine beep at -10 dBFS with 10 ms raised-cosine fades (no clicks); 16 kHz, read-only, shared."""
    if duration_ms <= 0:
        raise ValueError("duration must be positive")
    if not 0.0 < freq < SAMPLE_RATE / 2:
        raise ValueError(f"frequency must be between 0 and {SAMPLE_RATE // 2} Hz")
    n = duration_ms * SAMPLE_RATE // 1000
    t = np.arange(n) / SAMPLE_RATE
    tone = 32767.0 * 10 ** (-10 / 20) * np.sin(2 * np.pi * freq * t)
    fade = min(n // 2, 10 * SAMPLE_RATE // 1000)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    tone[:fade] *= ramp
    tone[n - fade :] *= ramp[::-1]
    return _read_only(np.rint(tone).astype(np.int16))


def silence(ms: int) -> Audio:
    """`ms` milliseconds of digital silence at 16 kHz, read-only."""
    if ms < 0:
        raise ValueError("duration must not be negative")
    return _read_only(np.zeros(ms * SAMPLE_RATE // 1000, dtype=np.int16))
