"""The stateless core against a real node: REST client (auth, ids, retries, errors) and the notification receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import aiohttp
import pytest

from opencomms.config import ThrottleSettings
from opencomms.sdk import (
    ClientCredentials,
    CommsClient,
    GraphError,
    ResourceKind,
    application_target,
    text_prompt,
)
from opencomms.sdk.errors import AuthenticationError
from opencomms.testing import running_node
from tests.integration.conftest import node_config
from tests.integration.sdk.conftest import SdkEnv


async def test_bot_to_bot_call_through_the_sdk(env: SdkEnv) -> None:
    alice, bob = await env.bot("alice"), await env.bot("bob")
    call = await alice.client.create_call(callback_uri=alice.url, targets=[application_target(bob.app_id)])
    assert call.state == "establishing" and call.direction == "outgoing" and call.id

    ring = await bob.inbox.wait_for(lambda n: n.is_incoming_call)
    assert ring.kind is ResourceKind.CALL and ring.tenant_id == env.tenant_id and ring.delivery_id
    assert ring.call is not None and ring.call.source is not None
    assert ring.call.source["identity"]["application"]["id"] == alice.app_id
    await bob.client.answer(ring.call_id)
    await alice.inbox.wait_for(lambda n: n.call_id == call.id and n.state == "established")
    await bob.inbox.wait_for(lambda n: n.call_id == ring.call_id and n.state == "established")

    assert (await alice.client.get_call(call.id)).state == "established"
    parts = await alice.client.list_participants(call.id)
    assert {p.app_id for p in parts} == {alice.app_id, bob.app_id}
    assert all(p.source_ids for p in parts)
    assert (await alice.client.get_participant(call.id, parts[0].id)).id == parts[0].id

    # media: tones from alice reach bob (subscribed); a prompt's outcome arrives as an operation notification
    sub = await bob.client.subscribe_to_tone(ring.call_id)
    assert sub.type == "subscribeToToneOperation" and sub.status == "completed"
    sent = await alice.client.send_dtmf_tones(call.id, "4#", client_context="keys")
    assert sent.status == "running" and sent.client_context == "keys"
    tones = []
    for seq in (1, 2):
        note = await bob.inbox.wait_for(lambda n, s=seq: n.tone is not None and n.tone.sequence_id == s)
        assert note.tone is not None
        tones.append(note.tone.key)
    assert tones == ["4", "#"]
    done = await alice.inbox.wait_for(lambda n: n.kind is ResourceKind.OPERATION and n.change_type == "deleted")
    assert done.operation is not None and done.operation.id == sent.id and done.operation.status == "completed"
    assert (await alice.client.get_operation(call.id, sent.id)).status == "completed"

    op = await bob.client.play_prompt(ring.call_id, [text_prompt("hi")])
    assert op.type == "playPromptOperation" and op.status == "running"
    finished = await bob.inbox.wait_for(lambda n: n.operation is not None and n.operation.id == op.id, timeout=10)
    assert finished.operation_status == "completed" and finished.operation is not None
    assert finished.operation.result_info is not None and finished.operation.result_info.code == 200

    assert (await bob.client.mute(ring.call_id)).type == "muteParticipantOperation"
    assert (await bob.client.unmute(ring.call_id)).status == "completed"
    assert (await bob.client.cancel_media_processing(ring.call_id)).status == "completed"
    await bob.client.keep_alive(ring.call_id)

    await alice.client.delete_call(call.id)
    end = await bob.inbox.wait_for(lambda n: n.call_id == ring.call_id and n.state == "terminated")
    assert end.state == "terminated" and end.result_info is not None
    assert (end.result_info.code, end.result_info.subcode) == (200, 4097)
    # per-call order as sent by the node: the handler saw bob's call states in order
    states = [n.state for n in bob.inbox.items if n.call_id == ring.call_id and n.state and n.tone is None]
    assert states == ["incoming", "establishing", "established", "terminated"]
    assert alice.client.credentials.fetches == 1  # one token served every request


async def test_errors_are_typed_and_requests_carry_guid_ids(env: SdkEnv) -> None:
    alice = await env.bot("alice")
    with pytest.raises(GraphError) as info:
        await alice.client.get_call(str(uuid.uuid4()))
    assert info.value.status == 404 and info.value.code == "itemNotFound" and info.value.request_id
    uuid.UUID(info.value.client_request_id or "")  # echoed back by the node: a GUID

    with pytest.raises(GraphError) as info:
        await alice.client.create_call(targets=[{"identity": {}}])
    assert info.value.status == 400 and info.value.code == "invalidRequest" and "targets[0]" in info.value.message

    bad = ClientCredentials(env.node.public_url, env.tenant_id, alice.app_id, "wrong secret")
    async with CommsClient(env.node.public_url, bad) as client:
        with pytest.raises(AuthenticationError) as auth:
            await client.get_call(str(uuid.uuid4()))
    assert auth.value.status == 401 and auth.value.code == "invalid_client"

    seen: list[str] = []

    async def on_request(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.headers.get("client-request-id", ""))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = CommsClient(env.node.public_url, env.credentials(alice.app_id, alice.secret), session=session)
        for _ in range(2):
            with pytest.raises(GraphError):
                await client.get_call("nope")
    ids = [s for s in seen if s]
    assert len(ids) == 2 and len(set(ids)) == 2
    for item in ids:
        uuid.UUID(item)


async def test_throttled_requests_are_retried_after_retry_after() -> None:
    config = dataclasses.replace(node_config(), throttle=ThrottleSettings(rate=1.0, burst=2.0))
    async with running_node(config) as node:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        app, secret = node.directory.create_app(tenant.id, "Bot", permissions=["Calls.Initiate.All"])
        async with CommsClient(node.public_url, ClientCredentials(node.public_url, tenant.id, app.id, secret)) as c:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(3):  # the third is throttled (429, Retry-After: 1), then retried
                with pytest.raises(GraphError) as info:
                    await c.get_call("unknown")
                assert info.value.status == 404
            assert loop.time() - start >= 0.9
        async with CommsClient(
            node.public_url, ClientCredentials(node.public_url, tenant.id, app.id, secret), max_retries=0
        ) as c:
            with pytest.raises(GraphError) as info:
                for _ in range(3):
                    await c.get_call("unknown2")
            assert info.value.status == 429 and info.value.retry_after is not None
