"""Importing this module activates the compiled media path (see `opencomms._compiled`): the packages holding
compiled modules import it first, before any of their modules."""

from __future__ import annotations

from opencomms._compiled import activate

STATE = activate()
