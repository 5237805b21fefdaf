"""Signing keys rotate without downtime: tokens signed by the retired key keep working until they expire,
the JWKS publishes both keys meanwhile, and new tokens and callbacks use the new key."""

from __future__ import annotations

import aiohttp
import jwt

from opencomms.auth.keystore import save_keyring
from opencomms.testing.harness import app_target
from tests.integration.conftest import Platform


async def test_rotation_keeps_old_tokens_valid(platform: Platform) -> None:
    p = platform
    old_kid = p.node.keyring.active.kid
    old_token = p["alice"].client.token
    assert old_token is not None and jwt.get_unverified_header(old_token)["kid"] == old_kid

    new = p.node.keyring.rotate(p.node.clock())
    save_keyring(p.node.store, p.node.keyring)
    async with aiohttp.ClientSession() as s, s.get(f"{p.node.public_url}/common/discovery/v2.0/keys") as resp:
        kids = {k["kid"] for k in (await resp.json())["keys"]}
    assert kids == {old_kid, new.kid}

    # the old token still works; a new token is signed by the new key
    status, call = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
    assert status == 201
    await p["bob"].client.authenticate()
    assert jwt.get_unverified_header(p["bob"].client.token or "")["kid"] == new.kid
    incoming = await p["bob"].bot.incoming()
    assert await p["bob"].client.answer(incoming.call_id) == 202
    established = await p["alice"].bot.wait_state(call["id"], "established")
    assert established.claims["aud"] == p["alice"].app_id

    # once every token the old key signed has expired, it is pruned and its tokens are refused
    later = p.node.clock() + p.node.tokens.max_token_lifetime + 1
    assert [k.kid for k in p.node.keyring.prune(later, p.node.tokens.max_token_lifetime)] == [old_kid]
    status, body, _ = await p["alice"].client.request("GET", f"/communications/calls/{call['id']}")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
