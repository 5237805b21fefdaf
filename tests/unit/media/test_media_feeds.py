"""Node-side feeds (media/feeds.py): the frames transcription and media streams need leave the engine as FedFrames
events built only from data commands (so they work from a media process); a playing feed plays one frame per tick
and counts what it took; silent talkers stop crossing."""

from __future__ import annotations

import pickle

import numpy as np

from opencomms.media.engine import FedFrames, MediaEngine
from opencomms.media.engine import commands as cmd
from opencomms.media.feeds import FeedClear, FeedClose, FeedOpen, FeedPush, feeds_of


def run(engine: MediaEngine, *commands: object) -> None:
    for command in commands:
        copy = pickle.loads(pickle.dumps(command))  # what a media process receives
        copy.apply(engine)


def tick(engine: MediaEngine, k: int) -> list[tuple[str, object, float, int]]:
    engine.tick(0.02 * k)
    events = feeds_of(engine).drain()
    assert all(isinstance(e, FedFrames) for e in events)
    frames = [f for e in events for f in e.frames]  # type: ignore[union-attr]
    for e in events:
        pickle.loads(pickle.dumps(e))  # crosses from a media process
    return frames


def test_a_playing_feed_plays_one_frame_per_tick_and_reports_what_it_took() -> None:
    engine = MediaEngine(4)
    run(engine, cmd.ConnectLeg("bot", "m", 0, False), cmd.ConnectLeg("caller", "m", 0, False))
    run(engine, FeedOpen("play", "bot", "heard", send=False), FeedOpen("out", "caller", "heard"))
    assert [f[0] for f in tick(engine, 0)] == ["out"]  # nothing queued to play: only the caller's frame
    run(engine, FeedPush("play", tuple(np.full(320, 1000 * (i + 1), np.int16) for i in range(3))))
    taken = []
    heard = []
    for k in range(1, 6):
        for feed_id, frame, _now, count in tick(engine, k):
            if feed_id == "play":
                taken.append(count)
            elif isinstance(frame, np.ndarray):
                heard.append(int(np.abs(frame).max()))
    assert taken == [1, 2, 3]  # one per tick, then nothing to report
    assert heard[1:4] == [1000, 2000, 3000]  # the caller hears each frame at the next tick, in order
    run(engine, FeedPush("play", (np.zeros(320, np.int16),) * 4), FeedClear("play"))
    assert [c for f, _, _, c in tick(engine, 6) if f == "play"] == []  # cleared: nothing played...
    run(engine, FeedPush("play", (np.zeros(320, np.int16),)))
    assert [c for f, _, _, c in tick(engine, 7) if f == "play"] == [8]  # ...but counted as taken
    run(engine, FeedClose("play"), FeedClose("out"))
    assert tick(engine, 8) == []


def test_a_talkers_feed_leaves_quiet_speakers_out_until_they_speak() -> None:
    engine = MediaEngine(4)
    run(engine, cmd.ConnectLeg("bot", "m", 0, False), cmd.ConnectLeg("caller", "m", 0, False))
    run(engine, FeedOpen("t", "bot", "talkers", quiet_peak=24, quiet_frames=3))
    counts = []
    for k in range(6):
        counts.append(sum(len(f[1]) for f in tick(engine, k) if isinstance(f[1], tuple)))  # type: ignore[arg-type]
    assert counts[:3] == [1, 1, 1] and counts[4:] == [0, 0]  # silence crosses for 3 frames, then stops
    engine.push_inbound("caller", np.full(320, 3000, np.int16))
    frames = [f for f in tick(engine, 6) + tick(engine, 7) if isinstance(f[1], tuple)]
    assert frames and frames[0][1][0][0] == "caller"  # type: ignore[index]  # it spoke: it crosses again
    run(engine, FeedOpen("gone", "nobody", "said"))  # a leg that is gone: nothing opened
    assert len(feeds_of(engine)) == 1
