"""Request body decoding and the ASGI app's last line of defence, without sockets: bodies become JSON or a 400,
and whatever goes wrong, the client gets a Graph error body (never a plain-text 500 or a stack trace)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from opencomms.api.app import GraphApp
from opencomms.api.http import MAX_JSON_DEPTH, Request, Response, read_body
from opencomms.api.routing import Kind, Route, Router
from opencomms.domain.errors import BadRequest, PayloadTooLarge


def request(body: bytes, content_type: str | None = "application/json") -> Request:
    headers = {} if content_type is None else {"content-type": content_type}
    return Request("POST", "/x", {}, headers, "", body, "rid", None)


# -- Request.json --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n\t "])
def test_empty_body_is_none(body: bytes) -> None:
    assert request(body).json() is None
    assert request(body, "text/plain").json() is None  # nothing to decode, nothing to refuse


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "application/json; charset=utf-8", "Application/JSON", "text/json", "a/b+json"],
)
def test_json_content_types(content_type: str | None) -> None:
    assert request(b'{"a": 1}', content_type).json() == {"a": 1}


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_other_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(BadRequest, match="Content-Type"):
        request(b"{}", content_type).json()


@pytest.mark.parametrize(
    "body", [b"{", b"{'a': 1}", b"\xff", b'"\\ud800"', b"NaN", b"[1,]", b"1e999", b"\xef\xbb\xbf{}"]
)
def test_malformed_json_is_a_400_without_internals(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        request(body).json()
    assert info.value.message.startswith("The body is not valid JSON (")
    assert "line" not in info.value.message  # orjson's position details stay out


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nesting_up_to_the_limit_is_accepted_and_beyond_refused(kind: str) -> None:
    def nested(depth: int) -> bytes:
        if kind == "list":
            return b"[" * depth + b"]" * depth
        return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)

    assert request(nested(MAX_JSON_DEPTH)).json() is not None
    for depth in (MAX_JSON_DEPTH + 1, 300, 1000):
        with pytest.raises(BadRequest, match=f"more than {MAX_JSON_DEPTH} levels"):
            request(nested(depth)).json()


def test_depth_limit_counts_the_deepest_branch_only() -> None:
    wide = {f"k{i}": [[{"x": [i]}]] for i in range(5000)}
    assert request(json.dumps(wide).encode()).json() == wide
    deep_branch = {"shallow": 1, "deep": json.loads("[" * 70 + "]" * 70)}
    with pytest.raises(BadRequest, match="levels"):
        request(json.dumps(deep_branch).encode()).json()


def test_everything_accepted_can_be_encoded_again() -> None:
    # the limit exists because responses and notifications echo open-type members: orjson refuses >254 levels
    body = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    value = request(body).json()
    wrapped: Any = value
    for _ in range(10):  # a notification wraps a call a few levels down
        wrapped = {"value": [wrapped]}
    assert Response(200, wrapped).encode()


# -- read_body ------------------------------------------------------------------------------------------------
def _receiver(*chunks: bytes, disconnect: bool = False) -> Any:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def test_read_body_joins_chunks_up_to_the_limit() -> None:
    assert asyncio.run(read_body(_receiver(b"ab", b"cd", b"e"), 5)) == b"abcde"
    assert asyncio.run(read_body(_receiver(b"ab", b"cd", disconnect=True), 5)) == b"abcd"
    with pytest.raises(PayloadTooLarge, match="larger than 4 bytes"):
        asyncio.run(read_body(_receiver(b"ab", b"cd", b"e"), 4))


# -- GraphApp: the last line of defence ----------------------------------------------------------------------------
def _app(handler: Any) -> GraphApp:
    ctx = SimpleNamespace(max_body_bytes=1024)
    return GraphApp(ctx, Router([Route("GET", "thing", handler, Kind.PUBLIC, "a test route")]))  # type: ignore[arg-type]


def _call(app: GraphApp, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[str, str], Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/thing", "headers": headers or [], "query_string": b""}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    hdrs = {k.decode(): v.decode() for k, v in start["headers"]}
    assert int(hdrs["content-length"]) == len(body["body"])
    return start["status"], hdrs, json.loads(body["body"]) if body["body"] else None


def test_a_response_that_cannot_be_encoded_is_a_graph_500(caplog: pytest.LogCaptureFixture) -> None:
    def handler(ctx: Any, req: Request) -> Response:
        deep: Any = 1
        for _ in range(300):
            deep = [deep]
        return Response(200, {"deep": deep})

    status, headers, body = _call(_app(handler))
    assert status == 500
    assert body["error"]["code"] == "generalException"
    assert body["error"]["message"] == "An internal error occurred."
    assert body["error"]["innerError"]["request-id"] == headers["request-id"]
    assert "Traceback" not in json.dumps(body)
    assert "unhandled error" in caplog.text  # logged for the operator, not shown to the client


def test_an_exception_in_a_handler_is_a_graph_500() -> None:
    def handler(ctx: Any, req: Request) -> Response:
        raise RuntimeError("secret internal detail")

    status, headers, body = _call(_app(handler), [(b"client-request-id", b"0f6c1fd8-95a3-4e55-9a3a-3d5ad1b1c9a1")])
    assert status == 500
    assert "secret internal detail" not in json.dumps(body)
    assert body["error"]["innerError"]["client-request-id"] == "0f6c1fd8-95a3-4e55-9a3a-3d5ad1b1c9a1"
    assert headers["client-request-id"] == "0f6c1fd8-95a3-4e55-9a3a-3d5ad1b1c9a1"


def test_a_non_guid_client_request_id_is_never_echoed() -> None:
    def handler(ctx: Any, req: Request) -> Response:
        return Response(200, {"ok": True})

    status, headers, body = _call(_app(handler), [(b"client-request-id", b"jane.doe@example.com")])
    assert status == 400
    assert body["error"]["innerError"]["client-request-id"] is None
    assert "client-request-id" not in headers
    assert "jane.doe" not in json.dumps(body)
