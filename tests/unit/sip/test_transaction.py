"""RFC 3261 §17 transactions driven by an explicit clock: transition tables enumerated, retransmission schedules
(A doubles without cap until B; E doubles up to T2; G doubles up to T2; 2xx T1..T2 until 64*T1), reliable
transports (no retransmission, zero D/I/J/K), and the layer's matching rules (§17.1.3, §17.2.3, CANCEL, ACK)."""

from __future__ import annotations

import itertools

import pytest

from opencomms.domain.fsm import IllegalTransition, TransitionTable
from opencomms.sip.builders import build_request, make_response
from opencomms.sip.destination import Destination, response_destination
from opencomms.sip.headers import NameAddr
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.parser import parse
from opencomms.sip.transactions import (
    MAGIC_COOKIE,
    AckReceived,
    AckTimeout,
    Action,
    Deliver,
    NewRequest,
    Send,
    StrayResponse,
    Terminated,
    Timeout,
    TimerConfig,
    TransactionLayer,
    TransportFailed,
    TxKey,
    new_branch,
    server_key,
)
from opencomms.sip.transactions.client import InviteClientTransaction, NonInviteClientTransaction
from opencomms.sip.transactions.server import InviteServerTransaction, NonInviteServerTransaction
from opencomms.sip.transactions.states import ICT_TABLE, IST_TABLE, NICT_TABLE, NIST_TABLE, TxEvent, TxState
from opencomms.sip.uri import parse_uri

S = TxState
E = TxEvent
T = TimerConfig()
UDP = Destination.udp("192.0.2.1", 5060)
TCP = Destination.tcp("192.0.2.1", 5060)
_cseq = itertools.count(1)


def request(method: str = "INVITE", branch: str | None = None, *, via_host: str = "10.0.0.1:5060") -> SipRequest:
    req = build_request(
        method,
        parse_uri("sip:bob@example.com"),
        from_=NameAddr(parse_uri("sip:alice@example.com")).with_tag("from1"),
        to=NameAddr(parse_uri("sip:bob@example.com")),
        call_id="call-1",
        cseq=next(_cseq),
        contact=NameAddr(parse_uri("sip:alice@10.0.0.1")),
    )
    req.headers.add_first("Via", f"SIP/2.0/UDP {via_host};branch={branch or new_branch()};rport")
    return req


def answer(req: SipRequest, status: int, tag: str = "to1") -> SipResponse:
    return make_response(req, status, to_tag=tag)


def run_until_idle(
    txn: InviteClientTransaction | NonInviteClientTransaction | InviteServerTransaction | NonInviteServerTransaction,
) -> list[tuple[float, Action]]:
    """Fire every timer at its deadline until the machine has none left."""
    out: list[tuple[float, Action]] = []
    while (deadline := txn.next_deadline()) is not None:
        out.extend((deadline, a) for a in txn.on_timer(deadline))
    return out


def send_times(events: list[tuple[float, Action]]) -> list[float]:
    return [t for t, a in events if isinstance(a, Send)]


# --- tables -----------------------------------------------------------------------------------------------------

EXPECTED_TABLES: dict[str, dict[tuple[TxState, TxEvent], TxState]] = {
    "ict": {
        (S.CALLING, E.TIMER_A): S.CALLING,
        (S.CALLING, E.TIMER_B): S.TERMINATED,
        (S.CALLING, E.R1XX): S.PROCEEDING,
        (S.CALLING, E.R2XX): S.ACCEPTED,
        (S.CALLING, E.R3XX_6XX): S.COMPLETED,
        (S.CALLING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING,
        (S.PROCEEDING, E.R2XX): S.ACCEPTED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TIMER_B): S.TERMINATED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TIMER_D): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.ACCEPTED, E.R2XX): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_M): S.TERMINATED,
    },
    "nict": {
        **{(s, e): s for s in (S.TRYING, S.PROCEEDING) for e in (E.TIMER_E,)},
        **{(s, e): S.TERMINATED for s in (S.TRYING, S.PROCEEDING) for e in (E.TIMER_F, E.TRANSPORT_ERROR)},
        **{(s, E.R1XX): S.PROCEEDING for s in (S.TRYING, S.PROCEEDING)},
        **{(s, e): S.COMPLETED for s in (S.TRYING, S.PROCEEDING, S.COMPLETED) for e in (E.R2XX, E.R3XX_6XX)},
        (S.COMPLETED, E.TIMER_K): S.TERMINATED,
    },
    "ist": {
        (S.PROCEEDING, E.REQUEST): S.PROCEEDING,
        (S.PROCEEDING, E.TIMER_TRYING): S.PROCEEDING,
        (S.PROCEEDING, E.TU_1XX): S.PROCEEDING,
        (S.PROCEEDING, E.TU_2XX): S.ACCEPTED,
        (S.PROCEEDING, E.TU_3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.REQUEST): S.COMPLETED,
        (S.COMPLETED, E.ACK): S.CONFIRMED,
        (S.COMPLETED, E.TIMER_G): S.COMPLETED,
        (S.COMPLETED, E.TIMER_H): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.CONFIRMED, E.REQUEST): S.CONFIRMED,
        (S.CONFIRMED, E.ACK): S.CONFIRMED,
        (S.CONFIRMED, E.TIMER_I): S.TERMINATED,
        (S.ACCEPTED, E.REQUEST): S.ACCEPTED,
        (S.ACCEPTED, E.TU_2XX): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_L): S.TERMINATED,
    },
    "nist": {
        **{(s, E.REQUEST): s for s in (S.TRYING, S.PROCEEDING, S.COMPLETED)},
        **{(s, E.TU_1XX): S.PROCEEDING for s in (S.TRYING, S.PROCEEDING)},
        **{(s, e): S.COMPLETED for s in (S.TRYING, S.PROCEEDING) for e in (E.TU_2XX, E.TU_3XX_6XX)},
        **{(s, E.TRANSPORT_ERROR): S.TERMINATED for s in (S.TRYING, S.PROCEEDING, S.COMPLETED)},
        (S.COMPLETED, E.TIMER_J): S.TERMINATED,
    },
}
TABLES: dict[str, TransitionTable[TxState, TxEvent]] = {
    "ict": ICT_TABLE,
    "nict": NICT_TABLE,
    "ist": IST_TABLE,
    "nist": NIST_TABLE,
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_state_event_pair(name: str) -> None:
    table, expected = TABLES[name], EXPECTED_TABLES[name]
    for state, event in itertools.product(TxState, TxEvent):
        if (state, event) in expected:
            assert table.apply(state, event) is expected[(state, event)], (state, event)
        else:
            assert not table.allows(state, event)
            with pytest.raises(IllegalTransition):
                table.apply(state, event)
    assert not any(s is S.TERMINATED for s, _ in expected)


# --- INVITE client ----------------------------------------------------------------------------------------------


def test_ict_timer_a_doubles_without_cap_until_b() -> None:
    txn = InviteClientTransaction(request(), UDP, T)
    first = txn.start(0.0)
    assert [type(a) for a in first] == [Send]
    events = run_until_idle(txn)
    assert send_times(events) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [(t, type(a)) for t, a in events if not isinstance(a, Send)] == [(32.0, Timeout), (32.0, Terminated)]
    assert all(a.data == txn.data for _, a in events if isinstance(a, Send))
    assert txn.state is S.TERMINATED


def test_ict_provisional_stops_retransmissions() -> None:
    req = request()
    txn = InviteClientTransaction(req, UDP, T)
    txn.start(0.0)
    assert txn.on_timer(0.5) and txn.timer(E.TIMER_A) == 1.5
    actions = txn.on_response(answer(req, 180), 0.7)
    assert [type(a) for a in actions] == [Deliver] and txn.state is S.PROCEEDING
    assert txn.next_deadline() is None  # no retransmission, no B in Proceeding
    txn.arm_timeout(40.0)  # after a CANCEL the TU gives it 64*T1
    assert [type(a) for a in txn.on_timer(40.0)] == [Timeout, Terminated]


def test_ict_non2xx_acked_by_the_transaction() -> None:
    req = request()
    txn = InviteClientTransaction(req, UDP, T)
    txn.start(0.0)
    busy = answer(req, 486)
    actions = txn.on_response(busy, 1.0)
    assert [type(a) for a in actions] == [Send, Deliver] and txn.state is S.COMPLETED
    ack = parse(actions[0].data)  # type: ignore[union-attr]
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.top_via.branch == req.top_via.branch
    assert ack.to.tag == "to1" and ack.cseq.number == req.cseq.number and ack.cseq.method == "ACK"
    again = txn.on_response(busy, 2.0)  # retransmitted 486: ACK again, not delivered again
    assert [type(a) for a in again] == [Send] and again[0] == actions[0]
    assert txn.on_response(answer(req, 180), 2.5) == []
    assert txn.timer(E.TIMER_D) == 33.0
    assert [type(a) for _, a in run_until_idle(txn)] == [Terminated]


def test_ict_over_tcp_never_retransmits_and_d_is_zero() -> None:
    req = request()
    txn = InviteClientTransaction(req, TCP, T)
    txn.start(0.0)
    assert txn.timer(E.TIMER_A) is None and txn.timer(E.TIMER_B) == 32.0
    actions = txn.on_response(answer(req, 503), 1.0)
    assert [type(a) for a in actions] == [Send, Deliver, Terminated] and txn.terminated


def test_ict_2xx_is_passed_up_and_accepted_absorbs_more() -> None:
    req = request()
    txn = InviteClientTransaction(req, UDP, T)
    txn.start(0.0)
    ok = answer(req, 200)
    assert [type(a) for a in txn.on_response(ok, 1.0)] == [Deliver] and txn.state is S.ACCEPTED
    assert txn.timer(E.TIMER_A) is None and txn.timer(E.TIMER_M) == 33.0
    forked = answer(req, 200, tag="other")
    assert txn.on_response(forked, 2.0) == [Deliver(txn.key, forked)]
    assert txn.on_response(answer(req, 486), 2.0) == []
    assert [type(a) for _, a in run_until_idle(txn)] == [Terminated]


def test_ict_transport_error() -> None:
    txn = InviteClientTransaction(request(), UDP, T)
    txn.start(0.0)
    assert [type(a) for a in txn.on_transport_error(0.1)] == [TransportFailed, Terminated]
    assert txn.on_transport_error(0.2) == []


def test_client_transaction_needs_a_branch() -> None:
    req = request()
    req.headers.set("Via", "SIP/2.0/UDP h")
    with pytest.raises(ValueError):
        InviteClientTransaction(req, UDP, T)
    with pytest.raises(ValueError):
        NonInviteClientTransaction(request(), UDP, T)


# --- non-INVITE client --------------------------------------------------------------------------------------------


def test_nict_timer_e_doubles_up_to_t2_until_f() -> None:
    txn = NonInviteClientTransaction(request("OPTIONS"), UDP, T)
    txn.start(0.0)
    events = run_until_idle(txn)
    assert send_times(events) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [type(a) for t, a in events if t == 32.0] == [Timeout, Terminated]


def test_nict_provisional_sets_e_to_t2() -> None:
    req = request("BYE")
    txn = NonInviteClientTransaction(req, UDP, T)
    txn.start(0.0)
    txn.on_timer(0.5)
    assert [type(a) for a in txn.on_response(answer(req, 100), 0.6)] == [Deliver] and txn.state is S.PROCEEDING
    txn.on_timer(1.5)
    assert txn.timer(E.TIMER_E) == 5.5
    final = txn.on_response(answer(req, 200), 6.0)
    assert [type(a) for a in final] == [Deliver] and txn.state is S.COMPLETED
    assert txn.timer(E.TIMER_K) == 11.0 and txn.timer(E.TIMER_E) is None and txn.timer(E.TIMER_F) is None
    assert txn.on_response(answer(req, 200), 7.0) == []  # absorbed
    assert [type(a) for _, a in run_until_idle(txn)] == [Terminated]


def test_nict_over_tcp() -> None:
    req = request("OPTIONS")
    txn = NonInviteClientTransaction(req, TCP, T)
    txn.start(0.0)
    assert txn.timer(E.TIMER_E) is None and txn.timer(E.TIMER_F) == 32.0
    assert [type(a) for a in txn.on_response(answer(req, 404), 0.1)] == [Deliver, Terminated]


def test_custom_timers_scale_everything() -> None:
    fast = TimerConfig(t1=0.01, t2=0.04, t4=0.05)
    txn = NonInviteClientTransaction(request("OPTIONS"), UDP, fast)
    txn.start(0.0)
    assert txn.timer(E.TIMER_F) == pytest.approx(0.64)
    with pytest.raises(ValueError):
        TimerConfig(t1=0.0)
    with pytest.raises(ValueError):
        TimerConfig(t1=5.0, t2=4.0)


# --- INVITE server --------------------------------------------------------------------------------------------


def ist(req: SipRequest, dest: Destination = UDP, trying: float | None = 0.2) -> InviteServerTransaction:
    txn = InviteServerTransaction(server_key(req), req, dest, T, trying)
    assert txn.start(0.0) == []
    return txn


def test_ist_sends_100_after_200ms_and_resends_last_provisional() -> None:
    req = request()
    txn = ist(req)
    assert txn.next_deadline() == 0.2
    (trying,) = txn.on_timer(0.2)
    assert isinstance(trying, Send) and parse(trying.data).status == 100  # type: ignore[union-attr]
    assert txn.on_request(req, 0.3) == [trying]
    ringing = txn.respond(answer(req, 180), 0.4)
    assert txn.on_request(req, 0.5) == ringing


def test_ist_no_100_when_tu_answers_quickly() -> None:
    req = request()
    txn = ist(req)
    txn.respond(answer(req, 180), 0.1)
    assert txn.timer(E.TIMER_TRYING) is None
    fresh = ist(request())
    (sent,) = fresh.on_request(fresh.request, 0.05)  # retransmission before 200 ms: answer 100 at once
    assert parse(sent.data).status == 100  # type: ignore[union-attr]
    assert fresh.timer(E.TIMER_TRYING) is None


def test_ist_final_retransmitted_on_g_until_ack() -> None:
    req = request()
    txn = ist(req)
    (busy,) = txn.respond(answer(req, 486), 1.0)
    assert txn.state is S.COMPLETED and txn.timer(E.TIMER_G) == 1.5 and txn.timer(E.TIMER_H) == 33.0
    sends = []
    for _ in range(5):
        deadline = txn.next_deadline()
        assert deadline is not None
        sends.append(deadline)
        assert txn.on_timer(deadline) == [busy]
    assert sends == [1.5, 2.5, 4.5, 8.5, 12.5]  # T1, 2T1, 4T1, then T2
    assert txn.on_request(req, 13.0) == [busy]
    ack = build_ack(req, busy)
    assert txn.on_request(ack, 13.5) == [] and txn.state is S.CONFIRMED
    assert txn.timer(E.TIMER_G) is None and txn.timer(E.TIMER_H) is None and txn.timer(E.TIMER_I) == 18.5
    assert txn.on_request(ack, 14.0) == []  # absorbed
    assert [type(a) for _, a in run_until_idle(txn)] == [Terminated]


def build_ack(req: SipRequest, sent: Action) -> SipRequest:
    from opencomms.sip.builders import build_ack_for_non2xx

    assert isinstance(sent, Send)
    response = parse(sent.data)
    assert isinstance(response, SipResponse)
    return build_ack_for_non2xx(req, response)


def test_ist_timer_h_without_ack() -> None:
    req = request()
    txn = ist(req)
    txn.respond(answer(req, 500), 0.0)
    events = run_until_idle(txn)
    assert [type(a) for t, a in events if t == 32.0] == [Timeout, Terminated]


def test_ist_2xx_goes_to_accepted() -> None:
    req = request()
    txn = ist(req)
    txn.respond(answer(req, 200), 1.0)
    assert txn.state is S.ACCEPTED and txn.timer(E.TIMER_L) == 33.0 and txn.timer(E.TIMER_G) is None
    assert txn.on_request(req, 2.0) == []  # INVITE retransmission absorbed (RFC 6026)
    assert len(txn.respond(answer(req, 200), 2.0)) == 1  # the core may retransmit the 2xx through it
    with pytest.raises(IllegalTransition):
        txn.respond(answer(req, 486), 2.0)
    assert [type(a) for _, a in run_until_idle(txn)] == [Terminated]


def test_ist_over_tcp() -> None:
    req = request()
    txn = ist(req, TCP)
    (busy,) = txn.respond(answer(req, 486), 0.0)
    assert txn.timer(E.TIMER_G) is None and txn.timer(E.TIMER_H) == 32.0
    assert txn.on_request(build_ack(req, busy), 0.1) == [Terminated(txn.key)]


def test_server_cannot_answer_twice() -> None:
    req = request()
    txn = ist(req)
    txn.respond(answer(req, 486), 0.0)
    assert not txn.can_respond(200) and txn.final_sent
    with pytest.raises(IllegalTransition):
        txn.respond(answer(req, 200), 0.0)


# --- non-INVITE server --------------------------------------------------------------------------------------------


def test_nist() -> None:
    req = request("OPTIONS")
    txn = NonInviteServerTransaction(server_key(req), req, UDP, T)
    assert txn.on_request(req, 0.1) == []  # Trying: absorbed
    (prov,) = txn.respond(answer(req, 100), 0.2)
    assert txn.on_request(req, 0.3) == [prov]
    (ok,) = txn.respond(answer(req, 200), 0.4)
    assert txn.state is S.COMPLETED and txn.timer(E.TIMER_J) == pytest.approx(32.4)
    assert txn.on_request(req, 1.0) == [ok]
    with pytest.raises(IllegalTransition):
        txn.respond(answer(req, 500), 1.0)
    assert [type(a) for _, a in run_until_idle(txn)] == [Terminated]
    reliable = NonInviteServerTransaction(server_key(req), req, TCP, T)
    assert [type(a) for a in reliable.respond(answer(req, 200), 0.0)] == [Send, Terminated]


# --- the layer ------------------------------------------------------------------------------------------------


def first(actions: list[Action], kind: type) -> object:
    return next(a for a in actions if isinstance(a, kind))


def test_layer_merges_retransmissions_and_separates_transactions() -> None:
    layer = TransactionLayer(T)
    src = Destination.udp("10.0.0.1", 40000)
    req = request("OPTIONS")
    created = layer.receive(req, src, 0.0)
    new = first(created, NewRequest)
    assert isinstance(new, NewRequest) and new.request is req and len(layer) == 1
    assert layer.receive(parse(req.serialize()), src, 0.1) == []  # retransmission: absorbed in Trying
    other = request("OPTIONS", branch=req.top_via.branch, via_host="10.0.0.2:5060")  # same branch, other sent-by
    assert any(isinstance(a, NewRequest) for a in layer.receive(other, src, 0.2))
    assert len(layer) == 2
    (sent,) = layer.respond(new.key, answer(req, 200), 0.3)
    assert isinstance(sent, Send) and sent.dest == Destination.udp("10.0.0.1", 40000)  # rport -> source port
    assert layer.receive(parse(req.serialize()), src, 0.4) == [sent]
    with pytest.raises(IllegalTransition):
        layer.respond(new.key, answer(req, 500), 0.5)


def test_layer_client_matching_by_branch_and_method() -> None:
    layer = TransactionLayer(T)
    invite = request()
    txn, actions = layer.send_request(invite, UDP, 0.0)
    assert actions == [Send(txn.data, UDP)] and txn.key == TxKey(invite.top_via.branch or "", "", "INVITE")
    from opencomms.sip.builders import build_cancel

    cancel_txn, _ = layer.send_request(build_cancel(invite), UDP, 0.1)
    assert cancel_txn.key.branch == txn.key.branch and cancel_txn.key.method == "CANCEL"
    ok_for_cancel = answer(build_cancel(invite), 200)
    assert first(layer.receive(ok_for_cancel, UDP, 0.2), Deliver) == Deliver(cancel_txn.key, ok_for_cancel)
    terminated = answer(invite, 487)
    got = layer.receive(terminated, UDP, 0.3)
    assert Deliver(txn.key, terminated) in got
    stray = answer(request("OPTIONS"), 200)
    assert layer.receive(stray, UDP, 0.4) == [StrayResponse(stray, UDP)]
    with pytest.raises(ValueError):
        layer.send_request(invite, UDP, 0.5)  # same branch again


def test_layer_acks_retransmitted_2xx_from_its_cache() -> None:
    layer = TransactionLayer(T)
    invite = request()
    txn, _ = layer.send_request(invite, UDP, 0.0)
    ok = answer(invite, 200)
    assert layer.receive(ok, UDP, 0.1) == [Deliver(txn.key, ok)]
    assert not layer.acked(ok)
    ack = invite.copy()
    ack.method = "ACK"
    ack.headers.set("CSeq", f"{invite.cseq.number} ACK")
    ack.headers.set("To", ok.headers.get("To") or "")
    (sent,) = layer.send_ack(ack, UDP, 0.2)
    assert layer.acked(ok)
    assert layer.receive(ok, UDP, 0.5) == [sent]  # retransmitted 2xx: the same ACK again, not delivered
    layer.on_timer(32.15)  # M (32.1) ended the transaction; the ACK is remembered until 0.2 + 64*T1
    assert layer.client_transaction(txn.key) is None
    assert layer.receive(ok, UDP, 32.15) == [sent]
    layer.on_timer(32.3)
    assert layer.receive(ok, UDP, 32.4) == [StrayResponse(ok, UDP)]


def test_layer_ack_matching_on_the_server() -> None:
    layer = TransactionLayer(T)
    src = Destination.udp("10.0.0.1", 5060)
    invite = request()
    new = first(layer.receive(invite, src, 0.0), NewRequest)
    assert isinstance(new, NewRequest)
    busy_sent = layer.respond(new.key, answer(invite, 486), 0.1)
    ack = build_ack(invite, busy_sent[0])
    assert layer.receive(ack, src, 0.2) == []  # ACK for a non-2xx: absorbed by the transaction
    ist_ = layer.server_transaction(new.key)
    assert ist_ is not None and ist_.state is S.CONFIRMED

    invite2 = request()
    new2 = first(layer.receive(invite2, src, 1.0), NewRequest)
    assert isinstance(new2, NewRequest)
    ok = answer(invite2, 200)
    layer.respond(new2.key, ok, 1.0)
    assert layer.pending_2xx == 1
    ack2 = request("ACK")  # ACK for 2xx: its own branch
    ack2.headers.set("CSeq", f"{invite2.cseq.number} ACK")
    ack2.headers.set("To", ok.headers.get("To") or "")
    assert layer.receive(ack2, src, 1.2) == [AckReceived(ack2, src, new2.key)]
    assert layer.pending_2xx == 0
    assert layer.receive(ack2, src, 1.3) == [AckReceived(ack2, src, None)]


def test_layer_2xx_retransmission_until_ack_timeout() -> None:
    layer = TransactionLayer(T)
    src = Destination.udp("10.0.0.1", 5060)
    invite = request()
    new = first(layer.receive(invite, src, 0.0), NewRequest)
    assert isinstance(new, NewRequest)
    (ok_sent,) = layer.respond(new.key, answer(invite, 200), 0.0)
    times: list[float] = []
    events: list[Action] = []
    while (deadline := layer.next_deadline()) is not None:
        for action in layer.on_timer(deadline):
            events.append(action)
            if action == ok_sent:
                times.append(deadline)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert AckTimeout(new.key) in events and Terminated(new.key) in events
    assert len(layer) == 0 and layer.pending_2xx == 0


def test_layer_cancel_finds_its_invite() -> None:
    from opencomms.sip.builders import build_cancel

    layer = TransactionLayer(T)
    src = Destination.udp("10.0.0.1", 5060)
    invite = request()
    new = first(layer.receive(invite, src, 0.0), NewRequest)
    cancel = build_cancel(invite)
    cancel_new = first(layer.receive(cancel, src, 0.1), NewRequest)
    assert isinstance(new, NewRequest) and isinstance(cancel_new, NewRequest)
    assert cancel_new.key.method == "CANCEL" and cancel_new.key.branch == new.key.branch
    found = layer.invite_for_cancel(cancel)
    assert found is not None and found.key == new.key
    assert layer.invite_for_cancel(build_cancel(request())) is None


def test_layer_rfc2543_requests_without_branch() -> None:
    layer = TransactionLayer(T)
    src = Destination.udp("10.0.0.1", 5060)
    req = request("OPTIONS")
    req.headers.set("Via", "SIP/2.0/UDP 10.0.0.1")
    assert any(isinstance(a, NewRequest) for a in layer.receive(req, src, 0.0))
    assert layer.receive(parse(req.serialize()), src, 0.1) == []  # same fields: the same transaction
    assert server_key(req).branch.startswith("2543|")
    assert response_destination(req, src) == Destination.udp("10.0.0.1", 5060)


def test_layer_timer_schedule_over_many_transactions() -> None:
    layer = TransactionLayer(T, trying_delay=None)
    for start in (0.0, 0.1, 0.2):
        layer.send_request(request("OPTIONS"), UDP, start)
    assert layer.next_deadline() == 0.5
    assert len([a for a in layer.on_timer(0.55) if isinstance(a, Send)]) == 1
    assert layer.next_deadline() == pytest.approx(0.6)
    assert layer.on_timer(0.3) == []  # nothing due
    fired = [a for a in layer.on_timer(100.0) if isinstance(a, Timeout)]
    assert len(fired) == 3 and len(layer) == 0 and layer.next_deadline() is None


def test_layer_overload_answers_503_statelessly() -> None:
    layer = TransactionLayer(T, max_transactions=1)
    src = Destination.udp("10.0.0.1", 5060)
    layer.receive(request("OPTIONS"), src, 0.0)
    (busy,) = layer.receive(request("OPTIONS"), src, 0.0)
    assert isinstance(busy, Send) and parse(busy.data).status == 503  # type: ignore[union-attr]
    assert layer.overloaded == 1 and len(layer) == 1


def test_layer_transport_error() -> None:
    layer = TransactionLayer(T)
    txn, _ = layer.send_request(request("OPTIONS"), TCP, 0.0)
    layer.send_request(request("OPTIONS"), UDP, 0.0)
    assert layer.transport_error(TCP, 0.1) == [TransportFailed(txn.key), Terminated(txn.key)]
    assert len(layer) == 1


def test_response_destination_rules() -> None:
    req = request("OPTIONS", via_host="10.9.9.9:5070")
    assert response_destination(req, Destination.udp("192.0.2.7", 33333)) == Destination.udp("192.0.2.7", 33333)
    req.headers.set("Via", "SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKx")
    assert response_destination(req, Destination.udp("192.0.2.7", 33333)) == Destination.udp("192.0.2.7", 5070)
    req.headers.set("Via", "SIP/2.0/UDP host;branch=z9hG4bKx")
    assert response_destination(req, Destination.udp("192.0.2.7", 1)).port == 5060
    assert response_destination(req, Destination.tcp("192.0.2.7", 4444)) == Destination.tcp("192.0.2.7", 4444)


def test_new_branch() -> None:
    a, b = new_branch(), new_branch()
    assert a.startswith(MAGIC_COOKIE) and len(a) == len(MAGIC_COOKIE) + 24 and a != b
