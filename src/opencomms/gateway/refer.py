"""Blind transfer of a SIP leg by REFER (RFC 3515), as a sans-I/O state machine, and the helpers around it.

Owns: whether a peer can be REFERred (its Allow header), the Refer-To URI of a phone number at the trunk, the
reading of NOTIFY message/sipfrag bodies (RFC 3420), and the life of one REFER: sent -> accepted (202) ->
trying (1xx NOTIFY) -> succeeded (2xx NOTIFY) | failed (NOTIFY >= 300, REFER rejected, no final NOTIFY in
time). `ReferTransfer` takes what arrives and returns the `ReferOutcome` the gateway must act on; it sends
nothing and reads no clock. Must not: touch calls (the gateway maps outcomes to CallService), or media.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from opencomms.domain.fsm import TransitionTable
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.uri import SipUri

_STATUS_LINE = re.compile(rb"\s*SIP/2\.0\s+([1-6][0-9][0-9])(?:\s+([^\r\n]*))?")


def allowed_methods(message: SipRequest | SipResponse) -> frozenset[str]:
    """The methods a peer's Allow header lists (upper case); empty when it sent none."""
    values = message.headers.get_all("Allow")
    return frozenset(m.strip().upper() for v in values for m in v.split(",") if m.strip())


def refer_target(number: str, trunk: SipUri) -> SipUri:
    """Refer-To for a phone number: the number at the trunk (the peer places the new call through it)."""
    return SipUri(host=trunk.host, port=trunk.port, user=number, params=trunk.params)


def sipfrag_status(body: bytes) -> tuple[int, str] | None:
    """(status, reason) of a message/sipfrag body's status line, or None if it has none (RFC 3420)."""
    match = _STATUS_LINE.match(body[:512])
    if match is None:
        return None
    return int(match.group(1)), (match.group(2) or b"").decode("utf-8", "replace").strip()


class ReferState(StrEnum):
    SENT = "sent"
    ACCEPTED = "accepted"
    TRYING = "trying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    """The peer did not take the REFER at all (non-2xx): the transfer may still be done another way."""


class ReferEvent(StrEnum):
    REFER_ACCEPTED = "referAccepted"
    REFER_REFUSED = "referRefused"
    PROGRESS = "progress"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"


_S, _E = ReferState, ReferEvent
_EDGES: dict[tuple[ReferState, ReferEvent], ReferState] = {
    (_S.SENT, _E.REFER_ACCEPTED): _S.ACCEPTED,
    (_S.SENT, _E.REFER_REFUSED): _S.REFUSED,
    (_S.SENT, _E.TIMEOUT): _S.FAILED,
    # a NOTIFY may overtake the 202 (RFC 3515 §2.4.4: it implies acceptance)
    (_S.SENT, _E.PROGRESS): _S.TRYING,
    (_S.SENT, _E.SUCCESS): _S.SUCCEEDED,
    (_S.SENT, _E.FAILURE): _S.FAILED,
    (_S.ACCEPTED, _E.PROGRESS): _S.TRYING,
    (_S.ACCEPTED, _E.SUCCESS): _S.SUCCEEDED,
    (_S.ACCEPTED, _E.FAILURE): _S.FAILED,
    (_S.ACCEPTED, _E.TIMEOUT): _S.FAILED,
    (_S.TRYING, _E.PROGRESS): _S.TRYING,
    (_S.TRYING, _E.SUCCESS): _S.SUCCEEDED,
    (_S.TRYING, _E.FAILURE): _S.FAILED,
    (_S.TRYING, _E.TIMEOUT): _S.FAILED,
}
REFER_FSM: TransitionTable[ReferState, ReferEvent] = TransitionTable("refer", _EDGES)
FINAL_STATES = frozenset({ReferState.SUCCEEDED, ReferState.FAILED, ReferState.REFUSED})


@dataclass(frozen=True, slots=True)
class ReferOutcome:
    """What changed: `state` after the event; `status` the SIP status that caused it (0 for a timeout)."""

    state: ReferState
    status: int
    first_progress: bool = False
    """True the first time the transfer is known to be under way (report transferAccepted once)."""


@dataclass(eq=False)
class ReferTransfer:
    """One REFER in one dialog. Feed it the REFER's final response and each NOTIFY's sipfrag."""

    leg_id: str
    target: str
    state: ReferState = ReferState.SENT
    _accepted_reported: bool = False

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def on_response(self, status: int) -> ReferOutcome | None:
        """The final response to our REFER (2xx: accepted; else refused)."""
        if self.done or self.state is not ReferState.SENT:
            return None
        return self._apply(ReferEvent.REFER_ACCEPTED if 200 <= status < 300 else ReferEvent.REFER_REFUSED, status)

    def on_notify(self, body: bytes) -> ReferOutcome | None:
        """A NOTIFY of the refer subscription; None when it changes nothing (no status line, after the end)."""
        found = sipfrag_status(body)
        if found is None or self.done:
            return None
        status = found[0]
        if status < 200:
            event = ReferEvent.PROGRESS
        elif status < 300:
            event = ReferEvent.SUCCESS
        else:
            event = ReferEvent.FAILURE
        return self._apply(event, status)

    def on_timeout(self) -> ReferOutcome | None:
        """No final NOTIFY in time."""
        if self.done:
            return None
        return self._apply(ReferEvent.TIMEOUT, 0)

    def _apply(self, event: ReferEvent, status: int) -> ReferOutcome:
        self.state = REFER_FSM.apply(self.state, event)
        first = self.state in (ReferState.TRYING, ReferState.SUCCEEDED) and not self._accepted_reported
        if first:
            self._accepted_reported = True
        return ReferOutcome(self.state, status, first)


__all__ = [
    "REFER_FSM",
    "ReferEvent",
    "ReferOutcome",
    "ReferState",
    "ReferTransfer",
    "allowed_methods",
    "refer_target",
    "sipfrag_status",
]
