"""An application-hosted bot in a conference on a running node: Alice's bot calls Bob's app-hosted bot, then five
more participants join the conversation's mix in the engine (as phones dialled into a meeting would; the REST
and SIP joins of a live meeting are not needed for what is tested here), four of them talking. Bob's socket gets
per tick only the three loudest talkers, each unmixed under the sourceId the engine holds for it, and the engine's
dominant speaker as `dominantSpeaker`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import pytest

from opencomms.config import MediaConfig
from opencomms.media.engine import Batch, MediaEngine
from opencomms.sdk.media import DominantSpeakerChanged, LocalMediaSession
from opencomms.testing.harness import app_target
from tests.integration.conftest import make_platform, node_config

N = 320
PHONES = {"p1": (9000, 9101), "p2": (6000, 9102), "p3": (3000, 9103), "p4": (400, 9104), "p5": (0, 9105)}


@pytest.mark.skipif(
    os.environ.get("OPENCOMMS_TEST_MEDIA_PROCESS") == "1",
    reason="reaches into the engine with closures: engine thread only",
)
async def test_an_app_hosted_bot_in_a_conference_gets_the_talkers_with_their_source_ids(tmp_path: Any) -> None:
    media = MediaConfig(
        process=False,  # the closures below run on the engine thread
        app_hosted_allow_private=("127.0.0.1",),
        app_hosted_connect_timeout=2.0,
        recordings_dir=str(tmp_path),
        conference_talkers=3,
        conference_select_above=4,
    )
    async with (
        make_platform(node_config(media=media), names=("alice", "bob")) as p,
        LocalMediaSession() as session,
    ):
        status, call = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
        assert status == 201, call
        incoming = await p["bob"].bot.incoming()
        body = {"acceptedModalities": ["audio"], "mediaConfig": session.media_config("bob")}
        status, _, _ = await p["bob"].client.request("POST", f"/communications/calls/{incoming.call_id}/answer", body)
        assert status == 202
        a_id, b_id = call["id"], incoming.call_id
        await p["alice"].bot.wait_state(a_id, "established")
        sock = await session.audio_socket("bob", timeout=5)
        await sock.receive(timeout=2)
        mix = p.node.calls.leg(b_id).conversation_id

        def join_phones(engine: MediaEngine) -> None:
            for leg, (_, source) in PHONES.items():
                engine.add_leg(leg)
                engine.join(leg, mix)
                engine.set_source_id(leg, source)
            rows = np.array([engine.leg_key(leg)[0] for leg in PHONES], dtype=np.intp)
            frames = np.stack([np.full(N, level, np.int16) for level, _ in PHONES.values()])
            engine.subscribe(Batch(lambda inp, now: engine.push_inbound_rows(rows, frames)))

        await asyncio.wrap_future(p.node.engine.call_result(join_phones))
        expected = [("9101", 9000), ("9102", 6000), ("9103", 3000)]  # the three loudest; p4 is not mixed
        for _ in range(100):
            frame = await sock.receive(timeout=2)
            got = [(u.source_id, int(np.frombuffer(u.pcm, "<i2")[0])) for u in frame.unmixed]
            if got == expected:
                break
        else:
            raise AssertionError(f"the bot never got the three talkers alone: {got}")
        assert (np.frombuffer(frame.pcm, "<i2") == 18000).all()  # and hears their sum

        async def dominant() -> DominantSpeakerChanged:
            async for event in sock.events():
                if isinstance(event, DominantSpeakerChanged):
                    return event
            raise AssertionError("socket closed")

        event = await asyncio.wait_for(dominant(), 3)
        assert event.source_id == "9101" and event.history[0] == "9101"
        await asyncio.wrap_future(p.node.engine.call_result(lambda e: [e.remove_leg(leg) for leg in PHONES]))
