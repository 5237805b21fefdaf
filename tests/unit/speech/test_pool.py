"""The transcription pool with a fake recognizer: every utterance becomes a caption or an `overloaded` caption
(never lost), a full queue and a stale wait signal overload, a recognizer that fails does not stall the pool,
and closing stops its threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from opencomms.speech.pool import FINAL, OVERLOADED, Caption, PoolConfig, TranscriptionPool
from opencomms.speech.whisper import Recognized, drop_restart

from .test_segmenter import EnergyDetector, quiet, tone


class FakeRecognizer:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def transcribe(self, utterances: Sequence[npt.NDArray[np.int16]]) -> list[Recognized]:
        self.gate.wait(10)
        self.batches.append(len(utterances))
        if self.fail:
            raise RuntimeError("model exploded")
        time.sleep(self.delay)
        return [Recognized(f"{u.size / 16000:.1f} seconds", 0.0) for u in utterances]


def speech(n: int) -> npt.NDArray[np.int16]:
    return np.concatenate([np.concatenate([tone(0.6), quiet(0.6)]) for _ in range(n)])


def run(pool: TranscriptionPool, key: str, signal: npt.NDArray[np.int16], t0: float = 0.0) -> None:
    for i in range(0, signal.size - 319, 320):
        pool.feed(key, signal[i : i + 320], t0 + i / 16000)
    pool.end(key)


def wait_for(captions: list[Caption], count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(captions) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_every_utterance_of_every_speaker_is_captioned_in_batches() -> None:
    captions: list[Caption] = []
    rec = FakeRecognizer()
    rec.gate.clear()  # hold the worker so that utterances queue up and are batched
    pool = TranscriptionPool(rec, EnergyDetector(), captions.append, config=PoolConfig(max_batch=4, max_wait=30))
    pool.start()
    try:
        for speaker in ("a", "b", "c"):
            run(pool, speaker, speech(3))
        time.sleep(0.3)
        rec.gate.set()
        wait_for(captions, 9)
        assert len(captions) == 9 and all(c.status == FINAL for c in captions)
        assert sorted({c.key for c in captions}) == ["a", "b", "c"]  # type: ignore[type-var]
        assert max(rec.batches) > 1 and pool.speakers == 0
    finally:
        pool.close()


def test_a_full_queue_and_a_long_wait_are_reported_as_overloaded() -> None:
    captions: list[Caption] = []
    rec = FakeRecognizer()
    rec.gate.clear()
    config = PoolConfig(max_batch=1, max_queued=2, max_wait=0.2)
    pool = TranscriptionPool(rec, EnergyDetector(), captions.append, config=config)
    pool.start()
    try:
        run(pool, "a", speech(6))
        time.sleep(0.5)  # queued ones grow stale meanwhile
        rec.gate.set()
        wait_for(captions, 6)
        statuses = [c.status for c in captions]
        assert len(captions) == 6, statuses
        assert statuses.count(OVERLOADED) >= 4 and all(c.text == "" for c in captions if c.status == OVERLOADED)
        assert pool.stats.overloaded == statuses.count(OVERLOADED)
    finally:
        pool.close()


def test_a_failing_recognizer_reports_overload_and_the_pool_goes_on() -> None:
    captions: list[Caption] = []
    rec = FakeRecognizer(fail=True)
    pool = TranscriptionPool(rec, EnergyDetector(), captions.append)
    pool.start()
    try:
        run(pool, "a", speech(2))
        wait_for(captions, 2)
        assert [c.status for c in captions] == [OVERLOADED, OVERLOADED]
        rec.fail = False
        run(pool, "b", speech(1), t0=100.0)
        wait_for(captions, 3)
        assert captions[-1].status == FINAL and pool.stats.failures >= 1
    finally:
        pool.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("opencomms-speech")]


def test_the_inbox_is_bounded() -> None:
    captions: list[Caption] = []
    pool = TranscriptionPool(
        FakeRecognizer(), EnergyDetector(), captions.append, config=PoolConfig(max_inbox_frames=10)
    )
    # not started: nothing drains the inbox
    for i in range(100):
        pool.feed("a", np.zeros(320, dtype=np.int16), i * 0.02)
    assert pool.stats.frames_dropped == 90
    pool.close()


def test_a_restarted_sentence_is_cut() -> None:
    assert drop_restart("Send me the slides. Send me the") == "Send me the slides."
    assert drop_restart("Yes. Yes, I agree.") == "Yes. Yes, I agree."
    assert drop_restart("Good morning. Good morning everyone.") == "Good morning."
    # a restart after a clause, or misheard in one word (both seen on the WER set through G.711)
    assert drop_restart("The kitchen needs a new coat of paint, the kitchen leaves and a") == (
        "The kitchen needs a new coat of paint."
    )
    assert drop_restart("Could you call me back? Good You Call Me Back When") == "Could you call me back?"
    # speech that repeats itself is left alone
    assert drop_restart("I think, I think we should go.") == "I think, I think we should go."
    repeated = "Well, the price is high, the price is right."
    assert drop_restart(repeated) == repeated
