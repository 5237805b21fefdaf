"""Microsoft's MSAL `PublicClientApplication` signs a directory user in against a node serving HTTPS (device code,
and the authorization-code flow with PKCE, the sign-in form posted by a test client as a browser would), the
user creates a meeting with /me/onlineMeetings, and the refresh token gets a new access token."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests

from opencomms.auth.devcert import make_dev_cert
from opencomms.config import NodeConfig, SignInConfig, SipConfig
from opencomms.server import Node
from opencomms.testing import running_node

PASSWORD = "correct horse battery"


@dataclass
class Env:
    node: Node
    ca: str
    client_id: str
    upn: str

    def msal_app(self) -> msal.PublicClientApplication:
        return msal.PublicClientApplication(
            self.client_id,
            authority=f"{self.node.public_url}/contoso.example",
            instance_discovery=False,
            verify=self.ca,
        )

    @property
    def scopes(self) -> list[str]:
        return [f"{self.node.public_url}/OnlineMeetings.ReadWrite"]


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    paths = make_dev_cert(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(paths.ca_cert))  # as the README says: trust the dev CA
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cfg = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        tls_cert=str(paths.cert),
        tls_key=str(paths.key),
        sip=SipConfig(port=0),
        signin=SignInConfig(device_poll_interval=1),
    )
    async with running_node(cfg) as node:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        user = node.directory.create_user(tenant.id, "Heidi Steen", upn="heidi@contoso.example")
        node.directory.set_password(user.id, PASSWORD)
        app, _ = node.directory.create_app(tenant.id, "Meeting CLI")
        from opencomms.directory import AppChange

        node.directory.edit_app(app.id, AppChange(redirect_uris=("http://localhost/callback",), public_client=True))
        yield Env(node, str(paths.ca_cert), app.id, "heidi@contoso.example")


def _form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r"<input type='hidden' name='(\w+)' value='([^']*)'>", html))


def _create_meeting(env: Env, token: str) -> requests.Response:
    return requests.post(
        f"{env.node.public_url}/v1.0/me/onlineMeetings",
        json={"subject": "Signed-in user's meeting"},
        headers={"Authorization": f"Bearer {token}"},
        verify=env.ca,
        timeout=10,
    )


def _device_login(env: Env, user_code: str, password: str) -> requests.Response:
    """What the user does in a browser: open /devicelogin, enter the code, sign in."""
    with requests.Session() as http:
        page = http.get(f"{env.node.public_url}/devicelogin", verify=env.ca, timeout=10)
        assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
        cookie = page.headers["set-cookie"].split(";")[0]
        form = {**_form_fields(page.text), "user_code": user_code, "username": env.upn, "password": password}
        return http.post(
            f"{env.node.public_url}/devicelogin", data=form, headers={"Cookie": cookie}, verify=env.ca, timeout=10
        )


async def test_device_code_flow_then_me_meeting_and_refresh(env: Env) -> None:
    def run() -> dict[str, Any]:
        app = env.msal_app()
        flow = app.initiate_device_flow(scopes=env.scopes)
        assert flow["verification_uri"] == f"{env.node.public_url}/devicelogin", flow
        assert flow["user_code"] in flow["message"]
        assert _device_login(env, flow["user_code"], "wrong password").status_code == 400
        user = threading.Timer(1.5, lambda: _device_login(env, flow["user_code"], PASSWORD))
        user.start()
        started = time.monotonic()
        result: dict[str, Any] = app.acquire_token_by_device_flow(flow)
        user.join()
        assert "access_token" in result, result
        assert time.monotonic() - started < 10
        meeting = _create_meeting(env, result["access_token"])
        assert meeting.status_code == 201, meeting.text
        body = meeting.json()
        assert body["participants"]["organizer"]["upn"] == env.upn
        # the refresh token gets a fresh access token that works too
        account = app.get_accounts()[0]
        assert account["username"] == env.upn
        again = app.acquire_token_silent(env.scopes, account=account, force_refresh=True)
        assert again and "access_token" in again and again["access_token"] != result["access_token"], again
        got = requests.get(
            f"{env.node.public_url}/v1.0/me/onlineMeetings/{body['id']}",
            headers={"Authorization": f"Bearer {again['access_token']}"},
            verify=env.ca,
            timeout=10,
        )
        assert got.status_code == 200 and got.json()["id"] == body["id"]
        # the used refresh token is spent
        spent = app.acquire_token_by_refresh_token(result["refresh_token"], env.scopes)
        assert spent.get("error") == "invalid_grant", spent
        app.http_client.close()
        return result

    result = await asyncio.to_thread(run)
    claims = env.node.tokens.validate_access_token(result["access_token"], env.node.clock())
    assert claims.user_id is not None and "OnlineMeetings.ReadWrite" in claims.scopes and not claims.roles
    # a delegated token cannot drive the application-only calling API
    status = await asyncio.to_thread(
        lambda: (
            requests.get(
                f"{env.node.public_url}/v1.0/communications/calls/3f2504e0-4f89-41d3-9a0c-0305e82c3301",
                headers={"Authorization": f"Bearer {result['access_token']}"},
                verify=env.ca,
                timeout=10,
            ).status_code
        )
    )
    assert status == 403


async def test_authorization_code_flow_with_pkce(env: Env) -> None:
    def run() -> None:
        app = env.msal_app()
        flow = app.initiate_auth_code_flow(env.scopes, redirect_uri="http://localhost:8765/callback")
        with requests.Session() as http:
            page = http.get(flow["auth_uri"], verify=env.ca, timeout=10)
            assert page.status_code == 200 and "Meeting CLI" in page.text
            cookie = page.headers["set-cookie"].split(";")[0]
            fields = _form_fields(page.text)
            post = {**fields, "username": env.upn, "password": PASSWORD}
            # without the cookie (a cross-site post) the form is refused
            forged = requests.post(flow["auth_uri"], data=post, verify=env.ca, timeout=10, allow_redirects=False)
            assert forged.status_code == 400
            done = http.post(
                flow["auth_uri"],
                data=post,
                headers={"Cookie": cookie},
                verify=env.ca,
                timeout=10,
                allow_redirects=False,
            )
            assert done.status_code == 302, done.text
            location = done.headers["location"]
            assert location.startswith("http://localhost:8765/callback?")
            response = dict(parse_qsl(urlsplit(location).query))
            # the code is single-use: a second post of the same form finds it gone
            again = http.post(flow["auth_uri"], data=post, headers={"Cookie": cookie}, verify=env.ca, timeout=10)
            assert again.status_code == 400
        result = app.acquire_token_by_auth_code_flow(flow, response)
        assert "access_token" in result, result
        assert result["id_token_claims"]["preferred_username"] == env.upn
        assert _create_meeting(env, result["access_token"]).status_code == 201
        replay = app.acquire_token_by_auth_code_flow({**flow}, response)
        assert replay.get("error") == "invalid_grant", replay
        app.http_client.close()

    await asyncio.to_thread(run)


async def test_sign_in_form_limits_failed_attempts(env: Env) -> None:
    def run() -> list[int]:
        app = env.msal_app()
        flow = app.initiate_auth_code_flow(env.scopes, redirect_uri="http://localhost/callback")
        statuses = []
        with requests.Session() as http:
            page = http.get(flow["auth_uri"], verify=env.ca, timeout=10)
            cookie = page.headers["set-cookie"].split(";")[0]
            fields = _form_fields(page.text)
            for password in ["bad"] * 6 + [PASSWORD]:
                reply = http.post(
                    flow["auth_uri"],
                    data={**fields, "username": env.upn, "password": password},
                    headers={"Cookie": cookie},
                    verify=env.ca,
                    timeout=10,
                    allow_redirects=False,
                )
                statuses.append(reply.status_code)
                if password == PASSWORD:
                    assert "Too many failed sign-ins" in reply.text
        app.http_client.close()
        return statuses

    assert await asyncio.to_thread(run) == [400] * 7  # even the right password waits once the limit is hit
