"""The console over plain HTTP against a running node with a live SIP call: sign-in (CSRF-safe, rate-limited,
expiring cookie session), the live and timeline JSON the pages poll, masking of numbers, and refusals."""

from __future__ import annotations

import re
import time

import aiohttp

from opencomms.console.auth import create_operator
from opencomms.testing import TestPlatform

NUMBER = "+15550123987"


async def sign_in(http: aiohttp.ClientSession, base: str, name: str, password: str) -> aiohttp.ClientResponse:
    async with http.get(f"{base}/console/signin") as resp:
        assert resp.status == 200
        pre = re.search(r'name=pre value="([^"]+)"', await resp.text())
    assert pre is not None
    form = {"pre": pre.group(1), "name": name, "password": password}
    async with http.post(f"{base}/console/signin", data=form, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def test_console_shows_a_live_sip_call_and_its_timeline() -> None:
    async with TestPlatform() as platform:
        base = platform.base_url
        password = create_operator(platform.node.store, "ops", time.time())
        bot = await platform.recording_bot("reception")
        async with (
            platform.caller(number=NUMBER) as caller,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        ):
            async with http.get(f"{base}/console/api/live") as resp:
                assert resp.status == 401  # not signed in
            async with http.get(f"{base}/console/live", allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["location"] == "/console/signin"
            resp = await sign_in(http, base, "ops", "wrong-password")
            assert resp.status == 401
            resp = await sign_in(http, base, "ops", password)
            assert resp.status == 303, resp.status
            cookie = next(v for k, v in resp.headers.items() if k.lower() == "set-cookie" and "oc_console=" in v)
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie

            call = await caller.dial(bot.number)
            incoming = await bot.webhook.incoming(timeout=10)
            assert await bot.client.answer(incoming.call_id) == 202
            await call.wait_answered()
            await bot.webhook.wait_state(incoming.call_id, "established")

            async with http.get(f"{base}/console/api/live") as resp:
                live = await resp.json()
            (conv,) = live["conversations"]
            kinds = sorted(leg["kind"] for leg in conv["legs"])
            assert kinds == ["bot", "sip"] and live["calls"] == 1, live
            text = str(live)
            assert NUMBER not in text and "+1555*****87" in text, text  # masked as in the logs

            async with http.get(f"{base}/console/api/calls/{incoming.call_id}") as resp:
                timeline = await resp.json()
            lines = [e["text"] for e in timeline["entries"]]
            joined = "\n".join(lines)
            assert "<- SIP INVITE" in joined and "-> SIP 200 OK (INVITE)" in joined, joined
            assert re.search(r"-> POST /v1.0/communications/calls/\w{8}…/answer 202", joined), joined
            assert "<- created" in joined and "established" in joined, joined
            assert NUMBER not in joined

            async with http.get(f"{base}/console/live") as resp:
                page = await resp.text()
                assert resp.headers["content-security-policy"].startswith("default-src 'none'")
            assert incoming.call_id[:8] in page and NUMBER not in page
            await call.hang_up()

            # a call the bot rejects: in the recent failures with its resultInfo; the apps page masks the number
            await caller.dial(bot.number)
            rejected = await bot.webhook.incoming(timeout=10, index=1)
            status, _, _ = await bot.client.request(
                "POST", f"/communications/calls/{rejected.call_id}/reject", {"reason": "busy"}
            )
            assert status == 202
            await bot.webhook.wait_for(lambda n: n.call_id == rejected.call_id and n.change_type == "deleted")
            async with http.get(f"{base}/console/api/failures") as resp:
                failures = await resp.json()
            async with http.get(f"{base}/console/api/calls/{rejected.call_id}") as resp:
                conversation = (await resp.json())["conversationId"]
            mine = [f for f in failures if f["conversationId"] == conversation]
            assert mine and mine[0]["resultInfo"]["code"] >= 400 and mine[0]["app"] == "(phone leg)", failures
            async with http.get(f"{base}/console/api/apps") as resp:
                apps = await resp.json()
            (numbers,) = [a["numbers"] for a in apps if a["numbers"]]
            assert numbers and bot.number not in str(numbers) and "*" in numbers[0]["phone"]
