"""The operators' console attacked against a running node: sign-in from another site (or without the form's
pre-session token) is refused, guessing is rate-limited with 429 + Retry-After, sign-out needs the session's CSRF
token, a forged session cookie gets nothing, data shown in pages is escaped, and the answers forbid framing,
sniffing, caching and foreign scripts."""

from __future__ import annotations

import dataclasses
import re
import time

import aiohttp

from opencomms.config import ConsoleConfig
from opencomms.console.auth import create_operator
from tests.integration.conftest import make_platform, node_config


async def _form(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/console/signin") as resp:
        found = re.search(r'name=pre value="([^"]+)"', await resp.text())
    assert found is not None
    return found.group(1)


async def _post(http: aiohttp.ClientSession, url: str, form: dict[str, str], **headers: str) -> aiohttp.ClientResponse:
    async with http.post(url, data=form, headers=headers, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def test_console_sign_in_and_session_attacks_are_refused() -> None:
    config = dataclasses.replace(node_config(), console=ConsoleConfig(sign_in_burst=4, sign_in_rate=0.01))
    async with make_platform(config, ("alice",)) as p:
        base = p.node.public_url
        password = create_operator(p.node.store, "ops", time.time())
        p.node.directory.create_app(p.tenant_id, "<script>alert(1)</script>", callback_url="https://bot.example/cb")
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            pre = await _form(http, base)
            good = {"pre": pre, "name": "ops", "password": password}
            # 1: a cross-site form post (the browser says where it comes from)
            resp = await _post(http, f"{base}/console/signin", good, Origin="https://evil.example")
            assert resp.status == 403
            # 2: no pre-session token in the form (login CSRF)
            resp = await _post(http, f"{base}/console/signin", {**good, "pre": "guess"})
            assert resp.status == 403

            # 3: guessing: the 4-attempt burst (the two refused above did not count: refused before the limiter),
            # then 429 with Retry-After, even for the right password
            async def attempt(password_: str) -> aiohttp.ClientResponse:
                form = {**good, "pre": await _form(http, base), "password": password_}
                return await _post(http, f"{base}/console/signin", form)

            assert (await attempt("nope")).status == 401
            assert (await attempt("nope")).status == 401
            assert (await attempt(password)).status == 303  # signed in
            session_cookie = jar.filter_cookies(aiohttp.client.URL(f"{base}/console/"))["oc_console"].value
            assert (await attempt("nope")).status == 401
            resp = await attempt(password)
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1

            # pages escape what they show, and forbid framing, sniffing, caching and foreign scripts
            async with http.get(f"{base}/console/apps") as page:
                html = await page.text()
                assert page.status == 200 and "<script>alert(1)" not in html and "&lt;script&gt;" in html
                for header, value in (
                    ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Cache-Control", "no-store"),
                ):
                    assert page.headers[header] == value
                assert "script-src 'self'" in page.headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
            # 4: sign-out without the session's CSRF token does nothing
            resp = await _post(http, f"{base}/console/signout", {"csrf": "forged"})
            assert resp.status == 403
            async with http.get(f"{base}/console/api/live") as still:
                assert still.status == 200

        # 5: a forged session cookie gets nothing; the Graph API does not take console cookies
        async with aiohttp.ClientSession() as other:
            for cookie in ("forged-token", session_cookie + "x"):
                async with other.get(f"{base}/console/api/live", headers={"Cookie": f"oc_console={cookie}"}) as r:
                    assert r.status == 401
            hdrs = {"Cookie": f"oc_console={session_cookie}"}
            async with other.get(f"{base}/v1.0/communications/callRecords", headers=hdrs) as r:
                assert r.status == 401
