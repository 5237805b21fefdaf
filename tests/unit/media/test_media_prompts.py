"""The prompt library: cache keys, single flight, failures not cached, LRU by bytes, prefetch; beep and silence."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import numpy.typing as npt
import pytest
from media_signals import espeak_available

from opencomms.domain.media import PromptError, PromptFailure, PromptSpec
from opencomms.media.fetch import FetchPolicy, SafeFetcher
from opencomms.media.frames import level_dbfs
from opencomms.media.prompts import PromptLibrary, beep, silence
from opencomms.media.tts import Tts
from opencomms.media.wav import encode_wav

SECOND = 16000 * 2  # bytes of one second of 16 kHz int16


def tone(seconds: float, value: int) -> npt.NDArray[np.int16]:
    return np.full(int(seconds * 16000), value, dtype=np.int16)


class FakeFetcher:
    """Serves WAV bodies by URL; can hold fetches at a gate and fail a URL a given number of times."""

    def __init__(self, bodies: dict[str, bytes] | None = None) -> None:
        self.bodies = bodies or {}
        self.calls: list[str] = []
        self.failures: dict[str, tuple[int, PromptError]] = {}
        self.gate: asyncio.Event | None = None
        self.closed = False
        self._arrived = asyncio.Event()

    async def wait_calls(self, n: int) -> None:
        """Until `n` fetches have started (they may be waiting at the gate)."""
        async with asyncio.timeout(1.0):
            while len(self.calls) < n:
                self._arrived.clear()
                await self._arrived.wait()

    async def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        self._arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        times, error = self.failures.get(url, (0, None))
        if times and error is not None:
            self.failures[url] = (times - 1, error)
            raise error
        if url not in self.bodies:
            raise PromptError(PromptFailure.HTTP_STATUS, f"HTTP 404 from {url}")
        return self.bodies[url]

    async def close(self) -> None:
        self.closed = True


class FakeTts:
    def __init__(self, seconds: float = 0.5) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.seconds = seconds

    async def synthesize(self, text: str, voice: str | None, language: str | None) -> npt.NDArray[np.int16]:
        self.calls.append((text, voice, language))
        return tone(self.seconds, len(self.calls))  # writable on purpose: the library must protect its cache


def media(uri: str, resource_id: str | None = None) -> PromptSpec:
    return PromptSpec(uri=uri, resource_id=resource_id)


async def failure_of(library: PromptLibrary, spec: PromptSpec) -> PromptError:
    with pytest.raises(PromptError) as info:
        await library.load(spec)
    return info.value


# -- loading ----------------------------------------------------------------------------------------------


async def test_media_prompt_is_fetched_decoded_and_read_only() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(1, 7), 8000)})
    library = PromptLibrary(fetcher, FakeTts())
    audio = await library.load(media("https://x/a.wav"))
    assert audio.dtype == np.int16 and audio.size == 32000  # 8 kHz resampled to 16 kHz
    assert not audio.flags.writeable
    assert np.all(audio[200:-200] == 7)


async def test_text_prompt_is_synthesized_once_per_text_and_voice() -> None:
    tts = FakeTts()
    library = PromptLibrary(FakeFetcher(), tts)
    first = await library.load(PromptSpec(text="hello", voice="en-us"))
    assert not first.flags.writeable
    again = await library.load(PromptSpec(text="hello", voice="en-us"))
    assert again is first
    await library.load(PromptSpec(text="hello", voice="en-gb"))
    await library.load(PromptSpec(text="hello", language="en-GB"))
    assert tts.calls == [("hello", "en-us", None), ("hello", "en-gb", None), ("hello", None, "en-GB")]


async def test_resource_id_is_the_cache_key_even_when_the_uri_differs() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 1)), "https://x/b.wav": encode_wav(tone(0.1, 2))})
    library = PromptLibrary(fetcher, FakeTts())
    a = await library.load(media("https://x/a.wav", "Greeting"))
    b = await library.load(media("https://x/b.wav", "GREETING"))  # resourceIds compare case-insensitively
    assert b is a
    assert fetcher.calls == ["https://x/a.wav"]
    await library.load(media("https://x/b.wav"))  # no resourceId: cached by URI
    await library.load(media("https://x/b.wav"))
    assert fetcher.calls == ["https://x/a.wav", "https://x/b.wav"]
    stats = library.stats
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (2, 2, 2, 2 * 3200)


async def test_concurrent_loads_of_one_key_share_one_fetch() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 3))})
    fetcher.gate = asyncio.Event()
    library = PromptLibrary(fetcher, FakeTts())
    loads = [asyncio.create_task(library.load(media("https://x/a.wav", "a"))) for _ in range(5)]
    await fetcher.wait_calls(1)
    for _ in range(5):
        await asyncio.sleep(0)
    assert fetcher.calls == ["https://x/a.wav"]
    fetcher.gate.set()
    results = await asyncio.gather(*loads)
    assert all(r is results[0] for r in results)
    assert fetcher.calls == ["https://x/a.wav"]
    assert (library.stats.misses, library.stats.hits) == (1, 4)


async def test_a_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 3))})
    fetcher.gate = asyncio.Event()
    library = PromptLibrary(fetcher, FakeTts())
    first = asyncio.create_task(library.load(media("https://x/a.wav")))
    second = asyncio.create_task(library.load(media("https://x/a.wav")))
    await fetcher.wait_calls(1)
    first.cancel()
    fetcher.gate.set()
    assert (await second).size == 1600
    assert first.cancelled()
    assert library.stats.entries == 1


async def test_failures_are_shared_but_not_cached() -> None:
    url = "https://x/flaky.wav"
    fetcher = FakeFetcher({url: encode_wav(tone(0.1, 5))})
    fetcher.failures[url] = (1, PromptError(PromptFailure.UNREACHABLE, "connection reset"))
    fetcher.gate = asyncio.Event()
    library = PromptLibrary(fetcher, FakeTts())
    loads = [asyncio.create_task(library.load(media(url))) for _ in range(3)]
    await fetcher.wait_calls(1)
    fetcher.gate.set()
    outcomes = await asyncio.gather(*loads, return_exceptions=True)
    assert all(isinstance(o, PromptError) and o.failure is PromptFailure.UNREACHABLE for o in outcomes)
    assert library.stats.entries == 0 and library.stats.failures == 1
    assert (await library.load(media(url))).size == 1600  # retried, and this time it works
    assert fetcher.calls == [url, url]


async def test_decoding_and_length_failures() -> None:
    fetcher = FakeFetcher({"https://x/junk": b"<html>not audio</html>", "https://x/long.wav": encode_wav(tone(3, 1))})
    library = PromptLibrary(fetcher, FakeTts(seconds=4), max_prompt_seconds=2)
    assert (await failure_of(library, media("https://x/junk"))).failure is PromptFailure.NOT_WAV
    too_long = await failure_of(library, media("https://x/long.wav"))
    assert too_long.failure is PromptFailure.TOO_LONG and "3.0 s" in too_long.message
    spoken = await failure_of(library, PromptSpec(text="a very long speech"))
    assert spoken.failure is PromptFailure.TOO_LONG and "speech lasts 4.0 s" in spoken.message
    assert (await failure_of(library, PromptSpec(resource_id="only-an-id"))).failure is PromptFailure.BAD_URL
    assert (await failure_of(library, media("https://x/missing.wav"))).failure is PromptFailure.HTTP_STATUS
    assert library.stats.failures == 5 and library.stats.entries == 0


async def test_large_bodies_decode_off_the_event_loop() -> None:
    body = encode_wav(np.full(20 * 8000, 9, np.int16), 8000)  # 320 KB: decoded and resampled in a worker thread
    library = PromptLibrary(FakeFetcher({"https://x/big.wav": body}), FakeTts())
    audio = await library.load(media("https://x/big.wav"))
    assert audio.size == 20 * 16000 and not audio.flags.writeable


# -- the cache bound --------------------------------------------------------------------------------------


async def test_lru_eviction_by_bytes() -> None:
    urls = [f"https://x/{name}.wav" for name in "abcd"]
    fetcher = FakeFetcher({u: encode_wav(tone(1, i + 1)) for i, u in enumerate(urls)})
    library = PromptLibrary(fetcher, FakeTts(), max_cache_bytes=3 * SECOND)
    a, b, c, d = (media(u) for u in urls)
    for spec in (a, b, c):
        await library.load(spec)
    assert (library.stats.entries, library.stats.bytes) == (3, 3 * SECOND)
    await library.load(a)  # a is now the most recently used; b the least
    await library.load(d)  # evicts b only
    assert (library.stats.entries, library.stats.bytes) == (3, 3 * SECOND)
    fetcher.calls.clear()
    for spec in (a, c, d):
        await library.load(spec)
    assert fetcher.calls == []
    await library.load(b)
    assert fetcher.calls == [urls[1]]


async def test_a_prompt_larger_than_the_cache_is_returned_but_not_kept() -> None:
    fetcher = FakeFetcher({"https://x/huge.wav": encode_wav(tone(2, 1))})
    library = PromptLibrary(fetcher, FakeTts(), max_cache_bytes=SECOND)
    assert (await library.load(media("https://x/huge.wav"))).size == 32000
    assert (await library.load(media("https://x/huge.wav"))).size == 32000
    assert len(fetcher.calls) == 2 and library.stats.entries == 0 and library.stats.bytes == 0


# -- prefetch and close -----------------------------------------------------------------------------------


async def test_prefetch_loads_in_the_background_and_only_logs_failures(caplog: pytest.LogCaptureFixture) -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 1))})
    fetcher.gate = asyncio.Event()
    library = PromptLibrary(fetcher, FakeTts())
    caplog.set_level(logging.INFO, logger="opencomms.media")
    specs = [media("https://x/a.wav", "a"), media("https://x/gone.wav", "gone"), media("https://x/a.wav", "a")]
    library.prefetch(specs)
    await fetcher.wait_calls(2)
    load = asyncio.create_task(library.load(media("https://x/a.wav", "a")))  # joins the prefetch in flight
    gone = asyncio.create_task(failure_of(library, media("https://x/gone.wav", "gone")))  # joins the failing one
    await asyncio.sleep(0)
    fetcher.gate.set()
    assert (await load).size == 1600
    assert (await gone).failure is PromptFailure.HTTP_STATUS
    assert library.stats.failures == 1
    assert fetcher.calls == ["https://x/a.wav", "https://x/gone.wav"]
    failed = [r for r in caplog.records if "gone" in r.getMessage()]
    assert failed and failed[0].levelno == logging.INFO and "HTTP 404" in failed[0].getMessage()
    library.prefetch([media("https://x/a.wav", "a")])  # cached: nothing to do
    assert len(fetcher.calls) == 2
    assert (library.stats.hits, library.stats.misses) == (2, 2)


async def test_close_cancels_loads_in_flight_and_closes_the_fetcher() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 1))})
    fetcher.gate = asyncio.Event()  # never opened
    library = PromptLibrary(fetcher, FakeTts())
    library.prefetch([media("https://x/a.wav")])
    waiting = asyncio.create_task(library.load(media("https://x/a.wav")))
    await fetcher.wait_calls(1)
    await library.close()
    assert fetcher.closed
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RuntimeError, match="closed"):
        await library.load(media("https://x/a.wav"))
    await library.close()  # idempotent


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
async def test_real_espeak_through_the_library() -> None:
    library = PromptLibrary(SafeFetcher(FetchPolicy()), Tts())
    spec = PromptSpec(text="Please leave a message after the tone.", language="en-US")
    audio = await library.load(spec)
    assert 1.0 < audio.size / 16000 < 6.0
    assert level_dbfs(audio) > -40.0
    assert await library.load(spec) is audio
    bad = await failure_of(library, PromptSpec(text="hello", voice="xx-nope"))
    assert bad.failure is PromptFailure.TTS_FAILED
    await library.close()


# -- generated audio --------------------------------------------------------------------------------------


def test_beep_is_a_clean_1khz_tone_without_clicks() -> None:
    b = beep()
    assert b.dtype == np.int16 and b.size == 4800 and not b.flags.writeable
    spectrum = np.abs(np.fft.rfft(b.astype(np.float64)))
    assert np.fft.rfftfreq(b.size, 1 / 16000)[int(np.argmax(spectrum))] == pytest.approx(1000, abs=5)
    assert level_dbfs(b[1600:3200]) == pytest.approx(-10.0, abs=0.2)
    envelope = np.abs(b.astype(np.int32)).reshape(-1, 16).max(axis=1)  # peak of each millisecond
    assert envelope[0] < 200 and envelope[-1] < 200  # fades: no step at either end
    assert np.all(np.diff(envelope[:10]) > 0) and np.all(np.diff(envelope[-10:]) < 0)
    assert envelope[10:-10].min() > 10000
    assert beep() is b  # generated once
    assert beep(100, 440.0).size == 1600
    with pytest.raises(ValueError):
        beep(0)
    with pytest.raises(ValueError):
        beep(100, 9000.0)


def test_silence() -> None:
    s = silence(20)
    assert s.dtype == np.int16 and s.size == 320 and not s.any() and not s.flags.writeable
    assert silence(0).size == 0
    with pytest.raises(ValueError):
        silence(-1)
