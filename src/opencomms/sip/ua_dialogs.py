"""Which dialogs a user agent's transactions create, confirm and end (RFC 3261 §12, §13, §15), sans-I/O.

Owns: the UAS side (an INVITE's 101-299 creates the dialog, its 2xx confirms it, a 300-699 or an answered BYE
ends it) and the UAC side (early dialogs per To tag on 1xx, the one a 2xx confirms and the others ended, the
dialog of a second 2xx from another fork, an in-dialog request's answer: target refresh, 408/481 end it), all
kept in a `DialogTable` with the transport and peer the dialog's requests use.
Must not: send anything (the endpoint ACKs and BYEs), read a clock, or decide what to answer.
"""

from __future__ import annotations

import logging

from opencomms.sip.destination import Destination
from opencomms.sip.dialog import Dialog, DialogError, DialogState, DialogTable
from opencomms.sip.headers import HeaderError
from opencomms.sip.message import SipRequest, SipResponse

__all__ = ["after_in_dialog_response", "after_uas_response", "early_dialog", "final_dialog", "fork_dialog"]

log = logging.getLogger("opencomms.sip")


def _at(dialog: Dialog, peer: Destination) -> Dialog:
    dialog.transport = peer.transport
    dialog.peer = peer.addr
    return dialog


def _end(dialogs: DialogTable, dialog: Dialog) -> None:
    dialog.terminate()
    dialogs.remove(dialog)


def after_uas_response(
    dialogs: DialogTable,
    request: SipRequest,
    response: SipResponse,
    dialog: Dialog | None,
    created: bool,
    source: Destination,
) -> tuple[Dialog | None, bool]:
    """Account a response we sent to `request` (whose dialog is `dialog`, `created` by an earlier response of
    this transaction). Returns the transaction's dialog and whether this transaction created it."""
    status = response.status
    if request.method == "INVITE" and dialog is None and 100 < status < 300:
        try:
            dialog = _at(dialogs.add(Dialog.from_uas(request, response)), source)
        except (DialogError, HeaderError) as exc:
            log.debug("SIP no dialog from %s: %s", status, exc)
            return None, False
        created = True
    if dialog is None:
        return None, created
    if created:
        if response.is_success:
            dialog.state = DialogState.CONFIRMED
        elif status >= 300:
            _end(dialogs, dialog)
    if request.method == "BYE" and status >= 200:
        _end(dialogs, dialog)
    return dialog, created


def early_dialog(
    dialogs: DialogTable, early: dict[str, Dialog], invite: SipRequest, response: SipResponse, peer: Destination
) -> None:
    """A 101-199 to our INVITE with a To tag we have not seen: the early dialog with that fork (kept in `early`,
    by To tag)."""
    tag = response.to.tag
    if tag is None or tag in early:
        return
    try:
        dialog = Dialog.from_uac(invite, response)
    except (DialogError, HeaderError):
        return
    early[tag] = dialogs.add(_at(dialog, peer))


def final_dialog(
    dialogs: DialogTable, early: dict[str, Dialog], invite: SipRequest, response: SipResponse, peer: Destination
) -> Dialog | None:
    """The final response to our out-of-dialog INVITE: every early dialog but the answering one ends; a 2xx
    confirms (or creates) the dialog it returns."""
    tag = response.to.tag if response.is_success else None
    for early_tag, dialog in early.items():
        if early_tag != tag:
            _end(dialogs, dialog)
    if tag is None:
        return None
    found = early.get(tag)
    try:
        if found is None:
            return dialogs.add(_at(Dialog.from_uac(invite, response), peer))
        found.confirm(response)
        return found
    except (DialogError, HeaderError) as exc:
        log.debug("SIP 2xx without usable dialog: %s", exc)
        return None


def after_in_dialog_response(dialogs: DialogTable, dialog: Dialog, request: SipRequest, response: SipResponse) -> None:
    """The final answer to a request we sent in `dialog`: target refresh on 2xx; 408, 481 or a BYE end it."""
    dialog.on_response(request, response)
    if response.status in (408, 481) or dialog.state is DialogState.TERMINATED:
        _end(dialogs, dialog)


def fork_dialog(invite: SipRequest, response: SipResponse, peer: Destination) -> Dialog | None:
    """The dialog of a second 2xx from another fork (not kept: the UAC acknowledges it and sends BYE at once)."""
    try:
        return _at(Dialog.from_uac(invite, response), peer)
    except (DialogError, HeaderError):
        return None
