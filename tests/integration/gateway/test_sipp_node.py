"""Calls from real SIPp peers into a real node whose bot answers over its webhook: CANCEL, BYE from each side,
5 % packet loss, RFC 4733 and in-band DTMF, re-INVITE hold. Each test also checks that nothing leaks: no SIP call
left in the gateway, every RTP port back in the allocator, no live call leg."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from opencomms.testing.harness import Notification
from tests.integration.conftest import BotHandle, Platform, make_platform, node_config
from tests.sipp import node_make_inband_pcap
from tests.sipp import sipp as harness
from tests.sipp.sipp import LOOPBACK, SCENARIO_DIR, SippResult, run_sipp

NUMBER = "+14255550123"
SERVICE = NUMBER.lstrip("+")


@pytest.fixture(autouse=True)
def _sipp_workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "WORKDIR_BASE", tmp_path)


@asynccontextmanager
async def phone_platform(**changes: Any) -> AsyncIterator[Platform]:
    """A node with SIP on a free port and one bot, bob, owning NUMBER."""
    async with make_platform(node_config(**changes), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        yield p


async def sipp(p: Platform, scenario: str, **kw: Any) -> SippResult:
    assert p.node.sip is not None
    kw.setdefault("service", SERVICE)
    kw.setdefault("timeout", 15)
    return await asyncio.to_thread(run_sipp, scenario, LOOPBACK, p.node.sip.port, **kw)


async def assert_nothing_leaked(p: Platform, within: float = 3.0) -> None:
    """No SIP call, RTP port or live leg remains (teardown is asynchronous: allow it a moment)."""
    gateway = p.node.sip
    assert gateway is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if gateway.active == 0 and gateway.ports.in_use == 0 and p.node.calls.active_calls == 0:
            return
        await asyncio.sleep(0.05)
    assert gateway.active == 0, "SIP calls left in the gateway"
    assert gateway.ports.in_use == 0, "RTP ports not released"
    assert p.node.calls.active_calls == 0, "call legs still live"


def ended(call_id: str) -> Callable[[Notification], bool]:
    return lambda n: n.call_id == call_id and n.change_type == "deleted"


@asynccontextmanager
async def auto_answer(bob: BotHandle) -> AsyncIterator[set[str]]:
    """Answer every incoming call as it arrives; yields the ids answered so far."""
    answered: set[str] = set()
    tasks: set[asyncio.Task[int]] = set()

    async def loop() -> None:
        while True:
            fresh = await bob.bot.wait_for(
                lambda n: n.change_type == "created" and n.call_id not in answered, timeout=3600
            )
            for n in fresh:
                if n.call_id not in answered:
                    answered.add(n.call_id)
                    tasks.add(asyncio.create_task(bob.client.answer(n.call_id)))

    runner = asyncio.create_task(loop())
    try:
        yield answered
    finally:
        runner.cancel()
        with suppress(asyncio.CancelledError):
            await runner
        await asyncio.gather(*tasks, return_exceptions=True)


async def answered_call(bob: BotHandle, index: int = 0) -> str:
    """Answer the bot's `index`-th incoming call and wait until it is established."""
    incoming = await bob.bot.incoming(timeout=10, index=index)
    assert await bob.client.answer(incoming.call_id) == 202
    await bob.bot.wait_state(incoming.call_id, "established", timeout=10)
    return incoming.call_id


async def tones(bob: BotHandle, call_id: str, count: int, timeout: float = 10) -> list[str]:
    found = await bob.bot.wait_for(
        lambda n: n.call_id == call_id and bool((n.resource_data or {}).get("toneInfo")), timeout=timeout, count=count
    )
    infos = sorted((n.resource_data["toneInfo"] for n in found), key=lambda t: t["sequenceId"])
    return [t["tone"] for t in infos]


# --- CANCEL and BYE ------------------------------------------------------------------------------------------------


async def test_cancel_while_ringing_answers_487_and_ends_the_bots_leg() -> None:
    async with phone_platform() as p:
        bob = p["bob"]
        result = await sipp(p, "uac_cancel.xml")  # CANCEL right after 180: 200 (CANCEL), 487 (INVITE), ACK
        assert result.ok, result.describe()
        incoming = await bob.bot.incoming(timeout=10)
        assert incoming.state == "incoming"
        end = (await bob.bot.wait_for(ended(incoming.call_id), timeout=10))[0]
        assert end.resource_data["state"] == "terminated"
        assert await bob.client.answer(incoming.call_id) == 404  # too late: the call is gone
        await assert_nothing_leaked(p)


async def test_phone_hangs_up_then_bot_hangs_up() -> None:
    async with phone_platform() as p:
        bob = p["bob"]
        # the phone hangs up: the bot's leg ends "remote hung up"
        task = asyncio.create_task(sipp(p, "uac_basic.xml", call_duration_ms=300))
        first = await answered_call(bob)
        result = await task
        assert result.ok, result.describe()
        end = (await bob.bot.wait_for(ended(first), timeout=10))[0]
        assert end.resource_data["state"] == "terminated"
        assert end.resource_data["resultInfo"]["code"] == 200
        assert end.resource_data["resultInfo"]["subcode"] == 4097
        await assert_nothing_leaked(p)

        # the bot hangs up: the node sends BYE, which SIPp (waiting for it) answers 200
        task = asyncio.create_task(sipp(p, "uac_remote_bye.xml", recv_timeout_ms=8000))
        second = await answered_call(bob, index=1)
        assert await bob.client.hang_up(second) == 204
        result = await task
        assert result.ok, result.describe()
        end = (await bob.bot.wait_for(ended(second), timeout=10))[0]
        assert end.resource_data["state"] == "terminated"
        assert end.resource_data["resultInfo"]["subcode"] == 5001  # ended by the bot's DELETE
        await assert_nothing_leaked(p)


# --- packet loss ---------------------------------------------------------------------------------------------------


async def test_five_percent_packet_loss_is_covered_by_retransmissions() -> None:
    calls = 24
    async with phone_platform() as p, auto_answer(p["bob"]) as answered:
        result = await sipp(
            p,
            "uac_basic.xml",
            calls=calls,
            rate=12,
            max_concurrent=calls,
            call_duration_ms=200,
            timeout=25,
            extra_args=["-lost", "5"],
        )
        assert result.ok and result.successful == calls, result.describe()
        assert len(answered) == calls
        # Now and then (both the ACK and the BYE lost) SIPp takes the node's retransmitted 200 to the INVITE for
        # the answer to its BYE (it matches responses by Call-ID) and stops sending the BYE. The node never gets
        # that ACK or BYE: it ends the call when its 200 goes unacknowledged (Timer H, 64 * T1 = 32 s).
        await p["bob"].bot.wait_for(lambda n: n.change_type == "deleted", count=calls, timeout=45)
        await assert_nothing_leaked(p)


# --- DTMF ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("node_uac_dtmf_rtp.xml", ["tone1", "tone2", "pound"]),  # RFC 4733 telephone-events (dtmf_12hash.pcap)
        ("node_uac_dtmf_inband.xml", ["tone4", "tone7", "star"]),  # G.711 audio, no telephone-event offered
    ],
)
async def test_phone_dtmf_reaches_the_bot_as_tone_notifications(scenario: str, expected: list[str]) -> None:
    async with phone_platform() as p:
        bob = p["bob"]
        task = asyncio.create_task(sipp(p, scenario, call_duration_ms=1500))  # time to subscribe before the keys
        call_id = await answered_call(bob)
        status, _, _ = await bob.client.request(
            "POST", f"/communications/calls/{call_id}/subscribeToTone", {"clientContext": "dtmf"}
        )
        assert status == 200
        assert await tones(bob, call_id, len(expected)) == expected
        result = await task
        assert result.ok, result.describe()
        await bob.bot.wait_for(ended(call_id), timeout=10)
        assert await tones(bob, call_id, len(expected)) == expected  # nothing more was detected
        await assert_nothing_leaked(p)


def test_inband_pcap_is_what_the_generator_makes() -> None:
    committed = (SCENARIO_DIR / "node_dtmf_inband.pcap").read_bytes()
    assert committed == node_make_inband_pcap.build_pcap(), "regenerate: python -m tests.sipp.node_make_inband_pcap"


# --- hold ----------------------------------------------------------------------------------------------------------


async def test_reinvite_hold_inactive_and_resume_get_the_right_direction() -> None:
    async with phone_platform() as p:
        bob = p["bob"]
        # sendonly -> our 200 says recvonly; inactive -> inactive; sendrecv -> sendrecv (the scenario checks each;
        # test_sip_hold.py, on the same scenario, checks that RTP pauses while held)
        task = asyncio.create_task(sipp(p, "node_hold.xml", call_duration_ms=300))
        call_id = await answered_call(bob)
        result = await task
        assert result.ok, result.describe()
        end = (await bob.bot.wait_for(ended(call_id), timeout=10))[0]
        assert end.resource_data["resultInfo"]["subcode"] == 4097  # the call lasted until the phone's BYE
        states = [n.state for n in bob.bot.for_call(call_id)]
        assert states.count("established") == 1 and states[-1] == "terminated"
        await assert_nothing_leaked(p)
