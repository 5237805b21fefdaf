"""Jitter buffer on explicit time: playout delay, reordering, duplicates, loss, wrap-around, SSRC change, timestamp
jumps, re-framing 10/30 ms packets, overflow, late packets, idle streams, delay adaptation and trimming."""

from __future__ import annotations

import itertools
import random

import pytest

from opencomms.rtp.jitter import LOST, JitterBuffer, JitterConfig
from opencomms.rtp.packet import RtpPacket

F = 160
Arrival = tuple[float, int, bytes, int]  # (arrival, timestamp, payload, ssrc)


def frame(k: int, size: int = F) -> bytes:
    return bytes([k % 250]) * size


def stream(count: int, *, start_ts: int = 1000, ssrc: int = 1, delay: float = 0.001, size: int = F) -> list[Arrival]:
    """Packets sent every size/8 ms from t=0, arriving `delay` later."""
    step = size / 8000
    return [(k * step + delay, (start_ts + k * size) % (1 << 32), frame(k, size), ssrc) for k in range(count)]


def run(jb: JitterBuffer, arrivals: list[Arrival], ticks: int, t0: float = 0.0) -> list[bytes | object | None]:
    """Pop every 20 ms from t0, putting what has arrived before each pop."""
    pending = sorted(arrivals, key=lambda a: a[0])
    out: list[bytes | object | None] = []
    i = 0
    for k in range(ticks):
        now = t0 + 0.02 * k
        while i < len(pending) and pending[i][0] <= now + 1e-9:
            arrival, ts, payload, ssrc = pending[i]
            jb.put(ssrc, ts, payload, arrival)
            i += 1
        out.append(jb.pop(now))
    return out


def frames_of(out: list[bytes | object | None]) -> list[int | str]:
    """Frame ids played, 'L' for LOST; leading/trailing None dropped, inner None as 'N'."""
    marks: list[int | str] = []
    for x in out:
        if x is None:
            marks.append("N")
        elif x is LOST:
            marks.append("L")
        else:
            assert isinstance(x, bytes) and len(x) == F
            marks.append(x[0])
    while marks and marks[0] == "N":
        marks.pop(0)
    while marks and marks[-1] == "N":
        marks.pop()
    return marks


def test_in_order_stream_plays_after_the_minimum_delay() -> None:
    jb = JitterBuffer()
    out = run(jb, stream(50), 60)
    first = next(i for i, x in enumerate(out) if x is not None)
    assert first == 3  # first packet at 1 ms; playout once 40 ms have passed (the 60 ms pop)
    played = frames_of(out)
    assert played[:50] == list(range(50))
    assert "L" in played[50:] or played[50:] == []  # the stream ended: a few LOST, then idle (None)
    assert out[-1] is None and not jb.playing
    assert jb.received == 50 and jb.late == 0 and jb.duplicates == 0
    assert jb.lost == 5 and jb.underflows == 6  # 5 LOST to conceal the end, then idle
    assert jb.target_ms == pytest.approx(40.0)


def test_reordering_and_duplicates() -> None:
    arrivals = stream(30)
    arrivals[5], arrivals[6] = (arrivals[6][0], *arrivals[5][1:]), (arrivals[5][0], *arrivals[6][1:])
    arrivals.append((arrivals[9][0] + 0.005, *arrivals[9][1:]))  # a duplicate of packet 9
    jb = JitterBuffer()
    assert frames_of(run(jb, arrivals, 34))[:30] == list(range(30))
    assert jb.duplicates == 1


def test_loss_is_reported_in_place_and_the_timeline_kept() -> None:
    arrivals = [a for i, a in enumerate(stream(30)) if i not in (7, 12, 13)]
    jb = JitterBuffer()
    played = frames_of(run(jb, arrivals, 34))
    expected = ["L" if i in (7, 12, 13) else i for i in range(30)]
    assert played[:30] == expected
    assert jb.lost >= 3


def test_sequence_and_timestamp_wrap_around() -> None:
    jb = JitterBuffer()
    arrivals = stream(40, start_ts=(1 << 32) - 5 * F)
    assert frames_of(run(jb, arrivals, 44))[:40] == list(range(40))
    assert jb.jumps == 0


def test_ssrc_change_resets_and_stragglers_of_the_old_stream_are_ignored() -> None:
    jb = JitterBuffer()
    first = stream(20)
    second = [(0.5 + a[0], a[1], frame(100 + i), 2) for i, a in enumerate(stream(20, start_ts=99999))]
    straggler = (0.52, first[19][1] + F, frame(99), 1)
    out = run(jb, [*first, *second, straggler], 60)
    played = frames_of(out)
    assert played[:20] == list(range(20))
    assert [x for x in played if isinstance(x, int) and x >= 100] == list(range(100, 120))
    assert 99 not in played
    assert jb.ssrc_changes == 1 and jb.stale == 1


def test_timestamp_jump_continues_after_the_buffered_audio() -> None:
    jb = JitterBuffer()
    before = stream(10)
    after = [(0.2 + a[0], a[1], frame(50 + i), 1) for i, a in enumerate(stream(20, start_ts=1000 + 10 * F + 8000 * 30))]
    played = frames_of(run(jb, [*before, *after], 50))
    assert played[:30] == [*range(10), *range(50, 70)]  # seamless: no gap, no rebuffering
    assert jb.jumps == 1 and jb.lost == 5
    # Backwards (the sender restarted its clock without a new SSRC): not "late", a restart.
    jb = JitterBuffer()
    back = [(0.2 + a[0], a[1], frame(50 + i), 1) for i, a in enumerate(stream(20, start_ts=10))]
    played = frames_of(run(jb, [*stream(10, start_ts=900000), *back], 50))
    assert played[:30] == [*range(10), *range(50, 70)]
    assert jb.late == 0 and jb.jumps == 1


@pytest.mark.parametrize("ptime", [10, 30, 40])
def test_other_packet_sizes_are_reframed_to_20_ms(ptime: int) -> None:
    size = 8 * ptime
    samples = bytes(range(200)) * 40  # a recognisable byte stream
    count = len(samples) // size
    arrivals = [
        (k * ptime / 1000 + 0.001, 5000 + k * size, samples[k * size : (k + 1) * size], 7) for k in range(count)
    ]
    jb = JitterBuffer()
    out = run(jb, arrivals, count * ptime // 20 + 10)
    played = b"".join(x for x in out if isinstance(x, bytes))
    whole = count * size // F * F
    assert played[:whole] == samples[:whole]
    audio = [i for i, x in enumerate(out) if isinstance(x, bytes)]
    assert LOST not in out[audio[0] : audio[-1]]  # nothing missing before the stream ends


def test_a_lost_10_ms_packet_leaves_half_a_frame_of_fill() -> None:
    arrivals = [a for i, a in enumerate(stream(20, size=80)) if i != 6]
    jb = JitterBuffer(JitterConfig(fill=0xD5))
    out = [x for x in run(jb, arrivals, 16) if isinstance(x, bytes)]
    assert out[3] == frame(6, 80).replace(frame(6, 80), b"\xd5" * 80) + frame(7, 80)


def test_overflow_drops_the_oldest() -> None:
    jb = JitterBuffer(JitterConfig(capacity=8))
    for arrival, ts, payload, ssrc in stream(20):
        jb.put(ssrc, ts, payload, arrival)
    assert len(jb) == 8 and jb.overflow_dropped == 12
    first = jb.pop(1.0)
    assert isinstance(first, bytes) and first[0] == 12


def test_a_late_packet_stalls_playout_once_and_still_plays() -> None:
    arrivals = stream(30)
    t, ts, payload, ssrc = arrivals[10]
    arrivals[10] = (t + 0.065, ts, payload, ssrc)  # 65 ms late: after its playout time
    for k in range(11, 30):  # the ones after it are late too (a delay spike), by less and less
        t, ts, payload, ssrc = arrivals[k]
        arrivals[k] = (max(t, arrivals[10][0]), ts, payload, ssrc)
    jb = JitterBuffer()
    played = frames_of(run(jb, arrivals, 45))
    assert [x for x in played if isinstance(x, int)][:30] == list(range(30))  # nothing discarded
    assert "L" in played[:15] and jb.late == 0 and jb.underflows >= 1


def test_a_packet_older_than_the_playout_point_is_late() -> None:
    arrivals = stream(30)
    t, ts, payload, ssrc = arrivals[10]
    arrivals[10] = (t + 0.2, ts, payload, ssrc)
    jb = JitterBuffer()
    played = frames_of(run(jb, arrivals, 40))
    assert played[:30] == ["L" if i == 10 else i for i in range(30)]
    assert jb.late == 1 and jb.target_ms > 150  # the lateness raised the target


def test_idle_stream_returns_none_and_the_next_talkspurt_rebuffers() -> None:
    jb = JitterBuffer()
    talk1 = stream(10)
    talk2 = [(1.0 + a[0], a[1], frame(40 + i), 1) for i, a in enumerate(stream(10, start_ts=1000 + 8000 + 10 * F))]
    out = run(jb, [*talk1, *talk2], 70)
    assert frames_of(out[:40]) == [*range(10), "L", "L", "L", "L", "L"]
    restart = next(i for i, x in enumerate(out) if isinstance(x, bytes) and x[0] == 40)
    assert restart == 53  # talk2 starts arriving at 1.001 s: played from the 1.06 s pop
    assert frames_of(out[restart:]) == [*range(40, 50), "L", "L", "L", "L", "L"]
    assert jb.jumps == 0


def test_target_follows_jitter_within_bounds() -> None:
    rng = random.Random(3)
    jittery = [(a[0] + rng.uniform(0, 0.06), *a[1:]) for a in stream(400)]
    jb = JitterBuffer()
    out = run(jb, jittery, 420)
    assert 60 < jb.target_ms <= 200 and jb.jitter_ms > 5
    lost_share = sum(1 for x in out[100:400] if x is LOST) / 300
    assert lost_share < 0.05  # once adapted, the jitter is absorbed
    wild = [(a[0] + rng.uniform(0, 0.6), *a[1:]) for a in stream(200)]
    jb = JitterBuffer()
    run(jb, wild, 220)
    assert jb.target_ms == pytest.approx(200.0)
    steady = JitterBuffer()
    run(steady, stream(200), 210)
    assert steady.target_ms == pytest.approx(40.0)


def test_excess_delay_is_trimmed_one_frame_per_window() -> None:
    jb = JitterBuffer()
    held = [(0.3, *a[1:]) for a in stream(15)]  # the network held 300 ms of packets, then released them
    out = run(jb, [*held, *stream(300)[15:]], 300)
    assert jb.latency_dropped >= 5
    assert jb.level_ms < 120
    played = [x[0] for x in out if isinstance(x, bytes)]
    steps = [(b - a) % 250 for a, b in itertools.pairwise(played)]
    assert set(steps) == {1, 2} and steps.count(2) == jb.latency_dropped  # a drop skips exactly one frame


def test_config_validation_and_reset() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(JitterConfig(min_delay_ms=300))
    jb = JitterBuffer()
    jb.put(1, 0, frame(0), 0.0)
    jb.reset()
    assert len(jb) == 0 and not jb.playing and jb.pop(1.0) is None
    jb.put(1, 0, b"", 0.0)
    assert len(jb) == 0


def test_put_packet() -> None:
    jb = JitterBuffer()
    jb.put_packet(RtpPacket(0, 1, 1000, 5, frame(3)), 0.0)
    assert jb.pop(0.04) == frame(3)


def test_rest_decays_the_lateness_peak_as_the_skipped_pops_would_have() -> None:
    skipped, polled = JitterBuffer(), JitterBuffer()
    for jb in (skipped, polled):
        jb.put(1, 1000, frame(0), 0.0)
        jb._peak = 800.0  # a late packet was seen
        while not jb.idle:
            jb.pop(1.0)
    for _ in range(100):
        polled.pop(2.0)
    skipped.rest(100)
    assert skipped.idle and skipped.target_ms == pytest.approx(polled.target_ms)
    assert skipped._peak == pytest.approx(polled._peak) and skipped._peak < 800.0 * 0.9
