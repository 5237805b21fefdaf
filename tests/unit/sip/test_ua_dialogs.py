"""Dialog bookkeeping of a user agent's transactions without sockets (`sip.ua_dialogs`): the UAS's INVITE creates
its dialog on 101-299 and loses it on 300-699, an answered BYE ends it; the UAC keeps one early dialog per fork and
keeps only the one the 2xx names; 408/481 to an in-dialog request end the dialog."""

from __future__ import annotations

from opencomms.sip.builders import make_response
from opencomms.sip.destination import Destination
from opencomms.sip.dialog import Dialog, DialogState, DialogTable
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.parser import parse
from opencomms.sip.ua_dialogs import (
    after_in_dialog_response,
    after_uas_response,
    early_dialog,
    final_dialog,
    fork_dialog,
)

PEER = Destination("tcp", "198.51.100.1", 5070)
INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.1:5070;branch=z9hG4bKd1\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@198.51.100.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: dialogs-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.1:5070;transport=tcp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    request = parse(INVITE)
    assert isinstance(request, SipRequest)
    return request


def answer(request: SipRequest, status: int, tag: str = "b1") -> SipResponse:
    return make_response(request, status, to_tag=tag, headers=[("Contact", "<sip:bob@127.0.0.1>")])


def test_uas_invite_creates_confirms_or_drops_its_dialog() -> None:
    dialogs, request = DialogTable(), invite()
    dialog, created = after_uas_response(dialogs, request, answer(request, 180), None, False, PEER)
    assert created and dialog is not None and dialog in dialogs and dialog.state is DialogState.EARLY
    assert dialog.transport == "tcp" and dialog.peer == PEER.addr
    same, created = after_uas_response(dialogs, request, answer(request, 200), dialog, created, PEER)
    assert same is dialog and dialog.state is DialogState.CONFIRMED
    refused, created = after_uas_response(DialogTable(), request, answer(request, 100), None, False, PEER)
    assert refused is None and not created  # 100 creates nothing
    dialogs2 = DialogTable()
    early, created = after_uas_response(dialogs2, request, answer(request, 183), None, False, PEER)
    assert early is not None
    after_uas_response(dialogs2, request, answer(request, 486), early, created, PEER)
    assert early not in dialogs2 and early.state is DialogState.TERMINATED


def test_uac_keeps_the_fork_the_2xx_names() -> None:
    dialogs, early, request = DialogTable(), dict[str, Dialog](), invite()
    early_dialog(dialogs, early, request, answer(request, 180, "f1"), PEER)
    early_dialog(dialogs, early, request, answer(request, 180, "f2"), PEER)
    early_dialog(dialogs, early, request, answer(request, 183, "f2"), PEER)  # same fork again
    assert sorted(early) == ["f1", "f2"] and len(list(dialogs)) == 2
    dialog = final_dialog(dialogs, early, request, answer(request, 200, "f2"), PEER)
    assert dialog is early["f2"] and dialog.state is DialogState.CONFIRMED
    assert list(dialogs) == [dialog] and early["f1"].state is DialogState.TERMINATED


def test_uac_failure_ends_every_early_dialog() -> None:
    dialogs, early, request = DialogTable(), dict[str, Dialog](), invite()
    early_dialog(dialogs, early, request, answer(request, 180, "f1"), PEER)
    assert final_dialog(dialogs, early, request, answer(request, 486, "f1"), PEER) is None
    assert list(dialogs) == []


def test_a_2xx_without_early_dialog_creates_one_and_a_second_fork_is_not_kept() -> None:
    dialogs, request = DialogTable(), invite()
    dialog = final_dialog(dialogs, {}, request, answer(request, 200, "f1"), PEER)
    assert dialog is not None and list(dialogs) == [dialog] and dialog.peer == PEER.addr
    other = fork_dialog(request, answer(request, 200, "f2"), PEER)
    assert other is not None and other not in dialogs and other.id.remote_tag == "f2"


def test_408_or_481_to_an_in_dialog_request_ends_the_dialog() -> None:
    for status, kept in ((200, True), (408, False), (481, False), (486, True)):
        dialogs, request = DialogTable(), invite()
        dialog = final_dialog(dialogs, {}, request, answer(request, 200), PEER)
        assert dialog is not None
        options = dialog.options()
        after_in_dialog_response(dialogs, dialog, options, make_response(options, status))
        assert (dialog in dialogs) is kept, status
