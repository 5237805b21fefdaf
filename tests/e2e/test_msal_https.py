"""Microsoft's MSAL library gets a token from a node serving HTTPS with an `opencomms dev-cert` certificate,
and that token works against the Graph API."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import msal
import pytest

from opencomms.auth.devcert import make_dev_cert
from opencomms.config import NodeConfig, SipConfig
from opencomms.testing import GraphClient, running_node


async def test_msal_acquires_token_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_dev_cert(tmp_path / "tls")
    # As the README says: trust the dev CA. (requests lets this variable override a session's `verify`.)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(paths.ca_cert))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cfg = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        tls_cert=str(paths.cert),
        tls_key=str(paths.key),
        sip=SipConfig(port=0),
    )
    async with running_node(cfg) as node:
        assert node.public_url.startswith("https://localhost:")
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        app, secret = node.directory.create_app(tenant.id, "MSAL bot", permissions=["Calls.Initiate.All"])

        def acquire() -> dict[str, object]:
            client = msal.ConfidentialClientApplication(
                app.id,
                client_credential=secret,
                authority=f"{node.public_url}/contoso.example",
                instance_discovery=False,
                verify=str(paths.ca_cert),
            )
            try:
                return client.acquire_token_for_client(scopes=[f"{node.public_url}/.default"])  # type: ignore[no-any-return]
            finally:
                client.http_client.close()  # no idle TLS connection left for the node to wait on

        result = await asyncio.to_thread(acquire)
        assert "access_token" in result, result
        claims = node.tokens.validate_access_token(str(result["access_token"]), node.clock())
        assert claims.app_id == app.id and claims.tenant_id == tenant.id
        assert "Calls.Initiate.All" in claims.roles

        # the token works on the API, over TLS verified against the dev CA
        ctx = ssl.create_default_context(cafile=str(paths.ca_cert))
        async with GraphClient(node.public_url, tenant.id, app.id, secret, ssl=ctx) as client:
            client.token = str(result["access_token"])
            status, body, _ = await client.request("GET", "/communications/calls/00000000-0000-0000-0000-000000000000")
            assert status == 404 and body["error"]["code"] == "itemNotFound"

        # a wrong secret is refused the way Entra ID refuses it
        def refused() -> dict[str, object]:
            client = msal.ConfidentialClientApplication(
                app.id,
                client_credential="wrong",
                authority=f"{node.public_url}/{tenant.id}",
                instance_discovery=False,
                verify=str(paths.ca_cert),
            )
            try:
                return client.acquire_token_for_client(scopes=[f"{node.public_url}/.default"])  # type: ignore[no-any-return]
            finally:
                client.http_client.close()

        bad = await asyncio.to_thread(refused)
        assert bad.get("error") == "invalid_client"
