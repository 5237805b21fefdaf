"""Bots call registered softphone users: a `user` target becomes an INVITE to the user's registered Contact.

`POST /communications/calls` with `identity.user.id` = a directory user linked to a SIP account (or, for an
account without a linked user, the account's SIP user name) is routed here by the gateway when the account
has a live registration (see :mod:`opencomms.gateway.register`). The best binding (highest q, then most
recently refreshed) is called, with its Contact as Request-URI. Over UDP the request goes to the address the
REGISTER came from when the Contact is a private address other than that one (a softphone behind NAT),
otherwise to the Contact. This module only builds that `Route`: the gateway places it exactly as a trunk call
(:class:`~opencomms.gateway.outbound.OutboundInvite`, the same answer handling, failure mapping, call
records and REFER transfer when the softphone allows REFER), without digest or 3xx following."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from opencomms.calling.model import Call
from opencomms.domain import results
from opencomms.domain.results import ResultInfo
from opencomms.gateway.outbound import Route
from opencomms.sip.destination import Destination
from opencomms.sip.headers import NameAddr
from opencomms.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from opencomms.gateway.register import Reachable, Registrations


def user_id_of(call: Call) -> str:
    """The `user` id of an external leg's identity ('' when it is not a user, or also a phone)."""
    if "phone" in call.identity:
        return ""
    user = call.identity.get("user")
    return str(user.get("id") or "") if isinstance(user, dict) else ""


def _caller(call: Call, realm: str) -> NameAddr:
    """From of the INVITE: the calling bot's display name, its number when it has one."""
    ident: Any = call.source.get("identity", {}) if isinstance(call.source, dict) else {}
    name = ""
    user = "opencomms"
    for key in ("applicationInstance", "application", "phone", "user"):
        item = ident.get(key) if isinstance(ident, dict) else None
        if isinstance(item, dict):
            name = name or str(item.get("displayName") or "")
            if key == "phone" and item.get("id"):
                user = str(item["id"])
    return NameAddr(SipUri(host=realm, user=user), display_name=name.replace('"', "") or None)


def _destination(target: Reachable, contact: SipUri) -> Destination | None:
    """The REGISTER's source address when the Contact is a private address other than that source (the
    softphone is behind NAT: its Contact cannot be reached, the address it registered from can), over UDP;
    else None: the Contact itself is used."""
    source = target.binding.source or ""
    transport, _, rest = source.partition(":")
    host, _, port = rest.rpartition(":")
    if transport != "udp" or not host or not port.isdigit() or (contact.transport or "udp") != "udp":
        return None
    try:
        contact_ip = ipaddress.ip_address(contact.host_unbracketed)
    except ValueError:
        return None
    if str(contact_ip) != host and (contact_ip.is_private or contact_ip.is_unspecified):
        return Destination("udp", host, int(port))
    return None


def registered_route(registrations: Registrations, call: Call) -> Route | ResultInfo:
    """The route of `call` (an external leg to a user) to that user's best live binding, or why there is none."""
    targets = registrations.reachable(call.tenant_id, user_id_of(call))
    try:
        contact = parse_uri(targets[0].binding.contact.strip().removeprefix("<").removesuffix(">")) if targets else None
    except ValueError:
        contact = None
    if not isinstance(contact, SipUri):
        return results.NO_CALLEE_ENDPOINTS
    target = targets[0]
    return Route(
        target=contact,
        to=NameAddr(SipUri(host=registrations.realm, user=target.account.username)),
        from_=_caller(call, registrations.realm),
        next_hop=_destination(target, contact) or contact,
        unreachable=results.CALLEE_UNREACHABLE,
    )


__all__ = ["registered_route", "user_id_of"]
