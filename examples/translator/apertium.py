"""Apertium as a subprocess: one `apertium -u <pair>` run per text (the pair's modes are Debian packages, e.g.
`apertium-eng-spa` gives `eng-spa` and `spa-eng`). `check()` at start turns a missing program or pair into one
`TranslationConfigError` line; a translation that fails or hangs raises `TranslationError` (the bot skips it)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

__all__ = ["Apertium", "TranslationConfigError", "TranslationError"]


class TranslationConfigError(ValueError):
    """Apertium or the language pair is not installed."""


class TranslationError(RuntimeError):
    """One text could not be translated."""


class Apertium:
    """Translates with one Apertium pair (`eng-spa`: English to Spanish)."""

    def __init__(self, pair: str = "eng-spa", *, program: str = "apertium", timeout: float = 10.0) -> None:
        self.pair = pair
        self.program = program
        self.timeout = timeout

    def check(self) -> None:
        """Raise `TranslationConfigError` unless the program runs and lists the pair."""
        path = shutil.which(self.program)
        if path is None:
            raise TranslationConfigError(
                f"'{self.program}' is not installed (Debian: apt-get install apertium apertium-eng-spa)"
            )
        try:
            listed = subprocess.run([path, "-l"], capture_output=True, text=True, timeout=self.timeout).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise TranslationConfigError(f"'{self.program} -l' failed: {exc}") from None
        pairs = listed.split()
        if self.pair not in pairs:
            have = ", ".join(pairs) or "none"
            raise TranslationConfigError(
                f"Apertium pair '{self.pair}' is not installed (installed: {have}; Debian: apertium-eng-spa)"
            )

    async def translate(self, text: str) -> str:
        """`text` translated (unknown words are kept as they are, without Apertium's marks)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.program,
                "-u",
                self.pair,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise TranslationError(f"cannot run {self.program}: {exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode()), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TranslationError(f"apertium {self.pair} took longer than {self.timeout} s") from None
        except asyncio.CancelledError:  # the bot is leaving: no orphan process
            proc.kill()
            await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            raise TranslationError(f"apertium {self.pair} failed: {err.decode(errors='replace').strip()[:200]}")
        return " ".join(out.decode(errors="replace").split())
