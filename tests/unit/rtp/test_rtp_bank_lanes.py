"""The receive lanes change nothing a stream reports: two banks, one with lanes and one without, get the same
packets at the same ticks (random peers: in sequence mostly, then losses, reordering, duplicates, a new SSRC, the
other G.711 law, RFC 4733 events, a stranger's packets, pauses with and without a timestamp gap, sequence wraps) and
must agree on every figure after every tick, on what their legs hear, and on the call's figures once detached; and
most packets did take the lane. Hand-ticked engines and real loopback sockets, like test_rtp_bank.py."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from opencomms.media.engine import MediaEngine
from opencomms.rtp.bank import RtpBank
from opencomms.rtp.packet import pack_header
from opencomms.rtp.stream import Stream, StreamParams
from tests.unit.rtp.test_rtp_bank import ManualHost

STREAMS = 6
TICKS = 400
EVENT_PT = 101


class Side:
    """One bank, its engine, streams and the sockets that send to them."""

    def __init__(self, udp: Callable[[], socket.socket], lanes: bool) -> None:
        self.engine = MediaEngine(2 * STREAMS + 2)
        self.host = ManualHost(self.engine)
        self.bank = RtpBank(self.host, capacity=STREAMS + 1, kernel_timestamps=False, lanes=lanes)
        self.streams: list[Stream] = []
        self.peers: list[socket.socket] = []
        self.strangers: list[socket.socket] = []
        self.heard: list[list[int]] = []
        for k in range(STREAMS):
            leg = f"leg{k}"
            self.engine.add_leg(leg)
            self.peers.append(udp())
            self.strangers.append(udp())
            st = Stream(leg, udp(), udp(), ssrc=1000 + k, numbering=(k, 0))
            st.apply(
                StreamParams(
                    telephone_event=EVENT_PT,
                    receive_payload_types={0: "PCMU", 8: "PCMA", EVENT_PT: "telephone-event"},
                    remote_rtp=self.peers[k].getsockname(),
                    remote_rtcp=udp().getsockname(),
                )
            )
            self.streams.append(st)
            self.bank.attach(st)
        self.host.tick(0.0)

    def send(self, k: int, packet: bytes, stranger: bool) -> None:
        (self.strangers if stranger else self.peers)[k].sendto(packet, self.streams[k].rtp_sock.getsockname())

    def figures(self) -> list[tuple[Any, ...]]:
        out = []
        for st in self.streams:
            jb = st.jb
            out.append(
                (
                    st.packets_received,
                    st.octets_received,
                    st.last_rtp,
                    st.invalid_packets,
                    st.foreign_packets,
                    st.unknown_payload,
                    st.frames_played,
                    st.frames_concealed,
                    st.dtx_frames,
                    st.lost_run,
                    jb.received,
                    jb.duplicates,
                    jb.late,
                    jb.lost,
                    jb.jitter,
                    jb.ssrc_changes,
                )
            )
        return out

    def absorbed(self) -> list[tuple[Any, ...]]:
        """Every stream's RFC 3550 statistics, once the lanes' counts are handed back (as before a report)."""
        out = []
        for st in self.streams:
            if st.row >= 0:
                pending = self.bank._io.lane(2 * st.row)
                if pending is not None:
                    st.absorb(pending)
            s = st.stats
            out.append(
                None
                if s is None
                else (s.ssrc, s.max_seq, s.cycles, s.received, s.probation, s.base_seq, s.bad_seq, st.quality())
            )
        return out


class Peer:
    """A far end's sending habits, drawn from one random generator (both sides get its packets)."""

    def __init__(self, rng: random.Random, k: int) -> None:
        self.rng = rng
        self.ssrc = 0x5000 + k
        self.seq = 65530 - 40 * k if k % 2 else rng.randrange(1 << 16)  # some wrap during the run
        self.ts = rng.randrange(1 << 32)
        self.paused = 0
        self.held: list[bytes] = []

    def packet(self, *, pt: int = 0, payload: bytes | None = None, marker: bool = False) -> bytes:
        data = pack_header(pt, marker, self.seq, self.ts, self.ssrc) + (
            payload if payload is not None else bytes([self.rng.randrange(256)]) * 160
        )
        self.seq = (self.seq + 1) & 0xFFFF
        return data

    def tick(self) -> list[tuple[bytes, bool]]:
        """This tick's datagrams: (bytes, from a stranger)."""
        rng, out = self.rng, []
        if self.paused:
            self.paused -= 1
            self.ts = (self.ts + 160) & 0xFFFFFFFF
            return out
        roll = rng.random()
        if roll < 0.80:
            out.append((self.packet(), False))
        elif roll < 0.84:  # lost
            self.packet()
        elif roll < 0.87:  # reordered: held back a tick
            self.held.append(self.packet())
        elif roll < 0.89:  # duplicated
            data = self.packet()
            out += [(data, False), (data, False)]
        elif roll < 0.90:  # a new source
            self.ssrc = rng.randrange(1 << 32)
            self.seq = rng.randrange(1 << 16)
            out.append((self.packet(), False))
        elif roll < 0.92:  # the other law: transcoded
            out.append((self.packet(pt=8), False))
        elif roll < 0.94:  # an RFC 4733 event report, then the audio
            key = bytes([rng.randrange(16), 0x0A, 0x01, 0x40])
            out.append((self.packet(pt=EVENT_PT, payload=key, marker=True), False))
            out.append((self.packet(), False))
        elif roll < 0.95:  # a stranger's packet
            out.append((pack_header(0, False, rng.randrange(1 << 16), 0, 7) + bytes(160), True))
            out.append((self.packet(), False))
        elif roll < 0.96:  # a pause: DTX (the timestamps go on) or a silence the sender numbers on
            self.paused = rng.randrange(2, 30)
            if rng.random() < 0.5:
                self.ts = (self.ts - 160 * self.paused) & 0xFFFFFFFF
        elif roll < 0.97:  # junk
            out.append((b"\x80\x00", False))
            out.append((self.packet(), False))
        else:
            out.append((self.packet(), False))
            out.append((self.packet(), False))  # a burst
        out += [(data, False) for data in self.held]
        self.held.clear()
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        return out


def heard(side: Side) -> np.ndarray:
    """What every leg's buffer holds for the engine this tick (the frames played into the legs)."""
    return np.array(side.bank._up16[:STREAMS], copy=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bank_with_lanes_reports_what_one_without_them_does(udp: Callable[[], socket.socket], seed: int) -> None:
    laned, plain = Side(udp, lanes=True), Side(udp, lanes=False)
    rng = random.Random(seed)
    peers = [Peer(rng, k) for k in range(STREAMS)]
    for tick in range(1, TICKS + 1):
        for k, peer in enumerate(peers):
            for data, stranger in peer.tick():
                laned.send(k, data, stranger)
                plain.send(k, data, stranger)
        now = 0.02 * tick
        laned.host.tick(now)
        plain.host.tick(now)
        assert laned.figures() == plain.figures(), f"tick {tick}"
        assert np.array_equal(heard(laned), heard(plain)), f"tick {tick}"
        if tick % 5 == 0:
            assert laned.absorbed() == plain.absorbed(), f"tick {tick}"
    assert laned.bank.laned > 0.6 * laned.bank.datagrams and plain.bank.laned == 0
    assert laned.bank.stats()["datagrams_laned"] == laned.bank.laned
    for side in (laned, plain):
        for st in side.streams:
            side.bank.detach(st)
        side.host.tick(0.02 * (TICKS + 1))
    assert [st.quality() for st in laned.streams] == [st.quality() for st in plain.streams]
    assert [st.stats.received if st.stats else 0 for st in laned.streams] == [
        st.stats.received if st.stats else 0 for st in plain.streams
    ]


def test_figures_read_elsewhere_include_what_the_lane_took(udp: Callable[[], socket.socket]) -> None:
    side = Side(udp, lanes=True)
    peer = Peer(random.Random(5), 0)
    st = side.streams[0]
    for tick in range(1, 40):
        side.send(0, peer.packet(), False)
        peer.ts += 160
        side.host.tick(0.02 * tick)
    assert side.bank.laned >= 37 and st.frames_concealed == 0
    assert st.packets_received == 39 and st.octets_received == 39 * 160 and st.last_rtp == pytest.approx(0.78)
    quality = st.quality()
    assert quality.packets_received == 39 and quality.packets_lost == 0
    st.rtcp_next = 0.0  # a report is due: the statistics are absorbed first
    side.host.tick(0.8)
    assert st.stats is not None and st.stats.received == 39
