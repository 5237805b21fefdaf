"""Attach the operators' console to a node (the composition root calls this once, when `[console] enabled`): the
timelines hear the calling core's events, the API's requests, the notifications and the SIP messages, and the
Graph app serves `/console` through the console's handler. Must not be imported by the layers it observes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opencomms.api.http import Response
from opencomms.console.app import PREFIX, ConsoleApp, ConsoleContext
from opencomms.console.auth import Operators, Sessions, SignInLimiter
from opencomms.console.timeline import Timelines, TimelineSubscriber
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.store.base import OutboxEntry

__all__ = ["attach_console"]


def _chain(first: Callable[[Any], None] | None, then: Callable[[Any], None]) -> Callable[[Any], None]:
    if first is None:
        return then

    def both(value: Any) -> None:
        first(value)
        then(value)

    return both


def attach_console(node: Any) -> ConsoleApp:
    """`node` is an opencomms.server.Node (typed Any: this package does not import the composition root)."""
    config = node.config.console
    timelines = Timelines(config.timeline_calls, config.timeline_entries, node.clock)
    node.calls.subscribe(TimelineSubscriber(timelines))

    def exchange(method: str, path: str, response: Response, seconds: float) -> None:
        if not timelines.watching or ("/communications/calls" not in path and "/app/calls" not in path):
            return
        location = next((v.decode("latin-1") for k, v in response.headers if k == b"location"), None)
        timelines.rest(method, path, response.status, location, at=node.clock() - seconds)

    node.app.on_exchange = exchange

    def staged(entry: OutboxEntry) -> None:
        timelines.notification(entry)

    node.dispatcher.on_staged = _chain(node.dispatcher.on_staged, staged)
    if node.sip is not None:
        gateway = node.sip
        timelines.sip_leg = gateway.leg_of

        def sip(sent: bool, message: SipRequest | SipResponse) -> None:
            if not timelines.watching:
                return
            try:
                call_id = message.call_id
                if isinstance(message, SipRequest):
                    line = message.method
                else:
                    line = f"{message.status} {message.reason} ({message.cseq.method})"
            except Exception:  # a message without the headers a line needs: not worth a timeline entry
                return
            timelines.sip(sent, call_id, line)

        gateway.endpoint.on_sip = sip

    ctx = ConsoleContext(
        calls=node.calls,
        directory=node.directory,
        store=node.store,
        timelines=timelines,
        operators=Operators(node.store, config.admin_password_file, node.directory),
        sessions=Sessions(config, on_active=timelines.watch),
        limiter=SignInLimiter(config),
        clock=node.clock,
        public_url=node.public_url,
        secure=bool(node.config.tls_cert) or node.public_url.startswith("https://"),
    )
    console = ConsoleApp(ctx)
    node.app.mounts[PREFIX] = console
    return console
