"""The engine's interface for sinks serving many legs at once (the RTP bank): one batch tap per tick with every
row's INPUT, leg keys that tell a removed leg from a new one in the same row, and batched inbound pushes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from opencomms.media.engine import Batch, Heard, MediaEngine


def frame(value: int) -> npt.NDArray[np.int16]:
    return np.full(320, value, dtype=np.int16)


def test_batch_tap_sees_every_rows_input_once_per_tick() -> None:
    engine = MediaEngine(8)
    for leg in ("a", "b"):
        engine.add_leg(leg)
        engine.join(leg, "m")
    seen: list[tuple[float, npt.NDArray[np.int32]]] = []
    sub = engine.subscribe(Batch(lambda inp, now: seen.append((now, inp.copy()))))
    engine.push_inbound("a", frame(1000))
    engine.tick(0.0)
    engine.tick(0.02)
    assert [now for now, _ in seen] == [0.0, 0.02]
    row_a, _ = engine.leg_key("a")
    row_b, _ = engine.leg_key("b")
    assert (seen[0][1][row_b] == 1000).all() and (seen[0][1][row_a] == 0).all()  # b hears a's far end
    engine.unsubscribe(sub)
    engine.tick(0.04)
    assert len(seen) == 2


def test_leg_keys_tell_a_new_leg_in_the_same_row_from_the_old_one() -> None:
    engine = MediaEngine(4)
    engine.add_leg("a")
    row, gen = engine.leg_key("a")
    assert engine.row_generations[row] == gen > 0
    engine.remove_leg("a")
    assert engine.row_generations[row] == 0
    engine.add_leg("a")
    again, gen2 = engine.leg_key("a")
    assert again == row and gen2 != gen and engine.row_generations[row] == gen2


def test_batched_inbound_keeps_the_newest_frames_like_single_pushes() -> None:
    engine = MediaEngine(4, inbound_queue_frames=2)
    for leg in ("a", "b", "x"):
        engine.add_leg(leg)
    engine.join("a", "m")
    engine.join("x", "m")
    heard: list[int] = []
    engine.subscribe(Heard("x", lambda _leg, f, _now: heard.append(int(f[0]))))
    rows = np.array([engine.leg_key("a")[0], engine.leg_key("b")[0]], dtype=np.intp)
    for value in (1, 2, 3):  # a queue of two: the oldest (1) is dropped
        engine.push_inbound_rows(rows, np.stack([frame(value), frame(-value)]))
    for k in range(3):
        engine.tick(0.02 * k)
    assert heard == [2, 3, 0]
    assert engine.stats.inbound_dropped == 2  # one for a, one for b
