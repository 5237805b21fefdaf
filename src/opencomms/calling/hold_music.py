"""Hold music in meetings: startHoldMusic takes a participant out of the meeting and plays it music alone.

A subscriber of the conversation core. On `LegHeld(held=True)` the held leg's engine leg moves from the meeting's
mix into a private one (`<leg>/hold`) with a *music* leg of its own that plays the startHoldMusic `customPrompt`
(a mediaPrompt, loaded through the PromptLibrary like any prompt) or, without one or when it cannot be loaded, the
built-in loop (`media.hold_music`), back to back for up to `HOLD_SECONDS`. So the held participant hears only the
music and the meeting hears neither the music nor the participant (whose audio `MeetingMedia` also mutes). On
`LegHeld(held=False)` the music leg goes and the leg rejoins the meeting's mix; when the leg ends on hold, the
music leg goes with it. The music leg is not a leg of the core: no roster entry, no notification. The prompt is
loaded in a task of its own (never inside the unit of work); a generation tag per hold drops a load that finishes
after the hold ended.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.domain import events as ev
from opencomms.domain.errors import OpenCommsError
from opencomms.domain.ids import new_id
from opencomms.domain.legs import JsonObj
from opencomms.domain.media import PromptError, PromptSpec
from opencomms.domain.rules import ConversationKind
from opencomms.media.engine import commands as cmd
from opencomms.media.hold_music import hold_music, loops_for
from opencomms.tasks import TaskSet
from opencomms.wire.media import prompt as media_prompt

log = logging.getLogger("opencomms.meetings")

__all__ = ["HOLD_SECONDS", "HoldMusicPlayer", "music_leg"]

HOLD_SECONDS = 3600.0
"""Longest time the music plays to one held participant (then silence until stopHoldMusic)."""


class _Engine(Protocol):
    def call(self, fn: Any) -> None: ...


class _Loader(Protocol):
    async def load(self, spec: PromptSpec) -> Any: ...


def music_leg(leg_id: str) -> str:
    """The engine leg that plays hold music to `leg_id`."""
    return f"{leg_id}/hold"


class HoldMusicPlayer(Subscriber):
    """Plays hold music to the participant on hold, and to no one else."""

    def __init__(self, prompts: _Loader, engine: _Engine) -> None:
        self.prompts = prompts
        self.engine = engine
        self._held: dict[str, str] = {}
        """Leg id -> the tag of its current hold."""
        self._tasks = TaskSet("hold-music")

    @property
    def held(self) -> int:
        """Legs hearing hold music now (or about to)."""
        return len(self._held)

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if batch.kind is not ConversationKind.MEETING:
            return
        if isinstance(event, ev.LegHeld):
            if event.leg_id in self._held:
                self._stop(event.leg_id, rejoin=None if event.held else batch.conversation_id)
            elif not event.held:
                return
            if event.held:
                tag = self._held[event.leg_id] = new_id()
                self._tasks.spawn(self._start(event.leg_id, tag, event.prompt))
        elif isinstance(event, ev.LegEnded | ev.LegReleased) and event.leg_id in self._held:
            self._stop(event.leg_id, rejoin=None)

    async def _start(self, leg_id: str, tag: str, prompt: JsonObj | None) -> None:
        clip = hold_music()
        if prompt is not None:
            try:
                clip = await self.prompts.load(_spec(prompt))
            except (PromptError, OpenCommsError) as exc:
                log.warning("hold music prompt not loaded, built-in music instead: %s", exc, extra={"call_id": leg_id})
        if self._held.get(leg_id) != tag:
            return  # taken off hold (or gone) while the prompt loaded
        clips = [clip] * loops_for(len(clip), HOLD_SECONDS)
        music = music_leg(leg_id)

        self.engine.call(cmd.HoldMusicStart(leg_id, music, tag, tuple(clips)))

    def _stop(self, leg_id: str, *, rejoin: str | None) -> None:
        self._held.pop(leg_id, None)
        music = music_leg(leg_id)

        self.engine.call(cmd.HoldMusicStop(leg_id, music, rejoin))

    async def close(self) -> None:
        await self._tasks.close()


def _spec(prompt: JsonObj) -> PromptSpec:
    """The PromptSpec of a normalised mediaPrompt (the wire reader checked it; BadRequest if it was not)."""
    return media_prompt(prompt, "customPrompt")[0]
