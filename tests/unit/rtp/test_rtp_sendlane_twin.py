"""The bank's send lane, the compiled twin (sendlane.pyx) held to its reference (sendlane.py, run from source): the
same headers, batches, counters and fold-backs on random scenarios (arming and disarming, pauses, destinations
coming, going and changing, rows leaving live, cancellations between building and sending, send failures, round
robin folds, sequence and timestamp wraps, Opus clocks)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from opencomms import _compiled
from opencomms._compiled import ENV_SWITCH, compiled_modules, reference
from opencomms.rtp import sendlane
from opencomms.rtp.sendlane import SendLane

STRIDE = 172
TS_MOD = 1 << 32


REFERENCE = reference("opencomms.rtp.sendlane")
COMPILED = "opencomms.rtp.sendlane" in compiled_modules()


def test_the_twin_under_test_is_not_the_reference() -> None:
    assert REFERENCE.__file__ is not None and REFERENCE.__file__.endswith("sendlane.py")
    assert REFERENCE.SendLane is not SendLane
    assert sorted(REFERENCE.__all__) == sorted(sendlane.__all__)
    if os.environ.get(ENV_SWITCH, "1") != "0":  # the compiled pass: the comparison must be of two implementations
        assert COMPILED, f"the compiled send lane is not in use: {_compiled.state()}"
        assert sendlane.__file__ is not None and not sendlane.__file__.endswith(".py")


@dataclass
class Params:
    payload_type: int = 0


@dataclass
class FakeStream:
    """The attributes of a `Stream` the lane reads and writes."""

    seq: int
    ssrc: int
    ts_offset: int | None
    clock: int = 1
    params: Params = field(default_factory=Params)
    was_sending: bool = False
    rtp_addr: tuple[str, int] | None = ("127.0.0.1", 4000)
    events_on: bool = False
    packets_sent: int = 0
    octets_sent: int = 0
    send_errors: int = 0

    def state(self) -> tuple[object, ...]:
        return (self.seq, self.was_sending, self.packets_sent, self.octets_sent, self.send_errors, self.events_on)


def new_stream(rng: random.Random) -> FakeStream:
    return FakeStream(
        seq=rng.choice([rng.randrange(1 << 16), 0xFFFF - rng.randrange(3)]),  # a wrap early on, often
        ssrc=rng.randrange(TS_MOD),
        ts_offset=rng.choice([rng.randrange(-(1 << 40), 1 << 40), TS_MOD - rng.randrange(5000), None]),
        clock=rng.choice([1, 1, 6]),
        params=Params(rng.choice([0, 8, 9, 96, 127, 128])),  # 128: out of range, not armed
        was_sending=rng.random() < 0.5,
        rtp_addr=rng.choice([("127.0.0.1", 4000), ("::1", 5000, 0, 0), None]),
    )


def snapshot(lane: Any, flip: int, count: int) -> tuple[object, ...]:
    slots, offsets, lengths, peers, _errors = lane.batch(flip)
    return (slots[:count].tolist(), offsets[:count].tolist(), lengths[:count].tolist(), list(peers[:count]))


@pytest.mark.parametrize("batch", range(10))
def test_the_active_send_lane_matches_the_reference_on_random_scenarios(batch: int) -> None:
    for seed in range(10 * batch, 10 * batch + 10):  # 100 scenarios in all
        compare_with_the_reference(random.Random(7000 + seed))


def compare_with_the_reference(rng: random.Random) -> None:
    capacity = rng.choice([1, 3, 8, 17])
    tested, reference = SendLane(capacity, STRIDE, STRIDE), REFERENCE.SendLane(capacity, STRIDE, STRIDE)
    assert type(tested) is not type(reference)
    streams_t: list[FakeStream | None] = [None] * capacity  # each lane works on its own copies of the streams
    streams_r: list[FakeStream | None] = [None] * capacity
    buf_t, buf_r = bytearray(capacity * STRIDE), bytearray(capacity * STRIDE)
    pending: dict[int, int] = {}  # flip -> packets built, not yet sent
    units = rng.randrange(1 << 33)
    flip = 0
    for tick in range(rng.randint(20, 120)):
        for _ in range(rng.randint(0, 3)):  # commands between ticks
            row, action = rng.randrange(capacity), rng.random()
            st_t, st_r = streams_t[row], streams_r[row]
            if action < 0.25 and not tested.armed[row]:
                if st_t is None or rng.random() < 0.2:  # a new stream in the row (the old one released first)
                    tested.release(row)
                    reference.release(row)
                    fresh = new_stream(rng)
                    streams_t[row], streams_r[row] = fresh, FakeStream(**{**fresh.__dict__})
                    st_t, st_r = streams_t[row], streams_r[row]
                assert st_t is not None and st_r is not None
                assert tested.arm(row, st_t) == reference.arm(row, st_r)
            elif action < 0.35:
                tested.disarm(row)
                reference.disarm(row)
            elif action < 0.42:
                tested.cancel(row)
                reference.cancel(row)
            elif action < 0.47:
                tested.release(row)
                reference.release(row)
            elif action < 0.6:
                tested.fold(row)
                reference.fold(row)
            elif action < 0.75 and st_t is not None and st_r is not None:  # symmetric RTP relatches, or hold
                addr = rng.choice([("127.0.0.1", rng.randrange(1, 65536)), None, ("bad host", 1), st_t.rtp_addr])
                st_t.rtp_addr = st_r.rtp_addr = addr
            elif action < 0.8 and st_t is not None and st_r is not None:
                st_t.events_on = st_r.events_on = True  # queued without disarming: the round robin catches it
        # send the batch built last tick (paced), with some failures
        if flip in pending:
            count = pending.pop(flip)
            k = tested.ready(flip, count)
            assert k == reference.ready(flip, count)
            assert snapshot(tested, flip, k) == snapshot(reference, flip, k)
            outcomes = [rng.choice([0] * 12 + [11, 111, -1]) for _ in range(k)]
            for lane in (tested, reference):
                lane.batch(flip)[4][:k] = outcomes
            bad_t, bad_r = tested.account(flip, k), reference.account(flip, k)
            assert bad_t == bad_r
            for row, _peer in bad_t or ():  # the bank drops the stream: cancel
                tested.cancel(row)
                reference.cancel(row)
        flip = 1 - flip
        units = (units + rng.choice([160, 160, 160, 320, 1 + rng.randrange(100000)])) % (1 << 40)
        end = rng.randint(0, capacity)
        live = np.array([rng.random() < 0.9 for _ in range(capacity)], dtype=np.uint8)
        k_t = tested.stamp(flip, buf_t, units, live, end)
        k_r = reference.stamp(flip, buf_r, units, live, end)
        assert k_t == k_r, tick
        assert buf_t == buf_r, tick
        assert snapshot(tested, flip, k_t) == snapshot(reference, flip, k_r)
        if k_t:
            pending[flip] = k_t
        count = rng.randint(0, capacity)
        tested.fold_some(end, count)
        reference.fold_some(end, count)
        assert tested.armed.tolist() == reference.armed.tolist(), tick
        assert [s and s.state() for s in streams_t] == [s and s.state() for s in streams_r], tick
    for row in range(capacity):
        tested.release(row)
        reference.release(row)
    assert [s and s.state() for s in streams_t] == [s and s.state() for s in streams_r]


def test_the_random_scenarios_reach_every_rule() -> None:
    """The scenarios above do exercise what they are meant to (a check of the test, on the reference): packets
    with and without the marker, sequence wraps, cancelled entries, failures, refused arms."""
    seen = {"marker": 0, "plain": 0, "wrap": 0, "dropped": 0, "errors": 0, "unsendable": 0, "refused": 0}

    class Counting(REFERENCE.SendLane):  # type: ignore[name-defined,misc]
        def arm(self, row: int, stream: Any) -> bool:
            ok = bool(super().arm(row, stream))
            seen["refused"] += not ok
            return ok

        def stamp(self, flip: int, buf: bytearray, units: int, live: Any, end: int) -> int:
            k = int(super().stamp(flip, buf, units, live, end))
            for offset in self.batch(flip)[1][:k].tolist():
                seen["marker" if buf[offset + 1] & 0x80 else "plain"] += 1
                seen["wrap"] += buf[offset + 2 : offset + 4] == b"\0\0"
            return k

        def ready(self, flip: int, count: int) -> int:
            k = int(super().ready(flip, count))
            seen["dropped"] += count - k
            return k

        def account(self, flip: int, count: int) -> Any:
            errors = self.batch(flip)[4][:count].tolist()
            seen["errors"] += sum(e > 0 for e in errors)
            seen["unsendable"] += sum(e < 0 for e in errors)
            return super().account(flip, count)

    saved = REFERENCE.SendLane
    REFERENCE.SendLane = Counting
    try:
        for seed in range(40):
            compare_with_the_reference(random.Random(7000 + seed))
    finally:
        REFERENCE.SendLane = saved
    assert all(seen.values()), seen


def test_bad_rows_flips_and_buffers_are_refused() -> None:
    lane = SendLane(2, STRIDE, STRIDE)
    with pytest.raises(IndexError):
        lane.fold(2)
    with pytest.raises(IndexError):
        lane.arm(-1, FakeStream(seq=1, ssrc=1, ts_offset=0))
    with pytest.raises(ValueError):
        lane.stamp(0, bytearray(STRIDE), 0, np.ones(2, dtype=np.uint8), 2)  # one row's room for two rows
    with pytest.raises(ValueError):
        lane.stamp(0, bytearray(3 * STRIDE), 0, np.ones(2, dtype=np.uint8), 3)  # beyond the capacity
    with pytest.raises(ValueError):
        SendLane(2, 10, 12)  # a packet longer than its place
