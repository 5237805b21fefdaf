"""Text-to-speech with espeak-ng, run as a subprocess: text in, 16 kHz mono int16 out.

Owns the espeak-ng command line, the choice and validation of the voice (against the voices the installed
espeak-ng lists, cached), and the limits: text length, run time (the process is killed) and concurrency.
Must not use a shell, put the text on the command line, cache audio or know about prompts' other kinds.
Every failure raises `PromptError(TTS_FAILED, reason)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opencomms.domain.media import PromptError, PromptFailure

from .wav import decode_wav

__all__ = ["DEFAULT_VOICE", "ESPEAK_WORDS_PER_MINUTE", "Tts", "VoiceList", "parse_voice_list"]

DEFAULT_VOICE = "en-us"
ESPEAK_WORDS_PER_MINUTE = 175
"""espeak-ng's default speaking rate: a textPrompt's `speed` multiplies it."""
_VOICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_+-]{0,39}$")  # never starts with "-": no option look-alikes
_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+) \d+\)")
_KEEP_CONTROLS = frozenset("\t\n\r")


@dataclass(frozen=True, slots=True)
class VoiceList:
    """The voices an espeak-ng installation knows, keyed by lower-case name, valued by espeak's spelling."""

    languages: dict[str, str]
    """Language voices ('en-us', 'de', ...) including the alternative names espeak lists ('en', 'zh')."""
    variants: dict[str, str]
    """Variants usable after '+' ('f3', 'klatt'; 'alex' -> 'Alex')."""

    def resolve(self, name: str) -> str | None:
        """espeak's spelling of `name` ('language' or 'language+variant', lower case), or None if unknown."""
        base, plus, variant = name.partition("+")
        language = self.languages.get(base)
        if language is None:
            return None
        if not plus:
            return language
        spelled = self.variants.get(variant)
        return None if spelled is None else f"{language}+{spelled}"


def parse_voice_list(languages_output: str, variants_output: str) -> VoiceList:
    """Parse `espeak-ng --voices` and `espeak-ng --voices=variant` (a header line, then one voice a line:
    priority, language, age/gender, name, file, other languages like '(en 3)(zh 5)')."""
    languages: dict[str, str] = {}
    for line in languages_output.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            languages.setdefault(fields[1].lower(), fields[1])
            for other in _OTHER_LANGUAGE.findall(line):
                languages.setdefault(other.lower(), other)
    variants: dict[str, str] = {}
    for line in variants_output.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("!v/"):
            name = fields[4][3:]
            variants.setdefault(name.lower(), name)
    return VoiceList(languages, variants)


def _failed(reason: str) -> PromptError:
    return PromptError(PromptFailure.TTS_FAILED, reason)


def _clean_text(text: str) -> str:
    """Control characters (NUL and friends) become spaces; surrounding whitespace goes."""
    return "".join(" " if unicodedata.category(c) == "Cc" and c not in _KEEP_CONTROLS else c for c in text).strip()


class Tts:
    """espeak-ng synthesis with bounded text, time and concurrency."""

    def __init__(
        self,
        *,
        executable: str = "espeak-ng",
        timeout_seconds: float = 10.0,
        max_chars: int = 2000,
        concurrency: int = 2,
    ) -> None:
        if timeout_seconds <= 0 or max_chars <= 0 or concurrency <= 0:
            raise ValueError("timeout_seconds, max_chars and concurrency must be positive")
        self.executable = executable
        self.timeout_seconds = timeout_seconds
        self.max_chars = max_chars
        self._semaphore = asyncio.Semaphore(concurrency)
        self._voices: VoiceList | None = None
        self._voices_lock = asyncio.Lock()

    async def synthesize(
        self, text: str, voice: str | None, language: str | None, speed: float | None = None
    ) -> npt.NDArray[np.int16]:
        """Speak `text` with `voice`, else the voice of `language`, else en-us, at `speed` times espeak's default
        rate (175 words a minute); 16 kHz mono, read-only."""
        cleaned = _clean_text(text)
        if not cleaned:
            raise _failed("empty text")
        if len(cleaned) > self.max_chars:
            raise _failed(f"text has {len(cleaned)} characters, more than the limit of {self.max_chars}")
        spelled = await self.resolve_voice(voice, language)
        rate = [] if speed is None else ["-s", str(round(ESPEAK_WORDS_PER_MINUTE * speed))]
        async with self._semaphore:
            wav = await self._run(["--stdout", "--stdin", "-b", "1", *rate, "-v", spelled], cleaned.encode("utf-8"))
        try:
            return decode_wav(wav)
        except PromptError as exc:
            raise _failed(f"espeak-ng output unusable: {exc.message}") from None

    async def voices(self) -> VoiceList:
        """The installed voices (listed once, then cached; a failed listing is retried next time)."""
        async with self._voices_lock:
            if self._voices is None:
                languages = await self._run(["--voices"], b"")
                variants = await self._run(["--voices=variant"], b"")
                self._voices = parse_voice_list(
                    languages.decode("utf-8", "replace"), variants.decode("utf-8", "replace")
                )
            return self._voices

    async def resolve_voice(self, voice: str | None, language: str | None) -> str:
        """espeak's name of the voice `synthesize` would use, or `PromptError(TTS_FAILED)` if it has none."""
        if voice:
            candidates = [voice.strip().lower()]
        elif language:
            tag = language.strip().lower().replace("_", "-")
            parts = tag.split("-")
            # BCP 47 falls back by dropping subtags: 'de-at' is spoken with 'de' when espeak has no 'de-at'.
            candidates = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
        else:
            candidates = [DEFAULT_VOICE]
        if not _VOICE_NAME.match(candidates[0]):
            raise _failed(f"invalid voice name {candidates[0]!r}")
        known = await self.voices()
        for candidate in candidates:
            spelled = known.resolve(candidate)
            if spelled is not None:
                return spelled
        raise _failed(f"unknown voice {candidates[0]!r}")

    async def _run(self, args: list[str], stdin: bytes) -> bytes:
        """Run espeak-ng with `args` (never through a shell), feed `stdin`, return stdout; kill on timeout."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                *args,
                # No stdin pipe when there is nothing to feed: `--voices` exits at once, and writing even b"" to
                # the pipe of an exited process raises RuntimeError under uvloop (seen under load).
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise _failed(f"{self.executable} is not installed") from None
        except OSError as exc:
            raise _failed(f"cannot run {self.executable}: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                out, err = await proc.communicate(stdin or None)
        except TimeoutError:
            raise _failed(f"{self.executable} took longer than {self.timeout_seconds:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: do not leave it running
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            reason = f": {detail[0][:200]}" if detail else ""
            raise _failed(f"{self.executable} exited with status {proc.returncode}{reason}")
        return out
