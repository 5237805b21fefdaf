"""What the WebRTC tests share: a node config with the WebRTC edge and a spawned rtpengine on free loopback ports,
a ticket from the node for a bot's SIP address, answering a call with app-hosted media, and a minimal
SIP-over-WebSocket client (Python, no browser)."""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

import aiohttp

from opencomms.config import MediaConfig, NodeConfig, WebRtcConfig
from opencomms.sdk.media import AudioSocket, LocalMediaSession
from tests.integration.conftest import Platform, node_config
from tests.ports import free_port

CHROME_OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2122260223 127.0.0.1 51000 typ host generation 0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:"
    "BC:DE:F0\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
)


def webrtc_config(*, spawn: bool = True, **webrtc: Any) -> NodeConfig:
    base = random.randrange(41000, 59000, 200)
    settings = WebRtcConfig(
        enabled=True,
        ws_port=0,
        rtpengine=f"127.0.0.1:{free_port()}",
        rtpengine_spawn=spawn,
        rtpengine_port_min=base,
        rtpengine_port_max=base + 199,
        rtpengine_timeout=1.0,
    )
    media = MediaConfig(app_hosted_allow_private=("127.0.0.1",), app_hosted_connect_timeout=1.0)
    return node_config(webrtc=dataclasses.replace(settings, **webrtc), media=media)


async def ticket(p: Platform, bot: str, target: str = "", name: str = "Web Guest", join_id: str = "") -> dict[str, Any]:
    """POST /web/tickets as the bot's app: for `target`, or for the meeting whose joinMeetingId is `join_id`."""
    client = p[bot].client
    if client.token is None:
        await client.authenticate()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{p.node.public_url}/web/tickets",
            json={"displayName": name, **({"joinMeetingId": join_id} if join_id else {"target": target})},
            headers={"Authorization": f"Bearer {client.token}"},
        ) as resp,
    ):
        body: dict[str, Any] = await resp.json()
        body["status"] = resp.status
        return body


async def answer_with_media(p: Platform, bot: str, call_id: str, session: LocalMediaSession) -> AudioSocket:
    """Answer `call_id` as `bot` with app-hosted media on `session` (call key web-1); its audio socket once the call
    is established."""
    body = {"acceptedModalities": ["audio"], "mediaConfig": session.media_config("web-1")}
    status, data, _ = await p[bot].client.request("POST", f"/communications/calls/{call_id}/answer", body)
    assert status == 202, data
    await p[bot].bot.wait_state(call_id, "established", timeout=10)
    return await session.audio_socket("web-1", timeout=10)


def invite(target: str, sdp: str = CHROME_OFFER) -> str:
    """An INVITE as JsSIP sends it over a WebSocket (Via WS to a .invalid host, Contact with transport=ws)."""
    call_id = uuid.uuid4().hex
    return (
        f"INVITE {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
        "Max-Forwards: 69\r\n"
        f"To: <{target}>\r\n"
        f'From: "Guest" <sip:guest@opencomms.invalid>;tag={uuid.uuid4().hex[:8]}\r\n'
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:guest@abc.invalid;transport=ws;ob>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    )


async def final_status(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> tuple[int, str]:
    """The first final response's status and text on `ws` (provisional ones skipped)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        status = int(msg.data.split(" ", 2)[1])
        if status >= 200:
            return status, msg.data


def in_dialog(sent_invite: str, ok: str, method: str, cseq: int, sdp: str = "") -> str:
    """A request in the dialog that `ok` (the 200 to `sent_invite`) confirmed: ACK, a re-INVITE, BYE."""

    def header(text: str, name: str) -> str:
        return next(line for line in text.split("\r\n") if line.lower().startswith(name.lower() + ":"))

    target = sent_invite.split(" ", 2)[1]
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK{uuid.uuid4().hex[:12]}",
        "Max-Forwards: 69",
        header(ok, "To"),
        header(sent_invite, "From"),
        header(sent_invite, "Call-ID"),
        f"CSeq: {cseq} {method}",
        "Contact: <sip:guest@abc.invalid;transport=ws;ob>",
    ]
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(sdp)}")
    return "\r\n".join(lines) + "\r\n\r\n" + sdp
