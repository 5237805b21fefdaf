"""The piper worker process: loads one piper voice (ONNX) once, then renders requests read from stdin, one at a time.

Run by `media.piper.PiperTts` as `python -m opencomms.media.piper_worker MODEL CONFIG THREADS`; never imported by
the node (piper and onnxruntime stay out of the node's process). Must not read the network or write files.

Protocol (binary pipes): the worker writes one JSON line `{"ready": true}` once the voice is loaded (or
`{"error": "..."}` and exits 1). Each request is one JSON line `{"text": str, "length_scale": float,
"max_samples": int}`; each answer is one JSON line `{"samples": n}` followed by `2 n` bytes of 16 kHz mono int16
little-endian PCM, or `{"error": "..."}`. Rendering stops (an error answer) once the audio would pass max_samples.
"""

from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO

import numpy as np

SAMPLE_RATE = 16000


def _answer(out: BinaryIO, header: dict[str, Any], body: bytes = b"") -> None:
    out.write(json.dumps(header).encode() + b"\n" + body)
    out.flush()


def _load(model: str, config: str, threads: int) -> Any:
    import onnxruntime  # type: ignore[import-untyped,unused-ignore]
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    with open(config, encoding="utf-8") as f:
        piper_config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=piper_config)


def _render(voice: Any, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    from piper.config import SynthesisConfig

    from opencomms.media.resample import resample

    text = request.get("text")
    length_scale = float(request.get("length_scale", 1.0))
    max_samples = int(request.get("max_samples", 0))
    if not isinstance(text, str) or not text.strip():
        return {"error": "empty text"}, b""
    rate = int(voice.config.sample_rate)
    limit = max_samples * rate // SAMPLE_RATE if max_samples > 0 else None
    pieces: list[np.ndarray[Any, np.dtype[np.int16]]] = []
    total = 0
    for chunk in voice.synthesize(text, SynthesisConfig(length_scale=length_scale)):
        samples = np.asarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)
        total += samples.size
        if limit is not None and total > limit:
            return {"error": f"speech lasts longer than {max_samples / SAMPLE_RATE:g} s", "tooLong": True}, b""
        pieces.append(samples)
    if not pieces:
        return {"error": "no speech rendered"}, b""
    audio = resample(np.concatenate(pieces), rate, SAMPLE_RATE)
    return {"samples": int(audio.size)}, audio.astype("<i2").tobytes()


def main(argv: list[str]) -> int:
    out = sys.stdout.buffer
    if len(argv) != 3:
        _answer(out, {"error": "usage: piper_worker MODEL CONFIG THREADS"})
        return 2
    try:
        voice = _load(argv[0], argv[1], max(1, int(argv[2])))
    except Exception as exc:  # a broken model or a missing package: the parent reports it
        _answer(out, {"error": f"cannot load the piper voice: {type(exc).__name__}: {exc}"[:300]})
        return 1
    _answer(out, {"ready": True})
    for line in sys.stdin.buffer:
        try:
            header, body = _render(voice, json.loads(line))
        except Exception as exc:
            header, body = {"error": f"{type(exc).__name__}: {exc}"[:300]}, b""
        _answer(out, header, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
