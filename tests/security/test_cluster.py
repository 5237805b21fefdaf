"""Node-to-node requests of a cluster cannot be forged from outside it: a request that claims to be forwarded must
carry the cluster secret's signature over its caller, method, path, query and body, made within the last 30 s;
without it (or with a caller, body or time other than the signed ones) it is refused 401 instead of letting the
caller header stand in for a token."""

from __future__ import annotations

import time

import aiohttp

from opencomms.cluster.forward import BY, CALLER, SIGNATURE, TIME, signature
from opencomms.domain.ids import new_id
from tests.integration.cluster.test_cluster_forward import two_nodes
from tests.redis_fixtures import redis_url

__all__ = ["redis_url"]  # fixtures


async def test_forged_stale_or_tampered_forwarded_requests_are_refused(redis_url: str) -> None:
    async with two_nodes(redis_url) as (nodes, tenant, apps):
        a = nodes[0]
        assert a.cluster is not None
        secret = await a.cluster.registry.secret()
        _bot, alice_id, _ = apps["alice"]
        path = f"/v1.0/communications/calls/{new_id()}"
        who = f'{{"t":"{tenant}","a":"{alice_id}","r":["Calls.Initiate.All"],"u":null,"s":[]}}'
        now = repr(time.time())
        good = signature(secret, "b", now, who, "GET", path, "", b"")
        cases = {
            "unsigned": {BY: "b", TIME: now, CALLER: who},
            "wrong key": {
                BY: "b",
                TIME: now,
                CALLER: who,
                SIGNATURE: signature(b"guess", "b", now, who, "GET", path, "", b""),
            },
            "other caller": {
                BY: "b",
                TIME: now,
                CALLER: who.replace('"r":[', '"r":["Calls.JoinGroupCall.All",'),
                SIGNATURE: good,
            },
            "stale": {
                BY: "b",
                TIME: (old := repr(time.time() - 120)),
                CALLER: who,
                SIGNATURE: signature(secret, "b", old, who, "GET", path, "", b""),
            },
            "other method": {BY: "b", TIME: now, CALLER: who, SIGNATURE: good, "x-method": "DELETE"},
        }
        async with aiohttp.ClientSession() as http:
            for name, headers in cases.items():
                method = headers.pop("x-method", "GET")
                async with http.request(method, a.public_url + path, headers=headers) as resp:
                    assert resp.status == 401, name
            async with http.get(
                a.public_url + path, headers={BY: "b", TIME: now, CALLER: who, SIGNATURE: good}
            ) as resp:
                assert resp.status == 404  # correctly signed: served (the call does not exist)
