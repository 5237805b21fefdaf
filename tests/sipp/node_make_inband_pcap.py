"""Writes ``node_dtmf_inband.pcap``: G.711 μ-law RTP (payload type 0) carrying in-band DTMF for the keys 4, 7, *.

``node_uac_dtmf_inband.xml`` (which offers PCMU only, no telephone-event) plays it with ``play_pcap_audio``, so the
node must find the digits in the audio itself. The audio comes from our own tone generator
(``generate_dtmf`` at 8 kHz) and G.711 encoder; framing and file are ``make_dtmf_pcap``'s (Ethernet / IPv4 / UDP, all
packets to port 6000, which sipp maps to the far side's audio port).

Layout: 200 ms of silence, then for each key 100 ms of tone and 100 ms of silence, then 200 ms of silence; one
20 ms packet every 20 ms, marker bit on the first. Deterministic: ``python -m tests.sipp.node_make_inband_pcap``
reproduces the committed file byte for byte (a test checks it).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

from opencomms.media.dtmf.tones import generate_dtmf
from opencomms.media.g711 import ulaw_encode
from tests.sipp.make_dtmf_pcap import pcap_file, write_pcap

PCAP_PATH = Path(__file__).with_name("node_dtmf_inband.pcap")

KEYS = "47*"
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
TONE_MS = 100
GAP_MS = 100
LEAD_MS = 200
TAIL_MS = 200
LEVEL_DBFS = -10.0
SSRC = 0x0C0DE104
FIRST_SEQUENCE = 1000
FIRST_TIMESTAMP = 80_000


def audio(keys: str = KEYS) -> np.ndarray:
    """The whole signal at 8 kHz, 16-bit."""
    silence = {ms: np.zeros(ms * RATE // 1000, dtype=np.int16) for ms in (LEAD_MS, GAP_MS, TAIL_MS)}
    parts = [silence[LEAD_MS]]
    for key in keys:
        parts += [generate_dtmf(key, TONE_MS, LEVEL_DBFS, rate=RATE), silence[GAP_MS]]
    parts.append(silence[TAIL_MS])
    return np.concatenate(parts)


def rtp_packets(keys: str = KEYS) -> list[tuple[int, bytes]]:
    """``(time offset in microseconds, RTP packet)`` for every 20 ms of the signal."""
    codes = ulaw_encode(audio(keys))
    packets: list[tuple[int, bytes]] = []
    for n in range(len(codes) // FRAME):
        header = struct.pack(
            ">BBHII",
            0x80,
            (0x80 if n == 0 else 0) | 0,  # payload type 0: PCMU
            (FIRST_SEQUENCE + n) & 0xFFFF,
            (FIRST_TIMESTAMP + n * FRAME) & 0xFFFFFFFF,
            SSRC,
        )
        packets.append((n * 20_000, header + codes[n * FRAME : (n + 1) * FRAME].tobytes()))
    return packets


def build_pcap(keys: str = KEYS) -> bytes:
    """The whole pcap file."""
    return pcap_file(rtp_packets(keys))


def main(argv: list[str]) -> int:
    return write_pcap(argv, PCAP_PATH, rtp_packets(), KEYS)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
