"""Recordings in a cluster: kept in the recordings directory every node shares, indexed in Redis, downloadable
through any node with their expiring token; one node's clean-up never shortens the recordings of a call another
node still serves, and deletes them once that call has ended."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from opencomms.config import MediaConfig
from opencomms.media.wav import decode_wav
from opencomms.testing import GraphClient
from opencomms.testing.harness import app_target
from tests.integration.cluster.test_cluster_forward import two_nodes
from tests.redis_fixtures import redis_url

__all__ = ["redis_url"]  # fixtures

SAY = {"@odata.type": "#opencomms.textPrompt", "text": "Please leave a message after the tone.", "voice": "en-us"}


async def test_a_recording_made_on_node_a_downloads_through_node_b(redis_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "recordings"
    async with two_nodes(redis_url, media=MediaConfig(recordings_dir=str(shared))) as (nodes, tenant, apps):
        a, b = nodes
        alice_bot, alice_id, alice_secret = apps["alice"]
        bob_bot, bob_id, bob_secret = apps["bob"]
        async with (
            GraphClient(a.public_url, tenant, alice_id, alice_secret) as alice,
            GraphClient(a.public_url, tenant, bob_id, bob_secret) as bob,
        ):
            status, call = await alice.create_call(alice_bot.url, [app_target(bob_id)])
            assert status == 201, call
            incoming = await bob_bot.incoming(timeout=5)
            assert await bob.answer(incoming.call_id) == 202
            await bob_bot.wait_state(incoming.call_id, "established", timeout=5)
            body = {"playBeep": False, "initialSilenceTimeoutInSeconds": 5, "maxSilenceTimeoutInSeconds": 1}
            status, rec, _ = await bob.request("POST", f"/communications/calls/{incoming.call_id}/recordResponse", body)
            assert status == 200, rec
            play = {"prompts": [SAY]}
            status, _, _ = await alice.request("POST", f"/communications/calls/{call['id']}/playPrompt", play)
            assert status == 200
            done = await bob_bot.wait_for(
                lambda n: n.resource_url.endswith(f"/operations/{rec['id']}") and n.change_type == "deleted", timeout=15
            )
            data = done[0].resource_data
            assert data["status"] == "completed", data
            location, token = data["recordingLocation"], data["recordingAccessToken"]
            assert location.startswith(a.public_url)  # made by node a, which serves the call's media
            assert list(shared.glob("*.wav"))  # in the directory every node shares
            via_b = b.public_url + location[len(a.public_url) :]
            async with aiohttp.ClientSession() as http:
                async with http.get(via_b, headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == 200
                    audio = decode_wav(await resp.read())
                    assert audio.size > 8000  # the prompt's speech, at least half a second of it
                async with http.get(via_b, headers={"Authorization": "Bearer not-the-token"}) as resp:
                    assert resp.status == 404

                # node b's clean-up sees the call still going on at node a: the recording's deletion is not scheduled
                assert b.cluster is not None
                assert await b.cluster.live_recorded_calls() >= {incoming.call_id}
                b.recordings.clock = lambda: b.clock() + b.recordings.policy.retention_seconds + 1
                live = await b.cluster.live_recorded_calls()
                assert b.recordings.purge_due(live_calls=live) == 0
                async with http.get(via_b, headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == 404  # the token has expired by the shifted clock, the file is kept
                b.recordings.clock = b.clock
                async with http.get(via_b, headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == 200

                # once the call has ended, any node's clean-up deletes it after the retention time
                assert await alice.hang_up(call["id"]) == 204
                await bob_bot.wait_state(incoming.call_id, "terminated", timeout=5)
                assert incoming.call_id not in await b.cluster.live_recorded_calls()
                b.recordings.clock = lambda: b.clock() + b.recordings.policy.retention_seconds + 1
                assert b.recordings.purge_due(live_calls=await b.cluster.live_recorded_calls()) == 1
                assert not list(shared.glob("*.wav"))
                b.recordings.clock = b.clock
                async with http.get(via_b, headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == 404
