"""Every Graph endpoint's contract against a real node on loopback: success shapes, aliases and tolerance
(§14: /beta, /app/calls, case-insensitive paths, ids and enums), and for every failure the exact Graph
error body with the request's ids. Bad input of every kind is a 4xx, never a 500 or a stack trace.

One node serves the whole module (tests clean up the calls they make); tests that need a differently
configured node (throttling, body limit) start their own.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from opencomms.config import CallsConfig, ThrottleSettings
from opencomms.testing.harness import app_target
from tests.integration.conftest import HttpEnv, make_platform, node_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
UNKNOWN = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
CALLS = "/communications/calls"
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
_AUTO = object()


# -- raw HTTP ---------------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes
    headers: dict[str, str]
    crid: str | None
    """The client-request-id this request sent (None: none sent)."""

    def __repr__(self) -> str:  # what a failing assertion shows
        return f"Reply({self.status}, {self.raw[:400]!r})"


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = _AUTO,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    crid: Any = _AUTO,
) -> Reply:
    """One request. `crid` defaults to a fresh GUID; pass None to send no client-request-id."""
    hdrs: dict[str, str] = {}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    sent_crid = str(uuid.uuid4()) if crid is _AUTO else crid
    if sent_crid is not None:
        hdrs["client-request-id"] = sent_crid
    data: bytes | None = raw
    if body is not _AUTO:
        data = json.dumps(body).encode()
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    async with session.request(method, url, data=data, headers=hdrs) as resp:
        payload = await resp.read()
        parsed: Any = None
        if payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = payload.decode(errors="replace")
        return Reply(resp.status, parsed, payload, {k.lower(): v for k, v in resp.headers.items()}, sent_crid)


def assert_graph_error(reply: Reply, status: int, code: str, fragment: str | None = None) -> str:
    """The exact Graph error body (§1.2) with this request's ids; returns the message."""
    assert reply.status == status, reply
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    body = reply.body
    assert isinstance(body, dict) and set(body) == {"error"}, reply
    error = body["error"]
    assert set(error) == {"code", "message", "innerError"}, reply
    assert error["code"] == code, reply
    message = error["message"]
    assert isinstance(message, str) and message.strip(), reply
    assert "Traceback" not in message and 'File "' not in message and len(message) < 1000, reply
    if fragment is not None:
        assert fragment in message, (fragment, message)
    inner = error["innerError"]
    assert set(inner) == {"request-id", "date", "client-request-id"}, reply
    assert GUID_RE.match(inner["request-id"]), inner
    assert inner["request-id"] == reply.headers["request-id"]
    assert DATE_RE.match(inner["date"]), inner
    sent = datetime.strptime(inner["date"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 120
    assert inner["client-request-id"] == reply.crid
    assert reply.headers.get("client-request-id") == reply.crid
    if status == 401:
        assert reply.headers.get("www-authenticate", "").startswith("Bearer "), reply.headers
    return message


def assert_ok_headers(reply: Reply) -> None:
    assert GUID_RE.match(reply.headers["request-id"]), reply.headers
    assert reply.headers.get("client-request-id") == reply.crid


# -- the module's node ----------------------------------------------------------------------------------
PERMS = {
    "alice": ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"],
    "bob": ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"],
    "carol": ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"],
}


@dataclass
class Env(HttpEnv):
    parked: tuple[str, str] = ("", "")
    """A call alice placed to bob and nobody answers: (alice's establishing leg, bob's incoming leg)."""

    async def graph(self, method: str, path: str, who: str = "alice", version: str = "v1.0", **kw: Any) -> Reply:
        return await send(self.http, method, f"{self.url}/{version}{path}", token=self.token(who), **kw)

    async def ring(self, caller: str = "alice", callee: str = "bob") -> tuple[str, str]:
        """caller calls callee; returns (caller's leg, callee's incoming leg) once it rang."""
        bot = self.p[callee].bot
        known = {n.call_id for n in bot.notifications}
        status, call = await self.p[caller].client.create_call(
            self.p[caller].bot.url, [app_target(self.p[callee].app_id)]
        )
        assert status == 201, call
        found = await bot.wait_for(lambda n: n.change_type == "created" and n.call_id not in known)
        return call["id"], found[0].call_id

    async def connect(self, caller: str = "alice", callee: str = "bob") -> tuple[str, str]:
        a_id, b_id = await self.ring(caller, callee)
        assert await self.p[callee].client.answer(b_id) == 202
        await self.p[caller].bot.wait_state(a_id, "established")
        await self.p[callee].bot.wait_state(b_id, "established")
        return a_id, b_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    config = node_config(calls=CallsConfig(answer_timeout=300.0))
    async with make_platform(config, names=tuple(PERMS), perms=PERMS) as p, aiohttp.ClientSession() as http:
        e = Env(p, http)
        e.parked = await e.ring()
        yield e
        assert (await e.graph("DELETE", f"{CALLS}/{e.parked[0]}")).status == 204
        assert p.node.calls.active_calls == 0


@pytest_asyncio.fixture(loop_scope="module")
async def clean(env: Env) -> AsyncIterator[Env]:
    """The module node, checked to hold exactly the parked call's two legs after the test."""
    yield env
    assert env.p.node.calls.active_calls == 2
    assert set(env.p.node.calls.calls) == set(env.parked)


def path_of(env: Env, template: str) -> str:
    return template.format(a=env.parked[0], b=env.parked[1], unknown=UNKNOWN)


# -- success contracts ---------------------------------------------------------------------------------
async def test_create_get_list_and_delete_a_call(clean: Env) -> None:
    env = clean
    bob = env.p["bob"].app_id
    body = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": env.p["alice"].bot.url,
        "targets": [app_target(bob)],
        "requestedModalities": ["audio"],
        "mediaConfig": SERVICE_HOSTED,
        "subject": "contract",
        "tenantId": env.p.tenant_id,
        "answeredBy": "beta-member",  # open type: unknown members are echoed (§14 rows 6, 7)
    }
    known = {n.call_id for n in env.p["bob"].bot.notifications}
    created = await env.graph("POST", CALLS, body=body)
    assert created.status == 201, created
    assert_ok_headers(created)
    call = created.body
    assert GUID_RE.match(call["id"]) and GUID_RE.match(call["myParticipantId"]) and GUID_RE.match(call["callChainId"])
    assert created.headers["location"] == f"{env.url}/v1.0{CALLS}/{call['id']}"
    assert call["@odata.type"] == "#microsoft.graph.call"
    assert call["@odata.context"].endswith("$metadata#communications/calls/$entity")
    assert (call["state"], call["direction"]) == ("establishing", "outgoing")
    assert call["subject"] == "contract" and call["tenantId"] == env.p.tenant_id
    assert call["answeredBy"] == "beta-member"
    assert call["requestedModalities"] == ["audio"]
    assert call["mediaConfig"]["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
    assert call["targets"][0]["@odata.type"] == "#microsoft.graph.invitationParticipantInfo"
    assert call["source"]["identity"]["application"]["id"] == env.p["alice"].app_id
    assert call["callbackUri"] == env.p["alice"].bot.url
    found = await env.p["bob"].bot.wait_for(lambda n: n.change_type == "created" and n.call_id not in known)
    b_id = found[0].call_id
    try:
        got = await env.graph("GET", f"{CALLS}/{call['id']}")
        assert got.status == 200 and got.body["id"] == call["id"] and got.body["state"] == "establishing"
        assert_ok_headers(got)

        parts = await env.graph("GET", f"{CALLS}/{call['id']}/participants")
        assert parts.status == 200
        assert parts.body["@odata.context"].endswith(f"calls('{call['id']}')/participants")
        ids = [item["id"] for item in parts.body["value"]]
        assert call["myParticipantId"] in ids
        one = await env.graph("GET", f"{CALLS}/{call['id']}/participants/{call['myParticipantId']}")
        assert one.status == 200 and one.body["@odata.type"] == "#microsoft.graph.participant"
        assert one.body["info"]["identity"]["application"]["id"] == env.p["alice"].app_id

        kept = await env.graph("POST", f"{CALLS}/{call['id']}/keepAlive")
        assert (kept.status, kept.raw) == (200, b"")
        kept = await env.graph("POST", f"{CALLS}/{call['id']}/keepAlive", body={})
        assert kept.status == 200
    finally:
        gone = await env.graph("DELETE", f"{CALLS}/{call['id']}")
    assert (gone.status, gone.raw) == (204, b"")
    assert "content-type" not in gone.headers
    assert_ok_headers(gone)
    assert b_id not in env.p.node.calls.calls  # bob's ringing leg went with it
    assert_graph_error(await env.graph("GET", f"{CALLS}/{call['id']}"), 404, "itemNotFound")


async def test_request_ids_are_fresh_guids_and_client_request_id_is_echoed(clean: Env) -> None:
    env = clean
    seen = set()
    for _ in range(20):
        reply = await env.graph("GET", f"{CALLS}/{env.parked[0]}")
        assert reply.status == 200
        assert_ok_headers(reply)
        seen.add(reply.headers["request-id"])
    assert len(seen) == 20
    # a dashless upper-case GUID is a GUID (§1 ids); no client-request-id means none is echoed
    crid = uuid.uuid4().hex.upper()
    reply = await env.graph("GET", f"{CALLS}/{env.parked[0]}", crid=crid)
    assert reply.status == 200 and reply.headers["client-request-id"] == crid
    reply = await env.graph("GET", f"{CALLS}/{env.parked[0]}", crid=None)
    assert reply.status == 200 and "client-request-id" not in reply.headers
    reply = await env.graph("GET", f"{CALLS}/{env.parked[0]}", headers={"scenario-id": str(uuid.uuid4())})
    assert reply.status == 200
    error = await env.graph("GET", f"{CALLS}/{UNKNOWN}", crid=None)
    assert_graph_error(error, 404, "itemNotFound")
    assert error.body["error"]["innerError"]["client-request-id"] is None


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("client-request-id", "not-a-guid"),
        ("client-request-id", "alice@example.com"),
        ("client-request-id", "+14255550100"),
        ("client-request-id", str(uuid.uuid4()) + "0"),
        ("client-request-id", ""),
        ("scenario-id", "my-scenario"),
        ("scenario-id", "{" + str(uuid.uuid4()) + "}"),
    ],
)
async def test_non_guid_correlation_headers_are_refused(clean: Env, header: str, value: str) -> None:
    env = clean
    for method, path, body in [("GET", f"{CALLS}/{env.parked[0]}", _AUTO), ("POST", CALLS, {"x": 1})]:
        if header == "client-request-id":
            reply = await env.graph(method, path, body=body, crid=value)
            # the bad value is neither echoed in the header nor in the body: it may be personal data
            reply.crid = None
        else:
            reply = await env.graph(method, path, body=body, headers={header: value})
        assert_graph_error(reply, 400, "invalidRequest", f"'{header}' header must be a GUID")


async def test_ids_are_case_and_dash_insensitive(clean: Env) -> None:
    env = clean
    a_id = env.parked[0]
    call = (await env.graph("GET", f"{CALLS}/{a_id}")).body
    pid = call["myParticipantId"]
    for variant in (a_id.upper(), a_id.replace("-", ""), a_id.replace("-", "").upper()):
        reply = await env.graph("GET", f"{CALLS}/{variant}")
        assert reply.status == 200, (variant, reply)
        assert reply.body["id"] == a_id
    for variant in (pid.upper(), pid.replace("-", "").upper()):
        reply = await env.graph("GET", f"{CALLS}/{a_id.upper()}/participants/{variant}")
        assert reply.status == 200 and reply.body["id"] == pid
    assert (await env.graph("POST", f"{CALLS}/{a_id.replace('-', '').upper()}/keepAlive")).status == 200


@pytest.mark.parametrize(
    "template",
    [
        "/v1.0/communications/calls/{a}",
        "/V1.0/Communications/Calls/{a}",
        "/v1.0/COMMUNICATIONS/CALLS/{a}",
        "/beta/communications/calls/{a}",
        "/BETA/communications/calls/{a}",
        "/v1.0/app/calls/{a}",
        "/v1.0/App/Calls/{a}",
        "/beta/app/calls/{a}",
        "/v1.0/communications/calls/{a}/",
        "/v1.0//communications/calls/{a}",
    ],
)
async def test_get_call_paths_versions_and_aliases(clean: Env, template: str) -> None:
    env = clean
    reply = await send(env.http, "GET", env.url + path_of(env, template), token=env.token("alice"))
    assert reply.status == 200, reply
    assert reply.body["id"] == env.parked[0]
    version = "beta" if "beta" in template.lower() else "v1.0"
    assert reply.body["@odata.context"].startswith(f"{env.url}/{version}/$metadata#")


@pytest.mark.parametrize(
    "template",
    [
        "/v1.0/communications/calls/{a}/PARTICIPANTS",
        "/beta/Communications/calls/{a}/Participants",
        "/v1.0/app/calls/{a}/participants",
    ],
)
async def test_participants_paths_are_case_insensitive(clean: Env, template: str) -> None:
    env = clean
    reply = await send(env.http, "GET", env.url + path_of(env, template), token=env.token("alice"))
    assert reply.status == 200 and len(reply.body["value"]) >= 1


@pytest.mark.parametrize("prefix", ["/beta/communications/calls", "/v1.0/app/calls", "/beta/app/calls"])
async def test_create_and_delete_under_beta_and_the_app_alias(clean: Env, prefix: str) -> None:
    env = clean
    body = {"callbackUri": env.p["alice"].bot.url, "targets": [app_target(env.p["bob"].app_id)], "mediaConfig": {}}
    created = await send(env.http, "POST", env.url + prefix, token=env.token("alice"), body=body)
    assert created.status == 201, created
    version = prefix.split("/")[1]
    assert created.headers["location"] == f"{env.url}/{version}{CALLS}/{created.body['id']}"
    gone = await send(env.http, "DELETE", f"{env.url}{prefix}/{created.body['id'].upper()}", token=env.token("alice"))
    assert gone.status == 204


async def test_enums_and_odata_types_are_case_insensitive_and_abstract_types_inferred(clean: Env) -> None:
    env = clean
    body = {
        "@odata.type": "#Microsoft.Graph.CALL",
        "callbackUri": env.p["alice"].bot.url,
        "targets": [{"identity": {"@odata.type": "microsoft.graph.identitySet", "application": {"id": UNKNOWN}}}],
        "requestedModalities": ["AUDIO", "Video"],
        # §14 row 20: blob means app-hosted (the blob itself must be ours: wire/apphosted.py)
        "mediaConfig": {"blob": '{"v": 1, "url": "ws://127.0.0.1:9/media", "key": "k", "secret": "' + "s" * 43 + '"}'},
        "callOptions": {"isContentSharingNotificationEnabled": False},
    }
    created = await env.graph("POST", CALLS, body=body)
    assert created.status == 201, created
    call = created.body
    assert call["requestedModalities"] == ["audio", "video"]
    assert call["mediaConfig"]["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    assert call["callOptions"]["@odata.type"] == "#microsoft.graph.outgoingCallOptions"
    assert call["targets"][0]["identity"]["@odata.type"] == "#microsoft.graph.identitySet"
    # the target does not exist: the call fails on its own with 480/10037
    end = await env.p["alice"].bot.wait_for(lambda n: n.call_id == call["id"] and n.change_type == "deleted")
    assert end[0].resource_data["resultInfo"]["code"] == 480
    assert call["id"] not in env.p.node.calls.calls


async def test_reject_reason_is_case_insensitive(clean: Env) -> None:
    env = clean
    a_id, b_id = await env.ring()
    reply = await env.graph("POST", f"{CALLS}/{b_id.upper()}/reject", who="bob", body={"reason": "FORBIDDEN"})
    assert (reply.status, reply.raw) == (202, b"")
    end = await env.p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted")
    assert end[0].resource_data["resultInfo"]["code"] == 403


async def test_reject_without_body_means_reason_none(clean: Env) -> None:
    env = clean
    a_id, b_id = await env.ring()
    reply = await env.graph("POST", f"{CALLS}/{b_id}/reject", who="bob")
    assert reply.status == 202
    end = await env.p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted")
    assert end[0].resource_data["resultInfo"]["code"] == 603


async def test_answer_with_inferred_media_config(clean: Env) -> None:
    env = clean
    a_id, b_id = await env.ring()
    reply = await env.graph("POST", f"{CALLS}/{b_id}/answer", who="bob", body={"mediaConfig": {}})
    assert (reply.status, reply.raw) == (202, b"")
    await env.p["alice"].bot.wait_state(a_id, "established")
    got = await env.graph("GET", f"{CALLS}/{b_id}", who="bob")
    assert got.body["mediaConfig"]["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
    assert got.body["state"] == "established"
    assert (await env.graph("DELETE", f"{CALLS}/{a_id}")).status == 204
    await env.p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")


async def test_healthz_needs_no_token(clean: Env) -> None:
    env = clean
    for path in ("/healthz", "/HEALTHZ"):
        reply = await send(env.http, "GET", env.url + path, crid=None)
        assert reply.status == 200, reply
        assert reply.body["status"] == "ok" and reply.body["calls"] == 2
        assert GUID_RE.match(reply.headers["request-id"])
    reply = await send(env.http, "GET", env.url + "/healthz", headers={"Authorization": "Bearer garbage"})
    assert reply.status == 200


# -- OpenAPI -------------------------------------------------------------------------------------------
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_openapi_document_is_valid_and_lists_every_route(clean: Env) -> None:
    from opencomms.api.routes import all_routes
    from opencomms.api.routing import VERSIONS, Kind

    env = clean
    reply = await send(env.http, "GET", env.url + "/openapi.json")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    doc = reply.body
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"] == [{"url": env.url}]
    schemas = doc["components"]["schemas"]
    schemes = doc["components"]["securitySchemes"]

    expected: set[tuple[str, str]] = set()
    for route in all_routes():
        versions = VERSIONS if route.kind is Kind.GRAPH else ("",)
        for version in versions:
            path = f"/{version}/{route.template}" if version else f"/{route.template}"
            expected.add((path, route.method.lower()))
            if version and route.template.startswith("communications/calls"):
                alias = f"/{version}/app/calls{route.template[len('communications/calls') :]}"
                expected.add((alias, route.method.lower()))
    listed = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert listed == expected
    assert all(path.startswith("/") for path, _ in listed)
    assert ("/v1.0/communications/calls", "post") in listed and ("/beta/communications/calls", "post") in listed

    operation_ids = []
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in item.items():
            assert method in {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
            operation_ids.append(op["operationId"])
            assert op.get("summary")
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, (path, method)
            assert all(p["required"] is (p["in"] == "path") and p["schema"] for p in op.get("parameters", []))
            assert op["responses"], (path, method)
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5][0-9][0-9]", status), status
                if "$ref" in response:
                    response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                assert response["description"]
            for requirement in op.get("security", []):
                assert set(requirement) <= set(schemes)
            if path.startswith(("/v1.0/", "/beta/")):
                assert op["security"] == [{"bearer": []}]
                for status in ("400", "401", "413", "429"):
                    name = op["responses"][status]["$ref"].rsplit("/", 1)[1]
                    error = doc["components"]["responses"][name]["content"]["application/json"]["schema"]
                    assert error == {"$ref": "#/components/schemas/error"}
    assert len(operation_ids) == len(set(operation_ids))
    create = doc["paths"]["/v1.0/communications/calls"]["post"]
    assert "201" in create["responses"] and "Calls.Initiate.All" in create["description"]
    assert "204" in doc["paths"]["/v1.0/communications/calls/{id}"]["delete"]["responses"]
    for ref in _refs(doc):
        section, name = ref.split("/")[-2:]
        assert ref.startswith("#/components/") and name in doc["components"][section], ref
    text_bodies = {  # schemas of non-JSON bodies (the Prometheus text of /metrics) are strings
        media["schema"]["$ref"].rsplit("/", 1)[1]
        for item in doc["paths"].values()
        for op in item.values()
        for response in op["responses"].values()
        for kind, media in response.get("content", {}).items()
        if kind != "application/json" and "$ref" in media.get("schema", {})
    }
    for name, schema in schemas.items():
        assert schema.get("type") == "object" or "anyOf" in schema or name in text_bodies, name
    assert set(schemas["error"]["properties"]["error"]["properties"]["innerError"]["properties"]) == {
        "request-id",
        "date",
        "client-request-id",
    }


async def test_every_documented_path_is_routed(clean: Env) -> None:
    env = clean
    doc = (await send(env.http, "GET", env.url + "/openapi.json")).body
    router_misses = {"Resource not found for the segment."}
    for path, item in doc["paths"].items():
        concrete = (
            path.replace("{tenant}", env.p.tenant_id)
            .replace("{id}", UNKNOWN)
            .replace("{pid}", UNKNOWN)
            .replace("{opId}", UNKNOWN)
        )
        for method in item:
            reply = await send(env.http, method.upper(), env.url + concrete, token=env.token("alice"), body={})
            assert reply.status < 500, (path, method, reply)
            assert reply.status != 405, (path, method, reply)
            if reply.status == 404 and isinstance(reply.body, dict) and isinstance(reply.body.get("error"), dict):
                message = reply.body["error"]["message"]
                assert message not in router_misses and not message.startswith("No resource at"), (path, reply)


# -- failures: routes and methods -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1.0/communications/nothing", 404, "itemNotFound"),
        ("GET", "/v1.0/communications/calls/{a}/nothing", 404, "itemNotFound"),
        ("GET", "/v2.0/communications/calls/{a}", 404, "itemNotFound"),
        ("GET", "/nothing/at/all", 404, "itemNotFound"),
        ("GET", "/v1.0", 404, "itemNotFound"),
        ("GET", "/v1.0/communications/calls", 405, "notAllowed"),
        ("PUT", "/v1.0/communications/calls", 405, "notAllowed"),
        ("PATCH", "/v1.0/communications/calls/{a}", 405, "notAllowed"),
        ("GET", "/v1.0/communications/calls/{a}/answer", 405, "notAllowed"),
        ("DELETE", "/v1.0/communications/calls/{a}/participants", 405, "notAllowed"),
        ("POST", "/healthz", 405, "notAllowed"),
        ("DELETE", "/openapi.json", 405, "notAllowed"),
    ],
)
async def test_unknown_routes_and_methods(clean: Env, method: str, path: str, status: int, code: str) -> None:
    env = clean
    reply = await send(env.http, method, env.url + path_of(env, path), token=env.token("alice"))
    message = assert_graph_error(reply, status, code)
    if status == 405:
        assert "use " in message
        assert reply.headers["allow"] and all(m in message for m in reply.headers["allow"].split(", "))


# -- failures: bodies ----------------------------------------------------------------------------------
def _create(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": "http://127.0.0.1:9/never",
        "targets": [app_target(UNKNOWN)],
        "requestedModalities": ["audio"],
        "mediaConfig": SERVICE_HOSTED,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


RAW: dict[str, bytes] = {
    "truncated": b'{"mediaConfig": {',
    "trailing garbage": b'{"mediaConfig": {}} x',
    "single quotes": b"{'mediaConfig': {}}",
    "NaN": b'{"timeout": NaN}',
    "invalid utf-8": b'{"subject": "\xc3\x28"}',
    "latin-1 bytes": b'{"subject": "caf\xe9"}',
    "lone surrogate": b'{"subject": "\\ud800"}',
    "bom": b"\xef\xbb\xbf{}",
    "nul": b"\x00",
    "comment": b'{/* c */ "mediaConfig": {}}',
}

BODY_CASES: list[tuple[str, str, str, Any, str]] = [
    # (name, who, path template, body, message fragment)
    *[(f"create {name}", "alice", CALLS, raw, "not valid JSON") for name, raw in RAW.items()],
    ("create array body", "alice", CALLS, [], "The body must be a JSON object"),
    ("create string body", "alice", CALLS, "call", "The body must be a JSON object"),
    ("create null body", "alice", CALLS, None, "The body must be a JSON object"),
    ("create empty body", "alice", CALLS, b"", "The body must be a JSON object"),
    ("create whitespace body", "alice", CALLS, b"  \r\n ", "The body must be a JSON object"),
    ("unknown root @odata.type", "alice", CALLS, _create(**{"@odata.type": "#microsoft.graph.user"}), "@odata.type"),
    ("unknown mediaConfig type", "alice", CALLS, _create(mediaConfig={"@odata.type": "x"}), "'mediaConfig'"),
    ("unknown target type", "alice", CALLS, _create(targets=[{"@odata.type": "#microsoft.graph.call"}]), "targets[0]"),
    ("@odata.type not a string", "alice", CALLS, _create(**{"@odata.type": ["call"]}), "'@odata.type' must be"),
    ("missing mediaConfig", "alice", CALLS, _create(mediaConfig=None), "'mediaConfig' is required"),
    ("missing targets", "alice", CALLS, _create(targets=None), "'targets' is required"),
    ("no targets", "alice", CALLS, _create(targets=[]), "'targets' needs at least 1"),
    ("26 targets", "alice", CALLS, _create(targets=[app_target(UNKNOWN)] * 26), "at most 25"),
    ("target not an object", "alice", CALLS, _create(targets=["bob"]), "'targets[0]' must be a JSON object"),
    ("target without identity", "alice", CALLS, _create(targets=[{}]), "'targets[0].identity' is required"),
    ("empty identity", "alice", CALLS, _create(targets=[{"identity": {}}]), "must name at least one of"),
    (
        "identity id mistyped",
        "alice",
        CALLS,
        _create(targets=[{"identity": {"application": {"id": 42}}}]),
        "'targets[0].identity.application.id' must be a string",
    ),
    ("callbackUri mistyped", "alice", CALLS, _create(callbackUri=["x"]), "'callbackUri' must be a string"),
    ("callbackUri relative", "alice", CALLS, _create(callbackUri="/calls"), "'callbackUri' must be an absolute"),
    ("callbackUri bad ipv6", "alice", CALLS, _create(callbackUri="http://[::1/x"), "'callbackUri' must be"),
    ("modalities mistyped", "alice", CALLS, _create(requestedModalities="audio"), "must be an array"),
    ("modality unknown", "alice", CALLS, _create(requestedModalities=["smell"]), "unknown value 'smell'"),
    ("subject mistyped", "alice", CALLS, _create(subject={"text": "hi"}), "'subject' must be a string"),
    ("subject too long", "alice", CALLS, _create(subject="s" * 1025), "longer than 1024"),
    ("source without identity", "alice", CALLS, _create(source={}), "'source.identity' is required"),
    ("callOptions flag mistyped", "alice", CALLS, _create(callOptions={"isDeltaRosterEnabled": 1}), "true or false"),
    ("app-hosted without blob", "alice", CALLS, _create(mediaConfig={"@odata.type": "appHostedMediaConfig"}), "blob"),
    ("meeting join with targets", "alice", CALLS, _create(meetingInfo={"joinMeetingId": "123"}), "at most 0 items"),
    ("too deep", "alice", CALLS, _create(extra=json.loads("[" * 70 + "]" * 70)), "more than 64 levels"),
    # per-call actions: the body is checked before the call's state
    ("answer without body", "bob", CALLS + "/{b}/answer", _AUTO, "The body must be a JSON object"),
    ("answer without mediaConfig", "bob", CALLS + "/{b}/answer", {}, "'mediaConfig' is required"),
    (
        "answer modality unknown",
        "bob",
        CALLS + "/{b}/answer",
        {"mediaConfig": {}, "acceptedModalities": ["hologram"]},
        "'acceptedModalities[0]'",
    ),
    (
        "answer capacity mistyped",
        "bob",
        CALLS + "/{b}/answer",
        {"mediaConfig": {}, "participantCapacity": "²"},
        "must be an integer",
    ),
    ("answer invalid utf-8", "bob", CALLS + "/{b}/answer", b"\xff\xfe", "not valid JSON"),
    ("reject reason unknown", "bob", CALLS + "/{b}/reject", {"reason": "maybe"}, "'reason' has unknown value"),
    ("reject reason mistyped", "bob", CALLS + "/{b}/reject", {"reason": 486}, "'reason' must be a string"),
    ("reject array body", "bob", CALLS + "/{b}/reject", [], "The body must be a JSON object"),
    ("reject zero body", "bob", CALLS + "/{b}/reject", 0, "The body must be a JSON object"),
    ("redirect without targets", "bob", CALLS + "/{b}/redirect", {}, "'targets' is required"),
    (
        "redirect timeout 14",
        "bob",
        CALLS + "/{b}/redirect",
        {"targets": [app_target(UNKNOWN)], "timeout": 14},
        "between 15 and 90",
    ),
    (
        "redirect timeout 91",
        "bob",
        CALLS + "/{b}/redirect",
        {"targets": [app_target(UNKNOWN)], "timeout": 91},
        "between 15 and 90",
    ),
    (
        "redirect timeout --5",
        "bob",
        CALLS + "/{b}/redirect",
        {"targets": [app_target(UNKNOWN)], "timeout": "--5"},
        "must be an integer",
    ),
    (
        "redirect 26 targets",
        "bob",
        CALLS + "/{b}/redirect",
        {"targets": [app_target(UNKNOWN)] * 26},
        "at most 25",
    ),
    ("transfer without target", "alice", CALLS + "/{a}/transfer", {}, "'transferTarget' is required"),
    (
        "consultative transfer",
        "alice",
        CALLS + "/{a}/transfer",
        {"transferTarget": {**app_target(UNKNOWN), "replacesCallId": UNKNOWN}},
        "Consultative transfer",
    ),
    (
        "transferee without identity",
        "alice",
        CALLS + "/{a}/transfer",
        {"transferTarget": app_target(UNKNOWN), "transferee": {"participantId": UNKNOWN}},
        "'transferee.identity' is required",
    ),
    ("keepAlive array body", "alice", CALLS + "/{a}/keepAlive", [], "The body must be a JSON object"),
    ("keepAlive malformed", "alice", CALLS + "/{a}/keepAlive", b"{", "not valid JSON"),
]


@pytest.mark.parametrize(("name", "who", "template", "body", "fragment"), BODY_CASES, ids=[c[0] for c in BODY_CASES])
async def test_bad_bodies_are_400_with_a_message_naming_the_problem(
    clean: Env, name: str, who: str, template: str, body: Any, fragment: str
) -> None:
    env = clean
    kwargs: dict[str, Any] = {"raw": body} if isinstance(body, bytes) else {} if body is _AUTO else {"body": body}
    for version in ("v1.0", "beta"):
        reply = await env.graph("POST", path_of(env, template), who=who, version=version, **kwargs)
        assert_graph_error(reply, 400, "invalidRequest", fragment)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_non_json_content_type_is_refused(clean: Env, content_type: str) -> None:
    env = clean
    for template in (CALLS, CALLS + "/{a}/keepAlive", CALLS + "/{b}/reject"):
        who = "bob" if "{b}" in template else "alice"
        reply = await env.graph(
            "POST", path_of(env, template), who=who, raw=b'{"mediaConfig": {}}', headers={"Content-Type": content_type}
        )
        assert_graph_error(reply, 400, "invalidRequest", "Content-Type")


async def test_json_content_type_variants_are_accepted(clean: Env) -> None:
    env = clean
    for content_type in ("application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.x+json"):
        reply = await env.graph(
            "POST", f"{CALLS}/{env.parked[0]}/keepAlive", raw=b"{}", headers={"Content-Type": content_type}
        )
        assert reply.status == 200, (content_type, reply)


async def test_callback_uri_is_required_when_the_app_has_no_webhook(clean: Env) -> None:
    env = clean
    node = env.p.node
    app, _ = node.directory.create_app(env.p.tenant_id, "No Hook", permissions=["Calls.Initiate.All"])
    token, _ = node.tokens.issue_access_token(
        tenant_id=env.p.tenant_id, app_id=app.id, roles=app.permissions, audience=env.url, now=node.clock()
    )
    body = _create(callbackUri=None)
    reply = await send(env.http, "POST", f"{env.url}/v1.0{CALLS}", token=token, body=body)
    assert_graph_error(reply, 400, "invalidRequest", "'callbackUri' is required")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"tenantId": "0b0b0b0b-0000-4000-8000-000000000000"}, "'tenantId' must be the application's own tenant"),
        ({"source": {"identity": {"application": {"id": UNKNOWN}}}}, "must be the calling application itself"),
        ({"source": {"identity": {"applicationInstance": {"id": UNKNOWN}}}}, "is not an instance of this application"),
    ],
)
async def test_someone_elses_identity_is_403(clean: Env, changes: dict[str, Any], fragment: str) -> None:
    env = clean
    reply = await env.graph("POST", CALLS, body=_create(**changes))
    assert_graph_error(reply, 403, "accessDenied", fragment)


# -- failures: unknown ids -------------------------------------------------------------------------------
VALID_BODIES: dict[str, Any] = {
    "answer": {"mediaConfig": {}},
    "reject": {"reason": "busy"},
    "redirect": {"targets": [app_target(UNKNOWN)]},
    "transfer": {"transferTarget": app_target(UNKNOWN)},
    "keepAlive": _AUTO,
}


@pytest.mark.parametrize("call_id", [UNKNOWN, UNKNOWN.upper().replace("-", ""), "not-a-guid", "0" * 300])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/participants"),
        ("GET", f"/participants/{UNKNOWN}"),
        ("GET", f"/operations/{UNKNOWN}"),
        *[("POST", f"/{action}") for action in VALID_BODIES],
    ],
)
async def test_unknown_call_ids_are_404(clean: Env, call_id: str, method: str, suffix: str) -> None:
    env = clean
    body = VALID_BODIES.get(suffix.lstrip("/"), _AUTO)
    reply = await env.graph(method, f"{CALLS}/{call_id}{suffix}", body=body)
    assert_graph_error(reply, 404, "itemNotFound")


async def test_unknown_children_of_a_known_call_are_404(clean: Env) -> None:
    env = clean
    a_id = env.parked[0]
    for suffix, fragment in [(f"/participants/{UNKNOWN}", "No participant"), (f"/operations/{UNKNOWN}", "operation")]:
        reply = await env.graph("GET", f"{CALLS}/{a_id}{suffix}")
        assert_graph_error(reply, 404, "itemNotFound", fragment)


# -- failures: wrong state -------------------------------------------------------------------------------
async def _expect_state_error(env: Env, who: str, call_id: str, action: str, state: str) -> None:
    method, suffix = ("DELETE", "") if action == "delete" else ("POST", f"/{action}")
    reply = await env.graph(method, f"{CALLS}/{call_id}{suffix}", who=who, body=VALID_BODIES.get(action, _AUTO))
    message = assert_graph_error(reply, 400, "invalidRequest")
    assert f"'{state}'" in message or "incoming call" in message, message
    got = await env.graph("GET", f"{CALLS}/{call_id}", who=who)
    assert got.status == 200 and got.body["state"] == state  # the refusal changed nothing


async def test_actions_not_allowed_on_an_incoming_call(clean: Env) -> None:
    env = clean
    _, b_id = env.parked
    for action in ("delete", "transfer", "keepAlive"):
        await _expect_state_error(env, "bob", b_id, action, "incoming")


async def test_actions_not_allowed_on_an_establishing_call(clean: Env) -> None:
    env = clean
    a_id, _ = env.parked
    for action in ("answer", "reject", "redirect", "transfer"):
        await _expect_state_error(env, "alice", a_id, action, "establishing")


async def test_actions_not_allowed_on_an_established_call(clean: Env) -> None:
    env = clean
    a_id, b_id = await env.connect()
    try:
        for who, call_id in (("alice", a_id), ("bob", b_id)):
            for action in ("answer", "reject", "redirect"):
                await _expect_state_error(env, who, call_id, action, "established")
    finally:
        assert (await env.graph("DELETE", f"{CALLS}/{a_id}")).status == 204


async def test_actions_not_allowed_while_transferring_and_after_the_end(clean: Env) -> None:
    env = clean
    a_id, b_id = await env.connect()
    carol = env.p["carol"]
    known = {n.call_id for n in carol.bot.notifications}
    reply = await env.graph(
        "POST", f"{CALLS}/{b_id}/transfer", who="bob", body={"transferTarget": app_target(carol.app_id)}
    )
    assert reply.status == 202
    c_in = (await carol.bot.wait_for(lambda n: n.change_type == "created" and n.call_id not in known))[0]
    try:
        for action in ("transfer", "answer", "reject", "redirect"):
            await _expect_state_error(env, "bob", b_id, action, "transferring")
        assert (await env.graph("POST", f"{CALLS}/{b_id}/keepAlive", who="bob")).status == 200
    finally:
        assert (await env.graph("POST", f"{CALLS}/{c_in.call_id}/reject", who="carol")).status == 202
    await env.p["bob"].bot.wait_for(
        lambda n: n.call_id == b_id and n.state == "established" and n.resource_data.get("resultInfo")
    )
    assert (await env.graph("DELETE", f"{CALLS}/{a_id}")).status == 204
    # ended calls are gone: 404, not 400
    for who, call_id in (("alice", a_id), ("bob", b_id), ("carol", c_in.call_id)):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/keepAlive"), ("POST", "/answer")):
            body = VALID_BODIES["answer"] if suffix == "/answer" else _AUTO
            reply = await env.graph(method, f"{CALLS}/{call_id}{suffix}", who=who, body=body)
            assert_graph_error(reply, 404, "itemNotFound")


# -- fuzz --------------------------------------------------------------------------------------------------
WRONG_TYPES: list[Any] = [0, -1, 2.5, True, False, "", "x", "-1e9", [], [1, "a"], {}, {"k": "v"}]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__  # str, list, dict


def _set(body: Any, path: list[Any], value: Any) -> Any:
    out = json.loads(json.dumps(body))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _mutations(body: dict[str, Any], typed: dict[tuple[Any, ...], str]) -> list[Any]:
    """`body` with each known field replaced by each value of a different JSON type (never null)."""
    out = []
    for path, kind in typed.items():
        for value in WRONG_TYPES:
            if _kind(value) == kind:
                continue
            if kind == "intlike" and isinstance(value, int) and not isinstance(value, bool):
                continue
            out.append(_set(body, list(path), value))
    return out


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "str", "bigstr", "list", "dict"] if depth < 4 else ["int", "str"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**30])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-300, 3.14])
    if kind == "str":
        return rng.choice(["", "audio", "#microsoft.graph.call", "ünïcødé ☎", "\u0000", "\ud7ff", "http://x"])
    if kind == "bigstr":
        return "x" * rng.choice([257, 4097, 70_000])
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["mediaConfig", "targets", "callbackUri", "reason", "timeout", "transferTarget", "@odata.type", "a", ""]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _nested(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def _nested_raw(depth: int, kind: str) -> bytes:
    """Nesting as bytes (json.dumps itself cannot go deeper than Python's recursion limit)."""
    if kind == "list":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


CREATE_TYPED = {
    ("@odata.type",): "str",
    ("callbackUri",): "str",
    ("mediaConfig",): "dict",
    ("mediaConfig", "@odata.type"): "str",
    ("targets",): "list",
    ("targets", 0): "dict",
    ("targets", 0, "identity"): "dict",
    ("targets", 0, "identity", "application"): "dict",
    ("targets", 0, "identity", "application", "id"): "str",
    ("targets", 0, "hidden"): "bool",
    ("requestedModalities",): "list",
    ("requestedModalities", 0): "str",
    ("subject",): "str",
    ("tenantId",): "str",
}


async def test_fuzz_post_endpoints_never_500_and_leak_nothing(clean: Env) -> None:
    env = clean
    rng = random.Random(20240501)
    a_id, b_id = env.parked
    node = env.p.node
    before = node.calls.active_calls

    create = _create(subject="s", tenantId=env.p.tenant_id, source={"identity": {"application": {"id": UNKNOWN}}})
    create["mediaConfig"] = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig", "preFetchMedia": []}
    endpoints: list[tuple[str, str, Any, dict[tuple[Any, ...], str]]] = [
        ("alice", CALLS, create, CREATE_TYPED),
        (
            "alice",
            f"{CALLS}/{a_id}/answer",
            {"mediaConfig": {"blob": "b"}, "acceptedModalities": ["audio"], "participantCapacity": 1},
            {
                ("mediaConfig",): "dict",
                ("mediaConfig", "blob"): "str",
                ("acceptedModalities",): "list",
                ("acceptedModalities", 0): "str",
                ("participantCapacity",): "intlike",
                ("callbackUri",): "str",
            },
        ),
        (
            "alice",
            f"{CALLS}/{a_id}/reject",
            {"reason": "busy", "callbackUri": "http://127.0.0.1:9/x"},
            {("reason",): "str", ("callbackUri",): "str"},
        ),
        (
            "alice",
            f"{CALLS}/{a_id}/redirect",
            {"targets": [app_target(UNKNOWN)], "timeout": 20},
            {("targets",): "list", ("targets", 0): "dict", ("targets", 0, "identity"): "dict", ("timeout",): "intlike"},
        ),
        (
            "alice",
            f"{CALLS}/{a_id}/transfer",
            {"transferTarget": app_target(UNKNOWN), "transferee": {"identity": {"user": {"id": "u"}}}},
            {
                ("transferTarget",): "dict",
                ("transferTarget", "identity"): "dict",
                ("transferee",): "dict",
                ("transferee", "identity"): "dict",
            },
        ),
        ("alice", f"{CALLS}/{a_id}/keepAlive", {}, {}),
        (
            "alice",
            f"{CALLS}/{a_id}/playPrompt",
            {
                "prompts": [{"mediaInfo": {"uri": "https://x.example/a.wav", "resourceId": "r"}}, {"text": "hi"}],
                "clientContext": "c",
            },
            {
                ("prompts",): "list",
                ("prompts", 0): "dict",
                ("prompts", 0, "mediaInfo"): "dict",
                ("prompts", 0, "mediaInfo", "uri"): "str",
                ("prompts", 1, "text"): "str",
                ("clientContext",): "str",
            },
        ),
        (
            "alice",
            f"{CALLS}/{a_id}/recordResponse",
            {"bargeInAllowed": True, "maxRecordDurationInSeconds": 5, "stopTones": ["#"], "playBeep": False},
            {
                ("bargeInAllowed",): "bool",
                ("maxRecordDurationInSeconds",): "intlike",
                ("stopTones",): "list",
                ("stopTones", 0): "str",
                ("playBeep",): "bool",
            },
        ),
        (
            "alice",
            f"{CALLS}/{a_id}/sendDtmfTones",
            {"tones": ["tone1", "pound"], "delayBetweenTonesMs": 100},
            {("tones",): "list", ("tones", 0): "str", ("delayBetweenTonesMs",): "intlike"},
        ),
    ]
    statuses: dict[int, int] = {}
    created: list[str] = []

    async def post(who: str, path: str, *, expect_400: bool = False, **kw: Any) -> None:
        for version in ("v1.0", "beta"):
            reply = await env.graph("POST", path, who=who, version=version, **kw)
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            assert reply.status < 500, (path, kw, reply)
            if reply.status >= 400:
                assert_graph_error(reply, reply.status, reply.body["error"]["code"])
            if expect_400:
                assert reply.status == 400, (path, kw, reply)
            if reply.status == 201:
                created.append(reply.body["id"])
            if rng.random() < 0.9:
                break  # both versions for a tenth of the cases: enough

    for who, path, valid, typed in endpoints:
        # wrong type at every known field: always exactly 400
        for body in _mutations(valid, typed):
            await post(who, path, body=body, expect_400=True)
        # random JSON documents
        for _ in range(25):
            await post(who, path, body=_random_json(rng))
        # deep nesting, as the body and inside a member that would be echoed back
        for depth in (63, 65, 200, 1100, 5000):
            for kind in ("list", "dict"):
                await post(who, path, raw=_nested_raw(depth, kind), expect_400=depth > 64)
        await post(who, path, body={**valid, "echoed": _nested(300, "list")}, expect_400=True)
        # huge strings (under the 1 MiB body limit), and bodies over it
        for key in [*list(valid)[:2], "x" * 5000]:
            await post(who, path, body={**valid, key: "é☎x" * 40_000})  # 120 000 characters, ~600 KB
        await post(who, path, raw=b'"' + b"a" * (1 << 20) + b'"')
        # bytes that are not JSON, or not UTF-8, or not declared as JSON
        for raw in [*RAW.values(), bytes(rng.randrange(256) for _ in range(64)), b"\x80" * 32]:
            await post(who, path, raw=raw, expect_400=True)
        await post(who, path, raw=json.dumps(valid).encode(), headers={"Content-Type": "text/plain"}, expect_400=True)

    for call_id in created:  # a random body that happened to be a valid call: end it, then count
        await env.graph("DELETE", f"{CALLS}/{call_id}")
    assert sum(statuses.values()) >= 300, statuses
    assert not any(status >= 500 for status in statuses)
    health = await send(env.http, "GET", env.url + "/healthz")
    assert health.status == 200 and health.body["status"] == "ok"
    assert node.calls.active_calls == before
    got = await env.graph("GET", f"{CALLS}/{a_id}")
    assert got.status == 200 and got.body["state"] == "establishing"
    got = await env.graph("GET", f"{CALLS}/{b_id}", who="bob")
    assert got.status == 200 and got.body["state"] == "incoming"


# -- throttling and body size (their own nodes) ------------------------------------------------------------
async def test_throttle_429_with_retry_after_per_app() -> None:
    config = node_config(throttle=ThrottleSettings(rate=1, burst=3))
    async with make_platform(config, names=("alice", "bob")) as p, aiohttp.ClientSession() as http:
        # The API reads time through its context: hold it still, so that no token refills between requests
        # however slow the machine is (tokens were issued just now and stay valid at this instant).
        frozen = p.node.clock()
        p.node.api.clock = lambda: frozen
        url = f"{p.node.public_url}/v1.0{CALLS}/{UNKNOWN}"
        token = p["alice"].client.token
        replies = [await send(http, "GET", url, token=token) for _ in range(4)]
        assert [r.status for r in replies[:3]] == [404, 404, 404]
        throttled = replies[3]
        message = assert_graph_error(throttled, 429, "activityLimitReached")
        assert "retry" in message.lower()
        retry_after = throttled.headers["retry-after"]
        assert retry_after.isdigit() and int(retry_after) == 1  # one token per second
        # per application: bob still has his whole bucket; public endpoints are not throttled
        assert (await send(http, "GET", url, token=p["bob"].client.token)).status == 404
        assert (await send(http, "GET", p.node.public_url + "/healthz")).status == 200
        # a throttled request does nothing: no call is created
        body = _create(callbackUri=p["alice"].bot.url)
        refused = await send(http, "POST", f"{p.node.public_url}/v1.0{CALLS}", token=token, body=body)
        assert_graph_error(refused, 429, "activityLimitReached")
        assert p.node.calls.active_calls == 0
        # honouring Retry-After is enough
        later = frozen + int(retry_after)
        p.node.api.clock = lambda: later
        assert (await send(http, "GET", url, token=token)).status == 404
        assert (await send(http, "GET", url, token=token)).status == 429


async def test_throttle_can_be_disabled() -> None:
    config = node_config(throttle=ThrottleSettings(rate=1, burst=1, enabled=False))
    async with make_platform(config, names=("alice",)) as p, aiohttp.ClientSession() as http:
        url = f"{p.node.public_url}/v1.0{CALLS}/{UNKNOWN}"
        for _ in range(10):
            assert (await send(http, "GET", url, token=p["alice"].client.token)).status == 404


async def test_oversized_body_is_413() -> None:
    config = node_config(max_body_bytes=1024)
    async with make_platform(config, names=("alice", "bob")) as p, aiohttp.ClientSession() as http:
        url = f"{p.node.public_url}/v1.0{CALLS}"
        token = p["alice"].client.token
        body = _create(callbackUri=p["alice"].bot.url, subject="s" * 900, targets=[app_target(p["bob"].app_id)])
        assert len(json.dumps(body)) > 1024
        reply = await send(http, "POST", url, token=token, body=body)
        assert_graph_error(reply, 413, "invalidRequest", "larger than 1024 bytes")
        for size in (1025, 4096, 64 * 1024):
            reply = await send(http, "POST", url, token=token, raw=b" " * size)
            assert_graph_error(reply, 413, "invalidRequest")
        reply = await send(http, "POST", f"{url}/{UNKNOWN}/keepAlive", token=token, raw=b"{" + b" " * 2000 + b"}")
        assert_graph_error(reply, 413, "invalidRequest")
        # at the limit is fine, and the node is unharmed
        small = _create(callbackUri=p["alice"].bot.url, targets=[app_target(p["bob"].app_id)])
        raw = json.dumps(small).encode()
        raw += b" " * (1024 - len(raw))
        created = await send(http, "POST", url, token=token, raw=raw)
        assert created.status == 201, created
        assert (await send(http, "DELETE", f"{url}/{created.body['id']}", token=token)).status == 204
        assert (await send(http, "GET", p.node.public_url + "/healthz")).status == 200
        assert p.node.calls.active_calls == 0


async def test_fuzz_mutations_never_keep_the_right_type() -> None:
    bodies = _mutations({"a": "s", "n": 20, "o": {}}, {("a",): "str", ("n",): "intlike", ("o",): "dict"})
    assert len(bodies) == 3 * len(WRONG_TYPES) - 3 - 2 - 2
    for body in bodies:
        changed = [k for k, v in body.items() if v != {"a": "s", "n": 20, "o": {}}[k]]
        assert len(changed) == 1
        key = changed[0]
        value = body[key]
        if key == "a":
            assert not isinstance(value, str)
        elif key == "n":
            assert isinstance(value, bool) or not isinstance(value, int)
        else:
            assert not isinstance(value, dict)


async def test_responses_are_not_delayed_by_nagle() -> None:
    async with make_platform(node_config(), names=()) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.node.port)
        try:
            started = time.perf_counter()
            for _ in range(10):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
            elapsed = time.perf_counter() - started
        finally:
            writer.close()
        assert elapsed < 0.2, f"10 keep-alive requests took {elapsed * 1000:.0f} ms"
