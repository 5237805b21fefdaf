"""The CallService's unit of work: write what a unit changed in one store transaction, and contain a failed commit.

A unit mutates the in-memory calls and conversations first and writes them at its end. When the write fails (a
storage fault, or any error) nothing of the unit may survive: the touched calls and conversations are reloaded
from the (rolled back) store, signalling side effects (SIP dial, 200 OK, BYE) wait for the commit and are dropped
with it, and media the unit took down is brought back for the legs that are live again. It does no I/O itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opencomms.calling.model import Call, Conversation, JsonObj
from opencomms.domain.calls import CallState
from opencomms.store.base import StoreUnavailable

if TYPE_CHECKING:
    from opencomms.calling.service import CallService

log = logging.getLogger("opencomms.calls")

_MEDIA_LIVE = (CallState.ESTABLISHED, CallState.HOLD)


class UnitOfWork:
    """Depth, deferred effects and fault hold-off of one CallService's units (one per service)."""

    def __init__(self, service: CallService, *, fault_retry: float = 1.0) -> None:
        self._svc = service
        self._depth = 0
        self._effects: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._media_ended: set[str] = set()
        self.fault_retry = fault_retry
        """Seconds timers wait after a storage fault before they run again."""
        self.hold_until = 0.0
        """Timers do not fire before this time (a storage fault stopped them)."""
        self.faults = 0
        """Units that failed on a storage fault."""

    @property
    def active(self) -> bool:
        return self._depth > 0

    @contextmanager
    def unit(self) -> Iterator[None]:
        svc = self._svc
        outermost = self._depth == 0
        self._depth += 1
        try:
            with svc.sink.transaction():
                yield
                if outermost:
                    flush(svc)
        except BaseException as exc:
            if outermost:
                if isinstance(exc, StoreUnavailable):
                    self.faults += 1
                self._effects.clear()
                self._rollback()
            raise
        else:
            if outermost:
                svc._dirty_calls.clear()
                svc._dirty_convs.clear()
                self._media_ended.clear()
                self._run_effects()
        finally:
            self._depth -= 1

    def after_commit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` once the current unit commits (now, outside a unit); dropped if it rolls back."""
        if self._depth:
            self._effects.append((fn, args))
        else:
            fn(*args)

    def media_connected(self, call: Call) -> None:
        """The leg's media joins the engine once the unit commits, if the leg is still the live one then."""
        svc = self._svc

        def join() -> None:
            if svc.calls.get(call.id) is call:
                svc.media.connected(call)

        self.after_commit(join)

    def media_ending(self, call: Call) -> None:
        """The leg's media ends now (its operations' last notifications belong to this unit); brought back if the
        unit rolls back and the leg is live again."""
        if self._depth:
            self._media_ended.add(call.id)
        self._svc.media.ending(call)

    def _run_effects(self) -> None:
        effects, self._effects = self._effects, []
        for fn, args in effects:
            try:
                fn(*args)
            except Exception:  # the change committed: one hook failing must not hide it or stop the others
                log.exception("post-commit hook failed")

    def _rollback(self) -> None:
        """Reload what the failed unit touched from the (rolled back) store; bring back media it took down."""
        svc = self._svc
        ended, self._media_ended = self._media_ended, set()
        try:
            restore(svc)
        except Exception:
            log.exception("reloading calls after a failed unit failed: dropping them from memory")
            for call_id in svc._dirty_calls:
                svc.calls.pop(call_id, None)
            for conv_id in svc._dirty_convs:
                svc.convs.pop(conv_id, None)
            svc._dirty_calls.clear()
            svc._dirty_convs.clear()
        for call_id in ended:
            call = svc.calls.get(call_id)
            if call is not None and call.connected and call.state in _MEDIA_LIVE:
                try:
                    svc.media.connected(call)
                except Exception:
                    log.exception("media could not be restored", extra={"call_id": call_id})

    # -- timers ----------------------------------------------------------------------------------------------
    def fire_due(self, now: float, fire: Callable[[float], None]) -> None:
        """Run `fire(now)` (the service's timer processing) unless a storage fault holds timers off; a fault
        holds them off for `fault_retry` seconds instead of retrying at once."""
        if now < self.hold_until:
            return
        try:
            fire(now)
        except StoreUnavailable as exc:
            self.hold_until = now + self.fault_retry
            log.warning("call timers held off %.1f s: %s", self.fault_retry, exc.message)
            on_deadline = self._svc.on_deadline
            if on_deadline is not None:
                on_deadline(self.hold_until)

    def next_deadline(self, timers: list[tuple[float, str]]) -> float | None:
        if not timers:
            return None
        return max(timers[0][0], self.hold_until)


def flush(svc: CallService) -> None:
    """Write what the unit changed: one statement for every put (calls and conversations alike), one per kind
    for the deletes (each statement costs the event loop a GIL hand-off to the media thread)."""
    puts: list[tuple[str, str, JsonObj]] = []
    for call_id in svc._dirty_calls:
        call = svc.calls.get(call_id)
        if call is not None:
            puts.append(("call", call_id, call.to_doc()))
    for conv_id in svc._dirty_convs:
        conv = svc.convs.get(conv_id)
        if conv is not None:
            puts.append(("conversation", conv_id, conv.to_doc()))
    if puts:
        svc.store.put_docs(puts)
    gone_calls = [c for c in svc._dirty_calls if c not in svc.calls]
    if gone_calls:
        svc.store.delete_many("call", gone_calls)
    gone_convs = [c for c in svc._dirty_convs if c not in svc.convs]
    if gone_convs:
        svc.store.delete_many("conversation", gone_convs)


def restore(svc: CallService) -> None:
    """Reload the touched calls and conversations from the store (missing there: gone from memory too)."""
    for call_id in list(svc._dirty_calls):
        doc = svc.store.get("call", call_id)
        if doc is None:
            svc.calls.pop(call_id, None)
        else:
            call = svc.calls[call_id] = Call.from_doc(doc)
            for deadline in (call.answer_deadline, call.keepalive_deadline):  # a compaction may have dropped them
                if deadline is not None:
                    svc._push_timer(deadline, call_id)
    for conv_id in list(svc._dirty_convs):
        doc = svc.store.get("conversation", conv_id)
        if doc is None:
            svc.convs.pop(conv_id, None)
        else:
            svc.convs[conv_id] = Conversation.from_doc(doc)
    svc._dirty_calls.clear()
    svc._dirty_convs.clear()
