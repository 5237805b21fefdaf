"""Nothing a call leaves behind: after many SIP calls have ended, the node's per-call state is back to its baseline.

Calls answered and hung up at once by the phone (its BYE racing the start of the call's RTP), and calls the bot
hangs up, through a real node, a real bot webhook and a virtual phone on loopback. Per-call state must go with the
call, or a long-running node slows down and grows with every call it has ever handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from opencomms.server import Node
from opencomms.store.conversations import stored_conversations
from opencomms.testing import TestBot, TestPlatform, VirtualCaller

CALLS = 40


async def _state(node: Node) -> dict[str, int]:
    sip, media = node.sip, node.media
    stored = await stored_conversations(node.conversations)
    assert sip is not None
    return {
        "calls": len(node.calls.calls),
        "conversations": node.calls.active_conversations,
        "gateway calls": len(sip._by_key),
        "gateway dialogs": len(sip._by_dialog),
        "gateway tasks": len(sip._tasks),
        "gateway dialling": len(sip._dialling),
        "rtp streams": sip.bank.streams,
        "rtp ports": sip.ports.in_use,
        "sip dialogs": len(sip.endpoint.dialogs),
        "media calls": len(media._media),
        "media operations": len(media._ops),
        "media legs": media._legs_in_engine,
        "dispatcher lanes": len(node.dispatcher._lanes),
        "stored calls": sum(len(doc["legs"]) for doc in stored),
        "stored conversations": len(stored),
        "stored operations": sum(1 for _ in node.store.scan("operation")),
    }


async def _settled(node: Node, baseline: dict[str, int], timeout: float = 10.0) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (state := await _state(node)) != baseline and loop.time() < deadline:  # noqa: ASYNC110 - polling node state
        await asyncio.sleep(0.05)
    return state


async def _one_call(bot: TestBot, caller: VirtualCaller, index: int, bot_hangs_up: bool) -> None:
    call = await caller.dial(bot.number)
    incoming = await bot.webhook.incoming(timeout=10, index=index)
    assert await bot.client.answer(incoming.call_id) == 202
    await call.wait_answered()
    if bot_hangs_up:
        await bot.webhook.wait_state(incoming.call_id, "established")
        assert await bot.client.hang_up(incoming.call_id) == 204
        await call.wait_ended()
    else:
        await call.hang_up()  # at once: the BYE races the start of the call's media


async def test_ended_calls_leave_no_state_behind() -> None:
    async with TestPlatform() as platform:
        bot = await platform.recording_bot("reception")
        node = platform.node
        async with platform.caller(number="+15550123") as caller:
            await _one_call(bot, caller, 0, bot_hangs_up=True)
            baseline = await _settled(
                node, await _state(node) | {"calls": 0, "conversations": 0, "rtp streams": 0, "gateway tasks": 0}
            )
            for i in range(1, CALLS + 1):
                await _one_call(bot, caller, i, bot_hangs_up=i % 4 == 0)
            assert await _settled(node, baseline) == baseline
            assert baseline["rtp streams"] == 0 and baseline["rtp ports"] == 0 and baseline["gateway calls"] == 0
            # the answer and keepAlive deadlines of ended calls do not pile up in the timer heap
            assert node.calls.armed_timers <= 64
            # SIP transactions are kept for their timers (up to 32 s), then dropped
            endpoint: Any = node.sip.endpoint if node.sip is not None else None
            assert len(endpoint._server) > 0
            later: Callable[[], float] = lambda: endpoint.loop.time() + 64.0  # noqa: E731
            endpoint._run(endpoint.layer.on_timer(later()))
            assert (len(endpoint._server), len(endpoint._client), len(endpoint.layer)) == (0, 0, 0)
