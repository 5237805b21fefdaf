"""A phone puts the bot on hold and takes it back (re-INVITE, RFC 3264 §8.4): SIPp against a real node.

The node must answer sendonly with recvonly, inactive with inactive, sendrecv with sendrecv (SIPp checks each
answer), stop sending RTP while the phone does not want it, and send again once it resumes; the call stays up.
"""

from __future__ import annotations

import asyncio
import time

from opencomms.rtp import Direction
from tests.integration.conftest import make_platform, node_config
from tests.sipp.sipp import LOOPBACK, run_sipp

NUMBER = "+14255550100"


async def test_phone_hold_inactive_and_resume() -> None:
    async with make_platform(node_config(), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        assert p.node.sip is not None
        sip = p.node.sip
        phone = asyncio.create_task(
            asyncio.to_thread(
                run_sipp, "node_hold.xml", LOOPBACK, sip.port, service=NUMBER.lstrip("+"), call_duration_ms=800
            )
        )
        incoming = await p["bob"].bot.incoming(timeout=10)
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await p["bob"].bot.wait_state(incoming.call_id, "established", timeout=10)
        leg = next(c.id for c in p.node.calls.calls.values() if c.is_external)
        samples: list[tuple[float, Direction, int]] = []
        while not phone.done():
            media, quality = sip.media(leg), sip.quality(leg)
            if media is not None and quality is not None:
                samples.append((time.monotonic(), media.direction, quality.packets_sent))
            await asyncio.sleep(0.05)
        result = await phone
        assert result.ok, result.describe()  # every answer had the right direction

        seen = [d for i, (_, d, _) in enumerate(samples) if i == 0 or samples[i - 1][1] != d]
        assert seen == [Direction.SENDRECV, Direction.RECVONLY, Direction.INACTIVE, Direction.SENDRECV], seen

        def sent_while(direction: Direction, phase: int) -> tuple[int, float]:
            """Packets sent and seconds elapsed during the `phase`-th stretch in `direction` (settled samples)."""
            stretches: list[list[tuple[float, int]]] = []
            for i, (t, d, n) in enumerate(samples):
                if d is not direction:
                    continue
                if i == 0 or samples[i - 1][1] is not direction:
                    stretches.append([])
                stretches[-1].append((t, n))
            part = stretches[phase][2:]  # skip the first 100 ms: packets already on their way
            return part[-1][1] - part[0][1], part[-1][0] - part[0][0]

        for held in (Direction.RECVONLY, Direction.INACTIVE):
            sent, seconds = sent_while(held, 0)
            assert seconds > 0.4 and sent == 0, (held, sent, seconds)
        for phase in (0, 1):
            sent, seconds = sent_while(Direction.SENDRECV, phase)
            assert sent >= 0.6 * seconds / 0.02, (phase, sent, seconds)  # 50 packets/s, give or take
        end = await p["bob"].bot.wait_for(lambda n: n.change_type == "deleted", timeout=10)
        assert end[0].resource_data["resultInfo"]["subcode"] == 4097
        assert sip.active == 0
