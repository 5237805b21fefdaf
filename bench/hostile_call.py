"""Hostile-call benchmark (issue 14 item 1): N legitimate RTP calls up, one hostile caller at work; what share of
the legitimate calls' RTP still arrives (target 100 %).

Run: PYTHONPATH=src .venv/bin/python bench/hostile_call.py [--calls 20] [--seconds 5] [--rate 20]

One node in this process (TestPlatform: memory store, SIP and HTTP on loopback), a bot that answers every call,
and N VirtualCaller calls counting the node's RTP (one packet per 20 ms is expected). During the measurement:

* hostile offers, `--rate` INVITEs per second from one socket, rotating SDP c= lines the node must refuse: a
  name that does not resolve, undecodable bytes, a black-holed name (the node's media resolver is wrapped so
  that `*.blackhole.example` never answers: the 4-second stall of the issue, now bounded by
  sip.media_resolve_timeout), multicast, broadcast, IPv6 on an IPv4 node, an RTCP port out of range;
* a hostile call *up*: one more answered call whose RTP destination is then replaced, on the engine thread, by
  an address no socket takes (what an unchecked c= line used to reach), so the bank's per-stream isolation is
  what protects the others; that call must end with resultInfo 500/9133.

Prints one line: legitimate RTP delivered (all calls, and the worst call), the hostile INVITEs' answers, engine
command errors and RTP stream faults.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import sys
import time
from collections import Counter
from typing import Any

from opencomms.config import SipConfig
from opencomms.testing import TestPlatform
from opencomms.testing.caller import VirtualCall
from opencomms.testing.platform import default_config

TICK = 0.02
HOSTILE_C = (
    b"IN IP4 some.name.invalid",
    b"IN IP4 \xff\xfe\x80.\x01",
    b"IN IP4 x%d.blackhole.example",
    b"IN IP4 224.0.0.251/32",
    b"IN IP4 255.255.255.255",
    b"IN IP6 ::1",
    b"IN IP4 127.0.0.1\r\na=rtcp:99999",
)


def hostile_invite(number: str, server: tuple[str, int], local_port: int, k: int) -> tuple[str, bytes]:
    c = HOSTILE_C[k % len(HOSTILE_C)]
    if b"%d" in c:
        c = c % k
    body = b"v=0\r\no=hostile 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 7078 RTP/AVP 0\r\nc=" + c + b"\r\n"
    call_id = secrets.token_hex(8)
    head = "\r\n".join(
        [
            f"INVITE sip:{number.lstrip('+')}@{server[0]}:{server[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:hostile@127.0.0.1:{local_port}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{number.lstrip('+')}@{server[0]}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:hostile@127.0.0.1:{local_port}>",
            "Content-Type: application/sdp",
            f"Content-Length: {len(body)}",
        ]
    )
    return call_id, head.encode() + b"\r\n\r\n" + body


class HostileCaller(asyncio.DatagramProtocol):
    """Sends hostile INVITEs and keeps each one's final status."""

    def __init__(self) -> None:
        self.final: dict[str, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) < 200:
            return
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() in ("call-id", "i"):
                self.final.setdefault(value.strip(), int(parts[1]))


async def answered(platform: TestPlatform, bot: Any, caller: Any, seen: int) -> tuple[VirtualCall, str]:
    call = await caller.dial(bot.number)
    incoming = await bot.webhook.incoming(timeout=15, index=seen)
    status = await bot.client.answer(incoming.call_id)
    assert status == 202, status
    await call.wait_answered(timeout=15)
    return call, incoming.call_id


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = default_config("")
    config = dataclasses.replace(
        base, sip=SipConfig(host="127.0.0.1", port=0, max_calls=args.calls + 100, media_resolve_timeout=args.resolve)
    )
    async with TestPlatform(config) as platform:
        node = platform.node
        gateway = node.sip
        assert gateway is not None
        system = gateway.addresses.resolver

        async def resolver(name: str, family: int) -> list[str]:
            if name.endswith(".blackhole.example"):
                await asyncio.sleep(3600)  # a black-holed name: the lookup never answers
            return await system(name, family)

        gateway.addresses.resolver = resolver
        ended_with: dict[str, Any] = {}
        external_ended = node.calls.external_ended

        def record_end(call_id: str, reason: Any) -> None:  # what the SIP legs end with
            ended_with.setdefault(call_id, reason)
            external_ended(call_id, reason)

        node.calls.external_ended = record_end  # type: ignore[method-assign]
        bot = await platform.recording_bot("bench")
        async with platform.caller() as caller:
            calls = [(await answered(platform, bot, caller, k))[0] for k in range(args.calls)]
            victim_call, victim_id = await answered(platform, bot, caller, args.calls)
            calls_before = len(bot.webhook.notifications)
            await asyncio.sleep(0.5)

            loop = asyncio.get_running_loop()
            hostile = HostileCaller()
            transport, _ = await loop.create_datagram_endpoint(lambda: hostile, local_addr=("127.0.0.1", 0))
            local_port = transport.get_extra_info("sockname")[1]
            streams = [_victim_stream(gateway, c)[1] for c in calls]
            before = [c.rtp_stats.packets_received for c in calls]
            sent_before = [st.packets_sent for st in streams]
            started = time.monotonic()
            sent = 0

            if args.inject:  # the hostile call goes bad while up: its RTP destination is one no socket takes
                victim_leg, stream = _victim_stream(gateway, victim_call)
                gateway.bank.host.call(lambda _e: setattr(stream, "rtp_addr", ("bad\ufffd.example", 4000)))

            while (elapsed := time.monotonic() - started) < args.seconds:
                if args.rate > 0 and sent < elapsed * args.rate:
                    _call_id, data = hostile_invite(bot.number, platform.sip_address, local_port, sent)
                    transport.sendto(data, platform.sip_address)
                    sent += 1
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - started
            got = [c.rtp_stats.packets_received - b for c, b in zip(calls, before, strict=True)]
            node_sent = [st.packets_sent - b for st, b in zip(streams, sent_before, strict=True)]
            await asyncio.sleep(0.2)  # what was sent in the window has arrived
            late = [c.rtp_stats.packets_received - b for c, b in zip(calls, before, strict=True)]
            await asyncio.sleep(args.resolve + 0.5)  # the last black-holed lookups time out
            transport.close()
            expected = elapsed / TICK
            victim_ended = victim_call.ended
            health = {**node.engine.stats(), **gateway.health()}
            result_info = _result(bot, victim_id, calls_before) if args.inject else None
            leg_result = ended_with.get(victim_leg) if args.inject else None
    statuses = Counter(hostile.final.values())
    return {
        "calls": args.calls,
        "seconds": round(elapsed, 2),
        "delivered_pct": round(100.0 * sum(got) / (expected * len(got)), 2),
        "worst_call_pct": round(100.0 * min(got) / expected, 2),
        "node_sent_pct": round(100.0 * sum(node_sent) / (expected * len(got)), 2),
        "received_of_sent_pct": round(
            100.0 * sum(min(a, b) for a, b in zip(late, node_sent, strict=True)) / max(1, sum(node_sent)), 3
        ),
        "hostile_invites": sent,
        "hostile_answers": dict(sorted(statuses.items())),
        "unanswered": sent - sum(statuses.values()),
        "hostile_call_up": bool(args.inject),
        "hostile_call_ended": victim_ended,
        "hostile_call_result": result_info,
        "hostile_leg_result": f"{leg_result.code}/{leg_result.subcode}" if leg_result else None,
        "command_errors": health["command_errors"],
        "stream_faults": health["rtp_stream_faults"],
        "resolver_timeouts": health["media_addresses"]["timeouts"],
    }


def _victim_stream(gateway: Any, victim: VirtualCall) -> tuple[str, Any]:
    """The node-side leg id and stream of `victim`: the call whose remote RTP port is the victim's RTP port."""
    port = victim._rtp.port  # a benchmark looks inside its own test phone
    for sc in gateway._by_key.values():
        media = sc.media
        if media is not None and media.remote_rtp is not None and media.remote_rtp[1] == port:
            return sc.leg_id, sc.rtp.stream
    raise RuntimeError("the hostile call's stream was not found")


def _result(bot: Any, call_id: str, since: int) -> str | None:
    """The resultInfo the bot was given when the hostile call ended (code/subcode)."""
    for n in bot.webhook.notifications[since:]:
        if n.change_type == "deleted" and n.resource_url.endswith(call_id):
            info = n.resource_data.get("resultInfo") or {}
            return f"{info.get('code')}/{info.get('subcode')}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="legitimate calls up during the measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    parser.add_argument("--rate", type=float, default=20.0, help="hostile INVITEs per second (0: none)")
    parser.add_argument("--resolve", type=float, default=1.0, help="the node's sip.media_resolve_timeout")
    parser.add_argument("--no-inject", dest="inject", action="store_false", help="no hostile call up")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    os.environ.setdefault("OPENCOMMS_LOG_LEVEL", "warning")
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r))
    print(
        f"hostile_call: {r['calls']} legitimate calls, {r['seconds']} s; legitimate RTP delivered "
        f"{r['delivered_pct']} % of 50 pps (worst call {r['worst_call_pct']} %; the node sent {r['node_sent_pct']} %, "
        f"{r['received_of_sent_pct']} % of it arrived); {r['hostile_invites']} hostile INVITEs "
        f"answered {r['hostile_answers']} ({r['unanswered']} unanswered); hostile call up: {r['hostile_call_up']}, "
        f"ended {r['hostile_call_ended']} (its SIP leg {r['hostile_leg_result']}, the bot's leg "
        f"{r['hostile_call_result']}); engine command errors "
        f"{r['command_errors']}, RTP stream faults {r['stream_faults']}, resolver timeouts {r['resolver_timeouts']}"
    )
    sys.exit(0 if r["delivered_pct"] >= 99.0 else 1)


if __name__ == "__main__":
    main()
