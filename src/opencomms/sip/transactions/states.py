"""Transaction states and events, and the RFC 3261 §17 (+ RFC 6026) transition tables as data: one table per
machine (ICT, NICT, IST, NIST) and one for the UAS core's 2xx retransmission.

Must not: act on a transition (the machines in `client.py` / `server.py` do); tests enumerate these tables.
"""

from __future__ import annotations

from enum import StrEnum

from opencomms.domain.fsm import TransitionTable

__all__ = [
    "ICT_TABLE",
    "IST_TABLE",
    "NICT_TABLE",
    "NIST_TABLE",
    "OK_RETRANSMIT_TABLE",
    "TxEvent",
    "TxState",
    "response_event",
]


class TxState(StrEnum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class TxEvent(StrEnum):
    R1XX = "1xx received"
    R2XX = "2xx received"
    R3XX_6XX = "300-699 received"
    REQUEST = "request retransmission"
    ACK = "ACK received"
    TU_1XX = "TU sends 1xx"
    TU_2XX = "TU sends 2xx"
    TU_3XX_6XX = "TU sends 300-699"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_TRYING = "200 ms without a TU response"
    TRANSPORT_ERROR = "transport error"


S = TxState
E = TxEvent

ICT_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "INVITE client transaction",
    {
        (S.CALLING, E.TIMER_A): S.CALLING,
        (S.CALLING, E.TIMER_B): S.TERMINATED,
        (S.CALLING, E.R1XX): S.PROCEEDING,
        (S.CALLING, E.R2XX): S.ACCEPTED,
        (S.CALLING, E.R3XX_6XX): S.COMPLETED,
        (S.CALLING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING,
        (S.PROCEEDING, E.R2XX): S.ACCEPTED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TIMER_B): S.TERMINATED,  # only when the TU re-arms B (after sending CANCEL, §9.1)
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TIMER_D): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.ACCEPTED, E.R2XX): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_M): S.TERMINATED,
    },
)

NICT_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "non-INVITE client transaction",
    {
        (S.TRYING, E.TIMER_E): S.TRYING,
        (S.TRYING, E.TIMER_F): S.TERMINATED,
        (S.TRYING, E.R1XX): S.PROCEEDING,
        (S.TRYING, E.R2XX): S.COMPLETED,
        (S.TRYING, E.R3XX_6XX): S.COMPLETED,
        (S.TRYING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.TIMER_E): S.PROCEEDING,
        (S.PROCEEDING, E.TIMER_F): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING,
        (S.PROCEEDING, E.R2XX): S.COMPLETED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R2XX): S.COMPLETED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TIMER_K): S.TERMINATED,
    },
)

IST_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "INVITE server transaction",
    {
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
)

NIST_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "non-INVITE server transaction",
    {
        (S.TRYING, E.REQUEST): S.TRYING,
        (S.TRYING, E.TU_1XX): S.PROCEEDING,
        (S.TRYING, E.TU_2XX): S.COMPLETED,
        (S.TRYING, E.TU_3XX_6XX): S.COMPLETED,
        (S.TRYING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.REQUEST): S.PROCEEDING,
        (S.PROCEEDING, E.TU_1XX): S.PROCEEDING,
        (S.PROCEEDING, E.TU_2XX): S.COMPLETED,
        (S.PROCEEDING, E.TU_3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.REQUEST): S.COMPLETED,
        (S.COMPLETED, E.TIMER_J): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
    },
)

OK_RETRANSMIT_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "2xx retransmission (UAS core)",
    {
        (S.ACCEPTED, E.TIMER_G): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_H): S.TERMINATED,
        (S.ACCEPTED, E.ACK): S.TERMINATED,
    },
)


def response_event(status: int, *, from_tu: bool) -> TxEvent:
    if status < 200:
        return E.TU_1XX if from_tu else E.R1XX
    if status < 300:
        return E.TU_2XX if from_tu else E.R2XX
    return E.TU_3XX_6XX if from_tu else E.R3XX_6XX
