"""RFC 4733 telephone-event payload, sender timing, receiver loss handling, sender -> receiver."""

from __future__ import annotations

import pytest

from opencomms.media.dtmf import (
    FLASH_KEY,
    OutgoingTelephoneEvent,
    TelephoneEvent,
    TelephoneEventEnded,
    TelephoneEventError,
    TelephoneEventReceiver,
    TelephoneEventSender,
    TelephoneEventStarted,
)
from opencomms.media.dtmf.rfc4733 import MAX_DURATION


def test_payload_round_trip_and_layout() -> None:
    ev = TelephoneEvent(event=5, end=True, volume=10, duration=1600)
    data = bytes(ev)
    assert data == bytes([0x05, 0x8A, 0x06, 0x40])
    assert TelephoneEvent.parse(data) == ev
    for event, end, volume, duration in [(0, False, 0, 0), (16, True, 63, 0xFFFF), (255, False, 36, 12345)]:
        x = TelephoneEvent(event, end, volume, duration)
        assert TelephoneEvent.parse(bytes(x)) == x


def test_parse_ignores_r_bit_and_trailing_bytes_and_rejects_short_payloads() -> None:
    assert TelephoneEvent.parse(bytes([0x0B, 0xC7, 0x01, 0x40, 0xFF])) == TelephoneEvent(11, True, 7, 320)
    with pytest.raises(TelephoneEventError):
        TelephoneEvent.parse(b"\x01\x02\x03")
    with pytest.raises(TelephoneEventError):
        TelephoneEvent(1, False, 64, 0)
    with pytest.raises(TelephoneEventError):
        TelephoneEvent(1, False, 0, 0x10000)
    with pytest.raises(TelephoneEventError):
        TelephoneEvent(256, False, 0, 0)


def drain(
    sender: TelephoneEventSender, until: float, step: float = 0.001
) -> list[tuple[float, OutgoingTelephoneEvent]]:
    """Poll the sender on a fake clock; returns (send time, packet)."""
    out = []
    t = 0.0
    while t <= until + 1e-9:
        out += [(round(t, 3), p) for p in sender.poll(t)]
        t += step
    return out


def test_sender_schedule_with_packet_interval() -> None:
    sender = TelephoneEventSender(clock_rate=8000, ptime_ms=20, volume=10)
    sender.start("9", timestamp=1000, now=0.0, duration_ms=100)
    assert sender.next_deadline() == 0.0
    sent = drain(sender, 0.3)
    assert not sender.busy and sender.next_deadline() is None
    times = [t for t, _ in sent]
    assert times == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14]
    assert all(p.timestamp == 1000 for _, p in sent)
    assert [p.marker for _, p in sent] == [True] + [False] * 7
    assert [p.payload.duration for _, p in sent] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [p.payload.end for _, p in sent] == [False] * 5 + [True] * 3
    assert {(p.payload.event, p.payload.volume) for _, p in sent} == {(9, 10)}


def test_sender_defaults_to_50_ms_updates_and_supports_other_clocks() -> None:
    sender = TelephoneEventSender(clock_rate=48000)
    sender.start("#", timestamp=2**32 + 5, now=10.0, duration_ms=120)
    sent = []
    t = 10.0
    while sender.busy:
        sent += [(round(t - 10.0, 3), p) for p in sender.poll(t)]
        t += 0.005
    assert [t for t, _ in sent] == [0.0, 0.05, 0.1, 0.12, 0.17, 0.22]
    assert [p.payload.duration for _, p in sent] == [2400, 4800, 5760, 5760, 5760, 5760]
    assert sent[0][1].timestamp == 5 and sent[0][1].payload.event == 11


def test_open_ended_event_stops_on_request() -> None:
    sender = TelephoneEventSender(ptime_ms=20)
    sender.start("A", timestamp=0, now=0.0)
    first = drain(sender, 0.05)
    assert [p.payload.duration for _, p in first] == [160, 320, 480]
    sender.stop(0.07)
    rest = [p for p in sender.poll(0.07)]
    rest += sender.poll(0.09) + sender.poll(0.11) + sender.poll(1.0)
    durations = [p.payload.duration for p in rest]
    assert durations == [560, 560, 560, 560]  # the update due at 60 ms, then the end at 70 ms, three times
    assert [p.payload.end for p in rest] == [False, True, True, True]
    assert not sender.busy
    with pytest.raises(RuntimeError):
        sender.start("1", 0, 0.0)
        sender.start("2", 0, 0.0)


def test_long_event_is_split_into_segments() -> None:
    sender = TelephoneEventSender(clock_rate=8000, ptime_ms=20)
    sender.start("0", timestamp=100, now=0.0, duration_ms=10_000)  # 80000 units > 0xFFFF
    sent = drain(sender, 10.2, step=0.01)
    first = [p for _, p in sent if p.timestamp == 100]
    second = [p for _, p in sent if p.timestamp == 100 + MAX_DURATION]
    assert len(first) + len(second) == len(sent)
    assert [p.payload.duration for p in first[-3:]] == [MAX_DURATION] * 3
    assert not any(p.payload.end for p in first)
    assert [p.payload.duration for p in second[-3:]] == [80000 - MAX_DURATION] * 3
    assert all(p.payload.end for p in second[-3:])
    assert sum(p.marker for _, p in sent) == 1
    receiver = TelephoneEventReceiver()
    got = []
    for t, p in sent:
        got += receiver.receive(bytes(p.payload), p.timestamp, t)
    assert got == [TelephoneEventStarted("0", 100), TelephoneEventEnded("0", 100, 80000, 10_000.0, False)]


def deliver(
    sent: list[tuple[float, OutgoingTelephoneEvent]], receiver: TelephoneEventReceiver, lost: set[int], until: float
) -> list[object]:
    out: list[object] = []
    packets = [(t, p) for i, (t, p) in enumerate(sent) if i not in lost]
    t = 0.0
    while t <= until:
        for when, p in packets:
            if abs(when - t) < 1e-6:
                out += receiver.receive(bytes(p.payload), p.timestamp, t)
        out += receiver.poll(t)
        t = round(t + 0.005, 3)
    return out


def sequence(keys: str, duration_ms: float = 100, gap_ms: float = 60) -> list[tuple[float, OutgoingTelephoneEvent]]:
    sender = TelephoneEventSender(ptime_ms=20)
    sent: list[tuple[float, OutgoingTelephoneEvent]] = []
    t = 0.0
    for i, key in enumerate(keys):
        start = i * (duration_ms + gap_ms) / 1000
        while t < start - 1e-9:
            sent += [(round(t, 3), p) for p in sender.poll(t)]
            t = round(t + 0.005, 3)
        sender.start(key, timestamp=int(start * 8000), now=start, duration_ms=duration_ms)
    while sender.busy:
        sent += [(round(t, 3), p) for p in sender.poll(t)]
        t = round(t + 0.005, 3)
    return sent


def test_sender_to_receiver_without_loss() -> None:
    got = deliver(sequence("147*"), TelephoneEventReceiver(), set(), 1.0)
    started = [e for e in got if isinstance(e, TelephoneEventStarted)]
    ended = [e for e in got if isinstance(e, TelephoneEventEnded)]
    assert [e.key for e in started] == list("147*")
    assert [(e.key, e.duration, e.duration_ms, e.timed_out) for e in ended] == [(k, 800, 100.0, False) for k in "147*"]


def test_lost_start_packets_and_lost_end_packets() -> None:
    sent = sequence("55")
    # First key: lose the marker packet and the next update. Second key: lose all three end packets.
    second_start = next(i for i, (_, p) in enumerate(sent) if p.timestamp != sent[0][1].timestamp)
    lost = {0, 1, len(sent) - 1, len(sent) - 2, len(sent) - 3}
    got = deliver(sent, TelephoneEventReceiver(timeout_ms=200), lost, 1.0)
    assert [type(e).__name__ for e in got] == [
        "TelephoneEventStarted",
        "TelephoneEventEnded",
        "TelephoneEventStarted",
        "TelephoneEventEnded",
    ]
    first_end, second_end = got[1], got[3]
    assert isinstance(first_end, TelephoneEventEnded) and isinstance(second_end, TelephoneEventEnded)
    assert first_end.duration == 800 and not first_end.timed_out
    assert second_end.timed_out and second_end.duration == 800  # the last update already said 100 ms
    assert isinstance(got[2], TelephoneEventStarted) and got[2].timestamp == sent[second_start][1].timestamp


def test_receiver_timeout_uses_the_last_duration_seen() -> None:
    r = TelephoneEventReceiver(timeout_ms=150)
    assert r.receive(bytes(TelephoneEvent(3, False, 10, 160)), 500, 0.0) == [TelephoneEventStarted("3", 500)]
    assert r.receive(bytes(TelephoneEvent(3, False, 10, 320)), 500, 0.02) == []
    assert r.next_deadline() == pytest.approx(0.17)
    assert r.poll(0.1) == []
    assert r.poll(0.17) == [TelephoneEventEnded("3", 500, 320, 40.0, True)]
    assert r.poll(1.0) == [] and r.next_deadline() is None
    # A late end report of the timed-out event changes nothing.
    assert r.receive(bytes(TelephoneEvent(3, True, 10, 480)), 500, 0.3) == []


def test_receiver_dedups_and_ignores_old_events_and_reordering() -> None:
    r = TelephoneEventReceiver()
    end = bytes(TelephoneEvent(1, True, 10, 400))
    assert r.receive(end, 1000, 0.0) == [
        TelephoneEventStarted("1", 1000),
        TelephoneEventEnded("1", 1000, 400, 50.0, False),
    ]
    assert r.receive(end, 1000, 0.02) == []
    assert r.receive(bytes(TelephoneEvent(1, False, 10, 160)), 1000, 0.03) == []  # reordered update
    assert r.receive(bytes(TelephoneEvent(2, False, 10, 160)), 900, 0.04) == []  # older timestamp
    # A newer event ends an unfinished one; timestamps wrap around 2**32.
    r = TelephoneEventReceiver()
    assert r.receive(bytes(TelephoneEvent(4, False, 10, 160)), 2**32 - 100, 0.05) == [
        TelephoneEventStarted("4", 2**32 - 100)
    ]
    assert r.receive(bytes(TelephoneEvent(6, False, 10, 160)), 60, 0.06) == [
        TelephoneEventEnded("4", 2**32 - 100, 160, 20.0, False),
        TelephoneEventStarted("6", 60),
    ]


def test_receiver_filters_codes_and_quiet_dtmf_and_knows_flash() -> None:
    r = TelephoneEventReceiver()
    assert r.receive(bytes(TelephoneEvent(32, False, 10, 160)), 10, 0.0) == []  # modem/fax event
    assert r.receive(bytes(TelephoneEvent(2, False, 56, 160)), 20, 0.0) == []  # below -55 dBm0
    assert r.receive(bytes(TelephoneEvent(2, False, 36, 160)), 30, 0.0) == [TelephoneEventStarted("2", 30)]
    assert r.receive(bytes(TelephoneEvent(16, True, 0, 800)), 3000, 0.1) == [
        TelephoneEventEnded("2", 30, 160, 20.0, False),
        TelephoneEventStarted(FLASH_KEY, 3000),
        TelephoneEventEnded(FLASH_KEY, 3000, 800, 100.0, False),
    ]
