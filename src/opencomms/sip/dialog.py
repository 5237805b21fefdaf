"""SIP dialogs (RFC 3261 §12): state, in-dialog request building, in-dialog request checks, and a lookup table.

Owns: the dialog state (Call-ID, tags, CSeqs, route set, remote target, secure flag), its creation from a
response (UAC, §12.1.2) or a request and our response (UAS, §12.1.1), the building of requests inside it
(§12.2.1.1: CSeq, To/From, Request-URI and Route with loose and strict routers; ACK for a 2xx, BYE, re-INVITE,
REFER, NOTIFY, INFO, OPTIONS, UPDATE), target refresh, and the CSeq ordering check (§12.2.2: lower -> 500).
Must not: send anything, run timers or resolve names. Via is left to the endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from opencomms.randpool import random_below
from opencomms.sip.builders import build_request
from opencomms.sip.headers import NameAddr
from opencomms.sip.message import HeaderItems, SipRequest, SipResponse
from opencomms.sip.uri import SipUri, Uri

TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
"""Methods that carry Contact and may change the remote target (RFC 3261 §12.2, RFC 3311, RFC 6665)."""


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogError(ValueError):
    """The message cannot create or belong to this dialog."""


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


def _first_contact(message: SipRequest | SipResponse) -> Uri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


def _initial_cseq() -> int:
    return random_below(2**16) + 1


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    """Our address (From of our requests) without its tag."""
    remote_uri: NameAddr
    """The peer's address (To of our requests) without its tag."""
    local_target: Uri
    """Our Contact, sent in target refresh requests."""
    remote_target: Uri
    route_set: list[NameAddr] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.CONFIRMED
    is_uac: bool = True
    """True when our INVITE created the dialog."""
    invite_cseq: int | None = None
    """CSeq number of the last INVITE we sent in it (what an ACK for its 2xx carries)."""
    transport: str | None = None
    """Transport the dialog was set up over: the next-hop default when a URI has no transport parameter."""
    peer: tuple[str, int] | None = None
    """Address the dialog was set up with (the INVITE's source, or where ours went): a TCP connection with it
    is kept open however long it is silent."""

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- creation

    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog our request created, from a 2xx or a 101-199 with a To tag (early) (RFC 3261 §12.1.2)."""
        if not 100 < response.status < 300:
            raise DialogError("only 101-299 responses create dialogs")
        local = request.from_
        remote = response.to
        if local.tag is None:
            raise DialogError("our request has no From tag")
        if remote.tag is None:
            raise DialogError("a response without To tag creates no dialog")
        target = _first_contact(response)
        if target is None:
            raise DialogError("a dialog-creating response needs a Contact")
        local_target = _first_contact(request)
        cseq = request.cseq.number
        return cls(
            call_id=request.call_id,
            local_tag=local.tag,
            remote_tag=remote.tag,
            local_uri=local.without_param("tag"),
            remote_uri=remote.without_param("tag"),
            local_target=local_target if local_target is not None else local.uri,
            remote_target=target,
            route_set=list(reversed(response.record_routes)),
            local_cseq=cseq,
            remote_cseq=None,
            secure=isinstance(request.uri, SipUri) and request.uri.secure,
            state=DialogState.CONFIRMED if response.is_success else DialogState.EARLY,
            is_uac=True,
            invite_cseq=cseq if request.method == "INVITE" else None,
        )

    @classmethod
    def from_uas(cls, request: SipRequest, response: SipResponse, *, local_cseq: int | None = None) -> Dialog:
        """The dialog a request created, from our 101-299 response carrying our To tag and Contact (§12.1.1)."""
        if not 100 < response.status < 300:
            raise DialogError("only 101-299 responses create dialogs")
        remote = request.from_
        local = response.to
        if local.tag is None:
            raise DialogError("our response has no To tag")
        target = _first_contact(request)
        if target is None:
            raise DialogError("a dialog-creating request needs a Contact")
        local_target = _first_contact(response)
        return cls(
            call_id=request.call_id,
            local_tag=local.tag,
            remote_tag=remote.tag or "",
            local_uri=local.without_param("tag"),
            remote_uri=remote.without_param("tag"),
            local_target=local_target if local_target is not None else local.uri,
            remote_target=target,
            route_set=list(request.record_routes),
            local_cseq=local_cseq if local_cseq is not None else _initial_cseq(),
            remote_cseq=request.cseq.number,
            secure=isinstance(request.uri, SipUri) and request.uri.secure,
            state=DialogState.CONFIRMED if response.is_success else DialogState.EARLY,
            is_uac=False,
        )

    # -- updates

    def confirm(self, response: SipResponse) -> None:
        """A 2xx for the dialog-creating INVITE arrived (UAC): confirmed; route set and target from the 2xx
        (RFC 3261 §13.2.2.4)."""
        if self.state is DialogState.EARLY and self.is_uac:
            self.route_set = list(reversed(response.record_routes))
        self.state = DialogState.CONFIRMED
        target = _first_contact(response)
        if target is not None:
            self.remote_target = target

    def on_response(self, request: SipRequest, response: SipResponse) -> None:
        """A response to our in-dialog request: a 2xx to a target refresh updates the remote target."""
        if response.is_success and request.method in TARGET_REFRESH:
            target = _first_contact(response)
            if target is not None:
                self.remote_target = target
        if request.method == "BYE" and response.is_final:
            self.state = DialogState.TERMINATED

    def receive_request(self, request: SipRequest) -> int | None:
        """Check and account an incoming in-dialog request (RFC 3261 §12.2.2). Returns the status to answer
        with when it must be rejected (500 for a CSeq lower than the last one), else None."""
        if request.method in ("ACK", "CANCEL"):
            return None
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            return 500
        self.remote_cseq = number
        if request.method in TARGET_REFRESH:
            target = _first_contact(request)
            if target is not None:
                self.remote_target = target
        if request.method == "BYE":
            self.state = DialogState.TERMINATED
        return None

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    # -- building requests

    def next_hop(self) -> Uri:
        """Where an in-dialog request goes first: the first route, or the remote target (RFC 3261 §8.1.2)."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def _uri_and_routes(self) -> tuple[Uri, list[NameAddr]]:
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if first.has_param("lr") or (isinstance(first.uri, SipUri) and first.uri.has_param("lr")):
            return self.remote_target, list(self.route_set)
        # strict router (RFC 2543): it becomes the Request-URI, the remote target the last Route
        uri = first.uri.without_headers() if isinstance(first.uri, SipUri) else first.uri
        return uri, [*self.route_set[1:], NameAddr(self.remote_target)]

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: HeaderItems = (),
        cseq: int | None = None,
    ) -> SipRequest:
        """An in-dialog request (RFC 3261 §12.2.1.1). The local CSeq is incremented unless `cseq` is given."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"use create_ack / build_cancel for {method}")
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri, routes = self._uri_and_routes()
        request = build_request(
            method,
            uri,
            from_=self.local_uri.with_tag(self.local_tag),
            to=self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri,
            call_id=self.call_id,
            cseq=cseq,
            contact=NameAddr(self.local_target) if method in TARGET_REFRESH else None,
            routes=routes,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        if method == "INVITE":
            self.invite_cseq = cseq
        return request

    def create_ack(
        self,
        cseq: int | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: HeaderItems = (),
    ) -> SipRequest:
        """The ACK for a 2xx to our INVITE (RFC 3261 §13.2.2.4): CSeq number of the INVITE, method ACK."""
        number = cseq if cseq is not None else self.invite_cseq
        if number is None:
            raise DialogError("no INVITE to acknowledge")
        uri, routes = self._uri_and_routes()
        return build_request(
            "ACK",
            uri,
            from_=self.local_uri.with_tag(self.local_tag),
            to=self.remote_uri.with_tag(self.remote_tag),
            call_id=self.call_id,
            cseq=number,
            routes=routes,
            headers=headers,
            body=body,
            content_type=content_type,
        )

    def bye(self, *, headers: HeaderItems = ()) -> SipRequest:
        return self.create_request("BYE", headers=headers)

    def reinvite(
        self, body: bytes = b"", content_type: str = "application/sdp", *, headers: HeaderItems = ()
    ) -> SipRequest:
        return self.create_request("INVITE", body=body, content_type=content_type if body else None, headers=headers)

    def update(
        self, body: bytes = b"", content_type: str = "application/sdp", *, headers: HeaderItems = ()
    ) -> SipRequest:
        return self.create_request("UPDATE", body=body, content_type=content_type if body else None, headers=headers)

    def refer(
        self, refer_to: NameAddr | Uri | str, *, referred_by: NameAddr | None = None, headers: HeaderItems = ()
    ) -> SipRequest:
        """REFER (RFC 3515). `refer_to` may carry `?Replaces=...` for an attended transfer (RFC 3891)."""
        target = (
            refer_to
            if isinstance(refer_to, str)
            else str(refer_to if isinstance(refer_to, NameAddr) else NameAddr(refer_to))
        )
        extra: list[tuple[str, str]] = [("Refer-To", target)]
        if referred_by is not None:
            extra.append(("Referred-By", str(referred_by)))
        return self.create_request("REFER", headers=[*extra, *headers])

    def notify(
        self,
        event: str,
        subscription_state: str,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        headers: HeaderItems = (),
    ) -> SipRequest:
        """NOTIFY (RFC 6665), e.g. the REFER progress: event "refer", "active;expires=60", a message/sipfrag body."""
        extra = [("Event", event), ("Subscription-State", subscription_state), *headers]
        return self.create_request("NOTIFY", body=body, content_type=content_type, headers=extra)

    def info(self, body: bytes = b"", content_type: str | None = None, *, headers: HeaderItems = ()) -> SipRequest:
        return self.create_request("INFO", body=body, content_type=content_type, headers=headers)

    def options(self, *, headers: HeaderItems = ()) -> SipRequest:
        return self.create_request("OPTIONS", headers=headers)


def sipfrag(status: int, reason: str) -> bytes:
    """A message/sipfrag body for REFER progress NOTIFYs (RFC 3420): the status line only."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


class DialogTable:
    """Dialogs by id, with the lookups an endpoint needs for incoming requests and responses."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog: object) -> bool:
        return isinstance(dialog, Dialog) and self._dialogs.get(dialog.id) is dialog

    def add(self, dialog: Dialog) -> Dialog:
        """Register `dialog`; if one with the same id exists, that one is kept and returned."""
        return self._dialogs.setdefault(dialog.id, dialog)

    def remove(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def for_request(self, request: SipRequest) -> Dialog | None:
        """The dialog an incoming request belongs to: To tag is ours, From tag is theirs."""
        local = request.to.tag
        if local is None:
            return None
        return self._dialogs.get(DialogId(request.call_id, local, request.from_.tag or ""))

    def for_response(self, response: SipResponse) -> Dialog | None:
        """The dialog a response to our request belongs to: From tag is ours, To tag is theirs."""
        remote = response.to.tag
        local = response.from_.tag
        if remote is None or local is None:
            return None
        return self._dialogs.get(DialogId(response.call_id, local, remote))

    def by_call_id(self, call_id: str) -> Iterable[Dialog]:
        return [d for d in self._dialogs.values() if d.call_id == call_id]
