"""RFC 3261 §17 transactions (with the RFC 6026 Accepted states) as sans-I/O machines, and the layer over them.

Owns: the four transaction machines (states as an enum, transitions as one `TransitionTable` each), their timers
A-M driven by an explicit `now`, the UAS core's 2xx retransmission until ACK (§13.3.1.4), the UAC's ACK re-sending
for retransmitted 2xx (§13.2.2.4), transaction matching (§17.1.3, §17.2.3, including CANCEL and the RFC 2543
fallback) and branch generation. Outputs are frozen actions (`Send`, `NewRequest`, `Deliver`, `Timeout`, ...)
for an adapter to carry out.
Must not: do I/O or read a clock, parse bytes, build dialogs, or decide how a transaction user answers.

Inside (imports point down only):

    layer.py    TransactionLayer: matching, creation, one deadline heap, ACK re-sending, overload 503
    client.py   INVITE / non-INVITE client transactions        server.py  INVITE / non-INVITE server, 2xx retransmitter
    machine.py  TimerConfig (T1, T2, T4), timed machine base    states.py  states, events, transition tables
    actions.py  the output actions                              keys.py    TxKey, branches, matching keys

This package exports what a transaction user and its adapter need; the machines and tables are imported from
their modules (tests do).
"""

from opencomms.sip.transactions.actions import (
    AckReceived,
    AckTimeout,
    Action,
    Deliver,
    NewRequest,
    Send,
    StrayResponse,
    Terminated,
    Timeout,
    TransportFailed,
)
from opencomms.sip.transactions.keys import MAGIC_COOKIE, TxKey, client_key, new_branch, server_key
from opencomms.sip.transactions.layer import TransactionLayer
from opencomms.sip.transactions.machine import TimerConfig

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "AckTimeout",
    "Action",
    "Deliver",
    "NewRequest",
    "Send",
    "StrayResponse",
    "Terminated",
    "Timeout",
    "TimerConfig",
    "TransactionLayer",
    "TransportFailed",
    "TxKey",
    "client_key",
    "new_branch",
    "server_key",
]
