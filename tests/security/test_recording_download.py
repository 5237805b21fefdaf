"""Recording downloads against a real node: no existence oracle, and token guessing is throttled.

Unknown id, wrong token, expired token and deleted recording answer the same 404 `itemNotFound` with the same
message; failed attempts are limited per source address and per recording id (429 + Retry-After).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from opencomms.config import MediaConfig
from opencomms.server import Node
from opencomms.testing import running_node
from tests.integration.conftest import node_config

UNKNOWN = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    media = dataclasses.replace(MediaConfig(), recordings_dir=str(tmp_path), recording_failure_burst=6)
    async with running_node(node_config(media=media)) as n:
        yield n


async def _get(node: Node, rec_id: str, token: str | None) -> tuple[int, Any, dict[str, str]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{node.public_url}/media/recordings/{rec_id}", headers=headers) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body, dict(resp.headers)


def _save(node: Node, call_id: str = "c1") -> Any:
    assert node.recordings is not None
    return node.recordings.save(call_id=call_id, app_id="a", tenant_id="t", wav=b"RIFF-test")


async def test_unknown_wrong_expired_and_deleted_look_the_same(node: Node) -> None:
    live = _save(node)
    status, body, _ = await _get(node, live.id, live.token)
    assert status == 200 and body == b"RIFF-test"
    expired, deleted = _save(node, "c2"), _save(node, "c3")
    recordings = node.recordings
    assert recordings is not None
    now = node.clock()
    for rec, field in ((expired, "token_expires_at"), (deleted, "delete_at")):
        doc = recordings.store.get("recording", rec.id)
        recordings.store.put("recording", rec.id, {**doc, field: now - 1})
    replies = [
        await _get(node, UNKNOWN, live.token),
        await _get(node, live.id, "wrong-token"),
        await _get(node, expired.id, expired.token),
        await _get(node, deleted.id, deleted.token),
    ]
    assert {status for status, _, _ in replies} == {404}
    assert {(b["error"]["code"], b["error"]["message"]) for _, b, _ in replies} == {
        ("itemNotFound", "No such recording, or the access token is not valid for it.")
    }
    assert {frozenset(k.lower() for k in h) for _, _, h in replies} == {frozenset(k.lower() for k in replies[0][2])}


async def test_missing_token_is_401_before_any_lookup(node: Node) -> None:
    for rec_id in (UNKNOWN, _save(node).id):
        status, body, headers = await _get(node, rec_id, None)
        assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
        assert headers["WWW-Authenticate"].startswith("Bearer ")


async def test_guessing_is_throttled_per_address_and_per_recording(node: Node) -> None:
    target = _save(node)
    statuses = [(await _get(node, target.id, f"guess-{i}"))[0] for i in range(8)]
    assert statuses[:6] == [404] * 6 and statuses[6:] == [429, 429]
    status, body, headers = await _get(node, target.id, target.token)
    assert status == 429 and int(headers["Retry-After"]) >= 1  # the recording is locked for a while
    assert body["error"]["code"] == "activityLimitReached"
    status, _, _ = await _get(node, UNKNOWN, "guess")
    assert status == 429  # and so is this address, for every id
