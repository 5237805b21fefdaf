"""An independent SIP stack against ours: SIPp's built-in `uac` scenario (INVITE, 180/200, ACK, BYE) calls a tiny
UAS built on SipEndpoint, over UDP and TCP. Skipped when `sipp` is not installed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.message import SipRequest

SIPP = shutil.which("sipp")
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp is not installed")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_calls_our_uas(transport: str, tmp_path: Path) -> None:
    assert SIPP is not None
    seen: list[str] = []

    def on_request(handle: ServerTransactionHandle, request: SipRequest, source: tuple[str, int]) -> None:
        seen.append(request.method)
        if request.method == "INVITE":
            handle.on_ack = lambda ack: seen.append("ACK")
            handle.respond(180)
            handle.respond(200, body=SDP, content_type="application/sdp")
        else:
            handle.respond(200)

    async with SipEndpoint(EndpointConfig(udp_port=0, tcp_port=0), on_request=on_request) as uas:
        proc = await asyncio.create_subprocess_exec(
            SIPP,
            "-sn",
            "uac",
            f"127.0.0.1:{uas.local_port(transport)}",
            "-t",
            "u1" if transport == "udp" else "t1",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-m",
            "1",
            "-d",
            "50",
            "-timeout",
            "10",
            "-timeout_error",
            "-nostdin",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
    assert seen == ["INVITE", "ACK", "BYE"]
    assert len(uas.dialogs) == 0
