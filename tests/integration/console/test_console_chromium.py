"""The console in a real browser: headless Chromium (Debian's `chromium` package, driven by Playwright; nothing is
downloaded at run time) signs in, sees a live SIP call from a virtual phone to a bot on the live page (the number
masked), opens the call's timeline (SIP, REST, notifications) and the call-quality charts after the call.

Screenshots are kept as test output in `test-output/console/` at the repository root (gitignored):
signin.png, live.png, timeline.png, quality.png.
"""

from __future__ import annotations

from pathlib import Path

from playwright import async_api as playwright

from opencomms.testing import TestPlatform

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[3] / "test-output" / "console"
NUMBER = "+15550123987"


async def test_operator_sees_a_live_sip_call_and_its_timeline_in_chromium() -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    async with TestPlatform() as platform, playwright.async_playwright() as pw:
        base = platform.base_url
        directory = platform.node.directory  # an operator is a directory user holding the admin role
        user = directory.create_user(platform.tenant_id, "Olga Operator", upn="olga@ops.example")
        directory.set_password(user.id, password := "a long operator password")
        directory.set_roles(user.id, ["admin"])
        bot = await platform.recording_bot("reception")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/console/live")
            assert page.url.endswith("/console/signin")  # not signed in: sent to the sign-in page
            await page.fill("input[name=name]", "olga@ops.example")
            await page.fill("input[name=password]", password)
            await page.screenshot(path=str(OUTPUT / "signin.png"))
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/live")

            async with platform.caller(number=NUMBER) as caller:
                call = await caller.dial(bot.number)
                incoming = await bot.webhook.incoming(timeout=10)
                assert await bot.client.answer(incoming.call_id) == 202
                await call.wait_answered()
                await bot.webhook.wait_state(incoming.call_id, "established")

                # the page polls /console/api/live: the call appears without a reload
                row = page.locator("#live tbody tr", has_text="sip")
                await row.first.wait_for(timeout=5000)
                table = await page.inner_text("#live")
                assert "established" in table and "+1555*****87" in table and NUMBER not in table, table
                await page.screenshot(path=str(OUTPUT / "live.png"), full_page=True)

                await page.click(f"a[href='/console/calls/{incoming.call_id}']")
                await page.wait_for_url(f"**/console/calls/{incoming.call_id}")
                timeline = await page.inner_text("#timeline")
                for expected in ("SIP INVITE", "200 OK (INVITE)", "/answer 202", "<- created", "established"):
                    assert expected in timeline, (expected, timeline)
                await page.screenshot(path=str(OUTPUT / "timeline.png"), full_page=True)

                await call.hang_up()
                await bot.webhook.wait_for(lambda n: n.change_type == "deleted" and n.call_id == incoming.call_id)
                await page.locator("#timeline", has_text="conversation ended").wait_for(timeout=5000)

            await page.click("nav a[href='/console/quality']")
            svg = page.locator("svg.chart")
            assert await svg.count() == 3
            assert await page.locator("svg.chart rect.bar").count() >= 2  # jitter and loss of the call (RTT needs RTCP)
            await page.screenshot(path=str(OUTPUT / "quality.png"), full_page=True)
        finally:
            await browser.close()
    assert (OUTPUT / "timeline.png").stat().st_size > 1000
