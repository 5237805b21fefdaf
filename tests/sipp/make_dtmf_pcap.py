"""Writes ``dtmf_12hash.pcap``: RFC 4733 telephone-event RTP packets for the keys 1, 2 and #.

``uac_dtmf_rtp.xml`` plays it with ``<exec play_pcap_audio="dtmf_12hash.pcap"/>``. The bytes are built here by
hand (no scapy): a classic pcap file (microsecond timestamps, Ethernet link type) of Ethernet / IPv4 / UDP / RTP
frames. Output is deterministic, so ``python tests/sipp/make_dtmf_pcap.py`` reproduces the committed file byte
for byte (a test checks it).

How sipp uses the capture (sipp ``prepare_pcap.c`` / ``send_packets.c``): it keeps each UDP header and payload,
takes the lowest UDP destination port in the file as the *base*, and sends every packet from the call's
``[media_port]`` to the port of the far side's SDP plus ``(packet dport - base)``. So all packets here share one
destination port (6000, sipp's default ``-mp`` media port): they all go to the far side's audio port. The IP
addresses and MACs in the file are never used (documentation addresses, RFC 5737).

Each key: 100 ms of tone in 20 ms updates with one timestamp (the event start), the marker bit on the first
packet, durations 160..800 (8 kHz units), the end bit on the last, which is sent three times (RFC 4733 section
2.5.1.4); 100 ms of silence between keys. 21 packets, about 0.5 s.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from pathlib import Path

PCAP_PATH = Path(__file__).with_name("dtmf_12hash.pcap")

KEYS = "12#"
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PAYLOAD_TYPE = 101
CLOCK_RATE = 8000
SSRC = 0x0C0DE101
FIRST_SEQUENCE = 4711
FIRST_TIMESTAMP = 160_000
VOLUME = 10  # -10 dBm0
TONE_MS = 100
GAP_MS = 100
UPDATE_MS = 20
END_REPEATS = 3
CAPTURE_START = 1_700_000_000  # pcap record time of the first packet (seconds)

SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")
SRC_IP = bytes([192, 0, 2, 1])
DST_IP = bytes([192, 0, 2, 2])
SRC_PORT = 6000
DST_PORT = 6000  # sipp's media port convention: the lowest dport in the file is the audio stream


def rtp_event_packets(keys: str = KEYS) -> list[tuple[int, bytes]]:
    """``(time offset in microseconds, RTP packet)`` for every telephone-event packet of ``keys``."""
    packets: list[tuple[int, bytes]] = []
    sequence = FIRST_SEQUENCE
    units_per_ms = CLOCK_RATE // 1000
    for index, key in enumerate(keys):
        start_ms = index * (TONE_MS + GAP_MS)
        timestamp = FIRST_TIMESTAMP + start_ms * units_per_ms
        updates = TONE_MS // UPDATE_MS
        schedule: list[tuple[int, int, bool]] = []  # (send time ms, duration units, end bit)
        for n in range(1, updates + 1):
            schedule.append((start_ms + n * UPDATE_MS, n * UPDATE_MS * units_per_ms, n == updates))
        last_time, last_duration, _ = schedule[-1]
        for repeat in range(1, END_REPEATS):
            schedule.append((last_time + repeat * UPDATE_MS, last_duration, True))
        for number, (send_ms, duration, end) in enumerate(schedule):
            marker = number == 0
            header = struct.pack(
                ">BBHII",
                0x80,  # version 2, no padding, no extension, no CSRC
                (0x80 if marker else 0) | PAYLOAD_TYPE,
                sequence & 0xFFFF,
                timestamp & 0xFFFFFFFF,
                SSRC,
            )
            payload = struct.pack(">BBH", EVENT_CODES[key], (0x80 if end else 0) | VOLUME, duration)
            packets.append((send_ms * 1000, header + payload))
            sequence += 1
    return packets


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int(word) for word in struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet_ipv4_udp(payload: bytes, identification: int) -> bytes:
    """One Ethernet frame carrying ``payload`` in UDP over IPv4, checksums filled in."""
    udp_length = 8 + len(payload)
    pseudo = SRC_IP + DST_IP + struct.pack(">BBH", 0, 17, udp_length)
    udp_header = struct.pack(">HHHH", SRC_PORT, DST_PORT, udp_length, 0)
    udp_checksum = _checksum(pseudo + udp_header + payload) or 0xFFFF
    udp = struct.pack(">HHHH", SRC_PORT, DST_PORT, udp_length, udp_checksum) + payload
    total_length = 20 + len(udp)
    ip_header = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, total_length, identification & 0xFFFF, 0x4000, 64, 17, 0, SRC_IP, DST_IP
    )
    ip_header = ip_header[:10] + struct.pack(">H", _checksum(ip_header)) + ip_header[12:]
    return DST_MAC + SRC_MAC + struct.pack(">H", 0x0800) + ip_header + udp


def pcap_file(packets: Sequence[tuple[int, bytes]]) -> bytes:
    """A classic pcap file of ``(time offset in microseconds, RTP packet)``, framed by :func:`ethernet_ipv4_udp`."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # LINKTYPE_ETHERNET
    for number, (offset_us, rtp) in enumerate(packets):
        frame = ethernet_ipv4_udp(rtp, identification=number + 1)
        seconds, micros = divmod(offset_us, 1_000_000)
        out.append(struct.pack("<IIII", CAPTURE_START + seconds, micros, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def write_pcap(argv: list[str], default: Path, packets: Sequence[tuple[int, bytes]], keys: str) -> int:
    """A generator's ``main``: write :func:`pcap_file` of ``packets`` to ``argv[1]`` (or ``default``) and say so."""
    target = Path(argv[1]) if len(argv) > 1 else default
    data = pcap_file(packets)
    target.write_bytes(data)
    print(f"wrote {target} ({len(data)} bytes, {len(packets)} packets, keys {keys})")
    return 0


def build_pcap(keys: str = KEYS) -> bytes:
    """The whole pcap file."""
    return pcap_file(rtp_event_packets(keys))


def main(argv: list[str]) -> int:
    return write_pcap(argv, PCAP_PATH, rtp_event_packets(), KEYS)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
