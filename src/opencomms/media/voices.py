"""Which engine speaks a textPrompt: piper (natural, English) or espeak-ng (every other language, and the fallback).

Owns the routing rule and the fallback; it is the PromptLibrary's synthesizer. Must not render (media/piper.py and
media/tts.py do) or cache (the library does).

* `voice` naming a piper voice (its model's stem, e.g. `en_US-joe-medium`, any case) -> piper.
* `voice` a plain English tag (`en`, `en-us`, `en-gb`, ...) or, without a voice, `language` English or absent ->
  piper's voice when piper is the English engine (the default), else espeak-ng.
* Anything else (`de`, `en-us+f3`: a variant names espeak-ng's own voice) -> espeak-ng, as before.
* piper failing for another reason than the text or its length (a worker that cannot start, a crash, a timeout)
  -> the same text by espeak-ng's voice of the language, logged once per failure.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import numpy.typing as npt

from opencomms.config import ConfigError, TtsConfig
from opencomms.domain.media import PromptError, PromptFailure

from .piper import PiperTts, locate_model
from .tts import Tts

__all__ = ["Voices", "is_english", "voices_from_config"]

log = logging.getLogger("opencomms.media")

_ENGLISH = re.compile(r"^en(?:[-_][a-z0-9]{1,8})*$")


def is_english(tag: str) -> bool:
    """A bare English language tag ('en', 'en-US', 'en_gb'): no espeak variant (`+...`)."""
    return bool(_ENGLISH.match(tag.strip().lower()))


class Voices:
    """The synthesizer of text prompts: piper for English (when configured), espeak-ng for the rest."""

    def __init__(self, espeak: Tts, piper: PiperTts | None = None) -> None:
        self.espeak = espeak
        self.piper = piper
        self.fallbacks = 0
        """Prompts piper failed to render and espeak-ng spoke instead."""

    def engine_for(self, voice: str | None, language: str | None) -> str:
        """'piper' or 'espeak': the engine `synthesize` would try first."""
        piper = self.piper
        if piper is None:
            return "espeak"
        if voice:
            return "piper" if voice.lower() == piper.model.name.lower() or is_english(voice) else "espeak"
        return "piper" if language is None or is_english(language) else "espeak"

    async def synthesize(
        self, text: str, voice: str | None, language: str | None, speed: float | None = None
    ) -> npt.NDArray[np.int16]:
        piper = self.piper
        if piper is None or self.engine_for(voice, language) == "espeak":
            return await self.espeak.synthesize(text, voice, language, speed)
        try:
            return await piper.synthesize(text, speed)
        except PromptError as exc:
            if exc.failure is not PromptFailure.TTS_FAILED or exc.message in ("empty text",) or "limit" in exc.message:
                raise
            self.fallbacks += 1
            log.warning("piper failed (%s): espeak-ng speaks the prompt instead", exc.message)
        fallback = voice if voice and is_english(voice) else language if language and is_english(language) else None
        return await self.espeak.synthesize(text, fallback, None, speed)

    async def preload(self) -> None:
        """Start a piper worker now (failures are only logged: prompts then fall back to espeak-ng)."""
        if self.piper is not None:
            try:
                await self.piper.warm()
            except PromptError as exc:
                log.warning("piper voice could not be preloaded: %s", exc.message)

    async def close(self) -> None:
        if self.piper is not None:
            await self.piper.close()


def voices_from_config(config: TtsConfig, *, espeak_executable: str, max_prompt_seconds: float) -> Voices:
    """The node's synthesizer. With engine "piper", the voice is located and checked now: a missing model (or
    piper-tts not installed) is a ConfigError naming tts.piper_model, raised before the node starts."""
    espeak = Tts(executable=espeak_executable)
    if config.engine != "piper":
        return Voices(espeak)
    try:
        model = locate_model(config.piper_model)
    except ValueError as exc:
        raise ConfigError("tts.piper_model", config.piper_model, f"a piper voice: {exc}") from None
    piper = PiperTts(
        model,
        workers=config.piper_workers,
        threads=config.piper_threads,
        timeout_seconds=config.piper_timeout,
        max_seconds=max_prompt_seconds,
    )
    return Voices(espeak, piper)
