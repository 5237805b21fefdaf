"""SIP <-> Graph vocabulary for the gateway: numbers, identities and end reasons. Pure functions.

Owns how a dialled SIP user part becomes an E.164 number, how a SIP caller appears to a bot (identitySet),
which resultInfo a SIP failure becomes, and which SIP final response a phone gets when its call fails
before it is answered. Knows nothing of sockets, transactions or the media engine.
"""

from __future__ import annotations

import re
from typing import Any

from opencomms.domain import results
from opencomms.domain.results import ResultInfo

_VISUAL = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"\+?[0-9]{3,15}")

JsonObj = dict[str, Any]


def normalize_number(user: str) -> str | None:
    """E.164 form of a dialled number ('+14255550100', '14255550100', '+1 (425) 555-0100'), or None if the
    user part is not a number. Numbers without '+' are taken as already carrying their country code."""
    plain = _VISUAL.sub("", user)
    if plain.startswith("00"):
        plain = "+" + plain[2:]
    if not _DIGITS.fullmatch(plain):
        return None
    return plain if plain.startswith("+") else "+" + plain


def caller_identity(user: str, display_name: str | None, sip_uri: str) -> JsonObj:
    """The identitySet a bot sees as the source of a SIP call: `phone` for numbers, otherwise a `user`
    identity whose id is the caller's SIP URI (Graph has no SIP identity type; documented)."""
    number = normalize_number(user) if user else None
    ident: JsonObj = {"@odata.type": "#microsoft.graph.identity"}
    if number is not None:
        ident["id"] = number
        if display_name:
            ident["displayName"] = display_name
        return {"@odata.type": "#microsoft.graph.identitySet", "phone": ident}
    ident["id"] = sip_uri
    ident["displayName"] = display_name or user or sip_uri
    return {"@odata.type": "#microsoft.graph.identitySet", "user": ident}


def failure_for_status(status: int, reason: str = "") -> ResultInfo:
    """resultInfo for an outgoing SIP call that failed with `status` (the bot's leg reports it)."""
    if status in (486, 600):
        return results.BUSY
    if status in (603, 607):
        return results.DECLINED
    if status == 403:
        return results.FORBIDDEN
    if status in (404, 410, 480, 484, 604):
        return results.CALLEE_UNREACHABLE
    if status == 408:
        return results.NO_ANSWER
    if 500 <= status < 600:
        failed = results.TRUNK_FAILED
        return ResultInfo(failed.code, failed.subcode, f"{failed.message[:-1]}: it answered {status} {reason}".strip())
    return ResultInfo(480, 10134, f"The call could not be routed: the far end answered {status} {reason}".strip())


def status_for_failure(reason: ResultInfo) -> tuple[int, str]:
    """SIP final response for an inbound call that ends before it is answered, from the leg's resultInfo."""
    code = reason.code
    if reason == results.CANNOT_ROUTE:
        return 404, "Not Found"
    if code == 486:
        return 486, "Busy Here"
    if code == 603:
        return 603, "Decline"
    if code == 403:
        return 403, "Forbidden"
    if code == 408 or code == 480:
        return 480, "Temporarily Unavailable"
    if 500 <= code < 600:
        return 503, "Service Unavailable"
    return 480, "Temporarily Unavailable"
