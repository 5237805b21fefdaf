"""A browser's SIP leg without a browser: a Python WebSocket client speaks SIP as JsSIP does (Via WS to a `.invalid`
host) with a Chrome offer (ICE, DTLS-SRTP, Opus). The node hands it to rtpengine, the bot is offered plain G.722, the
browser gets back ICE + DTLS + its own codec; a WebSocket that closes without a BYE (a tab closed) ends the call at
once, and rtpengine forgets the call."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from pathlib import Path

import aiohttp
import pytest

from opencomms.auth.devcert import make_dev_cert
from opencomms.domain.ids import new_id
from opencomms.domain.meetings import MeetingInfo
from opencomms.gateway.rtpengine import RtpEngineClient
from opencomms.gateway.webjoin import WebGrant
from opencomms.testing import running_node
from tests.integration.conftest import make_platform
from tests.integration.webrtc.support import CHROME_OFFER, final_status, in_dialog, invite, ticket, webrtc_config

BOB = "sip:support@bob.example"


async def rtpengine_calls(address: tuple[str, int]) -> int:
    client = RtpEngineClient(address)
    try:
        return len((await client.request("list", {"limit": 100})).get("calls", []))
    finally:
        client.close()


async def test_browser_leg_is_relayed_and_a_closed_websocket_ends_the_call() -> None:
    async with make_platform(webrtc_config(), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        edge = p.node.webrtc
        assert edge is not None
        issued = await ticket(p, "bob", BOB, name="Wendy Web")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{issued['wsUrl']}?ticket={issued['ticket']}", protocols=("sip",))
            assert ws.protocol == "sip"
            await ws.send_str(sent := invite(BOB))
            incoming = await p["bob"].bot.incoming(timeout=10)
            assert incoming.resource_data["source"]["identity"]["guest"]["displayName"] == "Wendy Web"
            assert await p["bob"].client.answer(incoming.call_id) == 202
            status, ok = await final_status(ws)
            assert status == 200, ok
            assert "UDP/TLS/RTP/SAVPF" in ok and "a=fingerprint:sha-256" in ok and "a=ice-ufrag" in ok
            assert "opus/48000" in ok  # the browser keeps Opus ...
            assert p.node.sip is not None and p.node.sip.active == 1
            (sip_call,) = p.node.sip._by_key.values()
            assert sip_call.relayed and sip_call.media is not None
            assert sip_call.media.codec.name == "opus"  # ... relayed as it is: the node codes it (opus_in_node)
            contact = next(line for line in ok.split("\r\n") if line.startswith("Contact:"))
            assert ";transport=ws" in contact and str(edge.port) in contact
            assert await rtpengine_calls(edge.rtpengine.address) == 1
            await p["bob"].bot.wait_state(incoming.call_id, "established", timeout=10)

            # the browser puts the call on hold (a re-INVITE, through rtpengine again)
            await ws.send_str(in_dialog(sent, ok, "ACK", 1))
            await ws.send_str(in_dialog(sent, ok, "INVITE", 2, CHROME_OFFER.replace("a=sendrecv", "a=sendonly")))
            status, held = await final_status(ws)
            assert status == 200 and "a=recvonly" in held and "UDP/TLS/RTP/SAVPF" in held, held
            assert sip_call.media is not None and not sip_call.media.direction.sends

            await ws.close()  # the tab closes: no BYE
            end = await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=5)
            assert end.resource_data["resultInfo"]["code"] == 200
        for _ in range(50):
            if p.node.sip.active == 0 and await rtpengine_calls(edge.rtpengine.address) == 0:
                break
            await asyncio.sleep(0.1)
        assert p.node.sip.active == 0
        assert await rtpengine_calls(edge.rtpengine.address) == 0


async def test_browser_joins_a_meeting_by_its_join_meeting_id_as_a_guest() -> None:
    async with make_platform(webrtc_config(), ("alice", "bob")) as p:
        meeting = p.node.adhoc_meetings.add(
            MeetingInfo(
                id=new_id(),
                tenant_id=p.tenant_id,
                organizer_id=new_id(),
                organizer_name="Organizer",
                thread_id="19:meeting_webrtc@thread.v2",
                join_meeting_id="4242424242",
            )
        )
        assert (await ticket(p, "bob", name="Guest", join_id="9999999999"))["status"] == 404
        issued = await ticket(p, "bob", name="Guest", join_id=meeting.join_meeting_id)
        assert issued["status"] == 201, issued
        target = issued["callUrl"].split("target=")[1].split("&")[0].replace("%3A", ":").replace("%40", "@")
        assert target.startswith("sip:meeting-4242424242@")
        assert p.node.dialin is not None
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{issued['wsUrl']}?ticket={issued['ticket']}", protocols=("sip",)) as ws,
        ):
            await ws.send_str(invite(target))  # no digest: the ticket is the credential (a guest)
            status, ok = await final_status(ws)
            assert status == 200 and "UDP/TLS/RTP/SAVPF" in ok, ok
            assert p.node.dialin.stats["dialled"] == 1
        for _ in range(50):
            if p.node.sip is not None and p.node.sip.active == 0:
                break
            await asyncio.sleep(0.1)
        assert p.node.sip is not None and p.node.sip.active == 0  # the closed WebSocket left the meeting


async def test_over_tls_the_edge_is_wss_and_says_so_in_via_and_contact(tmp_path: Path) -> None:
    paths = make_dev_cert(tmp_path / "tls")
    config = dataclasses.replace(webrtc_config(), tls_cert=str(paths.cert), tls_key=str(paths.key))
    async with running_node(config) as node:
        edge = node.webrtc
        assert edge is not None and edge.ws_url.startswith("wss://localhost:")
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        issued = edge.tickets.issue(WebGrant(tenant.id, "Wendy", BOB), node.clock())
        context = ssl.create_default_context(cafile=str(paths.ca_cert))
        options = (
            f"OPTIONS {BOB} SIP/2.0\r\nVia: SIP/2.0/WSS abc.invalid;branch=z9hG4bKtls1\r\nMax-Forwards: 70\r\n"
            f"To: <{BOB}>\r\nFrom: <sip:guest@opencomms.invalid>;tag=t1\r\nCall-ID: tls-1\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{edge.ws_url}?ticket={issued}", protocols=("sip",), ssl=context) as ws,
        ):
            await ws.send_str(options)
            status, ok = await final_status(ws)
            assert status == 200 and "SIP/2.0/WSS abc.invalid" in ok, ok
        async with aiohttp.ClientSession() as http:  # plain ws:// to a TLS edge does not open
            with pytest.raises(aiohttp.ClientError):
                await http.ws_connect(edge.ws_url.replace("wss://", "ws://") + f"?ticket={issued}")


async def test_without_opus_the_browser_is_answered_with_g711_and_only_relayed() -> None:
    async with make_platform(webrtc_config(opus=False), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{issued['wsUrl']}?ticket={issued['ticket']}", protocols=("sip",)) as ws,
        ):
            await ws.send_str(invite(BOB))
            incoming = await p["bob"].bot.incoming(timeout=10)
            assert await p["bob"].client.answer(incoming.call_id) == 202
            status, ok = await final_status(ws)
            assert status == 200 and "UDP/TLS/RTP/SAVPF" in ok, ok
            assert "PCMU/8000" in ok and "opus" not in ok.lower()
