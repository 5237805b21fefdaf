"""Several engine listeners on one leg of a running node: the app-hosted socket of Bob's bot, a recorder-like
listener of what Bob hears, a listener of what Alice says and a second batch listener (beside the RTP bank's)
all get the same frames in the same tick."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.config import MediaConfig
from opencomms.media.engine import Batch, Heard, MediaEngine, Said
from opencomms.sdk.media import LocalMediaSession
from opencomms.testing.harness import app_target
from opencomms.wire.apphosted import TICKS_PER_SECOND
from tests.integration.conftest import make_platform, node_config


def tone(seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * 16000)) / 16000
    return (8000 * np.sin(2 * np.pi * 440 * t) * (1 + np.arange(t.size) % 7)).astype(np.int16) // 4


@pytest.mark.skipif(
    os.environ.get("OPENCOMMS_TEST_MEDIA_PROCESS") == "1",
    reason="reaches into the engine with closures: engine thread only",
)
async def test_the_socket_a_recorder_and_a_batch_listener_get_the_same_frames_in_the_same_tick(tmp_path: Any) -> None:
    media = MediaConfig(
        process=False,  # the closures below run on the engine thread
        app_hosted_allow_private=("127.0.0.1",),
        app_hosted_connect_timeout=2.0,
        recordings_dir=str(tmp_path),
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
        await sock.receive(timeout=2)  # the socket's listener is on

        recorder: dict[int, bytes] = {}  # frame time -> what Bob heard
        batch: dict[int, bytes] = {}
        says: dict[int, bytes] = {}

        def install(engine: MediaEngine) -> None:
            row, _ = engine.leg_key(b_id)
            stamp = TICKS_PER_SECOND
            engine.subscribe(Heard(b_id, lambda _l, f, now: recorder.__setitem__(round(now * stamp), f.tobytes())))
            engine.subscribe(Said(a_id, lambda _l, f, now: says.__setitem__(round(now * stamp), f.tobytes())))
            engine.subscribe(
                Batch(lambda inp, now: batch.__setitem__(round(now * stamp), inp[row].astype("<i2").tobytes()))
            )

        await asyncio.wrap_future(p.node.engine.call_result(install))
        prompt = tone(1.0)
        p.node.engine.call(lambda engine: engine.play(a_id, "listeners", [prompt]))  # Alice speaks to Bob
        frames = []
        while len(frames) < 30:
            frame = await sock.receive(timeout=2)
            if any(frame.pcm):
                frames.append(frame)
        for frame in frames:
            assert recorder[frame.timestamp] == frame.pcm == batch[frame.timestamp]
            (alice,) = frame.unmixed
            assert says[frame.timestamp] == alice.pcm == frame.pcm  # two legs: Bob hears Alice alone
        heard = np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")
        assert np.abs(heard).max() > 1000
        assert p.node.engine.engine.stats.tap_errors == 0
