"""The engine analyses (DTMF, VAD) only the legs that want it: a phone's own leg is added with analysed=False and
costs no detector channel, while a recording or watch_speech on it, or set_analysed, brings the detectors back."""

from __future__ import annotations

import numpy as np
from test_media_engine import FRAME_S, Harness, speech

from opencomms.domain.media import RecordStop
from opencomms.media.dtmf import generate_dtmf
from opencomms.media.engine import (
    MediaEngine,
    PlayFinished,
    RecordingFinished,
    SpeechStarted,
    SpeechStopped,
    ToneDetected,
)
from opencomms.media.engine.commands import ConnectLeg, DialInSetup
from opencomms.media.frames import FRAME_SAMPLES as N


def phone_and_bot(h: Harness, phone: str = "phone", bot: str = "bot", mix: str = "m") -> None:
    h.engine.add_leg(phone, analysed=False)
    h.engine.add_leg(bot)
    h.engine.join(phone, mix)
    h.engine.join(bot, mix)


def keys(h: Harness) -> list[tuple[str, str]]:
    return [(e.leg_id, e.key) for _, e in h.of(ToneDetected)]


def test_the_phone_hears_the_bots_tones_unreported_and_the_bot_hears_the_phones() -> None:
    h = Harness()
    phone_and_bot(h)
    h.listen("phone")
    h.engine.send_tones("bot", "t", "12", tone_ms=100, gap_ms=100)
    h.run(25)
    assert keys(h) == []  # the phone's leg is not analysed: no one gets its keys
    assert h.signal("phone").any()  # it still hears them
    assert h.engine.stats.dsp_rows == 1  # only the bot's leg has a detector channel
    tone = np.concatenate([generate_dtmf("7", 80), np.zeros(N * 4 - 1280, np.int16)])
    for frame in tone.reshape(-1, N):
        h.engine.push_inbound("phone", frame)
    h.run(6)
    assert keys(h) == [("bot", "7")]


def test_set_analysed_turns_the_detectors_on_and_off() -> None:
    h = Harness()
    phone_and_bot(h)
    h.engine.set_analysed("phone", True)
    assert h.engine.stats.legs == 2
    h.engine.send_tones("bot", "t", "5")
    h.run(15)
    assert keys(h) == [("phone", "5")]
    h.engine.set_analysed("phone", False)
    h.engine.send_tones("bot", "t", "6")
    h.run(15)
    assert keys(h) == [("phone", "5")]
    assert h.engine.stats.dsp_rows == 1


def test_a_recording_on_a_leg_not_analysed_stops_on_its_key_and_on_silence() -> None:
    h = Harness()
    phone_and_bot(h)
    talk = speech(1.0)
    h.engine.play("bot", "p", [talk])
    h.engine.record("phone", "r", max_seconds=30, initial_silence_seconds=5, max_silence_seconds=5, stop_keys="#")
    h.until(PlayFinished)
    h.engine.send_tones("bot", "t", "#")
    done = h.until(RecordingFinished)
    assert done.reason is RecordStop.STOP_TONE and done.speech_detected
    assert abs(done.samples.size - talk.size) <= 80
    h.run(25)  # the rest of the tone
    h.engine.record("phone", "r2", max_seconds=30, initial_silence_seconds=0.2, max_silence_seconds=5)
    assert h.until(RecordingFinished).reason is RecordStop.INITIAL_SILENCE
    h.engine.stop_recording("phone")  # nothing left to stop: the channel goes back
    h.run(1)
    assert h.engine.stats.dsp_rows == 1


def test_watch_speech_on_a_leg_not_analysed_reports_it() -> None:
    h = Harness()
    phone_and_bot(h)
    h.engine.watch_speech("phone", True)
    h.engine.play("bot", "p", [speech(1.0), np.zeros(50 * N, np.int16)])
    h.run(100)
    changes = [(e.leg_id, type(e)) for _, e in h.events if isinstance(e, SpeechStarted | SpeechStopped)]
    assert changes[0] == ("phone", SpeechStarted) and changes[-1] == ("phone", SpeechStopped)
    h.engine.watch_speech("phone", False)
    h.run(1)
    assert h.engine.stats.dsp_rows == 1


def test_detector_channels_are_reused_and_keys_name_their_leg() -> None:
    """Calls come and go in mixed order: every bot hears its own phone's key, at the time it was sent, and the
    detector channels (and only they) follow the analysed legs."""
    h = Harness(MediaEngine(256))
    digits = "0123456789*#ABCD"
    live: list[int] = []
    expected: list[tuple[str, str, float]] = []
    for wave in range(4):
        for i in range(12):
            call = wave * 12 + i
            phone_and_bot(h, f"p{call}", f"b{call}", f"m{call}")
            live.append(call)
        for call in live[::3]:  # a third of the calls end, freeing rows and channels in the middle
            h.engine.remove_leg(f"p{call}")
            h.engine.remove_leg(f"b{call}")
        live = [c for c in live if c not in live[::3]]
        start = h.k
        for call in live:
            key = digits[call % len(digits)]
            h.engine.send_tones(f"p{call}", f"t{call}", key)
            expected.append((f"b{call}", key, start * FRAME_S))
        h.run(15)
        assert h.engine.stats.dsp_rows <= max(int(call) for call in live) * 2 + 2
        assert h.engine.stats.dsp_rows >= len(live)
    got = sorted((e.leg_id, e.key, e.at) for _, e in h.of(ToneDetected))
    assert [(leg, key) for leg, key, _ in got] == [(leg, key) for leg, key, _ in sorted(expected)]
    for (_, _, at), (_, _, sent) in zip(got, sorted(expected), strict=True):
        assert abs(at - sent) <= 0.005


def test_commands_leave_phones_and_music_unanalysed() -> None:
    engine = MediaEngine(16)
    ConnectLeg("bot", "m", 0, False).apply(engine)
    ConnectLeg("phone", "m", 0, False, analysed=False).apply(engine)
    DialInSetup("dialin", "voice", "lobby").apply(engine)
    engine.tick(0.0)
    assert engine.stats.dsp_rows == 2  # the bot and the attendant's voice
    ConnectLeg("dialin", "m", 0, False, analysed=False).apply(engine)  # the dial-in phone joins the meeting
    ConnectLeg("voice", "m", 0, False, analysed=False).apply(engine)
    engine.tick(FRAME_S)
    assert engine.stats.dsp_rows == 1
