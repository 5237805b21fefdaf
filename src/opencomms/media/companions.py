"""Objects kept beside a media engine, one per engine and made on first use (its app-hosted taps, its feeds), each
linked to its engine weakly both ways: a stopped engine leaves the process with its companions.

Owns the per-engine registry (`Companions`) and a companion's weak link to its engine (`EngineCompanion`). Must not
know what a companion does; engine side only (no asyncio, no sockets).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from .engine import MediaEngine

__all__ = ["Companions", "EngineCompanion"]


class EngineCompanion:
    """An object kept beside one engine: it reaches its engine through `engine`."""

    def __init__(self, engine: MediaEngine) -> None:
        self._engine = weakref.ref(engine)  # weak: the registry's value must not keep its key alive

    @property
    def engine(self) -> MediaEngine:
        engine = self._engine()
        assert engine is not None, "the engine is gone"
        return engine


C = TypeVar("C", bound=EngineCompanion)


class Companions(Generic[C]):
    """One companion per engine, made by `make` on first use (`of`); forgotten with its engine."""

    def __init__(self, make: Callable[[MediaEngine], C]) -> None:
        self._make = make
        self._by_engine: weakref.WeakKeyDictionary[MediaEngine, C] = weakref.WeakKeyDictionary()

    def of(self, engine: MediaEngine) -> C:
        found = self._by_engine.get(engine)
        if found is None:
            found = self._by_engine[engine] = self._make(engine)
        return found
