"""Call quotas: how many live calls an application or tenant may hold and how fast it may create them.

`LiveCalls` is CallService's map of live legs by id; it keeps a count per application and per tenant as legs come
and go (O(1), no scan), so the concurrency check costs two dict lookups. `CallQuotas` is the policy the API applies
before a create: concurrency first (403 quotaLimitReached, the message names the quota), then the per-minute rates
(429 activityLimitReached with Retry-After; a token bucket of `limit` refilled evenly over the minute). It is pure:
time is an argument.

What counts: every bot leg (one Graph call resource) of the application: the calls it created and the calls
ringing it or answered by it (bot-to-bot and phone calls alike). A phone's own leg (no application) does not count.
An inbound call to a bot already at its concurrency quota is refused (486, subcode 9150: the caller's leg fails,
a phone hears 486 Busy Here), so the quota bounds what one bot holds whoever started its calls.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from opencomms.calling.model import Call
from opencomms.config import QuotaConfig
from opencomms.domain import results
from opencomms.domain.directory import Application
from opencomms.domain.errors import QuotaExceeded, Throttled
from opencomms.domain.results import ResultInfo
from opencomms.ratelimit import KeyedTokenBucket, retry_after

__all__ = ["CallQuotas", "LiveCalls", "MinuteRate"]

_MISSING: Any = object()


class LiveCalls(dict[str, Call]):
    """Live legs by id, counted per application and per tenant (bot legs only), with the concurrency limits."""

    __slots__ = ("by_app", "by_tenant", "max_per_app", "max_per_tenant")

    def __init__(self) -> None:
        super().__init__()
        self.by_app: Counter[str] = Counter()
        self.by_tenant: Counter[str] = Counter()
        self.max_per_app = 0
        """Live legs one application may hold (0: no limit); set by CallQuotas."""
        self.max_per_tenant = 0

    def _count(self, call: Call, delta: int) -> None:
        if not call.app_id:
            return
        for counter, key in ((self.by_app, call.app_id), (self.by_tenant, call.tenant_id)):
            n = counter[key] + delta
            if n > 0:
                counter[key] = n
            else:
                del counter[key]

    def __setitem__(self, key: str, call: Call) -> None:
        old = super().get(key)
        if old is not None:
            self._count(old, -1)
        super().__setitem__(key, call)
        self._count(call, +1)

    def __delitem__(self, key: str) -> None:
        call = super().__getitem__(key)
        super().__delitem__(key)
        self._count(call, -1)

    def pop(self, key: str, default: Any = _MISSING) -> Any:  # type: ignore[override]
        if key in self:
            call = super().pop(key)
            self._count(call, -1)
            return call
        if default is _MISSING:
            raise KeyError(key)
        return default

    def clear(self) -> None:
        super().clear()
        self.by_app.clear()
        self.by_tenant.clear()

    def refusal(self, app: Application) -> ResultInfo | None:
        """Why a new incoming leg for bot `app` cannot ring (None: it can)."""
        if not app.callback_url:
            return results.NO_CALLEE_ENDPOINTS
        if self.max_per_app and self.by_app[app.id] >= self.max_per_app:
            return results.CALLEE_OVER_QUOTA
        if self.max_per_tenant and self.by_tenant[app.tenant_id] >= self.max_per_tenant:
            return results.CALLEE_OVER_QUOTA
        return None


class MinuteRate:
    """Token buckets of `limit` per minute by key (burst `limit`, refilled at limit/60 per second; 0: no limit)."""

    def __init__(self, limit: int, max_keys: int = 65536) -> None:
        self.limit = limit
        self._buckets = KeyedTokenBucket(limit / 60.0, float(limit), max_keys) if limit else None

    def wait(self, key: str, now: float) -> int | None:
        """Seconds until `key` may go once more (None: it may go now)."""
        if self._buckets is None:
            return None
        wait = self._buckets.wait(key, now)
        return None if wait is None else retry_after(wait)

    def take(self, key: str, now: float) -> None:
        if self._buckets is not None:
            self._buckets.charge(key, now)


class CallQuotas:
    """The admission policy for call creates, over a LiveCalls whose concurrency limits it sets."""

    def __init__(self, config: QuotaConfig, live: LiveCalls) -> None:
        self.config = config
        self.live = live
        live.max_per_app = config.concurrent_calls_per_app
        live.max_per_tenant = config.concurrent_calls_per_tenant
        self._app_rate = MinuteRate(config.calls_per_minute_per_app)
        self._tenant_rate = MinuteRate(config.calls_per_minute_per_tenant)
        self.refused_concurrency = 0
        self.refused_rate = 0

    def admit_create(self, app_id: str, tenant_id: str, now: float) -> None:
        """Allow one call create by `app_id` of `tenant_id` at `now`, or raise QuotaExceeded (403) / Throttled (429).

        A refused create takes nothing from the rate buckets."""
        cfg = self.config
        checks = (
            (cfg.concurrent_calls_per_app, self.live.by_app[app_id], "concurrent_calls_per_app", "application"),
            (cfg.concurrent_calls_per_tenant, self.live.by_tenant[tenant_id], "concurrent_calls_per_tenant", "tenant"),
        )
        for limit, live, name, whose in checks:
            if limit and live >= limit:
                self.refused_concurrency += 1
                raise QuotaExceeded(
                    f"Quota '{name}' reached: the {whose} already has {live} live calls (limit {limit}); "
                    "end calls before creating more."
                )
        rates = (
            (self._app_rate, app_id, "calls_per_minute_per_app", "application"),
            (self._tenant_rate, tenant_id, "calls_per_minute_per_tenant", "tenant"),
        )
        for rate, key, name, whose in rates:
            wait = rate.wait(key, now)
            if wait is not None:
                self.refused_rate += 1
                raise Throttled(
                    f"Quota '{name}' reached: the {whose} may create {rate.limit} calls per minute; "
                    f"retry after {wait} s.",
                    wait,
                )
        self._app_rate.take(app_id, now)
        self._tenant_rate.take(tenant_id, now)
