"""Bots call registered softphone users: a `user` target becomes an INVITE to the user's registered Contact.

`POST /communications/calls` with `identity.user.id` = a directory user linked to a SIP account (or, for an
account without a linked user, the account's SIP user name) is routed here by the gateway when the account
has a live registration (see :mod:`opencomms.gateway.register`). The best binding (highest q, then most
recently refreshed) is called, with its Contact as Request-URI. Over UDP the request goes to the address the
REGISTER came from when the Contact is a private address other than that one (a softphone behind NAT),
otherwise to the Contact. The answer, a failure status or the node's ring timeout come back to the call
service as for a trunk call (`external_answered` / `external_ended` with
:func:`~opencomms.gateway.mapping.failure_for_status`)."""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from opencomms.calling.model import Call
from opencomms.domain import results
from opencomms.gateway.mapping import failure_for_status
from opencomms.rtp import LocalSdp, NegotiationError, RtpSession, SdpError
from opencomms.rtp.sdp import SessionDescription
from opencomms.sip.headers import NameAddr
from opencomms.sip.transaction import Destination
from opencomms.sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from opencomms.gateway.register import Reachable
    from opencomms.gateway.sip import SipGateway

log = logging.getLogger("opencomms.sip")

SDP = "application/sdp"


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


async def dial_registered(gw: SipGateway, call: Call) -> None:
    """Place `call` (an external leg to a user) to that user's best live binding."""
    targets = gw.registrations.reachable(call.tenant_id, user_id_of(call))
    if not targets:
        gw._dialling.discard(call.id)
        gw.calls.external_ended(call.id, results.NO_CALLEE_ENDPOINTS)
        return
    target = targets[0]
    contact = parse_uri(target.binding.contact.strip().removeprefix("<").removesuffix(">"))
    if not isinstance(contact, SipUri):
        gw._dialling.discard(call.id)
        gw.calls.external_ended(call.id, results.NO_CALLEE_ENDPOINTS)
        return
    key = call.id
    rtp = RtpSession(call.id, gw.bank, gw.ports, gw.host, config=gw.rtp_config)
    rtp.on_dtmf = lambda k: gw._dtmf(key, k)
    try:
        port = await rtp.open()
    except Exception:
        gw._dialling.discard(call.id)
        gw.calls.external_ended(call.id, results.MEDIA_OVERLOADED)
        return
    if call.id not in gw._dialling:  # the call ended while the ports were being opened
        await rtp.close()
        return
    gw._dialling.discard(call.id)
    from opencomms.gateway.sip import SipCall  # the gateway module imports this one

    sc = SipCall(key=key, rtp=rtp, sdp=LocalSdp(gw.host, port), leg_id=call.id)
    gw._by_key[key] = sc
    to = NameAddr(SipUri(host=gw.registrations.realm, user=target.account.username))
    offer = str(sc.sdp.offer()).encode()
    req = gw.endpoint.new_request(
        "INVITE", contact, from_=_caller(call, gw.registrations.realm), to=to, body=offer, content_type=SDP
    )
    try:
        dest = _destination(target, contact) or await gw.endpoint.resolve(contact)
    except (OSError, ValueError):
        gw.calls.external_ended(call.id, results.CALLEE_UNREACHABLE)
        return
    handle = gw.endpoint.send_request(req, dest)
    sc.outgoing = handle
    response = await handle
    if sc.closed:
        return
    if not response.is_success:
        gw.calls.external_ended(call.id, failure_for_status(response.status, response.reason))
        await gw._teardown(sc)
        return
    try:
        sc.media = sc.sdp.accept_answer(SessionDescription.parse(response.body))
    except (SdpError, NegotiationError):
        sc.answered = True
        if handle.dialog is not None:
            await gw.endpoint.ack(handle.dialog)
        gw.calls.external_ended(call.id, results.MEDIA_LOST)
        return
    sc.dialog_call_id = response.call_id
    gw._by_dialog[response.call_id] = sc
    if handle.dialog is not None:
        await gw.endpoint.ack(handle.dialog)
    gw.calls.external_answered(call.id)


__all__ = ["dial_registered", "user_id_of"]
