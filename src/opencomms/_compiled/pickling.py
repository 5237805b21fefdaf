"""Pickling for the frozen dataclasses of compiled modules that cross the media process boundary.

mypyc's default unpickling assigns each attribute, which a frozen dataclass refuses; such a class defines
`def __reduce__(self) -> Reduced: return reduce_frozen(self)`, which rebuilds it through its constructor (the same
on the pure-Python path, so both ends of the pipe agree whichever path they run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Reduced = tuple[Callable[..., object], tuple[object, ...]]


def rebuild(cls: Callable[..., object], values: dict[str, Any]) -> object:
    return cls(**values)


def reduce_frozen(obj: Any) -> Reduced:
    fields = dataclasses.fields(obj)
    return rebuild, (type(obj), {f.name: getattr(obj, f.name) for f in fields if f.init})
