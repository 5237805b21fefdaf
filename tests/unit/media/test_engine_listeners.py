"""Engine subscriptions: any number of listeners per leg and per kind (what a leg hears, what it says, what it
hears part by part, every row at once), all called in the same tick with the same read-only frames; a failing
listener is isolated and dropped after repeated failures; handles unsubscribe. Pure: tick(now) by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.media.engine import Batch, Heard, HeardParts, MediaEngine, Said

N = 320
Samples = npt.NDArray[np.int16]


def frame(value: int) -> Samples:
    return np.full(N, value, dtype=np.int16)


def call(*legs: str, capacity: int = 8, **kwargs: Any) -> MediaEngine:
    engine = MediaEngine(capacity, **kwargs)
    for leg in legs:
        engine.add_leg(leg)
        engine.join(leg, "m")
    return engine


def test_many_listeners_on_one_leg_get_the_same_frames_in_the_same_tick() -> None:
    engine = call("phone", "bot", "carol")
    seen: list[tuple[str, float, Any]] = []  # (listener, now, what it got)
    views: list[Samples] = []

    def heard(name: str) -> Heard:
        def fn(leg: str, f: Samples, now: float) -> None:
            views.append(f)
            seen.append((name, now, f.copy()))

        return Heard("bot", fn)

    row = engine.leg_key("bot")[0]
    engine.subscribe(heard("socket"))
    engine.subscribe(heard("recorder"))

    def parts(_leg: str, f: Samples, unmixed: list[tuple[str, Samples]], now: float) -> None:
        seen.append(("parts", now, (f.copy(), [(leg, u.copy()) for leg, u in unmixed])))

    engine.subscribe(HeardParts("bot", parts))
    engine.subscribe(Said("phone", lambda _l, f, now: seen.append(("phone says", now, f.copy()))))
    engine.subscribe(Batch(lambda inp, now: seen.append(("bank", now, inp[row].copy()))))
    engine.subscribe(Batch(lambda inp, now: seen.append(("batch 2", now, inp[row].copy()))))
    engine.push_inbound("phone", frame(1000))
    engine.push_inbound("carol", frame(-300))
    engine.tick(0.02)
    assert [(name, now) for name, now, _ in seen] == [
        ("socket", 0.02),
        ("recorder", 0.02),
        ("parts", 0.02),
        ("phone says", 0.02),
        ("bank", 0.02),
        ("batch 2", 0.02),
    ]
    got = dict((name, data) for name, _, data in seen)
    for name in ("socket", "recorder", "bank", "batch 2"):
        assert (got[name] == 700).all(), name  # the bot hears the phone and carol
    mixed, unmixed = got["parts"]
    assert (mixed == 700).all() and [(leg, int(f[0])) for leg, f in unmixed] == [("phone", 1000), ("carol", -300)]
    assert (got["phone says"] == 1000).all()
    # one shared, read-only int16 frame for both listeners of the leg: no copy per listener
    assert views[0] is not views[1] and np.shares_memory(views[0], views[1])
    assert views[0].dtype == np.int16 and not views[0].flags.writeable
    assert engine.stats.listeners == 6


def test_frames_are_read_only_and_a_listener_cannot_change_what_others_get() -> None:
    engine = call("a", "b")
    errors: list[Exception] = []

    def vandal(_leg: str, f: Samples, _now: float) -> None:
        try:
            f[:] = 0
        except ValueError as exc:
            errors.append(exc)

    def batch_vandal(inp: npt.NDArray[np.int32], _now: float) -> None:
        try:
            inp[:] = 0
        except ValueError as exc:
            errors.append(exc)

    after: list[int] = []
    engine.subscribe(Heard("b", vandal))
    engine.subscribe(Batch(batch_vandal))
    engine.subscribe(Heard("b", lambda _l, f, _n: after.append(int(f[0]))))
    engine.push_inbound("a", frame(42))
    engine.tick(0.0)
    assert len(errors) == 2 and after == [42]


def test_said_is_the_legs_own_audio_clipped_and_silent_while_muted() -> None:
    engine = call("a", "b")
    said: list[int] = []
    engine.subscribe(Said("a", lambda _l, f, _n: said.append(int(f[0]))))
    engine.push_inbound("a", frame(30000))
    engine.play("a", "p", [frame(10000)])  # far end + prompt: 40000, clipped to int16
    engine.tick(0.0)
    engine.push_inbound("a", frame(5))
    engine.set_muted("a", True)
    engine.tick(0.02)
    assert said == [32767, 0]


def test_a_failing_listener_is_isolated_counted_and_dropped_after_repeated_failures() -> None:
    engine = call("a", "b", listener_max_failures=3)
    good: list[float] = []
    calls: list[float] = []

    def flaky(_leg: str, _f: Samples, now: float) -> None:
        calls.append(now)
        if len(calls) != 3:  # fails twice, recovers once (the count restarts), then fails for good
            raise RuntimeError("boom")

    sub = engine.subscribe(Heard("a", flaky))
    engine.subscribe(Heard("a", lambda _l, _f, now: good.append(now)))
    broken_batch = engine.subscribe(Batch(lambda _inp, _now: 1 / 0))
    for k in range(8):
        engine.tick(0.02 * k)
    assert len(good) == 8  # the others run every tick
    assert len(calls) == 6 and not sub.active  # fail, fail, ok, fail, fail, fail: dropped
    assert not broken_batch.active and broken_batch.errors == 3
    stats = engine.stats
    assert stats.tap_errors == 5 + 3 and stats.listeners_dropped == 2 and stats.listeners == 1
    engine.unsubscribe(sub)  # fine after it was dropped


def test_unsubscribe_by_handle_from_inside_a_listener_and_on_leg_removal() -> None:
    engine = call("a", "b")
    got: dict[str, int] = {"first": 0, "second": 0, "b": 0}
    subs: dict[str, Any] = {}

    def first(_l: str, _f: Samples, _n: float) -> None:
        got["first"] += 1
        engine.unsubscribe(subs["second"])  # another listener, during the tick: from the next call on
        engine.unsubscribe(subs["first"])

    subs["first"] = engine.subscribe(Heard("a", first))
    subs["second"] = engine.subscribe(Heard("a", lambda _l, _f, _n: got.__setitem__("second", got["second"] + 1)))
    b = engine.subscribe(Said("b", lambda _l, _f, _n: got.__setitem__("b", got["b"] + 1)))
    engine.tick(0.0)
    engine.tick(0.02)
    assert got["first"] == 1 and got["second"] == 0
    engine.remove_leg("b")
    engine.tick(0.04)
    assert got["b"] == 2 and not b.active and engine.stats.listeners == 0
    with pytest.raises(KeyError):
        engine.subscribe(Heard("b", lambda _l, _f, _n: None))
