"""BrowserOpus: what the node's answer asks of the Opus a browser sends (RFC 7587 fmtp parameters).

rtpengine decodes every browser's Opus to feed the node's 16 kHz engine. What a browser encodes is the receiver's
call: in the answer's `a=fmtp` for Opus, `maxplaybackrate` (the highest rate the receiver plays out; WebRTC's
encoder caps its audio band and lowers its default bitrate to match: 16000 -> wideband SILK at 20 kbit/s instead of
fullband at 32) and `usedtx=1` (discontinuous transmission: a participant who is silent sends a comfort-noise
packet every 400 ms instead of one every 20 ms, so rtpengine and the node have next to nothing to decode, relay or
mix for them; meetings are mostly listeners). `sprop-maxcapturerate` says the same about the Opus we send.
rtpengine 10.5 writes no Opus fmtp of its own into that answer, so the edge adds ours (`with_opus_fmtp`) to the
SDP rtpengine returns, merged into an fmtp line when there is one.

Owns: the parameters and the SDP edit. Must not: parse SDP beyond the Opus rtpmap/fmtp lines of the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["IN_NODE", "BrowserOpus", "with_opus_fmtp"]

_OPUS_RTPMAP = re.compile(rb"^a=rtpmap:(\d{1,3}) opus/48000(?:/\d+)?\s*$", re.IGNORECASE)
_RATES = (8000, 12000, 16000, 24000, 48000)
IN_NODE = {"maxaveragebitrate": "40000", "stereo": "0", "useinbandfec": "1"}
"""Added when the node decodes the browser's Opus (`webrtc.opus_in_node`): at most 40 kbit/s (the bank's packet slot),
mono, and in-band FEC (the bank rebuilds a lost frame from the next packet's LBRR). Not asked when rtpengine
transcodes: its decoder would not use it."""


@dataclass(frozen=True, slots=True)
class BrowserOpus:
    """The fmtp the node's answer gives a browser's Opus (`webrtc.browser_opus_max_rate`, `browser_opus_dtx`)."""

    max_rate: int = 16000
    """`maxplaybackrate` and `sprop-maxcapturerate` (Hz: 8000, 12000, 16000, 24000 or 48000; 0 leaves both out)."""
    dtx: bool = True
    """`usedtx=1`: silent browsers send a comfort-noise update every 400 ms instead of 50 packets a second."""

    def __post_init__(self) -> None:
        if self.max_rate and self.max_rate not in _RATES:
            raise ValueError(f"Opus max rate must be 0 or one of {', '.join(map(str, _RATES))}")

    def params(self) -> dict[str, str]:
        """The fmtp parameters, in the order they are written."""
        out: dict[str, str] = {}
        if self.max_rate:
            out["maxplaybackrate"] = str(self.max_rate)
            out["sprop-maxcapturerate"] = str(self.max_rate)
        if self.dtx:
            out["usedtx"] = "1"
        return out


def _merge(existing: bytes, params: dict[str, str]) -> bytes:
    """`existing` fmtp parameters (`a=b;c=d`) with `params` set (replaced where present, appended otherwise)."""
    items: list[tuple[str, str]] = []
    for part in existing.decode("ascii", "replace").split(";"):
        key, _, value = part.strip().partition("=")
        if key and key.lower() not in params:
            items.append((key, value))
    items.extend(params.items())
    return ";".join(f"{k}={v}" if v else k for k, v in items).encode("ascii")


def with_opus_fmtp(sdp: bytes, params: dict[str, str]) -> bytes:
    """`sdp` with `params` in the fmtp of every Opus payload type (an SDP without Opus comes back unchanged)."""
    if not params or b"opus/48000" not in sdp.lower():
        return sdp
    eol = b"\r\n" if b"\r\n" in sdp else b"\n"
    lines = sdp.split(eol)
    opus_pts = {m.group(1) for line in lines if (m := _OPUS_RTPMAP.match(line))}
    if not opus_pts:
        return sdp
    out: list[bytes] = []
    done: set[bytes] = set()
    for line in lines:
        if line.startswith(b"a=fmtp:"):
            pt, _, rest = line[7:].partition(b" ")
            if pt in opus_pts and pt not in done:
                out.append(b"a=fmtp:" + pt + b" " + _merge(rest, params))
                done.add(pt)
                continue
        out.append(line)
    missing = opus_pts - done
    if missing:  # no fmtp line for that Opus yet: one right after its rtpmap
        final: list[bytes] = []
        for line in out:
            final.append(line)
            m = _OPUS_RTPMAP.match(line)
            if m and m.group(1) in missing:
                final.append(b"a=fmtp:" + m.group(1) + b" " + _merge(b"", params))
        out = final
    return eol.join(out)
