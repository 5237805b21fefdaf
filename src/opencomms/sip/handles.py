"""What a SIP transaction user holds: `ServerTransactionHandle` (an incoming request to answer) and
`ClientTransactionHandle` (a request in flight, awaitable for its final response).

Must not: touch transports or the transaction layer; the endpoint that made a handle carries out what it is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from opencomms.sip.builders import new_tag
from opencomms.sip.destination import Destination
from opencomms.sip.dialog import Dialog
from opencomms.sip.endpoint_config import ProvisionalHandler
from opencomms.sip.headers import HeaderError, NameAddr
from opencomms.sip.message import HeaderItems, SipRequest, SipResponse
from opencomms.sip.transactions import TxKey

if TYPE_CHECKING:
    from opencomms.sip.endpoint import SipEndpoint

__all__ = ["ClientTransactionHandle", "ServerTransactionHandle"]


class ServerTransactionHandle:
    """What the transaction user gets for an incoming request: answer it with `respond`."""

    def __init__(self, endpoint: SipEndpoint, key: TxKey, request: SipRequest, source: Destination) -> None:
        self._endpoint = endpoint
        self.key = key
        self.request = request
        self.source = source
        self.dialog: Dialog | None = None
        """The dialog the request belongs to (in-dialog requests) or created (INVITE after a 101-299)."""
        self.final_response: SipResponse | None = None
        self.cancelled = False
        self.on_cancel: Callable[[], None] | None = None
        """Called when a CANCEL arrives for this INVITE (the endpoint has already answered 487)."""
        self.on_ack: Callable[[SipRequest], None] | None = None
        """Called with the ACK for our 2xx (it may carry the SDP answer)."""
        self.on_ack_timeout: Callable[[], None] | None = None
        """Called when our 2xx was never acknowledged; if unset the endpoint sends BYE itself."""
        self.awaiting_ack = False
        self._created_dialog = False
        existing = request.headers.get("To")
        tag: str | None = None
        with contextlib.suppress(HeaderError):
            tag = request.to.tag if existing else None
        self._to_tag = tag or new_tag()

    @property
    def to_tag(self) -> str:
        """Our tag for the To header of every response of this transaction (except 100)."""
        return self._to_tag

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def responded(self) -> bool:
        return self.final_response is not None

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: HeaderItems = (),
        body: bytes = b"",
        content_type: str | None = None,
        contact: NameAddr | None = None,
    ) -> SipResponse | None:
        """Send a response. Returns it, or None when the transaction can no longer take it (a final response
        was already sent, e.g. 487 after a CANCEL). 101-299 to INVITE/SUBSCRIBE/REFER and 2xx to target refreshes
        get our Contact unless `contact` or a Contact header is given; an INVITE's 101-299 creates the dialog."""
        return self._endpoint._respond(self, status, reason, headers, body, content_type, contact)


class ClientTransactionHandle:
    """A request in flight: `await handle` (or `wait()`) for the final response; `cancel()` for an INVITE.
    Timeouts resolve as a local 408 (`timed_out`), unreachable peers as a local 503 (`transport_failed`)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        request: SipRequest,
        dest: Destination,
        key: TxKey,
        on_provisional: ProvisionalHandler | None,
    ) -> None:
        self._endpoint = endpoint
        self.request = request
        self.destination = dest
        self.key = key
        self.on_provisional = on_provisional
        self.provisional: SipResponse | None = None
        self.response: SipResponse | None = None
        self.dialog: Dialog | None = None
        """For an INVITE: the dialog of the answer (early on a 1xx with To tag, confirmed on the 2xx)."""
        self.in_dialog: Dialog | None = None
        """For a request sent with `send_in_dialog`: that dialog."""
        self.timed_out = False
        self.transport_failed = False
        self._early: dict[str, Dialog] = {}
        self._cancel_requested = False
        self._cancel_sent = False
        self._future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self._future.done()

    async def wait(self) -> SipResponse:
        return await asyncio.shield(self._future)

    def __await__(self) -> Generator[Any, None, SipResponse]:
        return self.wait().__await__()

    def cancel(self) -> None:
        """CANCEL a pending INVITE (RFC 3261 §9.1): sent once a provisional response has arrived."""
        if self.request.method != "INVITE" or self._future.done() or self._cancel_requested:
            return
        self._cancel_requested = True
        if self.provisional is not None:
            self._endpoint._send_cancel(self)
