"""Typed errors of the speech package."""

from __future__ import annotations

__all__ = ["SpeechConfigError"]


class SpeechConfigError(RuntimeError):
    """A model or package transcription needs is missing or unusable: a configuration error at start."""
