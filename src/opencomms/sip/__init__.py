"""SIP protocol core: messages, URIs, transactions and dialogs (sans-I/O), plus thin asyncio transports and the
endpoint that wires them for a transaction user (the SIP gateway).

Layering inside the package (imports point down only):

    endpoint.py   asyncio: transports + TransactionLayer + DialogTable + one timer; the TU interface
    transport.py  asyncio UDP/TCP; StreamFramer (pure)
    dialog.py     RFC 3261 §12 dialog state and in-dialog requests (pure)
    transaction.py RFC 3261 §17 (+ RFC 6026) machines and the TransactionLayer (pure, `now` in, actions out)
    message.py    parse/serialize, validation, stateless builders (pure)
    headers.py uri.py  value types and their grammars (pure)

Digest authentication (auth.py) and the registrar (registrar.py) live beside these and build on them.
"""

from opencomms.sip.dialog import Dialog, DialogId, DialogState, DialogTable
from opencomms.sip.endpoint import ClientTransactionHandle, EndpointConfig, ServerTransactionHandle, SipEndpoint
from opencomms.sip.headers import CSeq, Headers, NameAddr, Via
from opencomms.sip.message import (
    ParseLimits,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    parse,
)
from opencomms.sip.transaction import Destination, TimerConfig, TransactionLayer, TxKey
from opencomms.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, UriError, parse_uri

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "ClientTransactionHandle",
    "Destination",
    "Dialog",
    "DialogId",
    "DialogState",
    "DialogTable",
    "EndpointConfig",
    "Headers",
    "NameAddr",
    "ParseLimits",
    "ServerTransactionHandle",
    "SipEndpoint",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "TelUri",
    "TimerConfig",
    "TransactionLayer",
    "TxKey",
    "Uri",
    "UriError",
    "Via",
    "make_response",
    "parse",
    "parse_uri",
]
