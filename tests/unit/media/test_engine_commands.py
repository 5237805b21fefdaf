"""Engine commands are data: each survives pickling (so it can reach a media process) and does what the engine
methods it stands for do."""

from __future__ import annotations

import pickle

import numpy as np

from opencomms.media.engine import MediaEngine, PlayFinished, TonesFinished
from opencomms.media.engine import commands as cmd
from opencomms.media.taps import TapOpen, TapPush, taps_of


def run(engine: MediaEngine, *commands: object) -> None:
    for command in commands:
        copy = pickle.loads(pickle.dumps(command))  # what a media process receives
        assert copy == command
        copy.apply(engine)


def test_a_call_joins_plays_mutes_and_leaves_by_commands() -> None:
    engine = MediaEngine(8)
    clip = np.full(640, 1000, np.int16)  # two frames
    run(engine, cmd.ConnectLeg("a", "m", 7, True), cmd.ConnectLeg("b", "m", 0, False), cmd.Play("b", "p", (clip,)))
    assert engine.has_leg("a") and engine.has_leg("b") and engine.legs == 2
    events = engine.tick(0.0) + engine.tick(0.02) + engine.tick(0.04)
    assert any(isinstance(e, PlayFinished) and e.tag == "p" and e.completed for e in events)
    run(engine, cmd.SendTones("a", "t", "1", 40, 40))
    events = [e for k in range(10) for e in engine.tick(0.06 + 0.02 * k)]
    assert any(isinstance(e, TonesFinished) and e.tag == "t" for e in events)
    run(engine, cmd.Play("gone", "x", (clip,), if_present=True), cmd.RemoveLeg(("a", "b", "unknown")))
    assert engine.legs == 0


def test_hold_music_and_dial_in_setup_are_all_or_nothing() -> None:
    engine = MediaEngine(3)
    music = np.zeros(3200, np.int16)
    run(engine, cmd.ConnectLeg("held", "conv", 0, False), cmd.HoldMusicStart("held", "music", "h", (music,)))
    assert engine.has_leg("music")
    run(engine, cmd.HoldMusicStop("held", "music", "conv"))
    assert not engine.has_leg("music") and engine.legs == 1
    run(engine, cmd.AddLeg("other"))
    try:
        run(engine, cmd.DialInSetup("phone", "voice", "attendant"))  # one row left: neither leg stays
    except Exception as exc:
        assert type(exc).__name__ == "EngineFull"
    assert not engine.has_leg("phone") and not engine.has_leg("voice")


def test_a_tapped_leg_hears_and_is_heard_through_commands() -> None:
    engine = MediaEngine(4)
    run(engine, cmd.ConnectLeg("bot", "m", 0, False), cmd.ConnectLeg("peer", "m", 0, False), TapOpen("bot"))
    run(engine, TapPush("bot", np.full(320, 2000, np.int16)))
    engine.tick(0.0)
    heard = taps_of(engine).drain()
    assert len(heard) == 1 and heard[0].frames[0][0] == "bot"  # what "bot" heard this tick, copied
    assert pickle.loads(pickle.dumps(heard[0])).frames[0][0] == "bot"
