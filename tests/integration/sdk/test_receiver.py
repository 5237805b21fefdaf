"""The notification receiver served on loopback: real signed callbacks accepted; forged, expired, foreign ones refused.

Test tokens are signed with the node's own key (to isolate one wrong claim) or with a second key we generate.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from opencomms.sdk import application_target
from opencomms.sdk.notifications import Notification
from tests.integration.sdk.conftest import SdkBot, SdkEnv

ISSUER = "https://api.botframework.com"


def _body(call_id: str, state: str = "established") -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [
            {
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": "updated",
                "resourceUrl": f"/communications/calls/{call_id}",
                "resourceData": {"@odata.type": "#microsoft.graph.call", "state": state},
            }
        ],
    }


def _claims(env: SdkEnv, bot: SdkBot, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": bot.app_id, "tid": env.tenant_id, "iat": now, "nbf": now, "exp": now + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def node_token(env: SdkEnv, claims: dict[str, Any]) -> str:
    key = env.node.keyring.active
    return jwt.encode(claims, key.private_key(), algorithm="RS256", headers={"kid": key.kid})


def foreign_token(claims: dict[str, Any], kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def post(
    http: aiohttp.ClientSession, bot: SdkBot, token: str | None, body: Any, delivery: str | None = None
) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if delivery:
        headers["opencomms-delivery-id"] = delivery
    async with http.post(bot.url, data=json.dumps(body), headers=headers) as resp:
        return resp.status


async def test_bad_tokens_are_refused_and_never_reach_the_handler(env: SdkEnv) -> None:
    bot = await env.bot("bob")
    call_id = str(uuid.uuid4())
    body = _body(call_id)
    active_kid = env.node.keyring.active.kid
    async with aiohttp.ClientSession() as http:
        assert await post(http, bot, None, body) == 401
        assert await post(http, bot, "not-a-jwt", body) == 401
        # signed by another key under the node's key id: bad signature
        assert await post(http, bot, foreign_token(_claims(env, bot), active_kid), body) == 401
        # a valid signature, but expired / for another app / from another issuer / without tenant
        assert await post(http, bot, node_token(env, _claims(env, bot, exp=int(time.time()) - 3600)), body) == 401
        assert await post(http, bot, node_token(env, _claims(env, bot, aud=str(uuid.uuid4()))), body) == 403
        assert await post(http, bot, node_token(env, _claims(env, bot, iss="https://evil.example")), body) == 401
        assert await post(http, bot, node_token(env, _claims(env, bot, tid=None)), body) == 401
        # an unknown key id: the JWKS is fetched again (once; rate-limited), the key is still unknown
        fetches = bot.receiver.jwks.fetches
        assert await post(http, bot, foreign_token(_claims(env, bot), "unknown-kid-1"), body) == 401
        assert await post(http, bot, foreign_token(_claims(env, bot), "unknown-kid-2"), body) == 401
        assert bot.receiver.jwks.fetches <= fetches + 1
        # a good token: accepted (and a GET is not a notification)
        assert await post(http, bot, node_token(env, _claims(env, bot)), body, str(uuid.uuid4())) == 202
        async with http.get(bot.url) as resp:
            assert resp.status == 405
        assert await post(http, bot, node_token(env, _claims(env, bot)), {"value": "x"}) == 400
    await bot.receiver.join()
    assert [n.call_id for n in bot.inbox.items] == [call_id]
    assert bot.receiver.refused == 11 and bot.receiver.accepted == 1


async def test_duplicates_dropped_and_order_kept_per_call(env: SdkEnv) -> None:
    bot = await env.bot("bob")
    handled: list[tuple[str, str]] = []

    async def slow(note: Notification) -> None:
        if note.state == "establishing":
            await asyncio.sleep(0.05)  # a slow handler must not let later notifications of the call overtake
        handled.append((note.call_id, note.state or ""))

    bot.receiver.handler = slow
    token = node_token(env, _claims(env, bot))
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    async with aiohttp.ClientSession() as http:
        first = str(uuid.uuid4())
        assert await post(http, bot, token, _body(a, "establishing"), first) == 202
        assert await post(http, bot, token, _body(a, "establishing"), first) == 202  # the node's retry: dropped
        assert await post(http, bot, token, _body(a, "established"), str(uuid.uuid4())) == 202
        assert await post(http, bot, token, _body(b, "established"), str(uuid.uuid4())) == 202
    await bot.receiver.join()
    assert [s for c, s in handled if c == a] == ["establishing", "established"]
    assert handled[0] == (b, "established")  # other calls are not held up by a slow one
    assert bot.receiver.duplicates == 1


async def test_key_rotation_picked_up_from_the_jwks(env: SdkEnv) -> None:
    alice, bob = await env.bot("alice"), await env.bot("bob")
    await alice.client.create_call(targets=[application_target(bob.app_id)])
    await bob.inbox.wait_for(lambda n: n.is_incoming_call)
    fetches = bob.receiver.jwks.fetches
    env.node.keyring.rotate(time.time())
    await alice.client.create_call(targets=[application_target(bob.app_id)])
    await bob.inbox.wait_for(lambda n: n.is_incoming_call and n is not bob.inbox.items[0])
    assert bob.receiver.jwks.fetches == fetches + 1


async def test_ack_after_handling_reports_handler_failures_for_a_retry(env: SdkEnv) -> None:
    bot = await env.bot("bob", ack_after_handling=True, max_body=4096)
    attempts: list[str] = []

    async def flaky(note: Notification) -> None:
        attempts.append(note.call_id)
        if len(attempts) == 1:
            raise RuntimeError("database down")

    bot.receiver.handler = flaky
    token = node_token(env, _claims(env, bot))
    async with aiohttp.ClientSession() as http:
        body = _body("c1")
        assert await post(http, bot, token, body, "d1") == 503  # the node retries it later
        assert await post(http, bot, token, body, "d1") == 202
        assert await post(http, bot, token, body, "d1") == 202  # a duplicate: not handled again
        big = {"value": [], "pad": "x" * 5000}
        assert await post(http, bot, token, big, "d2") == 413
    assert attempts == ["c1", "c1"] and bot.receiver.duplicates == 1
