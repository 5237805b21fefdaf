"""SIP protocol core: messages, URIs, transactions and dialogs (sans-I/O), plus thin asyncio transports and the
endpoint that wires them for a transaction user (the SIP gateway).

Layering inside the package (imports point down only):

    endpoint.py     asyncio skin: transports + TransactionLayer + DialogTable + one timer; carries out verdicts
    handles.py      what the transaction user holds (server / client transaction handles)
    resolver.py     next-hop resolution of a SIP URI (asyncio getaddrinfo, bounded)
    endpoint_config.py  EndpointConfig and the transaction user's hook types
    screening.py    UAS/UAC checks before the user sees a message: 405/501/420/481/400, Via received/rport,
                    admission refusals, responses not for us, forked 2xx (pure)
    early.py        the early refusal of a flood INVITE from its raw bytes (pure)
    transport.py    asyncio UDP/TCP; StreamFramer (pure)
    websocket.py    SIP over WebSocket (RFC 7118): the table of connections an HTTP edge attached (no I/O)
    dialog.py       RFC 3261 §12 dialog state and in-dialog requests (pure)
    transactions/   RFC 3261 §17 (+ RFC 6026) machines and the TransactionLayer (pure, `now` in, actions out)
    destination.py  where a message goes (transport, host, port; §18.2.2 response address)
    builders.py     stateless builders: responses, ACK for non-2xx, CANCEL, requests, the answer to a parse error
    parser.py       bytes -> message under ParseLimits, validation, SipParseError (the status to answer)
    message.py      SipRequest / SipResponse, typed accessors, serialization, reason phrases
    headers.py uri.py  value types and their grammars (pure)

Digest authentication (digest.py computation, digest_headers.py syntax, digest_nonces.py nonces and replay
windows, digest_server.py challenger, digest_client.py client) and the registrar (registrar.py) live beside these
and build on them.
"""

from opencomms.sip.builders import make_response
from opencomms.sip.destination import Destination
from opencomms.sip.dialog import Dialog, DialogId, DialogState, DialogTable
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ClientTransactionHandle, ServerTransactionHandle
from opencomms.sip.headers import CSeq, Headers, NameAddr, Via
from opencomms.sip.message import SipMessage, SipRequest, SipResponse
from opencomms.sip.parser import ParseLimits, SipParseError, parse
from opencomms.sip.transactions import TimerConfig, TransactionLayer, TxKey
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
