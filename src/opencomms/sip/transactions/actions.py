"""What the transaction layer asks its adapter to do: frozen action dataclasses (`Send`, `NewRequest`, `Deliver`,
`Timeout`, ...), the only outputs of the sans-I/O machines.

Must not: carry behaviour; an adapter (the endpoint) carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.sip.destination import Destination
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.transactions.keys import TxKey

__all__ = [
    "AckReceived",
    "AckTimeout",
    "Action",
    "Deliver",
    "NewRequest",
    "Send",
    "StrayResponse",
    "Terminated",
    "Timeout",
    "TransportFailed",
]


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    dest: Destination


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A request that created a server transaction; the TU must answer it through `TransactionLayer.respond`."""

    key: TxKey
    request: SipRequest
    source: Destination


@dataclass(frozen=True, slots=True)
class Deliver:
    """A response for a client transaction (provisional, final, and further 2xx to an INVITE)."""

    key: TxKey
    response: SipResponse


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B/F (client: treat as 408) or H (INVITE server: the ACK for a non-2xx never came)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported an error for this transaction (client: treat as 503, RFC 3261 §8.1.3.1)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class Terminated:
    key: TxKey


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK not absorbed by an INVITE server transaction: the ACK for a 2xx (`key` is the INVITE's server
    transaction if its 2xx was still being retransmitted, else None)."""

    request: SipRequest
    source: Destination
    key: TxKey | None


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """A 2xx to an INVITE was retransmitted for 64*T1 without an ACK (RFC 3261 §13.3.1.4: end the session)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction (e.g. a late 2xx from another fork)."""

    response: SipResponse
    source: Destination


Action = Send | NewRequest | Deliver | Timeout | TransportFailed | Terminated | AckReceived | AckTimeout | StrayResponse
