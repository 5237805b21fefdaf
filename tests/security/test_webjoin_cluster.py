"""Web join tickets across a cluster (two nodes on one redis-server): a ticket that opened a SIP WebSocket on node B
is spent for node A as well (no replay through another node), and a node that cannot reach Redis refuses both the
ticket page (503, not 500) and every WebSocket ticket (never an open door) while the other node goes on."""

from __future__ import annotations

import dataclasses
import time

import aiohttp
import redis

from opencomms.config import ClusterConfig
from opencomms.domain.ids import new_id
from opencomms.gateway.webjoin import WebGrant
from opencomms.gateway.webjoin_redis import RedisWebJoinTickets
from opencomms.testing import running_node
from opencomms.testing.redis import _free_port
from tests.integration.conftest import make_platform
from tests.integration.webrtc.support import ticket, webrtc_config
from tests.redis_fixtures import redis_url

__all__ = ["redis_url"]  # fixtures

GRANT = WebGrant("tenant-1", "Wendy Web", "sip:support@bob.example", None, "app-1")
BOB = "sip:support@bob.example"


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=("sip",)):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_a_ticket_opens_one_websocket_in_the_whole_cluster(redis_url: str) -> None:
    prefix = f"t{new_id()[:8]}:"
    base = webrtc_config(spawn=False)
    config_a = dataclasses.replace(base, store_url=redis_url, cluster=ClusterConfig(node_id="a", key_prefix=prefix))
    config_b = dataclasses.replace(config_a, cluster=ClusterConfig(node_id="b", key_prefix=prefix))
    async with make_platform(config_a, ("bob",)) as p, running_node(config_b) as node_b:
        assert p.node.webrtc is not None and node_b.webrtc is not None
        assert isinstance(p.node.webrtc.tickets, RedisWebJoinTickets)
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name="Wendy Web")
        assert issued["status"] == 201, issued
        assert await _status(f"{node_b.webrtc.ws_url}?ticket={issued['ticket']}") == 101
        assert await _status(f"{p.node.webrtc.ws_url}?ticket={issued['ticket']}") == 401  # spent on node B
        assert await _status(f"{node_b.webrtc.ws_url}?ticket={issued['ticket']}") == 401
        # Redis unreachable from node A: its ticket page answers 503 (not 500), its WebSocket lets no one in
        tickets = p.node.webrtc.tickets
        assert isinstance(tickets, RedisWebJoinTickets)
        tickets._redis = redis.Redis(port=_free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
        assert (await ticket(p, "bob", BOB))["status"] == 503
        fresh = node_b.webrtc.tickets.issue(GRANT, time.time())  # node B still reaches Redis
        assert await _status(f"{p.node.webrtc.ws_url}?ticket={fresh}") == 401
        assert await _status(f"{node_b.webrtc.ws_url}?ticket={fresh}") == 101  # not spent by the refusal
