"""Builders for the conversation model's tests: legs, invitations and conversations without HTTP or a clock."""

from __future__ import annotations

from typing import Any

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.conversation import Conversation
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind, ConversationTimeouts

TIMEOUTS = ConversationTimeouts(answer=15.0, keepalive=2700.0, redirect_single=55.0, redirect_multiple=60.0, dial=60.0)


def app_identity(name: str) -> dict[str, Any]:
    return {"application": {"id": f"app-{name}", "displayName": name}}


def spec(name: str, kind: LegKind = LegKind.BOT) -> LegSpec:
    """The leg `name` (its id), of bot `app-<name>` or, for an external kind, a phone."""
    identity = app_identity(name) if kind is LegKind.BOT else {"phone": {"id": f"+1555{name}"}}
    return LegSpec(
        id=name,
        kind=kind,
        participant_id=f"p-{name}",
        source_id=f"{abs(hash(name)) % 1000 + 1}",
        identity=identity,
        source={"identity": app_identity("caller")},
        app_id="" if kind.external else f"app-{name}",
        attrs={"callback_uri": f"https://{name}.example/cb"},
    )


def ring(name: str, kind: LegKind = LegKind.BOT, ring_for: float | None = None) -> c.Invitation:
    return c.Invitation(leg=spec(name, kind), ring_for=ring_for)


def unreachable(reason: ResultInfo) -> c.Invitation:
    return c.Invitation(failure=reason)


def conversation(kind: ConversationKind = ConversationKind.PEER_TO_PEER) -> Conversation:
    return Conversation("conv-1", "tenant-1", kind, timeouts=TIMEOUTS)


class Run:
    """A conversation and the events of every command applied to it, at a settable time."""

    def __init__(self, kind: ConversationKind = ConversationKind.PEER_TO_PEER) -> None:
        self.conv = conversation(kind)
        self.now = 1000.0
        self.events: list[ev.Event] = []

    def do(self, command: c.Command, *, at: float | None = None) -> list[ev.Event]:
        if at is not None:
            self.now = at
        out = self.conv.apply(command, self.now)
        self.events.extend(out)
        return out

    def ended(self, leg_id: str) -> ResultInfo:
        """The result the leg ended with (it must have ended exactly once)."""
        found = [e.result for e in self.events if isinstance(e, ev.LegEnded) and e.leg_id == leg_id]
        assert len(found) == 1, (leg_id, found)
        return found[0]

    def states(self, leg_id: str) -> list[str]:
        """The leg's states as its bot's notifications show them (ringing, updates, end)."""
        out: list[str] = []
        for e in self.events:
            if getattr(e, "leg_id", None) != leg_id:
                continue
            if isinstance(e, ev.LegRinging):
                out.append("incoming")
            elif isinstance(e, ev.LegEstablishing):
                out.append("establishing")
            elif isinstance(e, ev.LegEstablished):
                out.append("established")
            elif isinstance(e, ev.LegStateChanged):
                out.append(e.state.value)
            elif isinstance(e, ev.LegEnded):
                out.append("terminated")
        return out


def code(info: ResultInfo) -> tuple[int, int]:
    return (info.code, info.subcode)
