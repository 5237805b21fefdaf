"""Transaction identity: RFC 3261 branches, the `TxKey`, and how a message finds its transaction (§17.1.3 for
responses, §17.2.3 for requests, including CANCEL/ACK and the RFC 2543 fallback).

Must not: hold transactions or state; pure functions over parsed messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.randpool import random_bytes
from opencomms.sip.message import SipRequest, SipResponse

__all__ = ["MAGIC_COOKIE", "TxKey", "client_key", "new_branch", "server_key"]

MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """An RFC 3261 branch: the magic cookie and 96 random bits."""
    return MAGIC_COOKIE + random_bytes(12).hex()


@dataclass(frozen=True, slots=True)
class TxKey:
    """Transaction id: branch + sent-by + method (RFC 3261 §17.2.3); client keys have an empty sent-by."""

    branch: str
    sent_by: str
    method: str


def server_key(request: SipRequest, method: str | None = None) -> TxKey:
    """RFC 3261 §17.2.3: branch + sent-by + method (ACK matches INVITE); RFC 2543 requests (no magic cookie) by
    Request-URI, From tag, Call-ID, CSeq number and top Via."""
    via = request.top_via
    name = method or ("INVITE" if request.method == "ACK" else request.method)
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return TxKey(branch, via.sent_by, name)
    legacy = "|".join(
        ("2543", str(request.uri), request.from_.tag or "", request.call_id, str(request.cseq.number), str(via))
    )
    return TxKey(legacy, via.sent_by, name)


def client_key(response: SipResponse) -> TxKey:
    """RFC 3261 §17.1.3: the top Via branch and the CSeq method."""
    return TxKey(response.top_via.branch or "", "", response.cseq.method)
