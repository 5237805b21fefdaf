"""Application-hosted media, pure parts: the blob (hostile input), the frame codec, control messages, the
dominant-speaker rule, the unmixed selection and the engine's unmixed tap."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from opencomms.domain.errors import BadRequest
from opencomms.media.engine import HeardParts, MediaEngine
from opencomms.media.speakers import DominantSpeaker, SpeakerVad, loudest
from opencomms.wire.apphosted import (
    FRAME_BYTES,
    AudioMessage,
    FrameError,
    MediaBlob,
    decode_audio,
    decode_control,
    encode_audio,
    encode_control,
    read_blob,
)

SECRET = "s" * 43
PCM = bytes(range(256)) * 2 + bytes(128)


def blob(**changes: Any) -> str:
    doc: dict[str, Any] = {"v": 1, "url": "wss://bot.example.com:8443/media", "key": "call-1", "secret": SECRET}
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not None})


def test_blob_round_trip_and_secret_not_in_repr() -> None:
    parsed = read_blob(blob())
    assert parsed == MediaBlob("wss://bot.example.com:8443/media", "call-1", SECRET)
    assert read_blob(parsed.to_json()) == parsed
    assert SECRET not in repr(parsed)
    assert read_blob(blob(extra="ignored")).key == "call-1"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (None, "string"),
        ("[1]", "JSON object"),
        ("{", "not JSON"),
        (blob(v=2), "'v'"),
        (blob(url=None), "'url'"),
        (blob(url="http://bot/media"), "ws://"),
        (blob(url="file:///etc/passwd"), "ws://"),
        (blob(url="ws:///nohost"), "no host"),
        (blob(url="ws://user:pw@bot/media"), "credentials"),
        (blob(url="ws://bot/media#frag"), "fragment"),
        (blob(url="ws://bot:99999/media"), "malformed"),
        (blob(url="ws://bot/me dia"), "control"),
        (blob(url="ws://bot/" + "a" * 1100), "longer"),
        (blob(key=""), "'key'"),
        (blob(key="a/b"), "'key'"),
        (blob(secret="short"), "'secret'"),
        (blob(secret="é" * 30), "'secret'"),
        ("x" * 3000, "longer than 2048"),
    ],
)
def test_bad_blobs_are_rejected_naming_the_field(text: Any, why: str) -> None:
    with pytest.raises(BadRequest) as err:
        read_blob(text, "mediaConfig.blob")
    assert why in err.value.message and "'mediaConfig.blob'" in err.value.message


def test_audio_round_trip_with_unmixed() -> None:
    other = bytes(reversed(PCM))
    data = encode_audio(7, 123_456_789, PCM, (("42", other), ("7", PCM)))
    assert len(data) == 16 + 640 + (1 + 2 + 640) + (1 + 1 + 640)
    assert decode_audio(data) == AudioMessage(7, 123_456_789, PCM, (("42", other), ("7", PCM)))
    assert struct.unpack_from("<BBHIQ", data) == (1, 1, 2, 7, 123_456_789)
    assert decode_audio(encode_audio(2**32 + 5, 0, PCM)).sequence == 5  # wraps


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode_audio(1, 0, PCM)[:-1],  # short frame
        encode_audio(1, 0, PCM) + b"x",  # trailing bytes
        b"\x02" + encode_audio(1, 0, PCM)[1:],  # version
        encode_audio(1, 0, PCM)[:1] + b"\x09" + encode_audio(1, 0, PCM)[2:],  # kind
        encode_audio(1, 0, PCM, (("1", PCM),))[:-10],  # truncated unmixed
        struct.pack("<BBHIQ", 1, 1, 1, 0, 0) + PCM + b"\x00" + PCM,  # empty source id
        struct.pack("<BBHIQ", 1, 1, 1, 0, 0) + PCM + b"\x01\xff" + PCM,  # non-ASCII source id
        struct.pack("<BBHIQ", 1, 1, 999, 0, 0) + PCM,  # absurd count
    ],
)
def test_malformed_audio_is_a_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_audio(data)


def test_encoder_checks_its_input() -> None:
    with pytest.raises(FrameError):
        encode_audio(1, 0, PCM[:100])
    with pytest.raises(FrameError):
        encode_audio(1, 0, PCM, (("", PCM),))
    with pytest.raises(FrameError):
        encode_audio(1, 0, PCM, (("1", PCM[:10]),))


def test_control_messages() -> None:
    text = encode_control("dtmf", key="5", tone="tone5", at=10)
    assert decode_control(text) == {"type": "dtmf", "key": "5", "tone": "tone5", "at": 10}
    for bad in ("nope", "[]", '{"type": "launch"}', json.dumps({"type": "bye", "pad": "x" * 5000})):
        with pytest.raises(FrameError):
            decode_control(bad)
    with pytest.raises(FrameError):
        encode_control("launch")


def test_dominant_speaker_is_the_latest_starter_still_speaking() -> None:
    ds = DominantSpeaker()
    assert ds.update("1", True) and ds.current == "1"
    assert ds.update("2", True) and ds.current == "2"
    assert not ds.update("1", False)  # not the dominant one: no change
    assert ds.update("1", True) and ds.current == "1"
    assert ds.update("1", False) and ds.current == "2"
    assert ds.update("2", False) and ds.current is None
    assert ds.history == ["2", "1"]
    assert not ds.update("3", False)


def test_loudest_keeps_four_in_order() -> None:
    frames = [(str(i), np.full(320, level, dtype=np.int16)) for i, level in enumerate([5, 100, 1, 50, 70, 2])]
    assert [s for s, _ in loudest(frames, 4)] == ["0", "1", "3", "4"]
    assert loudest(frames[:3], 4) == frames[:3]


def test_engine_unmixed_tap_gives_each_other_members_output() -> None:
    engine = MediaEngine(8)
    for leg in ("bot", "a", "b", "lone"):
        engine.add_leg(leg)
    for leg in ("bot", "a", "b"):
        engine.join(leg, "conv")
    seen: list[tuple[str, Any, list[tuple[str, Any]], float]] = []

    def keep(leg: str, heard: Any, unmixed: list[tuple[str, Any]], now: float) -> None:
        seen.append((leg, heard.copy(), [(src, f.copy()) for src, f in unmixed], now))

    sub = engine.subscribe(HeardParts("bot", keep))
    engine.subscribe(HeardParts("lone", keep))
    engine.push_inbound("a", np.full(320, 1000, dtype=np.int16))
    engine.push_inbound("b", np.full(320, -300, dtype=np.int16))
    engine.push_inbound("bot", np.full(320, 7, dtype=np.int16))
    engine.tick(0.02)
    (leg, heard, unmixed, now), (lone, lone_heard, lone_unmixed, _) = seen
    assert (leg, now, lone) == ("bot", 0.02, "lone")
    assert heard.dtype == np.int16 and (heard == 700).all()  # the mix, without the bot's own 7
    assert [(src, int(f[0])) for src, f in unmixed] == [("a", 1000), ("b", -300)]
    assert lone_unmixed == [] and not lone_heard.any()
    engine.unsubscribe(sub)
    engine.remove_leg("lone")
    seen.clear()
    engine.tick(0.04)
    assert seen == []
    assert heard.nbytes == FRAME_BYTES


def test_speaker_vad_reports_each_participants_changes_in_one_batch() -> None:
    vad = SpeakerVad(capacity=4)
    quiet = np.zeros(320, dtype=np.int16)
    loud = (5000 * np.sin(2 * np.pi * 300 * np.arange(320) / 16000)).astype(np.int16)
    changes: list[tuple[int, str, bool]] = []
    for k in range(60):
        talking = 10 <= k < 30
        frames = [("alice", loud if talking else quiet), ("bob", quiet)]
        changes += [(k, leg, on) for leg, on in vad.process(frames)]
    assert [(leg, on) for _, leg, on in changes] == [("alice", True), ("alice", False)]
    started, stopped = changes[0][0], changes[1][0]
    assert 10 < started <= 13 and 30 + 10 <= stopped <= 30 + 20  # onset 40 ms, hangover 300 ms
    vad.forget("alice")
    vad.forget("nobody")
    assert len(vad) == 1
    for i in range(5):  # beyond capacity, newcomers are not tracked (and nothing breaks)
        vad.process([(f"p{i}", loud)])
    assert len(vad) == 4
