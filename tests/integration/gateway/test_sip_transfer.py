"""A bot transfers a phone's call to another phone number: by REFER when the phone accepts it, else by bridging.

SIPp plays the phone (and, for bridging, the trunk) against a real node; the bot answers and transfers over REST
and must see what Graph shows: transferring -> transferAccepted -> deleted 0/7015, or back to established with
500/7000 (500/7700 unreachable) when the transfer fails. Phones may not REFER the node's calls themselves.
A bot's redirect of a ringing phone call to a number is bridged through the trunk (no 302 to the phone).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from opencomms.config import SipConfig
from opencomms.testing.harness import Notification
from tests.integration.conftest import Platform, make_platform, node_config
from tests.integration.gateway.test_sip_outbound import phone_target
from tests.sipp.sipp import LOOPBACK, SippResult, SippServer, free_port, run_sipp

NUMBER = "+14255550100"


def config(trunk_port: int) -> Any:
    return node_config(sip=SipConfig(port=0, trunk_uri=f"sip:127.0.0.1:{trunk_port}"))


async def answered_phone_call(p: Platform, scenario: str, pause_ms: int = 300) -> tuple[asyncio.Task[SippResult], str]:
    """The phone (SIPp) calls the bot's number and the bot answers; returns the running SIPp and the bot's call id."""
    assert p.node.sip is not None
    p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
    phone = asyncio.create_task(
        asyncio.to_thread(
            run_sipp,
            scenario,
            LOOPBACK,
            p.node.sip.port,
            service=NUMBER.lstrip("+"),
            call_duration_ms=pause_ms,
            timeout=20,
        )
    )
    incoming = await p["bob"].bot.incoming(timeout=10)
    assert await p["bob"].client.answer(incoming.call_id) == 202
    await p["bob"].bot.wait_state(incoming.call_id, "established", timeout=10)
    return phone, incoming.call_id


async def transfer(p: Platform, call_id: str) -> None:
    status, body, _ = await p["bob"].client.request(
        "POST", f"/communications/calls/{call_id}/transfer", {"transferTarget": phone_target()}
    )
    assert status == 202, body


def states(p: Platform, call_id: str) -> list[tuple[str, Any]]:
    def info(n: Notification) -> Any:
        ri = n.resource_data.get("resultInfo") if isinstance(n.resource_data, dict) else None
        return (ri["code"], ri["subcode"]) if ri else None

    return [(n.state or "", info(n)) for n in p["bob"].bot.for_call(call_id) if n.resource_url.endswith(call_id)]


async def deleted(p: Platform, call_id: str) -> Notification:
    found = await p["bob"].bot.wait_for(
        lambda n: n.resource_url.endswith(call_id) and n.change_type == "deleted", timeout=10
    )
    return found[0]


async def test_phone_with_refer_is_transferred_by_refer() -> None:
    async with make_platform(config(free_port()), ("bob",)) as p:
        phone, call_id = await answered_phone_call(p, "node_refer.xml")
        await transfer(p, call_id)
        await deleted(p, call_id)
        result = await phone
        assert result.ok, result.describe()  # Refer-To was the number at the trunk; the node hung up after 200
        assert states(p, call_id)[-3:] == [
            ("transferring", None),
            ("transferAccepted", None),
            ("terminated", (0, 7015)),
        ], states(p, call_id)
        assert p.node.calls.active_calls == 0
        assert p.node.sip is not None and p.node.sip.active == 0


async def test_failed_refer_returns_the_call_to_established() -> None:
    async with make_platform(config(free_port()), ("bob",)) as p:
        phone, call_id = await answered_phone_call(p, "node_refer_fails.xml", pause_ms=600)
        await transfer(p, call_id)
        await deleted(p, call_id)  # the phone hangs up after the failed transfer
        result = await phone
        assert result.ok, result.describe()
        assert states(p, call_id)[-4:] == [
            ("transferring", None),
            ("transferAccepted", None),
            ("established", (500, 7000)),
            ("terminated", (200, 4097)),
        ], states(p, call_id)


async def test_refused_refer_falls_back_to_bridging_through_the_trunk() -> None:
    trunk_port = free_port()
    async with make_platform(config(trunk_port), ("bob",)) as p:
        trunk = SippServer("trunk_answer_bye.xml", port=trunk_port, calls=1, timeout=20, extra_args=["-d", "500"])
        await asyncio.to_thread(trunk.start)
        try:
            phone, call_id = await answered_phone_call(p, "node_refer_refused.xml")
            await transfer(p, call_id)
            end = await deleted(p, call_id)
            assert end.resource_data["resultInfo"]["subcode"] == 7015
            result = await phone  # the trunk's callee hangs up, the node then hangs up the phone
            assert result.ok, result.describe()
        finally:
            trunk_result = await asyncio.to_thread(trunk.wait, 10)
        assert trunk_result.ok, trunk_result.describe()
        assert p.node.calls.active_calls == 0


async def test_phones_may_not_refer_or_notify_out_of_the_blue() -> None:
    async with make_platform(node_config(), ("bob",)) as p:
        assert p.node.sip is not None
        answers = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            sock.settimeout(3)
            port = sock.getsockname()[1]
            for method in ("REFER", "NOTIFY"):
                extra = "Refer-To: <sip:+15555550100@127.0.0.1>\r\n" if method == "REFER" else "Event: refer\r\n"
                request = (
                    f"{method} sip:{NUMBER}@127.0.0.1:{p.node.sip.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{method}\r\n"
                    f"From: <sip:mallory@127.0.0.1>;tag=m1\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\n"
                    f"Call-ID: {method}-1@127.0.0.1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
                    f"Contact: <sip:mallory@127.0.0.1:{port}>\r\n{extra}Content-Length: 0\r\n\r\n"
                )
                sock.sendto(request.encode(), (LOOPBACK, p.node.sip.port))
                data = await asyncio.to_thread(sock.recv, 4096)
                answers.append(data.split(b"\r\n", 1)[0])
        assert answers == [b"SIP/2.0 403 Forbidden", b"SIP/2.0 481 Subscription Does Not Exist"]


async def test_redirect_of_a_ringing_phone_call_bridges_it_through_the_trunk() -> None:
    trunk_port = free_port()
    async with make_platform(config(trunk_port), ("bob",)) as p:
        assert p.node.sip is not None
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        trunk = SippServer("trunk_answer_bye.xml", port=trunk_port, calls=1, timeout=20, extra_args=["-d", "500"])
        await asyncio.to_thread(trunk.start)
        try:
            phone = asyncio.create_task(
                asyncio.to_thread(
                    run_sipp, "uac_remote_bye.xml", LOOPBACK, p.node.sip.port, service=NUMBER.lstrip("+"), timeout=20
                )
            )
            incoming = await p["bob"].bot.incoming(timeout=10)
            status, body, _ = await p["bob"].client.request(
                "POST", f"/communications/calls/{incoming.call_id}/redirect", {"targets": [phone_target()]}
            )
            assert status == 202, body
            end = await deleted(p, incoming.call_id)
            assert end.resource_data["resultInfo"]["code"] == 200
            result = await phone  # answered once the trunk's callee answered, hung up when it did
            assert result.ok, result.describe()
        finally:
            trunk_result = await asyncio.to_thread(trunk.wait, 10)
        assert trunk_result.ok, trunk_result.describe()
        assert p.node.calls.active_calls == 0 and p.node.sip.active == 0
