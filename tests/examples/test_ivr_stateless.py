"""The stateless IVR: two worker processes sharing a real redis-server behind the example's round-robin proxy.

A phone navigates the menu while one worker is killed with SIGKILL: the other worker fires the key timer the
call was waiting on, takes every following notification (the proxy fails over), and the call ends normally.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from examples.ivr.cluster import run_cluster
from examples.ivr.menu import load_menu
from examples.ivr.proxy import make_proxy
from examples.ivr.stateless import run_worker

from opencomms.testing.platform import TestPlatform
from opencomms.testing.redis import redis_server
from tests.examples.conftest import ivr_menu, set_webhook, settings_for

MENU = ivr_menu(key_timeout=1.5)


async def finished(url: str, prefix: str, timeout: float = 5.0) -> tuple[list[Any], list[Any]]:
    """The recorded call outcomes and the call-state keys left, once an outcome is recorded (or `timeout` passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aioredis.Redis.from_url(url) as r:
        while True:
            results = [json.loads(raw) for raw in await r.lrange(f"{prefix}:results", 0, -1)]
            leftovers = await r.keys(f"{prefix}:call:*")
            if (results and not leftovers) or loop.time() > deadline:
                return results, leftovers
            await asyncio.sleep(0.05)


async def test_killing_a_worker_mid_call_does_not_break_the_call(platform: TestPlatform, tmp_path: Path) -> None:
    menu = tmp_path / "menu.yaml"
    menu.write_text(MENU)
    creds = await platform.register_bot("ivr")
    async with (
        redis_server() as url,
        run_cluster(settings_for(platform, creds), url, config=menu, workers=2, prefix="t") as cluster,
    ):
        set_webhook(platform, creds, f"{cluster.url}/api/calls")
        async with platform.caller() as phone:
            call = await phone.dial(creds.number)
            await call.wait_answered()
            await call.wait_for_speech()  # "Main."
            await call.wait_for_silence(0.3)

            victim = cluster.workers[0]
            victim.send_signal(signal.SIGKILL)  # while the call waits for a key: its timer is in Redis
            await victim.wait()

            await call.wait_for_speech(timeout=8)  # "Nothing? Main.": the surviving worker fired the timer
            await call.wait_for_silence(0.3)
            await call.press("1")
            await call.wait_for_speech()  # "Sales."
            await call.wait_for_silence(0.3)
            await call.press("9")
            await call.wait_for_speech()  # "Main."
            await call.wait_for_silence(0.3)
            await call.press("#")
            await call.wait_ended(timeout=10)  # "Bye.", and the IVR hung up
            assert call.ended_by == "far end"

        dead, alive = cluster.proxy.upstreams
        assert dead.failures >= 1 and alive.failures == 0  # the proxy tried the dead worker and moved on
        # the worker records the outcome when the call's final notification reaches it, just after the phone's BYE
        results, leftovers = await finished(url, "t")
        assert [(x["outcome"], x["keys"], x["worker"]) for x in results] == [("hangup", "19#", "worker-2")]
        assert leftovers == []  # the call's state is gone once it ended


async def test_a_step_left_half_done_is_finished_by_the_next_delivery(platform: TestPlatform) -> None:
    """A worker fails after saving a step but before playing its prompt (as if killed there): the node sends
    the notification again, the next worker finds the unfinished journal, plays the prompt, and does not apply
    the key a second time."""
    creds = await platform.register_bot("ivr")
    config = load_menu(MENU, {})
    settings = settings_for(platform, creds)
    crashes: list[str] = []
    async with (
        redis_server() as url,
        run_worker(config, settings, url, prefix="j", name="a") as (url_a, a),
        run_worker(config, settings, url, prefix="j", name="b") as (url_b, b),
        make_proxy([url_a, url_b]).serve() as proxy_url,
    ):
        set_webhook(platform, creds, f"{proxy_url}/api/calls")
        armed = False
        for worker in (a, b):
            original = worker.client.play_prompt

            async def play(*args: Any, _original: Any = original, _name: str = worker.name, **kwargs: Any) -> Any:
                if armed and not crashes:
                    crashes.append(_name)
                    raise ConnectionResetError("worker died here")
                return await _original(*args, **kwargs)

            worker.client.play_prompt = play  # type: ignore[method-assign]
        async with platform.caller() as phone:
            call = await phone.dial(creds.number)
            await call.wait_answered()
            await call.wait_for_speech()  # "Main."
            await call.wait_for_silence(0.3)
            armed = True
            await call.press("1")
            await call.wait_for_speech(timeout=8)  # "Sales.", played by the retry
            await call.wait_for_silence(0.3)
            await call.press("9")  # the menu goes on: "back" works from sales (the key 1 was applied once)
            await call.wait_for_speech()
            await call.wait_for_silence(0.3)
            await call.press("#")
            await call.wait_ended(timeout=10)
        assert len(crashes) == 1
        results, _ = await finished(url, "j")
        assert [(x["outcome"], x["keys"]) for x in results] == [("hangup", "19#")]
