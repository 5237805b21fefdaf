"""Outgoing INVITEs of the gateway: where a bot's call goes (`Route`), digest retry and 3xx following.

Every outgoing leg, to a phone number through the trunk (`trunk_route`) or to a registered softphone
(:func:`opencomms.gateway.softphone.registered_route`), is a `Route` played by one `OutboundInvite`; the gateway
handles its final response the same way whatever the route. `OutboundInvite` owns how one outgoing call
attempt becomes a series of INVITEs sharing Call-ID and From tag with a rising CSeq (RFC 3261 §8.1.3.4,
§22.2): a 401/407 from the trunk is answered with the trunk's credentials, once per challenge (a second
challenge with the same nonce means the credentials are wrong: the call fails); credentials go to the
configured trunk only, never to a host a redirect points at. A 3xx is followed to its Contacts in q order, at
most `max_redirects` times and never twice to the same URI, so a redirect loop ends. It decides nothing about
calls or media: `run()` returns the final response, `handle` is the transaction that got it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from opencomms.calling.model import Call
from opencomms.config import SipConfig
from opencomms.domain import results
from opencomms.domain.results import ResultInfo
from opencomms.sip.builders import new_call_id, new_tag
from opencomms.sip.destination import Destination
from opencomms.sip.digest import AuthError
from opencomms.sip.digest_client import DigestClient
from opencomms.sip.digest_headers import parse_challenges
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.handles import ClientTransactionHandle
from opencomms.sip.headers import HeaderError, NameAddr
from opencomms.sip.message import SipResponse
from opencomms.sip.uri import SipUri, parse_uri

log = logging.getLogger("opencomms.sip")

SDP = "application/sdp"
MAX_REDIRECTS = 3


def redirect_targets(response: SipResponse, visited: set[str]) -> list[SipUri]:
    """The SIP(S) Contacts of a 3xx not tried yet, highest q first (RFC 3261 §8.1.3.4); malformed ones skipped."""
    try:
        contacts = response.contacts
    except (HeaderError, ValueError):
        return []
    ranked: list[tuple[float, int, SipUri]] = []
    for index, contact in enumerate(contacts):
        uri = contact.uri
        if not isinstance(uri, SipUri) or str(uri) in visited:
            continue
        try:
            q = float(contact.param("q") or 1.0)
        except ValueError:
            q = 0.0
        ranked.append((-q, index, uri))
    return [uri for _, _, uri in sorted(ranked, key=lambda item: (item[0], item[1]))]


@dataclass(frozen=True)
class Route:
    """Where the INVITE of an outgoing leg goes and how it is addressed."""

    target: SipUri
    """Request-URI of the first INVITE."""
    to: NameAddr
    from_: NameAddr
    next_hop: SipUri | Destination
    """Where the first INVITE is sent: a fixed address, or a URI resolved (RFC 3263) just before."""
    unreachable: ResultInfo
    """How the leg ends when `next_hop` cannot be resolved."""
    credentials: tuple[str, str] | None = None
    """(username, password) answering the next hop's digest challenges (the trunk's only)."""
    max_redirects: int = 0


def trunk_route(config: SipConfig, host: str, call: Call) -> Route | ResultInfo:
    """The route of `call` (an external leg to a phone number) through the configured trunk, or why there is none."""
    try:
        trunk = parse_uri(config.trunk_uri) if config.trunk_uri else None
    except ValueError:
        trunk = None
    if not isinstance(trunk, SipUri):
        return results.CANNOT_ROUTE
    number = str(call.identity.get("phone", {}).get("id") or "")
    target = SipUri(host=trunk.host, port=trunk.port, user=number or None)
    caller = config.trunk_caller_id or str(call.source.get("identity", {}).get("phone", {}).get("id") or "")
    return Route(
        target=target,
        to=NameAddr(target),
        from_=NameAddr(SipUri(host=host, user=caller or "opencomms")),
        next_hop=trunk,
        unreachable=results.CANNOT_ROUTE,
        credentials=(config.trunk_username, config.trunk_password) if config.trunk_username else None,
        max_redirects=MAX_REDIRECTS,
    )


@dataclass(eq=False)
class OutboundInvite:
    """One outgoing call attempt: `await run()`; `cancel()` at any time (CANCEL once the far end rings)."""

    endpoint: SipEndpoint
    digest: DigestClient
    target: SipUri
    """Request-URI of the first INVITE (the dialled number at the trunk, a softphone's Contact)."""
    trunk: Destination
    """Where the first INVITE goes; the only destination that gets credentials."""
    from_: NameAddr
    body: bytes
    to: NameAddr | None = None
    """To of every INVITE; None: the first target."""
    credentials: tuple[str, str] | None = None
    """(username, password) for the trunk's digest challenges."""
    max_redirects: int = MAX_REDIRECTS
    handle: ClientTransactionHandle | None = None
    """The INVITE transaction in flight (after `run()`: the one that got the final response)."""
    followed: list[str] = field(default_factory=list)
    """Redirect targets followed, in order."""
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()

    async def run(self) -> SipResponse | None:
        """The final response of the last INVITE sent; None if cancelled before any INVITE went out."""
        call_id = new_call_id()
        sender = self.from_ if self.from_.tag is not None else self.from_.with_tag(new_tag())
        recipient = self.to or NameAddr(self.target)
        uri, dest = self.target, self.trunk
        visited = {str(uri)}
        answered: set[tuple[str, str]] = set()
        auth: dict[str, str] = {}
        cseq = 1
        response: SipResponse | None = None
        while not self.cancelled:
            request = self.endpoint.new_request(
                "INVITE",
                uri,
                from_=sender,
                to=recipient,
                call_id=call_id,
                cseq=cseq,
                headers=list(auth.items()),
                body=self.body,
                content_type=SDP,
            )
            self.handle = self.endpoint.send_request(request, dest)
            response = await self.handle
            if self.cancelled or response.is_success or response.status < 300:
                return response
            cseq += 1
            if response.status in (401, 407):
                header = self._authorization(response, str(uri), dest, answered)
                if header is None:
                    return response
                auth[header[0]] = header[1]  # a proxy's and the callee's credentials travel together
                continue
            if 300 <= response.status < 400 and len(self.followed) < self.max_redirects:
                found = await self._next_target(response, visited)
                if found is None:
                    return response
                uri, dest = found
                auth = {}
                continue
            return response
        return response

    def _authorization(
        self, response: SipResponse, uri: str, dest: Destination, answered: set[tuple[str, str]]
    ) -> tuple[str, str] | None:
        """(header name, value) answering a challenge of the trunk, or None when it must not be answered."""
        if self.credentials is None or dest != self.trunk:
            return None
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenges = parse_challenges(",".join(response.headers.get_all(name)))
            key = (challenges[0].realm, challenges[0].nonce)
            if key in answered and not challenges[0].stale:
                log.warning("trunk rejected our credentials", extra={"status": response.status})
                return None
            answered.add(key)
            username, password = self.credentials
            value = self.digest.authorize(challenges, "INVITE", uri, username, password, self.body)
        except (AuthError, ValueError) as exc:
            log.warning("trunk challenge not answerable: %s", exc)
            return None
        return ("Proxy-Authorization" if proxy else "Authorization", value)

    async def _next_target(self, response: SipResponse, visited: set[str]) -> tuple[SipUri, Destination] | None:
        for uri in redirect_targets(response, visited):
            visited.add(str(uri))
            try:
                dest = await self.endpoint.resolve(uri)
            except (OSError, ValueError):
                continue
            self.followed.append(str(uri))
            log.info("following a redirect", extra={"status": response.status})
            return uri, dest
        return None


__all__ = ["MAX_REDIRECTS", "OutboundInvite", "Route", "redirect_targets", "trunk_route"]
