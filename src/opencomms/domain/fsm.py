"""A tiny helper for state machines whose transitions are data (one table per machine).

`TransitionTable.apply(state, event)` returns the next state or raises the machine's typed error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


class IllegalTransition(Exception):
    """`event` is not allowed in `state`."""

    def __init__(self, machine: str, state: Enum, event: Enum) -> None:
        super().__init__(f"{machine}: '{event.value}' is not allowed in state '{state.value}'")
        self.machine = machine
        self.state = state
        self.event = event


@dataclass(frozen=True, slots=True)
class TransitionTable(Generic[S, E]):
    """Maps (state, event) to the next state. Anything absent is illegal."""

    name: str
    edges: Mapping[tuple[S, E], S]

    def allows(self, state: S, event: E) -> bool:
        return (state, event) in self.edges

    def apply(self, state: S, event: E) -> S:
        try:
            return self.edges[(state, event)]
        except KeyError:
            raise IllegalTransition(self.name, state, event) from None
