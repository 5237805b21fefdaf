"""/openapi.json is exact: a contract test that walks the document and checks it against a running node.

(a) every path, every method it does not declare: 405 with an Allow header naming exactly the declared methods;
(b) every operation's request schema: its examples, and variants built from them that the schema still accepts
    (each optional member left out, or null), are never refused as invalid; a body missing a required member
    (schema-invalid) is refused with 400;
(c) every response observed, including errors from deliberately bad input (no token, bad token, bad JSON, wrong
    content type, a body over the limit, a non-GUID correlation header, unknown ids), has a status the document
    lists for that operation, and an error body valid against the document's own error schema.
Also: the document is valid OpenAPI 3.1 (openapi-spec-validator) and lists exactly the router's (path, method)s.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from opencomms.api.openapi import document, paths_of
from opencomms.api.routes import all_routes
from opencomms.config import CallsConfig, MediaConfig, ThrottleSettings
from tests.integration.conftest import HttpEnv, make_platform, node_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNKNOWN = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
PROBE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
MAX_BODY = 64 << 10
ALL = ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"]


@dataclass
class Env(HttpEnv):
    doc: dict[str, Any] = field(default_factory=dict)
    checked: set[tuple[str, str, int]] = field(default_factory=set)
    """(path, method, status) combinations observed and found documented."""

    def schema(self, pointer: str) -> Draft202012Validator:
        registry: Registry = Registry().with_resource(  # type: ignore[call-arg]
            "urn:doc", Resource.from_contents(self.doc, default_specification=DRAFT202012)
        )
        return Draft202012Validator({"$ref": f"urn:doc#{pointer}"}, registry=registry)

    def concrete(self, path: str, tenant: str | None = None) -> str:
        return (
            path.replace("{tenant}", tenant or self.p.tenant_id)
            .replace("{id}", UNKNOWN)
            .replace("{pid}", UNKNOWN)
            .replace("{opId}", UNKNOWN)
            .replace("{rid}", UNKNOWN)
        )

    async def send(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.http.request(method, self.url + path, headers=headers or {}, data=data) as resp:
            raw = await resp.read()
            body: Any = None
            if raw and resp.content_type == "application/json":
                body = await resp.json()
            return resp.status, body, {k.lower(): v for k, v in resp.headers.items()}

    def check(self, path: str, method: str, reply: tuple[int, Any, dict[str, str]]) -> int:
        """The reply's status is documented for (path, method) and an error body matches its schema."""
        status, body, headers = reply
        responses = self.doc["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, (path, method, status, body)
        entry = responses[str(status)]
        pointer = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}"
        if "$ref" in entry:
            pointer = entry["$ref"][1:]
            entry = self.doc["components"]["responses"][pointer.rsplit("/", 1)[1]]
        html_page = headers.get("content-type", "").startswith("text/html") and "text/html" in entry["content"]
        if status >= 400 and not html_page:
            errors = list(self.schema(f"{pointer}/content/application~1json/schema").iter_errors(body))
            assert not errors, (path, method, status, body, errors[0].message)
            for name in entry.get("headers", {}):
                if name in ("Allow", "Retry-After", "WWW-Authenticate"):
                    assert name.lower() in headers, (path, method, status, headers)
        self.checked.add((path, method.upper(), status))
        return status


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    media = MediaConfig(recordings_dir=str(tmp_path_factory.mktemp("recordings")))
    config = node_config(calls=CallsConfig(answer_timeout=300.0), max_body_bytes=MAX_BODY, media=media)
    perms = {"alice": ALL, "bob": ALL, "mallory": []}
    async with (
        make_platform(config, names=tuple(perms), perms=perms) as p,
        aiohttp.ClientSession() as http,
    ):
        e = Env(p, http)
        status, e.doc, _ = await e.send("GET", "/openapi.json")
        assert status == 200
        yield e
        documented = {
            (path, method, int(status)) for path, method, op in _operations(e.doc) for status in op["responses"]
        } | {(path, m, 405) for path, item in e.doc["paths"].items() for m in PROBE_METHODS if m.lower() not in item}
        unseen = sorted(documented - e.checked)
        print(f"\n(path, method, status) combinations checked: {len(e.checked)} of {len(documented)} documented")
        print("documented but not provoked:", len(unseen), unseen)


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method.upper(), op


def _auth(env: Env, path: str, who: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {env.token(who)}"} if path.startswith(("/v1.0/", "/beta/")) else {}


async def test_document_is_valid_openapi_and_lists_exactly_the_router(env: Env) -> None:
    validate(env.doc)
    served = {(path, route.method) for route in all_routes() for path in paths_of(route)}
    listed = {(path, method) for path, method, _ in _operations(env.doc)}
    assert listed == served
    assert document(all_routes(), env.url) == env.doc


async def test_a_undeclared_methods_answer_405_with_allow(env: Env) -> None:
    probed = 0
    for path, item in env.doc["paths"].items():
        declared = sorted(m.upper() for m in item)
        concrete = env.concrete(path)
        for method in PROBE_METHODS:
            if method in declared:
                continue
            status, body, headers = await env.send(method, concrete, headers=_auth(env, path))
            assert status == env.doc["x-opencomms-undeclared-methods"]["status"] == 405, (path, method, body)
            assert sorted(m.strip() for m in headers["allow"].split(",")) == declared, (path, method, headers)
            if method != "HEAD":
                assert not list(env.schema("/components/schemas/error").iter_errors(body)), body
            env.checked.add((path, method, status))
            probed += 1
    assert probed >= 200


def _variants(example: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield example
    for key in schema.get("properties", {}):
        if key in schema.get("required", ()):
            continue
        if key in example:
            yield {k: v for k, v in example.items() if k != key}
        yield {**example, key: None}


def _request_schema(env: Env, op: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    pointer = content["schema"]["$ref"][1:]
    name = pointer.rsplit("/", 1)[1]
    return pointer, env.doc["components"]["schemas"][name]


async def test_b_schema_valid_bodies_are_accepted_and_invalid_ones_refused(env: Env) -> None:
    sent = 0
    for path, method, op in _operations(env.doc):
        found = _request_schema(env, op)
        if found is None:
            continue
        pointer, schema = found
        validator = env.schema(pointer)
        examples = schema.get("examples", [])
        assert examples, f"{pointer} has no example"
        for example in examples:
            for body in _variants(copy.deepcopy(example), schema):
                if list(validator.iter_errors(body)):
                    continue  # the generator made something the schema refuses: not a valid-body probe
                headers = {**_auth(env, path), "Content-Type": "application/json"}
                reply = await env.send(method, env.concrete(path), headers=headers, data=_json(body))
                status = env.check(path, method, reply)
                assert status != 400, (path, body, reply[1])
                if status == 201:  # a call was made: hang it up
                    assert reply[1] is not None
                    status, _, _ = await env.send("DELETE", f"{path}/{reply[1]['id']}", headers=_auth(env, path))
                    assert status in (204, 404)
                sent += 1
            for key in schema.get("required", ()):
                body = {k: v for k, v in example.items() if k != key}
                assert list(validator.iter_errors(body))
                headers = {**_auth(env, path), "Content-Type": "application/json"}
                reply = await env.send(method, env.concrete(path), headers=headers, data=_json(body))
                assert env.check(path, method, reply) == 400, (path, key, reply[1])
    assert sent >= 60


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


async def test_b_token_endpoint_form_is_accepted(env: Env) -> None:
    path = "/{tenant}/oauth2/v2.0/token"
    content = env.doc["paths"][path]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    schema = env.doc["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"grant_type"}
    alice = env.p["alice"]
    form = {
        "grant_type": schema["properties"]["grant_type"]["enum"][0],
        "scope": f"{next(iter(env.p.node.tokens.audiences))}/.default",
        "client_id": alice.app_id,
        "client_secret": alice.secret,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = await env.send("POST", env.concrete(path), headers=headers, data=urlencode(form).encode())
    assert env.check(path, "POST", reply) == 200
    assert not list(env.schema("/components/schemas/tokenResponse").iter_errors(reply[1]))
    for key in [*schema["required"], "scope"]:  # client_credentials needs a scope
        partial = urlencode({k: v for k, v in form.items() if k != key}).encode()
        assert env.check(path, "POST", await env.send("POST", env.concrete(path), headers=headers, data=partial)) == 400
    wrong = urlencode({**form, "client_secret": "wrong"}).encode()
    assert env.check(path, "POST", await env.send("POST", env.concrete(path), headers=headers, data=wrong)) == 401
    unknown_tenant = env.concrete(path, tenant="nobody.example")
    assert env.check(path, "POST", await env.send("POST", unknown_tenant, headers=headers, data=b"")) == 400


async def test_c_error_responses_are_documented_and_well_formed(env: Env) -> None:
    for path, method, op in _operations(env.doc):
        graph = path.startswith(("/v1.0/", "/beta/"))
        concrete = env.concrete(path)
        auth = _auth(env, path)
        has_json_body = _request_schema(env, op) is not None
        probes: list[tuple[str, dict[str, str], bytes | None, set[int] | None]] = [
            ("plain", auth, None, None),
            ("non-GUID client-request-id", {**auth, "client-request-id": "alice@example.com"}, None, {400}),
            ("body over the limit", {**auth, "Content-Type": "application/json"}, b"[" * (MAX_BODY + 1), {413}),
            ("garbage bearer token", {"Authorization": "Bearer garbage"}, None, {401} if graph else None),
            ("no token", {}, None, {401} if graph or "recordings" in path else None),
            ("unknown tenant", auth, None, None),
        ]
        if has_json_body:
            json_headers = {**auth, "Content-Type": "application/json"}
            probes += [
                ("bad JSON", json_headers, b'{"unclosed": ', {400}),
                ("JSON array body", json_headers, b"[]", {400}),
                ("wrong content type", {**auth, "Content-Type": "text/plain"}, b'{"a": 1}', {400}),
            ]
        for name, headers, data, expected in probes:
            target = env.concrete(path, tenant="nobody.example") if name == "unknown tenant" else concrete
            status = env.check(path, method, await env.send(method, target, headers=headers, data=data))
            assert expected is None or status in expected, (path, method, name, status)
    # success responses with real ids are documented too
    a_id = await _ring(env)
    for path in ("/v1.0/communications/calls/{id}", "/beta/communications/calls/{id}/participants"):
        reply = await env.send("GET", path.replace("{id}", a_id), headers=_auth(env, path))
        assert env.check(path, "GET", reply) == 200
    path = "/v1.0/communications/calls/{id}"
    assert (
        env.check(path, "DELETE", await env.send("DELETE", path.replace("{id}", a_id), headers=_auth(env, path))) == 204
    )


async def test_c_recording_download_statuses_are_documented(env: Env) -> None:
    recordings = env.p.node.recordings
    assert recordings is not None
    saved = recordings.save(call_id="c", app_id="a", tenant_id="t", wav=b"RIFF")
    path = "/media/recordings/{rid}"
    target = f"/media/recordings/{saved.id}"
    ok = await env.send("GET", target, headers={"Authorization": f"Bearer {saved.token}"})
    assert env.check(path, "GET", ok) == 200 and ok[2]["content-type"] == "application/octet-stream"
    statuses = [
        env.check(path, "GET", await env.send("GET", target, headers={"Authorization": f"Bearer {uuid.uuid4()}"}))
        for _ in range(int(recordings.limiter.limits.burst) + 1)
    ]
    assert statuses[0] == 404 and statuses[-1] == 429


async def _ring(env: Env) -> str:
    from opencomms.testing.harness import app_target

    status, call = await env.p["alice"].client.create_call(env.p["alice"].bot.url, [app_target(env.p["bob"].app_id)])
    assert status == 201, call
    return str(call["id"])


async def test_c_forbidden_answers_are_documented(env: Env) -> None:
    """An application without permissions: every Graph operation answers a documented status."""
    forbidden = 0
    for path, method, op in _operations(env.doc):
        if not path.startswith(("/v1.0/", "/beta/")):
            continue
        found = _request_schema(env, op)
        data = _json(found[1]["examples"][0]) if found else None
        headers = {**_auth(env, path, "mallory"), "Content-Type": "application/json"}
        status = env.check(path, method, await env.send(method, env.concrete(path), headers=headers, data=data))
        forbidden += status == 403
    assert forbidden >= 4  # create call and call records, in both versions


async def test_c_throttled_answers_are_documented(env: Env) -> None:
    """A node whose throttle allows one request: every Graph operation's 429 is documented, with Retry-After."""
    config = node_config(throttle=ThrottleSettings(rate=0.001, burst=1.0))
    async with make_platform(config, names=("alice",)) as p, aiohttp.ClientSession() as http:
        throttled = Env(p, http)
        throttled.doc = (await throttled.send("GET", "/openapi.json"))[1]
        assert (
            await throttled.send("GET", f"/v1.0/communications/calls/{UNKNOWN}", headers=_auth(throttled, "/v1.0/"))
        )[0] == 404
        statuses = []
        for path, method, _ in _operations(throttled.doc):
            if path.startswith(("/v1.0/", "/beta/")):
                reply = await throttled.send(method, throttled.concrete(path), headers=_auth(throttled, path))
                statuses.append(throttled.check(path, method, reply))
        assert set(statuses) == {429}
        token_path = "/{tenant}/oauth2/v2.0/token"
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": p["alice"].app_id,
                "client_secret": "x",
                "scope": "https://graph.microsoft.com/.default",
            }
        )
        reply = await throttled.send(
            "POST",
            throttled.concrete(token_path),
            data=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert throttled.check(token_path, "POST", reply) == 429
        env.checked |= throttled.checked


async def _connect(env: Env) -> tuple[str, str]:
    """alice calls bob and bob answers: (alice's leg, bob's leg), both established."""
    bob = env.p["bob"].bot
    known = {n.call_id for n in bob.notifications}
    a_id = await _ring(env)
    found = await bob.wait_for(lambda n: n.change_type == "created" and n.call_id not in known)
    b_id = found[0].call_id
    path = "/v1.0/communications/calls/{id}/answer"
    body = env.doc["components"]["schemas"]["answer"]["examples"][0]
    headers = {"Authorization": f"Bearer {env.token('bob')}", "Content-Type": "application/json"}
    reply = await env.send("POST", path.replace("{id}", b_id), headers=headers, data=_json(body))
    assert env.check(path, "POST", reply) == 202
    await env.p["alice"].bot.wait_state(a_id, "established")
    await bob.wait_state(b_id, "established")
    return a_id, b_id


async def test_c_success_answers_are_documented_and_match_their_schemas(env: Env) -> None:
    """On an established call, every call and media operation's success status and body are as documented."""
    a_id, _ = await _connect(env)
    order = [
        "keepAlive",
        "mute",
        "unmute",
        "subscribeToTone",
        "sendDtmfTones",
        "playPrompt",
        "recordResponse",
        "cancelMediaProcessing",
    ]
    ok = 0
    for version in ("v1.0", "beta"):
        base = f"/{version}/communications/calls/{{id}}"
        for action in order:
            path = f"{base}/{action}"
            op = env.doc["paths"][path]["post"]
            found = _request_schema(env, op)
            data = _json(found[1]["examples"][0]) if found else None
            headers = {**_auth(env, path), "Content-Type": "application/json"}
            reply = await env.send("POST", path.replace("{id}", a_id), headers=headers, data=data)
            status = env.check(path, "POST", reply)
            assert status < 300, (path, reply)
            ok += _valid_success(env, path, "POST", reply)
            if reply[1] and "id" in reply[1]:
                op_path = f"{base}/operations/{{opId}}"
                got = await env.send(
                    "GET", op_path.replace("{id}", a_id).replace("{opId}", reply[1]["id"]), headers=_auth(env, op_path)
                )
                assert env.check(op_path, "GET", got) == 200
                ok += _valid_success(env, op_path, "GET", got)
        path = f"{base}/participants"
        reply = await env.send("GET", path.replace("{id}", a_id), headers=_auth(env, path))
        assert env.check(path, "GET", reply) == 200
        ok += _valid_success(env, path, "GET", reply)
        pid = reply[1]["value"][0]["id"]
        one = f"{path}/{{pid}}"
        reply = await env.send("GET", one.replace("{id}", a_id).replace("{pid}", pid), headers=_auth(env, one))
        assert env.check(one, "GET", reply) == 200
        ok += _valid_success(env, one, "GET", reply)
        reply = await env.send("GET", base.replace("{id}", a_id), headers=_auth(env, base))
        assert env.check(base, "GET", reply) == 200
        ok += _valid_success(env, base, "GET", reply)
    path = "/beta/communications/calls/{id}"
    reply = await env.send("DELETE", path.replace("{id}", a_id), headers=_auth(env, path))
    assert env.check(path, "DELETE", reply) == 204
    assert ok >= 20


async def test_c_incoming_call_actions_are_documented(env: Env) -> None:
    """reject and redirect of a ringing call answer 202 as documented."""
    for version, action in (("v1.0", "reject"), ("beta", "redirect")):
        bob = env.p["bob"].bot
        known = {n.call_id for n in bob.notifications}
        a_id = await _ring(env)
        found = await bob.wait_for(lambda n, known=known: n.change_type == "created" and n.call_id not in known)
        path = f"/{version}/communications/calls/{{id}}/{action}"
        body = env.doc["components"]["schemas"][action]["examples"][0]
        headers = {"Authorization": f"Bearer {env.token('bob')}", "Content-Type": "application/json"}
        reply = await env.send("POST", path.replace("{id}", found[0].call_id), headers=headers, data=_json(body))
        assert env.check(path, "POST", reply) == 202, reply
        await env.send("DELETE", f"/v1.0/communications/calls/{a_id}", headers=_auth(env, "/v1.0/"))


def _valid_success(env: Env, path: str, method: str, reply: tuple[int, Any, dict[str, str]]) -> int:
    """1 if the documented success content has a schema and the body matches it."""
    entry = env.doc["paths"][path][method.lower()]["responses"][str(reply[0])]
    schema = entry.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        assert not reply[1], (path, method, reply)
        return 0
    errors = list(env.schema(schema["$ref"][1:]).iter_errors(reply[1]))
    assert not errors, (path, method, reply[1], errors[0].message)
    return 1
