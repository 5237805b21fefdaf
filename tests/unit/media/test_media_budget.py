"""The prompt memory budget (media/budget.py) and how the PromptLibrary reserves from it and gives back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from test_media_prompts import FakeFetcher, FakeTts, media, tone

from opencomms.domain.media import PromptError, PromptFailure
from opencomms.media import prompts
from opencomms.media.budget import MemoryBudget
from opencomms.media.prompts import PromptLibrary
from opencomms.media.wav import decode_wav, encode_wav

MIB = 1 << 20


def test_budget_takes_refuses_resizes_and_releases_once() -> None:
    budget = MemoryBudget(100)
    a = budget.reserve(60)
    assert a is not None and budget.held == 60
    assert budget.reserve(50) is None and budget.refused == 1 and budget.held == 60
    assert not a.resize(110) and a.nbytes == 60
    assert a.resize(20) and budget.held == 20
    moved = a.detach()
    a.release()
    assert budget.held == 20
    moved.release()
    moved.release()
    assert budget.held == 0 and budget.peak == 60
    assert MemoryBudget(0).try_take(1 << 40)  # 0: unlimited, only counted
    with pytest.raises(ValueError):
        MemoryBudget(-1)


def library(fetcher: FakeFetcher, budget: MemoryBudget, **kw: float) -> PromptLibrary:
    return PromptLibrary(fetcher, FakeTts(), budget=budget, max_fetch_bytes=MIB, max_prompt_seconds=10.0, **kw)


UPPER = MIB  # what one load reserves while it fetches: the body size limit


async def test_a_load_reserves_its_upper_bound_while_in_flight_and_gives_it_back() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(1.0, 3))})
    fetcher.gate = asyncio.Event()
    budget = MemoryBudget(4 * UPPER)
    lib = library(fetcher, budget)
    task = asyncio.create_task(lib.load(media("https://x/a.wav")))
    await fetcher.wait_calls(1)
    assert budget.held == UPPER
    fetcher.gate.set()
    assert (await task).size == 16000
    assert budget.held == 0 and budget.peak == UPPER


async def test_a_load_that_does_not_fit_fails_without_fetching() -> None:
    fetcher = FakeFetcher({f"https://x/{i}.wav": encode_wav(tone(0.1, 3)) for i in range(3)})
    fetcher.gate = asyncio.Event()
    budget = MemoryBudget(2 * UPPER)
    lib = library(fetcher, budget)
    held = [asyncio.create_task(lib.load(media(f"https://x/{i}.wav"))) for i in range(2)]
    await fetcher.wait_calls(2)
    with pytest.raises(PromptError) as err:
        await lib.load(media("https://x/2.wav"))
    assert err.value.failure is PromptFailure.OVER_BUDGET and "budget" in err.value.message
    assert fetcher.calls == ["https://x/0.wav", "https://x/1.wav"]
    fetcher.gate.set()
    await asyncio.gather(*held)
    assert budget.held == 0
    assert (await lib.load(media("https://x/2.wav"))).size == 1600  # room again: a failure is not cached


async def test_the_last_waiter_leaving_cancels_the_download_and_frees_its_bytes() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 3))})
    fetcher.gate = asyncio.Event()
    budget = MemoryBudget(0)
    lib = library(fetcher, budget)
    first = asyncio.create_task(lib.load(media("https://x/a.wav")))
    second = asyncio.create_task(lib.load(media("https://x/a.wav")))
    await fetcher.wait_calls(1)
    first.cancel()
    await asyncio.sleep(0)
    assert budget.held == UPPER  # someone still waits for it
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    await asyncio.sleep(0)
    assert budget.held == 0 and lib.stats.entries == 0
    assert not lib._inflight  # the load itself was cancelled


async def test_a_prefetch_keeps_loading_when_a_waiter_leaves() -> None:
    fetcher = FakeFetcher({"https://x/a.wav": encode_wav(tone(0.1, 3))})
    fetcher.gate = asyncio.Event()
    lib = library(fetcher, MemoryBudget(0))
    lib.prefetch([media("https://x/a.wav")])
    waiter = asyncio.create_task(lib.load(media("https://x/a.wav")))
    await fetcher.wait_calls(1)
    waiter.cancel()
    await asyncio.sleep(0)
    fetcher.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert lib.stats.entries == 1


async def test_a_decode_in_a_thread_keeps_its_bytes_until_the_thread_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    started, finish = threading.Event(), threading.Event()

    def slow_decode(data: bytes, *, max_seconds: float | None = None) -> Any:
        started.set()
        finish.wait(5)
        return decode_wav(data, max_seconds=max_seconds)

    monkeypatch.setattr(prompts, "decode_wav", slow_decode)
    body = encode_wav(tone(9.0, 3))  # > 256 KiB: decoded in a worker thread
    budget = MemoryBudget(0)
    lib = library(FakeFetcher({"https://x/big.wav": body}), budget)
    task = asyncio.create_task(lib.load(media("https://x/big.wav")))
    assert await asyncio.to_thread(started.wait, 5)
    assert budget.held > len(body)  # the body plus what decoding it takes
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert budget.held > len(body)  # the thread still decodes: its memory is still in use
    finish.set()
    for _ in range(500):
        if not budget.held:
            break
        await asyncio.sleep(0.01)
    assert budget.held == 0


async def test_prefetches_use_at_most_half_the_budget() -> None:
    fetcher = FakeFetcher({f"https://x/{i}.wav": encode_wav(tone(0.1, 3)) for i in range(4)})
    fetcher.gate = asyncio.Event()
    budget = MemoryBudget(4 * UPPER)
    lib = library(fetcher, budget)
    lib.prefetch([media(f"https://x/{i}.wav") for i in range(3)])
    await fetcher.wait_calls(2)
    for _ in range(3):
        await asyncio.sleep(0)
    assert budget.held == 2 * UPPER and len(fetcher.calls) == 2  # the third prefetch did not start
    playing = asyncio.create_task(lib.load(media("https://x/3.wav")))  # a prompt about to play still fits
    await fetcher.wait_calls(3)
    assert budget.held == 3 * UPPER
    fetcher.gate.set()
    assert (await playing).size == 1600
