"""SipMoves: a SIP leg keeps its dialog and RTP while the core moves it from one conversation to another
(participants/invite with replacesCallId moves a peer-to-peer call's phone into a meeting).

While held, the peer's BYE, CANCEL or media loss is kept and reported once the move is over (to whichever
conversation then has the leg), and the gateway does not answer or start media again when the leg is established
in its new conversation (`SipCall.started`). A leg that left its old conversation but could not join the new one is
hung up (`drop`).
"""

from __future__ import annotations

import logging

from opencomms.domain.results import ResultInfo
from opencomms.gateway.sip import SipCall, SipGateway
from opencomms.media.engine import commands as cmd

log = logging.getLogger("opencomms.sip")

__all__ = ["SipMoves"]


class SipMoves:
    """The `calling.meeting_invites.LegMover` of SIP legs."""

    def __init__(self, gateway: SipGateway) -> None:
        self.gateway = gateway
        self._held: dict[str, tuple[SipCall, bool]] = {}
        self._gone: dict[str, ResultInfo] = {}

    def hold(self, leg_id: str) -> bool:
        """Keep leg `leg_id`'s signalling here during a move; False when it cannot move (not answered, ending)."""
        sc = self.gateway._by_key.get(leg_id)
        if sc is None or sc.closed or not sc.answered or sc.driver is not None or leg_id in self._held:
            return False
        self._held[leg_id] = (sc, sc.started)
        sc.driver = self
        sc.started = True
        return True

    def gone(self, sc: SipCall, reason: ResultInfo) -> None:
        """(SipCall.driver) the peer ended the call during the move: told once the move is over."""
        if sc.leg_id is not None:
            self._gone.setdefault(sc.leg_id, reason)

    async def release(self, leg_id: str, *, moved: bool) -> None:
        """The move is over (`moved`: the leg is in its new conversation); a hang-up meanwhile is reported now."""
        held = self._held.pop(leg_id, None)
        if held is None:
            return
        sc, started = held
        sc.driver = None
        if not moved:
            sc.started = started
        reason = self._gone.pop(leg_id, None)
        if reason is not None and self.gateway.calls.leg(leg_id) is not None:
            await self.gateway.calls.external_ended(leg_id, reason)

    async def drop(self, leg_id: str) -> None:
        """The leg left its conversation and joined none: BYE, media and ports freed."""
        held = self._held.pop(leg_id, None)
        self._gone.pop(leg_id, None)
        sc = held[0] if held is not None else self.gateway._by_key.get(leg_id)
        self.gateway.engine.call(cmd.RemoveLeg((leg_id,)))
        if sc is not None:
            sc.driver = None
            log.info("moved call hung up: it could not join", extra={"call_id": leg_id})
            await self.gateway.teardown(sc, bye=True)
