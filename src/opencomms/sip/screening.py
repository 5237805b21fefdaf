"""The checks a SIP user agent makes before its user sees a message (sans-I/O): what a new request is answered
when it cannot be let through, and what an incoming response or datagram is dropped for.

Owns: the UAS request screening of RFC 3261 §8.2 and §12.2.2 (405/501 + Allow, 420 + Unsupported, 481 for an
unknown dialog, the dialog's own rejection such as 500 for an out-of-order CSeq, 400 for an INVITE without
Contact), the answer when no user is installed (OPTIONS 200, BYE 200, else 480), received/rport on the top Via
(RFC 3261 §18.2.1, RFC 3581), which responses carry our Contact, the stateless refusal of an INVITE by the
admission hook, and the UAC's checks on responses (exactly one Via, §8.1.3.3; a second 2xx from another fork).
Must not: send, read a clock, hold a transaction, or decide call policy; the endpoint carries the verdicts out.
(Malformed bytes are refused by the parser with the status `SipParseError.status` carries: 400/413/416/505/513.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from opencomms.sip.builders import make_response
from opencomms.sip.destination import Destination
from opencomms.sip.dialog import TARGET_REFRESH, Dialog, DialogTable
from opencomms.sip.message import DIALOG_CREATING, KNOWN_METHODS, HeaderItems, SipRequest, SipResponse
from opencomms.sip.transactions import TransactionLayer, server_key

__all__ = [
    "Admitted",
    "Answer",
    "accepts_response",
    "allow_value",
    "default_answer",
    "fix_via",
    "forked_2xx",
    "host_for_uri",
    "is_keepalive",
    "needs_admission",
    "refusal",
    "same_host",
    "screen_request",
    "wants_contact",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the request on its transaction with this status instead of passing it to the user."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Admitted:
    """Let the request through to the user; `dialog` is the dialog an in-dialog request belongs to."""

    dialog: Dialog | None = None


def allow_value(methods: Iterable[str]) -> str:
    """The `Allow` header value for a set of methods (sorted, as every answer of this endpoint writes it)."""
    return ", ".join(sorted(methods))


def screen_request(
    request: SipRequest, dialogs: DialogTable, *, allowed_methods: frozenset[str], supported: frozenset[str]
) -> Answer | Admitted:
    """Screen a request that created a server transaction (not CANCEL: that is matched to its INVITE).

    An in-dialog request is accounted by its dialog (`Dialog.receive_request`: remote CSeq, target refresh, BYE),
    so call this once per new server transaction.
    """
    method = request.method
    if method not in allowed_methods:
        status = 405 if method in KNOWN_METHODS else 501
        return Answer(status, headers=(("Allow", allow_value(allowed_methods)),))
    unsupported = [tag for tag in request.require if tag not in supported]
    if unsupported:
        return Answer(420, headers=(("Unsupported", ", ".join(unsupported)),))
    if request.to.tag is not None:
        dialog = dialogs.for_request(request)
        if dialog is None:
            return Answer(481)
        rejection = dialog.receive_request(request)
        if rejection is not None:
            return Answer(rejection)
        return Admitted(dialog)
    if method == "INVITE" and not request.contacts:
        return Answer(400, "Missing Contact")
    return Admitted()


def default_answer(method: str, dialog: Dialog | None, allowed_methods: frozenset[str]) -> Answer:
    """What a request is answered when no user is installed: OPTIONS 200 with Allow, an in-dialog BYE 200, else
    480."""
    if method == "OPTIONS":
        return Answer(200, headers=(("Allow", allow_value(allowed_methods)),))
    if method == "BYE" and dialog is not None:
        return Answer(200)
    return Answer(480)


def wants_contact(method: str, status: int) -> bool:
    """Whether our response carries our Contact: 101-299 to a dialog-creating request, 2xx to a target refresh."""
    return (method in DIALOG_CREATING and 100 < status < 300) or (method in TARGET_REFRESH and 200 <= status < 300)


# --- addresses ----------------------------------------------------------------------------------------------------


def same_host(a: str, b: str) -> bool:
    """Whether two hosts are the same address (IP literals compared as addresses, names case-insensitively)."""
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def host_for_uri(host: str) -> str:
    """A host as written in a URI or Via: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def fix_via(request: SipRequest, source: Destination) -> None:
    """Add `received` (RFC 3261 §18.2.1: sent-by differs from the source, or rport asked) and fill `rport`
    (RFC 3581) on the top Via of a received request, in place."""
    via = request.top_via
    fixed = via
    if via.wants_rport or not same_host(via.host_unbracketed, source.host):
        fixed = fixed.with_param("received", source.host)
    if via.wants_rport:
        fixed = fixed.with_param("rport", str(source.port))
    if fixed is not via:
        request.set_top_via(fixed)


# --- admission ----------------------------------------------------------------------------------------------------


def needs_admission(request: SipRequest, layer: TransactionLayer) -> bool:
    """Whether an INVITE is a new out-of-dialog one (not a retransmission of an INVITE let in before), the only
    kind an admission hook is asked about."""
    if request.method != "INVITE" or request.to.tag is not None:
        return False
    return layer.server_transaction(server_key(request)) is None


def refusal(request: SipRequest, status: int, headers: HeaderItems, to_tag: str, user_agent: str | None) -> SipResponse:
    """The stateless answer refusing a request (RFC 3261 §8.2.7), e.g. 503 + Retry-After from admission control."""
    response = make_response(request, status, to_tag=to_tag, headers=headers)
    if user_agent:
        response.headers.set_default("Server", user_agent)
    return response


# --- input --------------------------------------------------------------------------------------------------------


def is_keepalive(data: bytes) -> bool:
    """A CRLF keep-alive (RFC 5626 §3.5.1) or an empty datagram: nothing to parse or answer."""
    return not data.strip(b"\r\n")


def accepts_response(response: SipResponse) -> bool:
    """RFC 3261 §8.1.3.3: a response with more than one Via (or none) is not for a user agent; drop it."""
    return response.headers.count("Via") == 1


def forked_2xx(request: SipRequest, first: SipResponse | None, response: SipResponse) -> bool:
    """Whether `response`, arriving after the INVITE's first final `first`, is a 2xx from another fork (another To
    tag): the UAC acknowledges it and ends that dialog (RFC 3261 §13.2.2.4)."""
    return request.method == "INVITE" and response.is_success and first is not None and response.to.tag != first.to.tag
