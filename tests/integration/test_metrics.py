"""GET /metrics after scripted calls: a bot-to-bot call and a phone (SIP) call on a real node, then the counters.

Also the access rules: loopback without a token by default; a configured token is required; disabled is 404.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from opencomms.config import ConsoleConfig, MetricsConfig
from opencomms.testing import TestPlatform
from opencomms.testing.harness import app_target
from opencomms.testing.platform import default_config


async def scrape(platform: TestPlatform, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{platform.base_url}/metrics", headers=headers) as resp:
        return resp.status, resp.headers.get("content-type", ""), await resp.text()


class Samples:
    def __init__(self, text: str) -> None:
        self.rows = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]

    def get(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 when there is none)."""
        return sum(v for n, ls, v in self.rows if n == name and all(ls.get(k) == x for k, x in labels.items()))


async def until(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_counters_after_a_bot_to_bot_call_and_a_phone_call() -> None:
    async with TestPlatform() as platform:
        alice = await platform.recording_bot("alice")
        bob = await platform.recording_bot("bob")
        # bot to bot: alice calls bob, bob answers, alice hangs up
        status, call = await alice.client.create_call(alice.webhook.url, [app_target(bob.credentials.app_id)])
        assert status == 201, call
        ring = await bob.webhook.incoming()
        assert await bob.client.answer(ring.call_id) == 202
        await alice.webhook.wait_state(call["id"], "established")
        assert await alice.client.hang_up(call["id"]) == 204
        await bob.webhook.wait_for(lambda n: n.change_type == "deleted" and n.call_id == ring.call_id)
        # a phone calls bob, talks a little, hangs up
        async with platform.caller(number="+15550123") as phone:
            sip_call = await phone.dial(bob.number)
            ring2 = await bob.webhook.incoming(index=1, timeout=10)
            assert await bob.client.answer(ring2.call_id) == 202
            await sip_call.wait_answered()
            await sip_call.press("1", method="inband")  # some audio towards the node
            await sip_call.hear(0.3)
            await sip_call.hang_up()
        await bob.webhook.wait_for(lambda n: n.change_type == "deleted" and n.call_id == ring2.call_id)
        await platform.node.dispatcher.wait_idle()

        status, ctype, text = await scrape(platform)
        assert status == 200 and ctype.startswith("text/plain")
        m = Samples(text)
        # call legs: alice's outgoing one, bob's two incoming ones; ends by their resultInfo
        assert m.get("opencomms_calls_started_total", direction="outgoing") == 1
        assert m.get("opencomms_calls_started_total", direction="incoming") == 2
        assert m.get("opencomms_calls_ended_total", code="200", subcode="5001") == 1  # alice hung up
        assert m.get("opencomms_calls_ended_total", code="200", subcode="4097") == 2  # bob's ends: both hung up on
        assert m.get("opencomms_calls_ended_total") == 3
        assert m.get("opencomms_calls_active") == 0
        # REST by route template and status, with latency
        assert m.get("opencomms_http_requests_total", method="POST", route="communications/calls", status="201") == 1
        answer = "communications/calls/{id}/answer"
        assert m.get("opencomms_http_requests_total", method="POST", route=answer, status="202") == 2
        assert m.get("opencomms_http_requests_total", method="DELETE", route="communications/calls/{id}") == 1
        assert m.get("opencomms_http_request_duration_seconds_count", route=answer) == 2
        assert m.get("opencomms_http_request_duration_seconds_sum", route=answer) > 0
        assert not [ls for n, ls, _ in m.rows if "id" in ls.get("route", "").replace("{id}", "")]  # no raw ids
        # notifications: all delivered, each with its latency
        delivered = m.get("opencomms_notifications_total", outcome="delivered")
        assert delivered == len(alice.webhook.notifications) + len(bob.webhook.notifications) >= 10
        assert m.get("opencomms_notification_delivery_seconds_count") == delivered
        # SIP: the phone's INVITE in, our 200 to it out, its BYE
        assert m.get("opencomms_sip_requests_total", direction="in", method="INVITE") == 1
        assert m.get("opencomms_sip_responses_total", direction="out", method="INVITE", code="200") == 1
        assert m.get("opencomms_sip_requests_total", direction="in", method="BYE") == 1
        assert m.get("opencomms_sip_responses_total", direction="out", method="BYE", code="200") == 1
        # RTP quality of the finished SIP leg, and the media engine's ticks
        assert m.get("opencomms_rtp_loss_ratio_count", direction="in") == 1
        assert m.get("opencomms_rtp_jitter_seconds_count", direction="in") == 1
        assert m.get("opencomms_rtp_mos_count") == 1 and m.get("opencomms_rtp_mos_sum") > 3.5
        assert m.get("opencomms_media_engine_tick_seconds_count") > 10
        assert m.get("opencomms_media_engine_tick_seconds_bucket", le="+Inf") == m.get(
            "opencomms_media_engine_tick_seconds_count"
        )
        assert m.get("opencomms_media_engine_events_total", event="ticks") > 10
        assert m.get("opencomms_build_info") == 1


async def test_a_configured_token_is_required_and_disabled_metrics_are_404() -> None:
    with tempfile.TemporaryDirectory() as temp:
        base = default_config(temp)
        guarded = dataclasses.replace(base, metrics=MetricsConfig(token="s3cret-scrape-token"))
        async with TestPlatform(guarded) as platform:
            assert (await scrape(platform))[0] == 401
            assert (await scrape(platform, Authorization="Bearer wrong"))[0] == 401
            status, _, text = await scrape(platform, Authorization="Bearer s3cret-scrape-token")
            assert status == 200 and "opencomms_calls_active 0.0" in text
            # through a proxy on this host: remote, refused even with the token
            proxied = {"Authorization": "Bearer s3cret-scrape-token", "X-Forwarded-For": "203.0.113.9"}
            assert (await scrape(platform, **proxied))[0] == 403
            text = (await scrape(platform, Authorization="Bearer s3cret-scrape-token"))[2]
            assert 'route="metrics",status="401"' in text and 'route="metrics",status="403"' in text
        # (the console hears the dispatcher too: off here, so that nothing at all observes it)
        off = dataclasses.replace(base, metrics=MetricsConfig(enabled=False), console=ConsoleConfig(enabled=False))
        async with TestPlatform(off) as platform:
            assert platform.node.metrics is None
            assert platform.node.dispatcher.on_staged is None and platform.node.app.on_request is None
            assert (await scrape(platform))[0] == 404
