"""Announcements phones hear in a meeting: the recording status changed, and (when the meeting's
`isEntryExitAnnounced`) who joined or left.

A subscriber of the conversation core: on a meeting's `RecordingStatusChanged`, `ParticipantJoined` (not into the
lobby), an admission from the lobby (a `ParticipantUpdated` of someone the roster before the command had in the
lobby: admit, admitAll, or lobbyBypassSettings that now let them in) or `ParticipantLeft` (not from the lobby) it
speaks one short sentence (espeak-ng through the PromptLibrary, cached by text) to the whole meeting with the
engine's `play_to_mix` (one clip for the mix, whatever its size), and only when a SIP leg is in the meeting: bots
learn the same from their roster. Cheap by construction: nothing per leg, a name's sentence is synthesized once; it
never blocks the unit of work (the speech is loaded in a task of its own).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from opencomms.calling.service import CallService
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.domain import events as ev
from opencomms.domain.ids import new_id
from opencomms.domain.legs import JsonObj, LegKind
from opencomms.domain.media import PromptError, PromptSpec
from opencomms.domain.meetings import MeetingLookup
from opencomms.domain.rules import ConversationKind
from opencomms.media.engine import commands as cmd
from opencomms.tasks import TaskSet

log = logging.getLogger("opencomms.meetings")

__all__ = ["RECORDING_STARTED", "RECORDING_STOPPED", "Announcer", "display_name"]

RECORDING_STARTED = "This meeting is now being recorded."
RECORDING_STOPPED = "Recording has stopped."
MAX_NAME = 60
"""Characters of a display name spoken at most."""


class _Engine(Protocol):
    def call(self, fn: Any) -> None: ...


class _Loader(Protocol):
    async def load(self, spec: PromptSpec) -> Any: ...


def display_name(identity: JsonObj) -> str:
    """The name to announce for an identitySet ('A participant' when it has none)."""
    for kind in ("user", "phone", "guest", "application", "applicationInstance"):
        item = identity.get(kind)
        if isinstance(item, dict):
            name = str(item.get("displayName") or ("A caller" if kind == "phone" else ""))
            name = "".join(ch for ch in name if ch.isprintable())[:MAX_NAME].strip()
            if name:
                return name
    return "A participant"


class Announcer(Subscriber):
    """Speaks recording changes and, in meetings that want it, joins and leaves to the meeting's phones."""

    def __init__(
        self, calls: CallService, lookup: MeetingLookup, prompts: _Loader, engine: _Engine, *, voice: str = ""
    ) -> None:
        self.calls = calls
        self.lookup = lookup
        self.prompts = prompts
        self.engine = engine
        self.voice = voice or None
        self._tasks = TaskSet("announcements")
        self.spoken = 0
        self._lobby_of: Batch | None = None
        self._lobby: set[str] = set()

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if batch.kind is not ConversationKind.MEETING:
            return
        text: str | None = None
        if isinstance(event, ev.RecordingStatusChanged):
            if event.status == "recording":
                text = RECORDING_STARTED
            elif event.status == "notRecording":
                text = RECORDING_STOPPED
        elif isinstance(event, ev.ParticipantJoined | ev.ParticipantLeft | ev.ParticipantUpdated):
            if event.participant.in_lobby:
                return  # the lobby is not the meeting: waiting, or leaving it, is not announced
            if isinstance(event, ev.ParticipantUpdated) and not self._admitted(batch, event.participant.id):
                return
            info = self.lookup.meeting(batch.conversation_id)
            if info is None or not info.entry_exit_announced:
                return
            verb = "has left" if isinstance(event, ev.ParticipantLeft) else "has joined"
            text = f"{display_name(event.participant.identity)} {verb}."
        if text is not None:
            self._tasks.spawn(self._speak(batch.conversation_id, text))

    def _admitted(self, batch: Batch, participant_id: str) -> bool:
        """The update is an admission: the participant was in the lobby before the command (admit, admitAll, or the
        meeting's new lobbyBypassSettings). The batch's lobby is read once per batch."""
        if batch is not self._lobby_of:
            self._lobby_of = batch
            self._lobby = {p.id for p in batch.roster_before if p.in_lobby}
        return participant_id in self._lobby

    async def _speak(self, meeting_id: str, text: str) -> None:
        conv = await self.calls.conversation(meeting_id)
        if conv is None or not any(leg.kind is LegKind.SIP and leg.live for leg in conv.legs.values()):
            return  # no phone to tell
        try:
            clip = await self.prompts.load(PromptSpec(text=text, voice=self.voice))
        except PromptError as exc:
            log.warning("announcement not spoken: %s", exc.message, extra={"meeting_id": meeting_id})
            return
        tag = new_id()
        self.engine.call(cmd.PlayToMix(meeting_id, tag, (clip,)))
        self.spoken += 1

    async def close(self) -> None:
        await self._tasks.close()
