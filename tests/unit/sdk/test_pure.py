"""Pure parts of the SDK: token cache, retry policy, Retry-After, error bodies, tones, builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from opencomms.sdk import GraphError, RetryPolicy, TokenCache, phone_target, text_prompt, tone_key, tone_names
from opencomms.sdk.errors import parse_retry_after


def test_token_cache_refreshes_before_expiry() -> None:
    cache = TokenCache(margin=300)
    assert cache.get("s", 0) is None
    cache.put("s", "t1", 3600, now=1000)
    assert cache.get("s", 1000) == "t1"
    assert cache.get("s", 1000 + 3299) == "t1"
    assert cache.get("s", 1000 + 3300) is None  # 5 min before expiry: fetch a new one
    assert cache.get("other", 1000) is None
    cache.put("s", "short", 60, now=0)  # shorter than two margins: refreshed at half its life
    assert cache.get("s", 29) == "short" and cache.get("s", 30) is None
    cache.invalidate()
    assert cache.get("s", 0) is None


def test_retry_policy_honours_retry_after_and_bounds() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=0.5, max_delay=30)
    assert policy.delay(0, 429, 2.0, idempotent=False) == 2.0
    assert policy.delay(0, 503, None, idempotent=False) == 0.5
    assert policy.delay(2, 503, None, idempotent=False) == 2.0
    assert policy.delay(3, 429, 1.0, idempotent=True) is None  # retries exhausted
    assert policy.delay(0, 429, 120.0, idempotent=True) is None  # longer than we wait: give up at once
    assert policy.delay(0, 500, None, idempotent=True) is None
    assert policy.delay(0, 400, 1.0, idempotent=True) is None
    assert policy.delay(0, None, None, idempotent=True) == 0.5  # network error on GET/DELETE
    assert policy.delay(0, None, None, idempotent=False) is None  # ... never on POST
    assert RetryPolicy(max_retries=0).delay(0, 429, 1.0, idempotent=True) is None
    assert RetryPolicy(base_delay=10, max_delay=15).delay(2, 429, None, idempotent=True) == 15


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 < (parse_retry_after(later) or 0) <= 20
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=20), usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_graph_and_oauth_error_bodies() -> None:
    body = {"error": {"code": "itemNotFound", "message": "No call.", "innerError": {"request-id": "r1"}}}
    err = GraphError.from_response(404, body, {"client-request-id": "c1", "Retry-After": "2"})
    assert (err.status, err.code, err.message, err.request_id, err.client_request_id) == (
        404,
        "itemNotFound",
        "No call.",
        "r1",
        "c1",
    )
    assert err.retry_after == 2.0 and "itemNotFound" in str(err)
    oauth = GraphError.from_response(401, {"error": "invalid_client", "error_description": "bad secret"})
    assert (oauth.code, oauth.message) == ("invalid_client", "bad secret")
    text = GraphError.from_response(502, "<html>bad gateway</html>")
    assert text.code == "http502" and "bad gateway" in text.message
    assert GraphError.from_response(500, None).code == "http500"


def test_tones_and_builders() -> None:
    assert tone_names("12*#a") == ["tone1", "tone2", "star", "pound", "a"]
    assert [tone_key(t) for t in ("tone0", "pound", "star", "d", "Tone9")] == ["0", "#", "*", "D", "9"]
    with pytest.raises(ValueError):
        tone_names("1x")
    assert phone_target("+15550100")["identity"]["phone"]["id"] == "+15550100"
    assert text_prompt("hello", voice="en-us") == {
        "@odata.type": "#opencomms.textPrompt",
        "text": "hello",
        "voice": "en-us",
    }
