"""The stateful calling API bot to bot through a real node: events, awaited actions, tones, transfer, hang-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opencomms.sdk import (
    ClientCredentials,
    CommsClient,
    Operation,
    ToneInfo,
    application_target,
    jwks_url_for,
    text_prompt,
)
from opencomms.sdk.calling import Call, CallEnded, CommunicationsClient, OperationFailed
from opencomms.sdk.serve import serve_receiver
from tests.integration.sdk.conftest import SdkEnv


async def comms_for(env: SdkEnv, name: str) -> CommunicationsClient:
    """A registered app driven by a CommunicationsClient whose receiver is served on loopback."""
    app_id, secret = env.register(name)
    client = await env.stack.enter_async_context(
        CommsClient(env.node.public_url, ClientCredentials(env.node.public_url, env.tenant_id, app_id, secret))
    )
    comms = CommunicationsClient(
        client, callback_uri="", app_id=app_id, jwks_url=jwks_url_for(env.node.public_url), keep_alive_interval=0.3
    )
    base = await env.stack.enter_async_context(serve_receiver(comms.receiver))
    comms.callback_uri = f"{base}/{name}/calls"
    env.set_callback(app_id, comms.callback_uri)
    env.stack.push_async_callback(comms.close)
    return comms


async def test_ivr_style_conversation(env: SdkEnv) -> None:
    alice, bob = await comms_for(env, "alice"), await comms_for(env, "bob")
    keys_heard: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    events: list[str] = []
    subscribed = asyncio.Event()

    @bob.on_incoming_call
    async def answer(call: Call) -> None:
        await call.answer()
        assert call.state == "established"
        await call.subscribe_to_tone()
        subscribed.set()
        op = await call.play_prompt([text_prompt("press two digits")])
        assert op.status == "completed" and op.result_info is not None and op.result_info.code == 200
        keys_heard.set_result(await call.read_keys(2, timeout=10))

    @bob.on_tone_received
    def tone(call: Call, info: ToneInfo) -> None:
        events.append(f"tone:{info.key}")

    @bob.on_call_ended
    def ended(call: Call) -> None:
        events.append("ended")

    call = await alice.create_call([application_target(bob.app_id)])
    assert call.id in alice.calls
    await call.wait_state("established")
    await asyncio.wait_for(subscribed.wait(), 5)
    sent = await call.send_dtmf_tones("42")
    assert sent.completion_reason == "completedSuccessfully"
    assert await asyncio.wait_for(keys_heard, 10) == "42"

    bob_call = next(iter(bob.calls.values()))
    assert {p.app_id for p in await bob_call.list_participants()} == {alice.app_id, bob.app_id}
    deadline = env.node.calls.calls[bob_call.id].keepalive_deadline
    await asyncio.sleep(0.4)  # keepAlive goes out on its own (interval shortened for the test)
    assert (env.node.calls.calls[bob_call.id].keepalive_deadline or 0) > (deadline or 0)
    with pytest.raises(OperationFailed) as failed:
        await bob_call.play_prompt(
            [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "http://127.0.0.2:1/nothing.wav"}}]
        )
    assert failed.value.result_info is not None and failed.value.result_info.code == 403

    result = await bob_call.hang_up()
    assert result is not None and (result.code, result.subcode) == (200, 5001)
    await call.wait_terminated()
    assert call.result_info is not None and (call.result_info.code, call.result_info.subcode) == (200, 4097)
    with pytest.raises(CallEnded):
        await call.next_tone(timeout=1)
    await bob.join()
    assert events == ["tone:4", "tone:2", "ended"]
    assert not alice.calls and not bob.calls


async def test_reject_redirect_and_transfer(env: SdkEnv) -> None:
    alice, bob, carol = [await comms_for(env, n) for n in ("alice", "bob", "carol")]
    handled: dict[str, str] = {}
    bob_answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    @bob.on_incoming_call
    async def bob_incoming(call: Call) -> None:
        if not handled:
            handled["bob"] = "reject"
            await call.reject("busy")
        elif len(handled) == 1:
            handled["bob2"] = "redirect"
            await call.redirect([application_target(carol.app_id)])
        else:
            await call.answer()
            bob_answered.set_result(call)

    carol_answered = asyncio.Event()

    @carol.on_incoming_call
    async def carol_incoming(call: Call) -> None:
        await call.answer()
        carol_answered.set()

    first = await alice.create_call([application_target(bob.app_id)])
    await first.wait_terminated()
    assert first.result_info is not None and first.result_info.code == 486  # busy

    second = await alice.create_call([application_target(bob.app_id)])
    await second.wait_state("established")  # answered by carol after bob's redirect
    await asyncio.wait_for(carol_answered.wait(), 5)
    await second.hang_up()

    third = await alice.create_call([application_target(bob.app_id)])
    await third.wait_state("established")
    bob_call = await asyncio.wait_for(bob_answered, 5)
    with pytest.raises(OperationFailed):
        await bob_call.transfer(application_target("00000000-0000-0000-0000-000000000000"))
    assert bob_call.state == "established"
    carol_answered.clear()
    await bob_call.transfer(application_target(carol.app_id))
    assert bob_call.terminated.is_set()
    await asyncio.wait_for(carol_answered.wait(), 5)
    await third.hang_up()


async def test_record_response_download_and_group_roster_events(env: SdkEnv) -> None:
    alice, bob, carol = [await comms_for(env, n) for n in ("alice", "bob", "carol")]
    rosters: list[int] = []
    finished_ops: list[str] = []

    @bob.on_incoming_call
    @carol.on_incoming_call
    async def pick_up(call: Call) -> None:
        await call.answer()

    @alice.on_participants_updated
    def roster(call: Call, participants: list[Any]) -> None:
        rosters.append(len(participants))

    @alice.on_operation_completed
    def op_done(call: Call, op: Operation) -> None:
        finished_ops.append(op.type)

    call = await alice.create_call([application_target(bob.app_id), application_target(carol.app_id)])
    await call.wait_state("established")
    for _ in range(100):
        if len(call.participants) == 3:
            break
        await asyncio.sleep(0.02)
    assert {p.app_id for p in call.participants} == {alice.app_id, bob.app_id, carol.app_id}

    bob_call = next(iter(bob.calls.values()))
    await bob_call.wait_state("established")
    recording = asyncio.create_task(alice_records(call))  # alice records what the others say
    await asyncio.sleep(0.1)
    await bob_call.play_prompt([text_prompt("hello bob")])
    op = await recording
    assert op.type == "recordOperation" and op.recording_location and op.completion_reason
    wav = await call.download_recording(op)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 16_000  # more than half a second
    await call.hang_up()
    await alice.join()
    assert 3 in rosters and "recordOperation" in finished_ops


async def alice_records(call: Call) -> Operation:
    return await call.record_response(
        play_beep=False, initial_silence_timeout=3, max_silence_timeout=1, max_record_duration=5
    )
