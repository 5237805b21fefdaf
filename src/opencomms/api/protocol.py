"""uvicorn's httptools protocol with the node's HTTP limits enforced on bytes, before the application sees a request:
request line and header section size (counted as bytes arrive, so a huge header is never buffered), header count,
body size, header and body read timeouts (slowloris, slow POST), and connection caps in total and per source
address at accept, with fair shares when the total is reached.

Works the same over TLS (uvicorn hands decrypted bytes to `data_received`). The per-connection cost on the hot path
is an integer addition per read and a clock read per request head; deadlines are checked by one sweep for all
connections, not a timer per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from opencomms.api.connections import ConnectionBook, HttpCounters, Refusal, source_key
from opencomms.api.errors import graph_error_body
from opencomms.config import HttpConfig
from opencomms.domain.ids import is_guid, new_id

__all__ = ["GuardedHttpProtocol", "HttpGuard"]

log = logging.getLogger("opencomms.http")

HEAD_SLACK = 64
"""Bytes of a request head besides the URL and the header lines (method, version, line ends)."""
LINGER_SECONDS = 1.0
"""After a refusal the node half-closes and keeps discarding what the client still sends for this long, so the
client reads the answer instead of a connection reset; then it closes."""
LINGER_BYTES = 256 << 10
"""Most bytes discarded while lingering; past this the connection is reset at once."""

_MESSAGES = {
    408: ("requestTimeout", "The request was not received in time."),
    413: ("invalidRequest", "The request body is larger than {max_body} bytes."),
    414: ("requestUriTooLong", "The request URL is longer than {max_url} bytes."),
    431: ("requestHeaderFieldsTooLarge", "The request header fields are too large or too many."),
    503: ("serviceNotAvailable", "Too many connections; retry later."),
}


def _answer(status: int, message: str, client_request_id: str | None) -> bytes:
    """A complete short answer in Graph's error shape, closing the connection."""
    request_id = new_id()
    body = orjson.dumps(graph_error_body(_MESSAGES[status][0], message, request_id, client_request_id))
    head = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"request-id: %s\r\n" % request_id.encode(),
        b"connection: close\r\n",
        b"cache-control: no-store\r\n",
    ]
    if client_request_id:
        head.append(b"client-request-id: %s\r\n" % client_request_id.encode())
    if status == 503:
        head.append(b"retry-after: 1\r\n")
    return b"".join([*head, b"\r\n", body])


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the protocol answers `status` (set beforehand)."""


class HttpGuard:
    """State shared by all connections of one server: limits, the connection book, counters and the deadline sweep."""

    def __init__(self, config: HttpConfig, *, max_body_bytes: int, max_connections: int, descriptor_limit: int):
        if config.max_request_line < 16 or config.max_header_bytes < 256 or config.max_headers < 1:
            raise ValueError("http limits are too small to serve a request")
        if min(config.header_timeout, config.body_timeout, config.keepalive_timeout) <= 0:
            raise ValueError("http timeouts must be positive")
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.head_limit = config.max_request_line + config.max_header_bytes + HEAD_SLACK
        self.book: ConnectionBook[GuardedHttpProtocol] = ConnectionBook(
            max_connections, config.max_connections_per_source
        )
        self.counters = HttpCounters()
        self.descriptor_limit = descriptor_limit
        self.open: set[GuardedHttpProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sweep_interval = min(1.0, max(0.05, config.header_timeout / 4))
        self.messages = {
            status: text.format(max_body=max_body_bytes, max_url=config.max_request_line)
            for status, (_, text) in _MESSAGES.items()
        }

    def protocol_class(self) -> type[GuardedHttpProtocol]:
        """The class to give uvicorn (`Config(http=...)`), bound to this guard."""

        class BoundGuardedHttpProtocol(GuardedHttpProtocol):
            pass

        BoundGuardedHttpProtocol.guard = self
        return BoundGuardedHttpProtocol

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin the deadline sweep (header timeouts, lingering closes)."""
        self._loop = loop
        if self._timer is None:
            self._timer = loop.call_later(self.sweep_interval, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def _sweep(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        head = self.config.header_timeout
        request = head + self.config.body_timeout
        for proto in list(self.open):
            try:
                proto.check_deadlines(now, head, request)
            except Exception:  # one broken connection must not stop the sweep for the others
                log.exception("http deadline check failed")
        self._timer = loop.call_later(self.sweep_interval, self._sweep)

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.book.total,
            "sources": self.book.sources,
            "max_connections": self.book.max_total,
            "max_connections_per_source": self.book.max_per_source,
            "descriptor_limit": self.descriptor_limit,
            **self.counters.as_dict(),
        }


class GuardedHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with the limits of :class:`HttpGuard`; use `HttpGuard.protocol_class()`."""

    guard: ClassVar[HttpGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        guard = self.guard
        self._head_limit = guard.head_limit
        self._max_url = guard.config.max_request_line
        self._max_headers = guard.config.max_headers
        self._max_body = guard.max_body_bytes
        self._head_used = 0  # bytes of the current request head so far; -1 while a body or response is under way
        self._head_since = 0.0  # loop time the current head began (0: not started)
        self._body_since = 0.0  # loop time the head of a request whose body is being read began (0: none)
        self._heads_done = 0
        self._header_count = 0
        self._declared_too_large = False
        self._body_bytes = 0
        self._source: str | None = None  # set once admitted (counted in the book)
        self._status = 0  # refusal being answered (0: none)
        self._current = False  # the refusal concerns the message whose body is being read
        self._linger_until = 0.0
        self._linger_left = 0

    # -- connection ----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.open.add(self)
        self._head_since = self.loop.time()
        source = source_key(self.client[0]) if self.client else ""
        book = guard.book
        refusal = book.admit(source, self)
        if refusal == "total":
            victim = book.victim(source, GuardedHttpProtocol.idle)
            if victim is not None:
                victim.evict()
                refusal = book.admit(source, self)
        if refusal is None:
            self._source = source
        else:
            self._refuse_at_accept(refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.guard.open.discard(self)
        if self._source is not None:
            self.guard.book.release(self._source, self)
            self._source = None

    def idle(self) -> bool:
        """Waiting for (or reading) a request head and not answering anything: safe to close."""
        return self._head_used >= 0 and not self._status and (self.cycle is None or self.cycle.response_complete)

    def evict(self) -> None:
        """Give this connection's place to a newcomer from a smaller source (the total cap is reached)."""
        if self._source is not None:
            self.guard.book.release(self._source, self)
            self._source = None
        self.guard.counters.evicted_for_fairness += 1
        self._status = 503
        if self._head_used > 0:  # part of a request came: say why; an idle keep-alive connection just closes
            self.transport.write(_answer(503, self.guard.messages[503], None))
        self.transport.close()

    def _refuse_at_accept(self, refusal: Refusal) -> None:
        counters = self.guard.counters
        if refusal == "total":
            counters.refused_total_cap += 1
            self._status = 503
            self.transport.write(_answer(503, self.guard.messages[503], None))
            self.transport.close()  # no lingering: the descriptors are what is short
        else:
            counters.refused_per_source += 1
            self._answer_and_linger(503)

    # -- bytes ---------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._status:
            self._discard(len(data))
            return
        used = self._head_used
        if used >= 0:
            if not self._head_since:
                self._head_since = self.loop.time()
            used += len(data)
            self._head_used = used
            if used > self._head_limit:
                self._feed_within_budget(data)
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._parse_failed()
        except httptools.HttpParserUpgrade:
            self._upgrade()

    def _parse_failed(self) -> None:
        status = self._status
        if status:
            self._status = 0
            self._refuse(status)
        else:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def _upgrade(self) -> None:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()

    def _feed(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._parse_failed()
        except httptools.HttpParserUpgrade:
            self._upgrade()

    def _feed_within_budget(self, data: bytes) -> None:
        """The head budget ran out in this read: parse only what fits; if the head is still open, refuse it."""
        allowed = len(data) - (self._head_used - self._head_limit)
        self._head_used = self._head_limit
        heads = self._heads_done
        if allowed > 0:
            self._feed(data[:allowed])
        if self._status or self.transport.is_closing():
            return
        if self._heads_done == heads:
            self.guard.counters.headers_too_large += 1
            self._refuse(431)
            return
        self.data_received(data[allowed:])  # the head ended within budget: the rest is body or the next request

    def _discard(self, size: int) -> None:
        self._linger_left -= size
        if self._linger_left < 0:
            self.transport.abort()

    # -- parser callbacks ----------------------------------------------------------------------------------
    # uvicorn's own callbacks are inlined rather than called through super(): these run for every request and
    # header, and a Python call per callback would cost more than the checks themselves.
    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self._max_url:
            self.guard.counters.url_too_long += 1
            self._stop(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        count = self._header_count + 1
        self._header_count = count
        if count > self._max_headers:
            self.guard.counters.headers_too_large += 1
            self._stop(431)
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which RFC 9110 excludes from the value
        if name == b"content-length":
            if value.isdigit() and int(value) > self._max_body:
                self.guard.counters.body_too_large += 1
                self._declared_too_large = True  # answered once the head is complete (client-request-id known)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_used = -1
        self._body_since = self._head_since  # cleared when the message completes: no clock read per request
        self._head_since = 0.0
        self._heads_done += 1
        self._header_count = 0
        if self._declared_too_large:
            self._declared_too_large = False
            self._stop(413)  # before the application sees it: nothing of the body is read
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        size = self._body_bytes + len(body)
        self._body_bytes = size
        if size > self._max_body:
            self.guard.counters.body_too_large += 1
            self._stop(413, current=True)
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._head_used = 0
        self._body_bytes = 0
        self._body_since = 0.0
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.more_body = False
        cycle.message_event.set()

    def _stop(self, status: int, *, current: bool = False) -> None:
        """Abort parsing from a callback; `_feed` answers `status`."""
        self._status = status
        self._current = current
        raise _Refused(status)

    # -- refusals ------------------------------------------------------------------------------------------
    def _refuse(self, status: int) -> None:
        """Answer `status` and close, unless a response is under way (then just close)."""
        current = self._current
        self._current = False
        cycle = self.cycle
        pending = cycle is not None and not cycle.response_complete
        if current and pending and not cycle.response_started:
            cycle.disconnected = True  # the application's answer, if any, is dropped
            cycle.message_event.set()
            self._answer_and_linger(status)
        elif current or pending:
            self._status = status
            self.transport.close()
        else:
            self._answer_and_linger(status)

    def _answer_and_linger(self, status: int) -> None:
        self._status = status
        self._head_since = 0.0
        self._unset_keepalive_if_required()
        transport = self.transport
        transport.write(_answer(status, self.guard.messages[status], self._client_request_id()))
        if self.flow is not None:
            self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self._linger_until = self.loop.time() + LINGER_SECONDS
            self._linger_left = LINGER_BYTES
        else:
            transport.close()

    def _client_request_id(self) -> str | None:
        """The request's client-request-id, if its headers were read and it is a GUID (never echo anything else)."""
        if self._head_used >= 0 or not self.headers:
            return None
        for name, value in self.headers:
            if name == b"client-request-id":
                crid = value.decode("latin-1")
                return crid if is_guid(crid) else None
        return None

    def check_deadlines(self, now: float, header_timeout: float, request_timeout: float) -> None:
        """Called by the guard's sweep: close a head or a body that is too slow, end a linger that is over."""
        if self._status:
            if self._linger_until and now >= self._linger_until:
                self._linger_until = 0.0
                self.transport.abort()
            return
        since = self._head_since
        if since and now - since > header_timeout:
            self.guard.counters.header_timeouts += 1
            self._refuse(408)
            return
        since = self._body_since
        if since and now - since > request_timeout:
            self._body_since = 0.0
            self.guard.counters.body_timeouts += 1
            self._current = True
            self._refuse(408)
