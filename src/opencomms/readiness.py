"""Readiness (`GET /readyz`): whether this node can serve calls now, as a load balancer or an orchestrator asks.

Separate from liveness (`/healthz`, which answers as long as the process does). Three checks, each named in the
answer: the store answers a read within `STORE_TIME_LIMIT`; the media engine thread ticked within the last second
(when no tick was seen lately, the check watches for one for up to `TICK_WAIT` — five 20 ms ticks); and, when the
SIP gateway is enabled, its UDP and TCP listeners are open. 200 when all pass, else 503; the body is the same shape
either way: `{"status": "ready" | "notReady", "checks": {name: {"ok": bool, "detail": str}}, "failing": [names]}`.

The store read runs on the event loop like every request's reads: SQLite's busy timeout bounds how long it can
wait, and a read slower than the limit counts as not ready.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from opencomms.store.base import Store

STORE_TIME_LIMIT = 0.5
"""Seconds a probe read of the store may take before the node counts as not ready."""
TICK_AGE_LIMIT = 1.0
"""The media engine must have ticked within this many seconds."""
TICK_WAIT = 0.1
"""When no recent tick was seen, how long to watch for one (seconds)."""
PROBE = ("readyz", "probe")
"""The (kind, key) read: absent, so the read costs one index lookup."""


class _Engine(Protocol):
    @property
    def running(self) -> bool: ...

    ticks: int


class _Sip(Protocol):
    def listening(self) -> dict[str, bool]: ...


class Readiness:
    """The node's readiness checks (one per node; `check` is called by the /readyz handler)."""

    def __init__(
        self,
        store: Store,
        engine: _Engine,
        sip: _Sip | None,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.store = store
        self.engine = engine
        self.sip = sip
        self._clock = clock
        self._seen: tuple[int, float] | None = None
        """(engine ticks, when) at the last check."""
        self.extra: dict[str, Any] = {}
        """More named checks, each `() -> (ok, detail)` (the WebRTC edge's rtpengine)."""

    async def check(self) -> tuple[bool, dict[str, Any]]:
        checks = {"store": self._store(), "media_engine": await self._engine(), "sip": self._sip()}
        checks.update({name: check() for name, check in self.extra.items()})
        failing = sorted(name for name, (ok, _) in checks.items() if not ok)
        body = {
            "status": "notReady" if failing else "ready",
            "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()},
            "failing": failing,
        }
        return not failing, body

    def _store(self) -> tuple[bool, str]:
        started = self._clock()
        try:
            self.store.get(*PROBE)
        except Exception as exc:  # a fault of any kind means: not ready, and say which
            return False, f"store read failed: {getattr(exc, 'message', None) or exc}"
        took = self._clock() - started
        if took > STORE_TIME_LIMIT:
            return False, f"store read took {took:.3f} s (limit {STORE_TIME_LIMIT} s)"
        return True, f"read in {took * 1000:.1f} ms"

    async def _engine(self) -> tuple[bool, str]:
        engine = self.engine
        if not engine.running:
            return False, "media engine thread is not running"
        now, ticks = self._clock(), engine.ticks
        seen, self._seen = self._seen, (ticks, now)
        if seen is not None and ticks != seen[0] and now - seen[1] <= TICK_AGE_LIMIT:
            return True, f"ticked within {now - seen[1]:.3f} s"
        deadline = now + TICK_WAIT
        while self._clock() < deadline:
            await asyncio.sleep(0.01)
            if engine.ticks != ticks:
                self._seen = (engine.ticks, self._clock())
                return True, "ticking"
        return False, f"media engine has not ticked for {TICK_WAIT} s"

    def _sip(self) -> tuple[bool, str]:
        if self.sip is None:
            return True, "disabled"
        state = self.sip.listening()
        closed = sorted(name for name, up in state.items() if not up)
        if closed or not state:
            return False, f"SIP not listening on {', '.join(closed) or 'any transport'}"
        return True, f"listening on {', '.join(sorted(state))}"
