"""The jitter buffer's `pop_into`, and the compiled twin (jitter.pyx) held to its reference (jitter.py, run from
source): the same outputs and counters on random streams (reordering, duplicates, losses, SSRC changes, timestamp
jumps and wraps, 10/20/30/40 ms packets, overflow, long gaps, network stalls and the latency drops after them)."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from opencomms import _compiled
from opencomms._compiled import ENV_SWITCH, compiled_modules, reference
from opencomms.rtp import jitter
from opencomms.rtp.jitter import LOST, JitterBuffer, JitterConfig

F = 160
TS_MOD = 1 << 32
Arrival = tuple[float, int, int, bytes]  # (arrival, ssrc, timestamp, payload)


REFERENCE = reference("opencomms.rtp.jitter")
COMPILED = "opencomms.rtp.jitter" in compiled_modules()


def test_the_twin_under_test_is_not_the_reference() -> None:
    assert REFERENCE.__file__ is not None and REFERENCE.__file__.endswith("jitter.py")
    assert REFERENCE.JitterBuffer is not JitterBuffer
    assert REFERENCE.LOST is LOST and REFERENCE.JitterConfig is JitterConfig  # shared: jitter_types.py
    assert sorted(REFERENCE.__all__) == sorted(jitter.__all__)
    if os.environ.get(ENV_SWITCH, "1") != "0":  # the compiled pass: the comparison must be of two implementations
        assert COMPILED, f"the compiled jitter buffer is not in use: {_compiled.state()}"
        assert jitter.__file__ is not None and not jitter.__file__.endswith(".py")


# -- pop_into --------------------------------------------------------------------------------------------------


def frame(k: int, size: int = F) -> bytes:
    return bytes([k % 250]) * size


def test_pop_into_writes_the_frame_at_the_offset_and_nothing_else() -> None:
    jb = JitterBuffer()
    for k in range(4):
        jb.put(1, 1000 + k * F, frame(10 + k), k * 0.02)
    out = bytearray(b"\x01" * (3 * F))
    assert jb.pop_into(0.01, out, F) == 0 and out == b"\x01" * (3 * F)  # buffering: None, out untouched
    assert jb.pop_into(0.06, out, F) == 1
    assert out == b"\x01" * F + frame(10) + b"\x01" * F
    assert jb.pop_into(0.08, out, 2 * F) == 1 and out[2 * F :] == frame(11) and out[:F] == b"\x01" * F
    assert jb.pop_into(0.10, out, 0) == 1 and out[:F] == frame(12)
    view = memoryview(bytearray(F + 3))  # any writable buffer
    assert jb.pop_into(0.12, view, 3) == 1 and view[3:] == frame(13) and view[:3] == b"\0\0\0"


def test_pop_into_reports_lost_and_none_and_leaves_the_buffer_alone_then() -> None:
    jb = JitterBuffer(JitterConfig(idle_after_frames=2))
    jb.put(1, 1000, frame(1), 0.0)
    jb.put(1, 1000 + 2 * F, frame(3), 0.04)  # frame 2 never comes
    out = bytearray(b"\x07" * F)
    codes = [jb.pop_into(0.04 + 0.02 * k, out, 0) for k in range(6)]
    assert codes == [1, 2, 1, 2, 2, 0]  # frame, gap, frame, underflows, idle
    assert jb.pop_into(1.0, out, 0) == 0 and jb.idle


def test_pop_into_assembles_frames_of_other_packet_sizes_with_fill() -> None:
    jb = JitterBuffer(JitterConfig(fill=0xD5))
    for k in range(8):
        if k != 2:  # a lost 10 ms packet: half a frame of fill
            jb.put(1, 1000 + k * 80, frame(k, 80), k * 0.01)
    out = bytearray(3 * F)
    assert [jb.pop_into(0.05 + 0.02 * k, out, k * F) for k in range(3)] == [1, 1, 1]
    assert out == frame(0, 80) + frame(1, 80) + b"\xd5" * 80 + frame(3, 80) + frame(4, 80) + frame(5, 80)


def test_pop_into_refuses_a_slice_outside_the_buffer_before_popping() -> None:
    jb = JitterBuffer()
    jb.put(1, 1000, frame(1), 0.0)
    for out, offset in ((bytearray(F - 1), 0), (bytearray(2 * F), F + 1), (bytearray(2 * F), -1)):
        with pytest.raises(ValueError):
            jb.pop_into(0.1, out, offset)
    assert len(jb) == 1 and not jb.playing and jb.underflows == 0


@pytest.mark.parametrize("seed", range(6))
def test_pop_into_agrees_with_pop(seed: int) -> None:
    rng = random.Random(seed)
    config, arrivals, ticks = scenario(rng)
    popped, written = JitterBuffer(config), JitterBuffer(config)
    out = bytearray(b"\x55" * (2 * F))
    pending = sorted(arrivals, key=lambda a: a[0])
    i = 0
    for k in range(ticks):
        now = 0.02 * k
        while i < len(pending) and pending[i][0] <= now:
            for jb in (popped, written):
                jb.put(pending[i][1], pending[i][2], pending[i][3], pending[i][0])
            i += 1
        want, code = popped.pop(now), written.pop_into(now, out, F // 2)
        if want is None:
            assert code == 0
        elif want is LOST:
            assert code == 2
        else:
            assert code == 1 and out[F // 2 : F // 2 + F] == want
        assert out[: F // 2] == b"\x55" * (F // 2) and out[F // 2 + F :] == b"\x55" * (F // 2)
        assert state(popped) == state(written)


# -- the twin against the reference ----------------------------------------------------------------------------


def scenario(rng: random.Random) -> tuple[JitterConfig, list[Arrival], int]:
    """A random config, one random stream's packets as they arrive, and how many 20 ms ticks to play it."""
    min_delay = rng.choice([20.0, 40.0, 60.0])
    config = JitterConfig(
        min_delay_ms=min_delay,
        max_delay_ms=rng.choice([min_delay, 120.0, 200.0]),
        capacity=rng.choice([2, 3, 5, 8, 64]),
        fill=rng.choice([0xFF, 0xD5, 0x00]),
        idle_after_frames=rng.choice([1, 2, 5]),
        jump_ms=rng.choice([300.0, 1000.0]),
        shrink_window_frames=rng.choice([3, 10, 25]),
    )
    arrivals: list[Arrival] = []
    send = 0.0
    ssrc = rng.randrange(TS_MOD)
    ts = rng.choice([rng.randrange(TS_MOD), TS_MOD - rng.randrange(1, 4000)])  # a wrap early on, often
    for _ in range(rng.randint(3, 7)):
        change = rng.random()
        if change < 0.15:  # a new SSRC, and stragglers of the old one
            old_ssrc, old_ts, ssrc, ts = ssrc, ts, rng.randrange(TS_MOD), rng.randrange(TS_MOD)
            for k in range(rng.randint(0, 3)):
                arrivals.append((send + rng.uniform(0.0, 0.6), old_ssrc, (old_ts + k * F) % TS_MOD, rng.randbytes(F)))
        elif change < 0.3:  # the sender's clock jumps, forwards or back
            ts = (ts + rng.choice([1, -1]) * rng.randrange(2400, 400000)) % TS_MOD
        elif change < 0.45:  # silence (DTX, hold): the clock runs on
            gap = rng.uniform(0.05, 3.0)
            send += gap
            ts = (ts + int(gap * 8000)) % TS_MOD
        size = rng.choice([80, 160, 160, 240, 320])
        base = rng.uniform(0.0, 0.05)
        spread = rng.choice([0.0, 0.005, 0.04, 0.1, 0.5])
        loss, dup = rng.choice([0.0, 0.05, 0.3]), rng.choice([0.0, 0.05])
        stall = rng.random() < 0.3  # the network holds some packets and releases them together
        release = send + rng.uniform(0.1, 0.6)
        for _ in range(rng.randint(5, 60)):
            arrival = send + base + rng.uniform(0.0, spread)
            if stall and arrival < release:
                arrival = release
            payload = rng.randbytes(size)
            if rng.random() >= loss:
                arrivals.append((arrival, ssrc, ts, payload))
                if rng.random() < dup:
                    arrivals.append((arrival + rng.uniform(0.0, 0.1), ssrc, ts, payload))
            send += size / 8000
            ts = (ts + size) % TS_MOD
    return config, arrivals, int(send / 0.02) + 60


def state(jb: Any) -> tuple[object, ...]:
    return (
        jb.received,
        jb.duplicates,
        jb.late,
        jb.stale,
        jb.lost,
        jb.underflows,
        jb.overflow_dropped,
        jb.latency_dropped,
        jb.ssrc_changes,
        jb.jumps,
        jb.jitter,
        jb.target_ms,
        jb.level_ms,
        len(jb),
        jb.idle,
        jb.playing,
    )


def same(a: object, b: object) -> bool:
    """The same `pop` result: the same frame (bytes both), or LOST both, or None both."""
    if a is None or a is LOST:
        return b is a
    return type(a) is bytes and type(b) is bytes and a == b


@pytest.mark.parametrize("batch", range(25))
def test_the_active_jitter_buffer_matches_the_reference_on_random_streams(batch: int) -> None:
    for seed in range(8 * batch, 8 * batch + 8):  # 200 streams in all
        compare_with_the_reference(random.Random(1000 + seed))


def compare_with_the_reference(rng: random.Random) -> None:
    """One random stream put into both, popped (or idle, skipped and `rest`) every 20 ms: all the same throughout."""
    config, arrivals, ticks = scenario(rng)
    tested, reference = JitterBuffer(config), REFERENCE.JitterBuffer(config)
    assert type(tested) is not type(reference)
    if COMPILED:
        assert type(tested).__module__ == "opencomms.rtp.jitter" and not hasattr(tested, "__dict__")
    pending = sorted(arrivals, key=lambda a: a[0])
    out_t, out_r = bytearray(2 * F), bytearray(2 * F)
    i, skipped, frames = 0, 0, 0
    t0 = rng.uniform(0.0, 0.02)
    for k in range(ticks):
        now = t0 + 0.02 * k
        while i < len(pending) and pending[i][0] <= now:
            arrival, ssrc, ts, payload = pending[i]
            tested.put(ssrc, ts, payload, arrival)
            reference.put(ssrc, ts, payload, arrival)
            i += 1
        assert state(tested) == state(reference), (k, "put")
        if tested.idle and rng.random() < 0.7:  # the bank skips idle buffers, then accounts for the pops skipped
            skipped += 1
            continue
        if skipped:
            tested.rest(skipped)
            reference.rest(skipped)
            skipped = 0
        assert same(tested.upcoming(), reference.upcoming()), k
        if rng.random() < 0.5:
            a, b = tested.pop(now), reference.pop(now)
            assert same(a, b), (k, a, b)
            frames += isinstance(a, bytes)
        else:
            offset = rng.choice([0, F // 2, F])
            code = tested.pop_into(now, out_t, offset)
            assert code == reference.pop_into(now, out_r, offset) and out_t == out_r, k
            frames += code == 1
        assert state(tested) == state(reference), (k, "pop")
        if rng.random() < 0.003:
            tested.reset()
            reference.reset()
    assert frames > 0 and tested.received > 0


def test_the_random_streams_reach_every_rule() -> None:
    """The random streams above do exercise what they are meant to (a check of the test, on the reference)."""
    totals = dict.fromkeys(
        ["duplicates", "late", "stale", "lost", "overflow_dropped", "latency_dropped", "ssrc_changes", "jumps"], 0
    )
    for seed in range(40):
        config, arrivals, ticks = scenario(random.Random(1000 + seed))
        jb = REFERENCE.JitterBuffer(config)
        pending = sorted(arrivals, key=lambda a: a[0])
        i = 0
        for k in range(ticks):
            while i < len(pending) and pending[i][0] <= 0.02 * k:
                jb.put(pending[i][1], pending[i][2], pending[i][3], pending[i][0])
                i += 1
            jb.pop(0.02 * k)
        for name in totals:
            totals[name] += getattr(jb, name)
    assert all(totals.values()), totals


def test_a_bytearray_payload_is_taken_and_other_types_refused() -> None:
    jb = JitterBuffer()
    jb.put(1, 1000, bytearray(frame(4)), 0.0)
    assert jb.pop(0.1) == frame(4)
    with pytest.raises(TypeError):
        jb.put(1, 1160, None, 0.02)  # type: ignore[arg-type]
