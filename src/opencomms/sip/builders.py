"""Stateless SIP message builders (RFC 3261): tags and Call-IDs, responses (§8.2.6), the stateless answer to an
unparseable request, the ACK for a non-2xx (§17.1.1.3), CANCEL (§9.1) and out-of-dialog requests (§8.1.1).

Must not: parse bytes, keep state, add a Via (the endpoint does when it sends), or know about transactions.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from opencomms.randpool import random_bytes
from opencomms.sip.headers import HeaderError, Headers, NameAddr, parse_name_addr
from opencomms.sip.message import DIALOG_CREATING, HeaderItems, SipRequest, SipResponse, reason_phrase
from opencomms.sip.parser import SipParseError
from opencomms.sip.uri import Uri

__all__ = [
    "build_ack_for_non2xx",
    "build_cancel",
    "build_request",
    "error_response",
    "make_response",
    "new_call_id",
    "new_tag",
]


def new_tag() -> str:
    """A From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return random_bytes(8).hex()


def new_call_id(host: str | None = None) -> str:
    token = random_bytes(16).hex()
    return f"{token}@{host}" if host else token


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` per RFC 3261 §8.2.6: Via (all, in order), From, To (plus `to_tag` if it has none),
    Call-ID, CSeq copied; Record-Route copied on 101-299 to a dialog-creating request (§12.1.1)."""
    req = request.headers
    items = [("Via", value) for value in req.get_all("Via")]
    keys = ["via"] * len(items)
    to = req.get("To") or ""
    if to_tag and status != 100:
        to = _to_with_tag(to, to_tag)
    items += [("From", req.get("From") or ""), ("To", to), ("Call-ID", req.get("Call-ID") or "")]
    items.append(("CSeq", req.get("CSeq") or ""))
    keys += ["from", "to", "call-id", "cseq"]
    out = Headers.from_canonical(items, keys)
    if status == 100 and "Timestamp" in req:
        out.add("Timestamp", req.get("Timestamp") or "")
    if 100 < status < 300 and request.method in DIALOG_CREATING:
        for value in req.get_all("Record-Route"):
            out.add("Record-Route", value)
    for name, value in headers:
        out.add(name, value)
    if body and content_type and "Content-Type" not in out:
        out.add("Content-Type", content_type)
    return SipResponse(status, reason if reason is not None else reason_phrase(status), out, body)


@functools.lru_cache(maxsize=1024)  # 180 and 200 of one INVITE add the same tag to the same To (pure function)
def _to_with_tag(to: str, to_tag: str) -> str:
    """The To value with `;tag=to_tag` added if it has no tag yet; unchanged if it has one or does not parse."""
    try:
        addr = parse_name_addr(to)
    except HeaderError:
        return to
    return to if addr.tag is not None else str(addr.with_tag(to_tag))


def error_response(error: SipParseError, to_tag: str | None = None) -> SipResponse | None:
    """Stateless answer to an unparseable request, if enough of it was readable (Via, From, To, Call-ID, CSeq);
    None for responses, ACKs, and requests too broken to answer."""
    headers = error.headers
    if headers is None or not error.is_request or error.method == "ACK":
        return None
    needed = ("Via", "From", "To", "Call-ID", "CSeq")
    if any(headers.get(name) is None for name in needed):
        return None
    out = Headers()
    for value in headers.get_all("Via"):
        out.add("Via", value)
    out.add("From", headers.get("From") or "")
    to = headers.get("To") or ""
    if to_tag and "tag=" not in to.lower():
        to = f"{to};tag={to_tag}"
    out.add("To", to)
    out.add("Call-ID", headers.get("Call-ID") or "")
    out.add("CSeq", headers.get("CSeq") or "")
    reason = error.reason if error.reason.isascii() and error.reason.isprintable() else reason_phrase(error.status)
    return SipResponse(error.status, reason, out)


def build_ack_for_non2xx(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 §17.1.1.3): same Request-URI, top Via,
    From, Call-ID, CSeq number and Route as the INVITE; To from the response."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    return SipRequest("ACK", invite.uri, headers)


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, top Via (branch), From, To, Call-ID,
    CSeq number and Route."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    return SipRequest("CANCEL", invite.uri, headers)


def build_request(
    method: str,
    uri: Uri,
    *,
    from_: NameAddr,
    to: NameAddr,
    call_id: str,
    cseq: int,
    contact: NameAddr | None = None,
    routes: Iterable[NameAddr] = (),
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: str | None = None,
    max_forwards: int = 70,
) -> SipRequest:
    """A request per RFC 3261 §8.1.1, without Via (the endpoint adds the top Via when it sends)."""
    out = Headers()
    for route in routes:
        out.add("Route", str(route))
    out.add("Max-Forwards", str(max_forwards))
    out.add("From", str(from_))
    out.add("To", str(to))
    out.add("Call-ID", call_id)
    out.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        out.add("Contact", str(contact))
    for name, value in headers:
        out.add(name, value)
    if body and content_type and "Content-Type" not in out:
        out.add("Content-Type", content_type)
    return SipRequest(method, uri, out, body)
