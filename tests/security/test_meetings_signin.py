"""Attacks on online meetings and delegated sign-in, replayed against a running node: another user's or tenant's
meetings, an app without an access policy, a signed-in user reaching past their own meetings or into the calling
API, open redirects, missing PKCE, a stolen code or refresh token, device-code guessing, markup injection in
the sign-in page, and hostile ids and filters. Every answer is a documented 4xx, never a 500."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest

from opencomms.auth.signin import pkce_s256
from opencomms.config import SignInConfig
from opencomms.directory import AppChange
from tests.integration.conftest import Platform, make_platform, node_config

PASSWORD = "correct horse battery"
PERMS = {"alice": ["OnlineMeetings.ReadWrite.All"], "bob": ["OnlineMeetings.ReadWrite.All"]}


@dataclass
class Env:
    p: Platform
    http: aiohttp.ClientSession
    public_app: str
    confidential_app: str
    heidi: str
    megan: str

    @property
    def url(self) -> str:
        return self.p.node.public_url

    async def form(self, path: str, data: dict[str, str], **kw: Any) -> tuple[int, Any, Any]:
        async with self.http.post(f"{self.url}{path}", data=data, allow_redirects=False, **kw) as resp:
            body: Any = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, resp.headers

    async def sign_in(self, upn: str, scope: str = "OnlineMeetings.ReadWrite") -> dict[str, Any]:
        """Device-code sign-in driven over HTTP: the tokens a public client gets."""
        tenant = self.p.tenant_id
        full = f"{self.url}/{scope} openid offline_access"
        status, flow, _ = await self.form(
            f"/{tenant}/oauth2/v2.0/devicecode", {"client_id": self.public_app, "scope": full}
        )
        assert status == 200, flow
        status, _, _ = await self.device_login(flow["user_code"], upn, PASSWORD)
        assert status == 200
        grant = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": self.public_app,
            "device_code": flow["device_code"],
        }
        status, tokens, _ = await self.form(f"/{tenant}/oauth2/v2.0/token", grant)
        assert status == 200, tokens
        return tokens  # type: ignore[no-any-return]

    async def device_login(self, user_code: str, upn: str, password: str) -> tuple[int, Any, Any]:
        async with self.http.get(f"{self.url}/devicelogin") as page:
            csrf = re.search(r"name='csrf' value='([^']+)'", await page.text())
            cookie = page.headers["set-cookie"].split(";")[0]
        assert csrf is not None
        data = {"csrf": csrf[1], "user_code": user_code, "username": upn, "password": password}
        return await self.form("/devicelogin", data, headers={"Cookie": cookie})

    async def graph(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(method, f"{self.url}/v1.0{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json() if resp.content_type == "application/json" else None


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = node_config(signin=SignInConfig(device_poll_interval=1, failed_sign_in_burst=3))
    async with (
        make_platform(config, names=("alice", "bob"), perms=PERMS) as p,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        d = p.node.directory
        heidi = d.create_user(p.tenant_id, "Heidi", upn="heidi@contoso.example")
        megan = d.create_user(p.tenant_id, "Megan", upn="megan@contoso.example")
        for user in (heidi, megan):
            d.set_password(user.id, PASSWORD)
        public, _ = d.create_app(p.tenant_id, "CLI")
        d.edit_app(public.id, AppChange(redirect_uris=("https://app.example/cb",), public_client=True))
        confidential, _ = d.create_app(p.tenant_id, "Web")
        d.edit_app(confidential.id, AppChange(redirect_uris=("https://web.example/cb",)))
        yield Env(p, http, public.id, confidential.id, heidi.id, megan.id)


async def test_apps_reach_only_users_their_policy_grants(env: Env) -> None:
    node = env.p.node
    node.meetings.policies.grant(env.p["alice"].app_id, env.heidi)
    alice, bob = env.p["alice"].client, env.p["bob"].client
    status, m, _ = await alice.request("POST", f"/users/{env.heidi}/onlineMeetings", {"subject": "s"})
    assert status == 201
    status, _, _ = await alice.request("POST", f"/users/{env.megan}/onlineMeetings", {})
    assert status == 403  # no policy for megan
    status, _, _ = await bob.request("GET", f"/users/{env.heidi}/onlineMeetings/{m['id']}")
    assert status == 403  # bob has the permission but no policy
    status, _, _ = await alice.request("GET", f"/users/{env.megan}/onlineMeetings/{m['id']}")
    assert status == 403
    node.meetings.policies.grant(env.p["alice"].app_id, env.megan)
    status, _, _ = await alice.request("GET", f"/users/{env.megan}/onlineMeetings/{m['id']}")
    assert status == 404  # heidi's meeting is not megan's
    # another tenant's app, even with a tenant-wide policy in its own tenant, does not see this tenant's users
    other = node.directory.create_tenant("Fabrikam", "fabrikam.example")
    eve, _ = node.directory.create_app(other.id, "Eve", permissions=["OnlineMeetings.ReadWrite.All"])
    node.meetings.policies.grant(eve.id, None)
    assert not node.meetings.policies.allows(eve.id, env.p.tenant_id, env.heidi)
    # hostile ids and filters: 4xx, never 500
    for path in (
        f"/users/{env.heidi}/onlineMeetings/{'A' * 5000}",
        f"/users/{env.heidi}/onlineMeetings/..%2f..%2fx",
        f"/users/{'x' * 300}/onlineMeetings",
        f"/users/{env.heidi}/onlineMeetings?$filter={quote('JoinWebUrl eq ' + repr('x' * 5000))}",
        f"/users/{env.heidi}/onlineMeetings?$filter={quote('subject eq 1 or 1 eq 1')}",
        f"/users/{env.heidi}/onlineMeetings?$filter=a&$filter=b",
    ):
        status, body, _ = await alice.request("GET", path)
        assert status in (400, 404) or (status == 200 and body["value"] == []), path[:120]


async def test_a_signed_in_user_reaches_only_their_own_meetings(env: Env) -> None:
    heidi = await env.sign_in("heidi@contoso.example")
    megan = await env.sign_in("megan@contoso.example")
    status, m = await env.graph("POST", "/me/onlineMeetings", heidi["access_token"], {"subject": "mine"})
    assert status == 201 and m["participants"]["organizer"]["identity"]["user"]["id"] == env.heidi
    status, _ = await env.graph("GET", f"/users/{env.heidi}/onlineMeetings/{m['id']}", heidi["access_token"])
    assert status == 200  # /users/{own id} works with a delegated token
    status, _ = await env.graph("GET", f"/me/onlineMeetings/{m['id']}", megan["access_token"])
    assert status == 404
    status, _ = await env.graph("DELETE", f"/users/{env.heidi}/onlineMeetings/{m['id']}", megan["access_token"])
    assert status == 403
    # the calling API is application-only
    status, err = await env.graph("POST", "/communications/calls", heidi["access_token"], {})
    assert status == 403 and err["error"]["code"] == "accessDenied"
    # a read-only grant cannot write
    reader = await env.sign_in("megan@contoso.example", "OnlineMeetings.Read")
    status, _ = await env.graph("POST", "/me/onlineMeetings", reader["access_token"], {})
    assert status == 403
    # a deleted user's token stops working
    env.p.node.directory.delete_user(env.megan)
    status, _ = await env.graph("GET", f"/me/onlineMeetings/{m['id']}", megan["access_token"])
    assert status == 401


async def test_stolen_codes_and_refresh_tokens(env: Env) -> None:
    tenant = env.p.tenant_id
    tokens = await env.sign_in("heidi@contoso.example")
    refresh = {
        "grant_type": "refresh_token",
        "client_id": env.confidential_app,
        "refresh_token": tokens["refresh_token"],
    }
    status, body, _ = await env.form(f"/{tenant}/oauth2/v2.0/token", refresh)
    assert status == 401 and body["error"] == "invalid_client"  # a confidential client must authenticate
    status, body, _ = await env.form(f"/{tenant}/oauth2/v2.0/token", {**refresh, "client_id": env.public_app})
    assert status == 200 and body["refresh_token"] != tokens["refresh_token"]
    status, body, _ = await env.form(f"/{tenant}/oauth2/v2.0/token", {**refresh, "client_id": env.public_app})
    assert status == 400 and body["error"] == "invalid_grant"  # rotated: the old one is spent
    # a device code for a confidential client is refused; a made-up device code is invalid_grant
    scope = f"{env.url}/OnlineMeetings.Read"
    status, body, _ = await env.form(
        f"/{tenant}/oauth2/v2.0/devicecode", {"client_id": env.confidential_app, "scope": scope}
    )
    assert status == 400 and body["error"] == "invalid_client"
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": env.public_app}
    status, body, _ = await env.form(f"/{tenant}/oauth2/v2.0/token", {**grant, "device_code": "guess"})
    assert status == 400 and body["error"] == "invalid_grant"


async def test_authorize_refuses_open_redirects_and_missing_pkce_and_escapes_input(env: Env) -> None:
    tenant = env.p.tenant_id
    base = {
        "client_id": env.public_app,
        "response_type": "code",
        "scope": f"{env.url}/OnlineMeetings.Read",
        "redirect_uri": "https://app.example/cb",
        "state": "s1",
        "code_challenge": pkce_s256("v" * 43),
        "code_challenge_method": "S256",
    }

    async def get(params: dict[str, str]) -> aiohttp.ClientResponse:
        async with env.http.get(
            f"{env.url}/{tenant}/oauth2/v2.0/authorize?{urlencode(params)}", allow_redirects=False
        ) as r:
            await r.read()
            return r

    for evil in ("https://evil.example/cb", "https://app.example/cb/../../evil", "https://app.example.evil/cb"):
        resp = await get({**base, "redirect_uri": evil})
        assert resp.status == 400 and "location" not in resp.headers
    resp = await get({**base, "client_id": env.p["alice"].app_id})  # an app with no redirect URIs
    assert resp.status == 400 and "location" not in resp.headers
    resp = await get({k: v for k, v in base.items() if k != "code_challenge"})
    assert resp.status == 302 and resp.headers["location"].startswith("https://app.example/cb?error=invalid_request")
    resp = await get({**base, "code_challenge_method": "plain"})
    assert resp.status == 302 and "error=invalid_request" in resp.headers["location"]
    async with env.http.get(
        f"{env.url}/{tenant}/oauth2/v2.0/authorize?{urlencode({**base, 'login_hint': '<script>x</script>'})}"
    ) as page:
        text = await page.text()
        assert page.status == 200 and "<script>" not in text and "&lt;script&gt;" in text
        assert page.headers["x-frame-options"] == "DENY" and "SameSite=Strict" in page.headers["set-cookie"]
    # a code redeemed with the wrong verifier is refused, and spent
    cookie = page.headers["set-cookie"].split(";")[0]
    fields = dict(re.findall(r"name='(\w+)' value='([^']*)'", text))
    form = {"txn": fields["txn"], "csrf": fields["csrf"], "username": "heidi@contoso.example", "password": PASSWORD}
    status, _, headers = await env.form(f"/{tenant}/oauth2/v2.0/authorize", form, headers={"Cookie": cookie})
    assert status == 302
    code = re.search(r"code=([^&]+)", headers["location"])
    assert code is not None and "state=s1" in headers["location"]
    redeem = {
        "grant_type": "authorization_code",
        "client_id": env.public_app,
        "code": code[1],
        "redirect_uri": "https://app.example/cb",
        "code_verifier": "w" * 43,
    }
    status, body, _ = await env.form(f"/{tenant}/oauth2/v2.0/token", redeem)
    assert status == 400 and body["error"] == "invalid_grant"
    status, body, _ = await env.form(f"/{tenant}/oauth2/v2.0/token", {**redeem, "code_verifier": "v" * 43})
    assert status == 400 and body["error"] == "invalid_grant"


async def test_device_codes_cannot_be_guessed(env: Env) -> None:
    statuses = [(await env.device_login("BCDFGHJKL", "heidi@contoso.example", PASSWORD))[0] for _ in range(6)]
    assert statuses == [400] * 6
    tenant = env.p.tenant_id
    scope = f"{env.url}/OnlineMeetings.Read"
    status, flow, _ = await env.form(f"/{tenant}/oauth2/v2.0/devicecode", {"client_id": env.public_app, "scope": scope})
    assert status == 200
    status, text, _ = await env.device_login(flow["user_code"], "heidi@contoso.example", PASSWORD)
    assert status == 400 and "too many attempts" in text  # this address is waiting now, even with the right code


async def test_one_address_cannot_flush_the_pending_sign_ins(env: Env) -> None:
    statuses = []
    for _ in range(40):
        async with env.http.get(f"{env.url}/devicelogin") as page:
            statuses.append(page.status)
            retry = page.headers.get("retry-after")
    assert statuses[0] == 200 and statuses[-1] == 429 and retry is not None and int(retry) >= 1
    tenant = env.p.tenant_id
    data = {"client_id": env.public_app, "scope": f"{env.url}/OnlineMeetings.Read"}
    status, body, headers = await env.form(f"/{tenant}/oauth2/v2.0/devicecode", data)
    assert status == 429 and body["error"] == "temporarily_unavailable" and "retry-after" in headers
