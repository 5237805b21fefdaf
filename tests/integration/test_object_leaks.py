"""A node that stops leaves no object behind in the process that ran it: neither the node, nor its engine thread,
nor its media engine (numpy buffers sized for every leg it could hold), once a phone call has been through it.
A process that starts nodes one after another (this suite, an app that embeds one) would otherwise grow by each."""

from __future__ import annotations

import gc
import weakref

from opencomms.testing import TestPlatform
from tests.integration.conftest import node_config


async def _run_a_node_with_a_call() -> list[weakref.ref[object]]:
    async with TestPlatform(node_config()) as platform:
        bot = await platform.recording_bot("leaks")
        async with platform.caller() as caller:
            call = await caller.dial(bot.number)
            incoming = await bot.webhook.incoming(timeout=10)
            assert await bot.client.answer(incoming.call_id) == 202
            await call.wait_answered()
            await bot.webhook.wait_state(incoming.call_id, "established")
            await call.hang_up()
            await bot.webhook.wait_state(incoming.call_id, "terminated")
        node = platform.node
        engine = node.engine
        return [weakref.ref(node), weakref.ref(engine), weakref.ref(getattr(engine, "engine", engine))]


async def test_a_stopped_node_leaves_no_node_engine_or_frozen_objects_behind() -> None:
    frozen, thresholds = gc.get_freeze_count(), gc.get_threshold()
    refs = await _run_a_node_with_a_call()
    gc.collect()
    assert gc.get_freeze_count() <= frozen  # an embedded node freezes nothing (`opencomms serve` does, once)
    assert gc.get_threshold() == thresholds  # and the process's collector settings are its own again
    assert [r() for r in refs] == [None, None, None]
