"""Call records keep the RTP/RTCP quality of SIP legs: a bot calls a number through a trunk that is the node itself,
where another bot owns that number's SIP URI, so both ends of the SIP call are real RTP sessions of the node
exchanging RTCP, and the round trip is measured.

The record is read back over Graph's `GET /communications/callRecords/{callChainId}`, with CallRecords.Read.All.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

from opencomms.config import SipConfig
from tests.integration.conftest import ALL_CALL_PERMISSIONS, make_platform, node_config
from tests.integration.gateway.test_sip_outbound import phone_target
from tests.sipp.sipp import free_port

NUMBER = "+14255550142"
RECORDS = "/communications/callRecords"
DURATION = re.compile(r"^PT\d+(\.\d+)?S$")


async def test_sip_call_quality_is_kept_in_the_call_record() -> None:
    port = free_port()
    config = node_config(sip=SipConfig(port=port, trunk_uri=f"sip:127.0.0.1:{port}"))
    perms = {"alice": [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]}
    async with make_platform(config, ("alice", "bob"), perms) as p:
        assert p.node.sip is not None
        p.node.sip.rtp_config = dataclasses.replace(p.node.sip.rtp_config, rtcp_interval=0.3)
        # the number is bob's only as a SIP URI at this host: the router sends it to the trunk (this node)
        p.node.directory.create_instance(p["bob"].app_id, "Reception", sip_uri=f"sip:{NUMBER}@127.0.0.1")
        status, call = await p["alice"].client.create_call(p["alice"].bot.url, [phone_target(NUMBER)])
        assert status == 201, call
        incoming = await p["bob"].bot.incoming(timeout=10)
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await p["alice"].bot.wait_state(call["id"], "established", timeout=10)
        await asyncio.sleep(1.5)  # a few RTCP rounds each way
        assert await p["alice"].client.hang_up(call["id"]) == 204
        await p["alice"].bot.wait_for(lambda n: n.resource_url.endswith(call["id"]) and n.change_type == "deleted")
        chain = call["callChainId"]

        status, record, _ = await p["alice"].client.request("GET", f"{RECORDS}/{chain}")
        assert status == 200, record
        assert record["id"] == chain and record["type"] == "peerToPeer" and record["modalities"] == ["audio"]
        assert "sessions" not in record and record["version"] == 1
        assert record["organizer"]["application"]["id"] == p["alice"].app_id

        query = "?$expand=sessions($expand=segments)"
        status, record, _ = await p["alice"].client.request("GET", f"{RECORDS}/{chain}{query}")
        assert status == 200, record
        (session,) = record["sessions"]
        assert session["callee"]["identity"]["phone"]["id"] == NUMBER and session["failureInfo"] is None
        (segment,) = session["segments"]
        (media,) = segment["media"]
        assert media["label"] == "main-audio"
        streams: dict[str, Any] = {s["streamDirection"]: s for s in media["streams"]}
        received, sent = streams["calleeToCaller"], streams["callerToCallee"]
        for stream in (received, sent):
            assert stream["audioCodec"] == "pcmu"
            assert stream["packetUtilization"] > 50, stream
            assert stream["averagePacketLossRate"] == 0.0, stream
            assert DURATION.match(stream["averageJitter"]), stream
            assert DURATION.match(stream["averageRoundTripTime"]), stream  # RTCP LSR/DLSR
            assert float(stream["averageRoundTripTime"][2:-1]) < 0.1, stream  # loopback

        status, body, _ = await p["bob"].client.request("GET", f"{RECORDS}/{chain}")
        assert status == 403, body  # bob's app lacks CallRecords.Read.All
        status, body, _ = await p["alice"].client.request("GET", f"{RECORDS}/00000000-0000-0000-0000-000000000001")
        assert status == 404 and body["error"]["code"] == "itemNotFound", body
