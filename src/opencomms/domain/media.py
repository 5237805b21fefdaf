"""Service-hosted media vocabulary shared by the wire readers, the prompt library and the media operations.

Pure values: what a prompt is, why loading one failed, why a recording stopped. No I/O, no numpy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """One prompt to play: a WAV at `uri` (Graph's mediaPrompt) or text to synthesize (our textPrompt)."""

    uri: str | None = None
    """http(s) URL of a WAV file (mediaPrompt.mediaInfo.uri)."""
    resource_id: str | None = None
    """Cache key chosen by the bot (mediaInfo.resourceId); the same id is fetched once."""
    text: str | None = None
    """Text to speak (#opencomms.textPrompt)."""
    voice: str | None = None
    """espeak-ng voice name, e.g. 'en-us' or 'en-us+f3' (textPrompt.voice)."""
    language: str | None = None
    """BCP 47 language tag, used as the voice when no voice is given (textPrompt.language)."""
    speed: float | None = None
    """Speaking rate, 1.0 the voice's own (textPrompt.speed, 0.5-2.0); None: the voice's own."""

    @property
    def is_text(self) -> bool:
        return self.text is not None

    def cache_key(self) -> str:
        """Media prompts cache by resourceId (else URI); text prompts by text, voice, language, speed and the
        rendered sample rate (16 kHz, the engine's)."""
        if self.text is not None:
            speed = f"{self.speed:g}" if self.speed is not None else ""
            return f"text\x00{self.voice or ''}\x00{self.language or ''}\x00{speed}\x0016000\x00{self.text}"
        if self.resource_id:
            return f"id\x00{self.resource_id.lower()}"
        return f"uri\x00{self.uri}"


class PromptFailure(enum.Enum):
    """Why a prompt could not be loaded; each maps to one resultInfo of the failed operation."""

    BAD_URL = "badUrl"
    """Not an absolute http(s) URL."""
    FORBIDDEN_ADDRESS = "forbiddenAddress"
    """The host resolves to a private, loopback, link-local or otherwise refused address."""
    UNREACHABLE = "unreachable"
    """DNS failure, connection refused or reset, TLS failure."""
    TIMEOUT = "timeout"
    """The fetch took longer than the configured limit."""
    HTTP_STATUS = "httpStatus"
    """The server answered with a non-2xx status (or too many redirects)."""
    TOO_BIG = "tooBig"
    """The body is larger than the configured limit."""
    NOT_WAV = "notWav"
    """The body is not a WAV file we can decode (bad header, unsupported encoding, no samples)."""
    TOO_LONG = "tooLong"
    """The audio lasts longer than the configured limit."""
    TTS_FAILED = "ttsFailed"
    """The text-to-speech engine failed or is not installed, or the voice is unknown."""
    OVER_BUDGET = "overBudget"
    """The node's prompt memory budget has no room for this download or decode (it is not attempted)."""


class PromptError(Exception):
    """A prompt could not be loaded. `failure` says which kind of failure; the message says what exactly."""

    def __init__(self, failure: PromptFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


class RecordStop(enum.Enum):
    """Why a recording ended (Graph's recordOperation.completionReason values)."""

    INITIAL_SILENCE = "initialSilenceTimeout"
    MAX_SILENCE = "maxSilenceTimeout"
    MAX_DURATION = "maxRecordDurationReached"
    STOP_TONE = "stopToneDetected"
    CANCELLED = "operationCanceled"
