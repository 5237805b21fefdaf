"""The call quota policy (calling/quotas.py): live-call counting, concurrency and per-minute rates, on a fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from opencomms.calling.model import Call
from opencomms.calling.quotas import CallQuotas, LiveCalls, MinuteRate
from opencomms.config import QuotaConfig
from opencomms.domain import results
from opencomms.domain.calls import CallDirection, CallState
from opencomms.domain.directory import Application
from opencomms.domain.errors import QuotaExceeded, Throttled

T1, T2 = "t1", "t2"


def leg(call_id: str, app_id: str, tenant_id: str = T1) -> Call:
    return Call(
        id=call_id,
        tenant_id=tenant_id,
        app_id=app_id,
        direction=CallDirection.OUTGOING,
        state=CallState.ESTABLISHING,
        conversation_id="conv",
        my_participant_id="p",
        source_id="1",
        identity={},
        source={},
        targets=[],
        requested_modalities=["audio"],
        created_at=0.0,
    )


def app(app_id: str, tenant_id: str = T1, callback: str = "https://bot.example/cb") -> Application:
    return Application(id=app_id, tenant_id=tenant_id, display_name=app_id, callback_url=callback)


def test_live_calls_count_bot_legs_per_app_and_tenant_through_every_mutation() -> None:
    live = LiveCalls()
    live["a"] = leg("a", "app1")
    live["b"] = leg("b", "app1")
    live["c"] = leg("c", "app2", T2)
    live["x"] = leg("x", "")  # a phone's leg belongs to no application: not counted
    assert (live.by_app["app1"], live.by_app["app2"], live.by_tenant[T1], live.by_tenant[T2]) == (2, 1, 2, 1)
    live["a"] = leg("a", "app1")  # replaced (a failed unit of work reloads it): still one
    assert live.by_app["app1"] == 2
    del live["a"]
    assert live.pop("b") is not None and live.pop("b", None) is None
    with pytest.raises(KeyError):
        live.pop("b")
    assert "app1" not in live.by_app and live.by_tenant[T1] == 0
    live.clear()
    assert not live.by_app and not live.by_tenant and len(live) == 0


def test_create_is_refused_at_the_concurrency_quota_until_a_call_ends() -> None:
    live = LiveCalls()
    quotas = CallQuotas(QuotaConfig(concurrent_calls_per_app=2, calls_per_minute_per_app=0), live)
    for i in range(2):
        quotas.admit_create("app1", T1, now=0.0)
        live[f"c{i}"] = leg(f"c{i}", "app1")
    with pytest.raises(QuotaExceeded) as err:
        quotas.admit_create("app1", T1, now=0.0)
    assert err.value.status == 403 and err.value.code == "quotaLimitReached"
    assert "concurrent_calls_per_app" in err.value.message and "limit 2" in err.value.message
    quotas.admit_create("app2", T1, now=0.0)  # another application of the tenant is not affected
    del live["c0"]
    quotas.admit_create("app1", T1, now=0.0)
    assert quotas.refused_concurrency == 1


def test_tenant_concurrency_spans_its_applications() -> None:
    live = LiveCalls()
    quotas = CallQuotas(QuotaConfig(concurrent_calls_per_tenant=3), live)
    for i, a in enumerate(["app1", "app2", "app3"]):
        live[f"c{i}"] = leg(f"c{i}", a)
    with pytest.raises(QuotaExceeded, match="concurrent_calls_per_tenant"):
        quotas.admit_create("app4", T1, now=0.0)
    quotas.admit_create("app9", T2, now=0.0)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (time, outcome) with 3 per minute: a burst of 3, then one every 20 s
        ([(0, None), (0, None), (0, None), (0, 20)], "burst then 20 s"),
        ([(0, None), (0, None), (0, None), (10, 10), (20, None), (20, 20)], "refill"),
        ([(0, None), (0, None), (0, None), (600, None), (600, None), (600, None), (600, 20)], "full bucket caps"),
    ],
)
def test_rate_is_a_token_bucket_of_the_limit_per_minute(steps: list[tuple[float, int | None]], expected: str) -> None:
    live = LiveCalls()
    quotas = CallQuotas(QuotaConfig(calls_per_minute_per_app=3, calls_per_minute_per_tenant=0), live)
    for now, wait in steps:
        if wait is None:
            quotas.admit_create("app1", T1, now)
        else:
            with pytest.raises(Throttled) as err:
                quotas.admit_create("app1", T1, now)
            assert err.value.status == 429 and err.value.retry_after == wait, expected
            assert "calls_per_minute_per_app" in err.value.message


def test_a_refused_create_takes_no_token_and_the_tenant_rate_limits_all_its_apps() -> None:
    live = LiveCalls()
    quotas = CallQuotas(QuotaConfig(calls_per_minute_per_app=2, calls_per_minute_per_tenant=3), live)
    quotas.admit_create("app1", T1, 0)
    quotas.admit_create("app1", T1, 0)
    with pytest.raises(Throttled, match="per_app"):
        quotas.admit_create("app1", T1, 0)
    quotas.admit_create("app2", T1, 0)
    with pytest.raises(Throttled, match="per_tenant"):
        quotas.admit_create("app2", T1, 0)  # app2 still has tokens, the tenant has none
    assert quotas.refused_rate == 2
    quotas.admit_create("app3", T2, 0)


def test_clock_stepping_back_does_not_drain_or_refill() -> None:
    rate = MinuteRate(60)
    for _ in range(60):
        assert rate.wait("k", 100.0) is None
        rate.take("k", 100.0)
    assert rate.wait("k", 50.0) == 1
    assert rate.wait("k", 101.0) is None


def test_zero_disables_every_limit() -> None:
    live = LiveCalls()
    off = dataclasses.replace(
        QuotaConfig(),
        concurrent_calls_per_app=0,
        concurrent_calls_per_tenant=0,
        calls_per_minute_per_app=0,
        calls_per_minute_per_tenant=0,
    )
    quotas = CallQuotas(off, live)
    for i in range(5000):
        live[str(i)] = leg(str(i), "app1")
        quotas.admit_create("app1", T1, 0.0)
    assert live.refusal(app("app1")) is None


def test_negative_limits_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="queued_media_ops_per_call"):
        QuotaConfig(queued_media_ops_per_call=-1)


def test_ringing_a_bot_at_its_quota_is_refused_as_busy() -> None:
    live = LiveCalls()
    CallQuotas(QuotaConfig(concurrent_calls_per_app=1), live)
    assert live.refusal(app("app1")) is None
    live["a"] = leg("a", "app1")
    assert live.refusal(app("app1")) == results.CALLEE_OVER_QUOTA
    assert live.refusal(app("app1", callback="")) == results.NO_CALLEE_ENDPOINTS
    assert results.CALLEE_OVER_QUOTA.code == 486
