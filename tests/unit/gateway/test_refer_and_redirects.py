"""Pure parts of SIP transfers and redirects: the REFER state machine, sipfrag, Allow, 3xx Contact ranking."""

from __future__ import annotations

import pytest

from opencomms.domain.fsm import IllegalTransition
from opencomms.gateway.outbound import redirect_targets
from opencomms.gateway.refer import (
    REFER_FSM,
    ReferEvent,
    ReferState,
    ReferTransfer,
    allowed_methods,
    refer_target,
    sipfrag_status,
)
from opencomms.sip.parser import parse
from opencomms.sip.uri import SipUri


def response(*headers: str) -> bytes:
    head = [
        "SIP/2.0 302 Moved Temporarily",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1",
        "From: <sip:a@x>;tag=1",
        "To: <sip:b@y>;tag=2",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        *headers,
        "Content-Length: 0",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def test_sipfrag_status_lines() -> None:
    assert sipfrag_status(b"SIP/2.0 100 Trying\r\n") == (100, "Trying")
    assert sipfrag_status(b"SIP/2.0 486 Busy Here\r\nVia: x\r\n") == (486, "Busy Here")
    assert sipfrag_status(b"SIP/2.0 200\r\n") == (200, "")
    assert sipfrag_status(b"") is None and sipfrag_status(b"hello") is None and sipfrag_status(b"SIP/2.0 99 x") is None


def test_refer_success_reports_accepted_once() -> None:
    refer = ReferTransfer("leg", "sip:+1@trunk")
    assert refer.on_response(202) is not None and refer.state is ReferState.ACCEPTED
    first = refer.on_notify(b"SIP/2.0 100 Trying\r\n")
    assert first is not None and first.first_progress and first.state is ReferState.TRYING
    again = refer.on_notify(b"SIP/2.0 180 Ringing\r\n")
    assert again is not None and not again.first_progress
    done = refer.on_notify(b"SIP/2.0 200 OK\r\n")
    assert done is not None and done.state is ReferState.SUCCEEDED and refer.done
    assert refer.on_notify(b"SIP/2.0 200 OK\r\n") is None and refer.on_timeout() is None


def test_refer_failures() -> None:
    refused = ReferTransfer("leg", "t")
    outcome = refused.on_response(405)
    assert outcome is not None and outcome.state is ReferState.REFUSED and outcome.status == 405
    failed = ReferTransfer("leg", "t")
    failed.on_response(202)
    outcome = failed.on_notify(b"SIP/2.0 404 Not Found\r\n")
    assert outcome is not None and outcome.state is ReferState.FAILED and outcome.status == 404
    silent = ReferTransfer("leg", "t")
    silent.on_response(202)
    outcome = silent.on_timeout()
    assert outcome is not None and outcome.state is ReferState.FAILED and outcome.status == 0
    early = ReferTransfer("leg", "t")  # a NOTIFY may overtake the 202
    outcome = early.on_notify(b"SIP/2.0 200 OK\r\n")
    assert outcome is not None and outcome.state is ReferState.SUCCEEDED and outcome.first_progress
    assert early.on_response(202) is None


def test_refer_table_has_no_way_out_of_final_states() -> None:
    for state in (ReferState.SUCCEEDED, ReferState.FAILED, ReferState.REFUSED):
        for event in ReferEvent:
            with pytest.raises(IllegalTransition):
                REFER_FSM.apply(state, event)


def test_allow_and_refer_target() -> None:
    message = parse(response("Allow: INVITE, ACK,BYE", "Allow: refer"))
    assert allowed_methods(message) == frozenset({"INVITE", "ACK", "BYE", "REFER"})
    assert allowed_methods(parse(response())) == frozenset()
    trunk = SipUri(host="10.0.0.1", port=5070, params=(("transport", "tcp"),))
    assert str(refer_target("+14255550123", trunk)) == "sip:+14255550123@10.0.0.1:5070;transport=tcp"


def test_redirect_targets_by_q_once_each_sip_only() -> None:
    message = parse(
        response(
            "Contact: <sip:low@10.0.0.1>;q=0.1, <sip:high@10.0.0.2>;q=0.9",
            "Contact: <tel:+14255550123>, <sip:plain@10.0.0.3>, <sip:bad@10.0.0.4>;q=x",
        )
    )
    ranked = [str(u) for u in redirect_targets(message, set())]
    assert ranked == ["sip:plain@10.0.0.3", "sip:high@10.0.0.2", "sip:low@10.0.0.1", "sip:bad@10.0.0.4"]
    rest = redirect_targets(message, {"sip:plain@10.0.0.3", "sip:high@10.0.0.2"})
    assert [str(u) for u in rest] == ["sip:low@10.0.0.1", "sip:bad@10.0.0.4"]
    assert redirect_targets(parse(response()), set()) == []
