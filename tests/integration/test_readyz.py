"""`GET /readyz` on a running node: 200 while the store answers, the media engine ticks and SIP listens; 503 naming
the failing check as soon as one of them does not. Unauthenticated, like /healthz."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from opencomms.readiness import TICK_AGE_LIMIT
from opencomms.server import Node
from opencomms.store import StoreUnavailable
from opencomms.testing import running_node


async def _readyz(node: Node) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{node.public_url}/readyz") as resp:
        return resp.status, await resp.json()


async def test_ready_then_each_failing_check_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_node() as node:
        status, body = await _readyz(node)
        assert status == 200 and body["status"] == "ready" and body["failing"] == [], body
        assert set(body["checks"]) == {"store", "media_engine", "sip"}
        assert (await _readyz(node))[0] == 200  # a second probe judges the ticks seen since the first

        def broken(kind: str, key: str) -> None:
            raise StoreUnavailable("store node.db had an I/O error: disk I/O error", reason="io")

        with monkeypatch.context() as patch:
            patch.setattr(node.store, "get", broken)
            status, body = await _readyz(node)
        assert status == 503 and body["status"] == "notReady" and body["failing"] == ["store"], body
        assert "I/O error" in body["checks"]["store"]["detail"]
        assert (await _readyz(node))[0] == 200  # the store answers again: ready again

        async with aiohttp.ClientSession() as http, http.get(f"{node.public_url}/healthz") as resp:
            assert resp.status == 200  # liveness is not readiness

        node.engine.stop()  # the media engine thread ends
        status, body = await _readyz(node)
        assert status == 503 and body["failing"] == ["media_engine"], body


async def test_sip_not_listening_is_not_ready() -> None:
    async with running_node() as node:
        assert node.sip is not None and node.sip.endpoint.udp is not None
        node.sip.endpoint.udp.close()
        status, body = await _readyz(node)
        assert status == 503 and body["failing"] == ["sip"] and "udp" in body["checks"]["sip"]["detail"], body


async def test_a_stuck_engine_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread alive but not ticking (blocked) is caught by the tick count, not only by the thread's liveness."""
    async with running_node() as node:
        assert (await _readyz(node))[0] == 200
        node.engine.stop()
        monkeypatch.setattr(type(node.engine), "running", property(lambda self: True))
        await asyncio.sleep(TICK_AGE_LIMIT + 0.1)  # the last tick it made is now older than the limit
        status, body = await _readyz(node)
        assert status == 503 and body["failing"] == ["media_engine"], body
        assert "not ticked" in body["checks"]["media_engine"]["detail"]
