"""Transfers of SIP legs done by the far end itself: REFER out, NOTIFY in, outcomes back to CallService.

When a bot transfers a call whose far party is a SIP peer that accepts REFER (its Allow header says so) to a
phone number, the gateway sends REFER in that dialog (Refer-To: the number at the trunk, Referred-By: us) and
follows the implicit subscription's NOTIFYs (message/sipfrag): 1xx -> `external_transfer_accepted`, 2xx ->
`external_transferred`, >= 300 or no final NOTIFY within the dial timeout -> `external_transfer_failed` with the
codes of a bridged transfer (500/7700 unreachable, else 500/7000). A REFER the peer refuses (non-2xx) falls
back to the node's own bridging. The protocol state lives in `refer.ReferTransfer`; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from opencomms.calling.model import Call, JsonObj
from opencomms.domain import results
from opencomms.domain.results import ResultInfo
from opencomms.gateway.mapping import failure_for_status
from opencomms.gateway.refer import ReferOutcome, ReferState, ReferTransfer, refer_target
from opencomms.sip.dialog import Dialog, DialogState
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.headers import NameAddr
from opencomms.sip.message import SipRequest
from opencomms.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from opencomms.gateway.sip import SipCall, SipGateway

log = logging.getLogger("opencomms.sip")

REFER_FORBIDDEN = ("Warning", '399 opencomms "calls are transferred by their application"')


def can_refer(gw: SipGateway, call: Call, target: JsonObj) -> bool:
    """Whether external leg `call` can be moved to `target` (invitationParticipantInfo) by REFER: a phone target,
    a trunk, a peer that allows REFER, a confirmed dialog and no REFER of it still running."""
    number = str((target.get("identity") or {}).get("phone", {}).get("id") or "")
    sc = gw._by_key.get(call.id)
    trunk = parse_uri(gw.config.trunk_uri) if gw.config.trunk_uri else None
    if not number or sc is None or not sc.answered or "REFER" not in sc.allow or not isinstance(trunk, SipUri):
        return False
    dialog = _dialog(sc)
    if dialog is None or dialog.state is not DialogState.CONFIRMED or dialog not in gw.endpoint.dialogs:
        return False
    return sc.refer is None or sc.refer.done


def start_refer(gw: SipGateway, call: Call, target: JsonObj) -> None:
    """Send the REFER of a transfer the conversation started (after `can_refer` said yes); when the leg can no
    longer be moved that way, the transfer fails back to the node's own bridging."""
    if not can_refer(gw, call, target):
        gw.spawn(gw.calls.external_transfer_failed(call.id, results.TRANSFER_FAILED, bridge=target))
        return
    sc = gw._by_key[call.id]
    dialog = _dialog(sc)
    assert dialog is not None
    trunk = parse_uri(gw.config.trunk_uri)
    assert isinstance(trunk, SipUri)
    number = str((target.get("identity") or {}).get("phone", {}).get("id") or "")
    uri = refer_target(number, trunk)
    sc.refer = ReferTransfer(call.id, str(uri))
    sc.transfer_target = target
    gw.spawn(_refer(gw, sc, dialog, uri))
    log.info("transfer by REFER", extra={"call_id": call.id})


def on_notify(gw: SipGateway, handle: ServerTransactionHandle, req: SipRequest) -> None:
    """A NOTIFY: progress of our REFER (200), anything else 481 (no such subscription, RFC 6665 §4.1.3)."""
    sc = gw._by_dialog.get(req.call_id)
    refer = sc.refer if sc is not None else None
    event = (req.headers.get("Event") or "").split(";", 1)[0].strip().lower()
    if sc is None or refer is None or event != "refer" or handle.dialog is None:
        handle.respond(481, "Subscription Does Not Exist")
        return
    handle.respond(200)
    _apply(gw, sc, refer, refer.on_notify(req.body))


async def _refer(gw: SipGateway, sc: SipCall, dialog: Dialog, uri: SipUri) -> None:
    refer = sc.refer
    assert refer is not None
    request = dialog.refer(NameAddr(uri), referred_by=dialog.local_uri)
    try:
        response = await gw.endpoint.request_in_dialog(dialog, request)
        status = response.status
    except (OSError, ValueError):
        status = 503
    _apply(gw, sc, refer, refer.on_response(status))
    if refer.done:
        return
    await asyncio.sleep(gw.calls.timeouts.dial_timeout)
    _apply(gw, sc, refer, refer.on_timeout())


def _apply(gw: SipGateway, sc: SipCall, refer: ReferTransfer, outcome: ReferOutcome | None) -> None:
    if outcome is None or sc.closed or sc.refer is not refer:
        return
    leg = refer.leg_id
    if outcome.first_progress and outcome.state is ReferState.TRYING:
        gw.spawn(gw.calls.external_transfer_accepted(leg))
    if outcome.state is ReferState.SUCCEEDED:
        log.info("REFER transfer completed", extra={"call_id": leg})
        gw.spawn(gw.calls.external_transferred(leg))
    elif outcome.state is ReferState.FAILED:
        log.info("REFER transfer failed", extra={"call_id": leg, "status": outcome.status})
        gw.spawn(gw.calls.external_transfer_failed(leg, _failure(outcome.status)))
    elif outcome.state is ReferState.REFUSED:
        log.info("REFER refused: bridging instead", extra={"call_id": leg, "status": outcome.status})
        gw.spawn(gw.calls.external_transfer_failed(leg, results.TRANSFER_FAILED, bridge=sc.transfer_target))


def _failure(status: int) -> ResultInfo:
    """The bridged path's codes: the target could not be reached (480 family) 500/7700, else 500/7000."""
    if status and failure_for_status(status).code == 480:
        return results.TRANSFER_TARGET_UNREACHABLE
    return results.TRANSFER_FAILED


def _dialog(sc: SipCall) -> Dialog | None:
    if sc.invite is not None:
        return sc.invite.dialog
    return sc.outgoing.dialog if sc.outgoing is not None else None


__all__ = ["REFER_FORBIDDEN", "on_notify", "start_refer"]
