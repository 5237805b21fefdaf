"""Silero VAD (the ONNX model bundled with faster-whisper) as a streaming `SpeechDetector`: per speaker, the LSTM
state and the 64-sample context are carried from call to call, so a stream can be fed in any number of chunks.

Runs on onnxruntime with one thread and no torch. Must not segment (segmenter.py) nor know speakers or calls.
One `SileroVad` may serve many speakers but only one thread at a time (the session is not shared across threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .errors import SpeechConfigError
from .segmenter import CHUNK

__all__ = ["SileroVad", "default_vad_path"]

_CONTEXT = 64


def default_vad_path() -> str:
    """The Silero VAD model inside the installed faster-whisper package."""
    try:
        from faster_whisper.utils import get_assets_path
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SpeechConfigError(f"faster-whisper is not installed: {exc}") from None
    return os.path.join(get_assets_path(), "silero_vad_v6.onnx")


@dataclass(slots=True)
class _State:
    h: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((1, 1, 128), dtype=np.float32))
    c: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((1, 1, 128), dtype=np.float32))
    context: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(_CONTEXT, dtype=np.float32))


class SileroVad:
    """Speech probabilities of 512-sample chunks (16 kHz), batched along time per call."""

    def __init__(self, path: str | None = None) -> None:
        path = path or default_vad_path()
        if not os.path.isfile(path):
            raise SpeechConfigError(f"Silero VAD model not found at {path}")
        try:
            import onnxruntime
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise SpeechConfigError(f"onnxruntime is not installed: {exc}") from None
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)

    def new_state(self) -> object:
        return _State()

    def probabilities(self, state: object, chunks: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        assert isinstance(state, _State)
        n = chunks.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if chunks.shape[1] != CHUNK:
            raise ValueError(f"chunks must be {CHUNK} samples")
        batch = np.empty((n, CHUNK + _CONTEXT), dtype=np.float32)
        batch[:, _CONTEXT:] = chunks
        batch[0, :_CONTEXT] = state.context
        if n > 1:
            batch[1:, :_CONTEXT] = chunks[:-1, -_CONTEXT:]
        out, state.h, state.c = self._session.run(None, {"input": batch, "h": state.h, "c": state.c})
        state.context = np.array(chunks[-1, -_CONTEXT:], dtype=np.float32)
        return np.asarray(out, dtype=np.float32).reshape(n)
