"""Speech to text: utterances cut by VAD per speaker (segmenter.py, silero.py), decoded by Whisper (whisper.py) on a
bounded pool of threads (pool.py), scored by word error rate (wer.py). Imports nothing of the calling side; the
heavy packages (faster-whisper, ctranslate2, onnxruntime) are imported only when a model is loaded."""

from __future__ import annotations

from .errors import SpeechConfigError
from .pool import Caption, PoolConfig, PoolStats, TranscriptionPool
from .segmenter import Segmenter, SegmenterConfig, SpeechDetector, Utterance
from .wer import word_error_rate

__all__ = [
    "Caption",
    "PoolConfig",
    "PoolStats",
    "Segmenter",
    "SegmenterConfig",
    "SpeechConfigError",
    "SpeechDetector",
    "TranscriptionPool",
    "Utterance",
    "word_error_rate",
]
