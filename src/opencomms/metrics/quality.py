"""An estimated listening MOS from a leg's RTP figures (ITU-T G.107 E-model, simplified as VoIP monitors do).

Pure: figures in, a number out. The call records keep the measured figures (loss, jitter, round trip); this
estimate only feeds the `opencomms_rtp_mos` histogram, so that a dashboard can show call quality on one scale.
"""

from __future__ import annotations

from opencomms.rtp.stats import CallQuality

__all__ = ["estimated_mos"]


def estimated_mos(loss_percent: float, jitter_ms: float, rtt_ms: float | None) -> float:
    """1.0 (bad) … 4.4 (G.711 at its best). Effective latency = one-way delay + 2 x jitter + 10 ms of codec
    delay; R = 93.2 minus the delay impairment minus 2.5 per percent of loss; MOS from R by G.107 annex B."""
    one_way = (rtt_ms or 0.0) / 2.0
    latency = one_way + 2.0 * jitter_ms + 10.0
    r = 93.2 - (latency / 40.0 if latency < 160.0 else (latency - 120.0) / 10.0)
    r -= 2.5 * max(0.0, loss_percent)
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return round(1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r), 3)


def mos_of(quality: CallQuality) -> float:
    return estimated_mos(quality.loss_percent, quality.jitter_ms, quality.rtt_ms)
