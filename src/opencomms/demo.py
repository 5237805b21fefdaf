"""`make demo`: start a node on the embedded SQLite store, register two example bots, place one bot-to-bot
call and print its timeline: Bob answers, subscribes to tones and records; Alice speaks a text-to-speech
prompt and presses keys; Bob's recording is downloaded with its token; Alice hangs up.
`--serve` keeps the node running afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp

from opencomms.config import NodeConfig
from opencomms.testing import GraphClient, Notification, RecordingBot, running_node
from opencomms.testing.harness import app_target

PERMISSIONS = ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"]


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[tuple[float, str]] = []

    def rest(self, at: float, who: str, method: str, path: str, status: int, note: str = "") -> None:
        """A REST request that was sent at `at` (answered with `status`)."""
        self.rows.append((at, f"{who:5} -> {method:6} {path:52} {status} {note}"))

    def notes(self, who: str, items: list[Notification], names: dict[str, str]) -> None:
        for n in items:
            data = n.resource_data if isinstance(n.resource_data, dict) else {}
            detail = n.state or ""
            kind = str(data.get("@odata.type", "")).rsplit(".", 1)[-1]
            if kind.endswith("Operation"):
                detail = f"{kind} {data.get('status')}"
                if data.get("completionReason"):
                    detail += f" ({data['completionReason']})"
            if data.get("toneInfo"):
                detail = f"toneInfo #{data['toneInfo']['sequenceId']} {data['toneInfo']['tone']}"
            if n.change_type == "created":
                caller = data.get("source", {}).get("identity", {}).get("application", {}).get("id", "")
                detail = f"incoming call from {names.get(caller, 'unknown')}"
            result = data.get("resultInfo")
            if result:
                detail += f"  resultInfo {result['code']}/{result['subcode']} ({result['message']})"
            url = n.resource_url.replace(n.call_id, n.call_id[:8] + "…")
            if "/operations/" in url:
                head, _, op_id = url.rpartition("/")
                url = f"{head}/{op_id[:8]}…"
            self.rows.append((n.received_at, f"{who:5} <- {n.change_type:7} {url:51} {detail}"))

    def print(self) -> None:
        for t, line in sorted(self.rows):
            print(f"  {1000 * (t - self.t0):8.1f} ms  {line}")


def fresh_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


async def demo(serve: bool, db: Path) -> None:
    cfg = NodeConfig(
        host="127.0.0.1", port=_port(8080), store_url=f"sqlite:///{db}", log_level="warning", log_format="text"
    )
    async with running_node(cfg) as node:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        jwks = f"{node.public_url}/common/discovery/v2.0/keys"
        alice_bot = await RecordingBot(app_id="", jwks_url=jwks).start("/alice/calls")
        bob_bot = await RecordingBot(app_id="", jwks_url=jwks).start("/bob/calls")
        alice_app, alice_secret = node.directory.create_app(
            tenant.id, "Alice (notification bot)", permissions=PERMISSIONS, callback_url=alice_bot.url
        )
        bob_app, bob_secret = node.directory.create_app(
            tenant.id, "Bob (reception bot)", permissions=PERMISSIONS, callback_url=bob_bot.url
        )
        alice_bot.app_id, bob_bot.app_id = alice_app.id, bob_app.id
        names = {alice_app.id: "Alice", bob_app.id: "Bob"}
        print(f"opencomms node on {node.public_url}  (embedded store {db})")
        print(f"  tenant Contoso {tenant.id}")
        print(f"  bot Alice client_id={alice_app.id}  webhook {alice_bot.url}")
        print(f"  bot Bob   client_id={bob_app.id}  webhook {bob_bot.url}")
        print(
            "\nAlice calls Bob; Bob answers, subscribes to tones and records; Alice says a sentence (text-to-speech)"
            "\nand presses 4, 2, #; Bob downloads the recording; Alice hangs up. Timeline:\n"
        )
        timeline = Timeline()
        async with (
            GraphClient(node.public_url, "contoso.example", alice_app.id, alice_secret) as alice,
            GraphClient(node.public_url, "contoso.example", bob_app.id, bob_secret) as bob,
        ):
            timeline.t0 = at = time.monotonic()
            status, call = await alice.create_call(alice_bot.url, [app_target(bob_app.id)])
            timeline.rest(at, "alice", "POST", "/v1.0/communications/calls", status, call.get("state", ""))
            incoming = await bob_bot.incoming()
            at = time.monotonic()
            status = await bob.answer(incoming.call_id)
            timeline.rest(at, "bob", "POST", f"/v1.0/communications/calls/{incoming.call_id[:8]}…/answer", status)
            await alice_bot.wait_state(call["id"], "established")
            await bob_bot.wait_state(incoming.call_id, "established")
            bob_path = f"/communications/calls/{incoming.call_id}"
            alice_path = f"/communications/calls/{call['id']}"

            async def act(who: str, client: GraphClient, path: str, action: str, body: Any) -> Any:
                at = time.monotonic()
                status, op, _ = await client.request("POST", f"{path}/{action}", body)
                short = path.replace(path.rsplit("/", 1)[-1], path.rsplit("/", 1)[-1][:8] + "…")
                timeline.rest(at, who, "POST", f"/v1.0{short}/{action}", status, op.get("status", ""))
                return op

            await act("bob", bob, bob_path, "subscribeToTone", {})
            record = {"playBeep": False, "stopTones": ["#"], "maxSilenceTimeoutInSeconds": 2}
            rec = await act("bob", bob, bob_path, "recordResponse", record)
            text = "Hello Bob, this is Alice. Your one time code is four two."
            prompt = {"@odata.type": "#opencomms.textPrompt", "text": text, "voice": "en-us"}
            play = await act("alice", alice, alice_path, "playPrompt", {"prompts": [prompt]})
            await alice_bot.wait_for(lambda n: n.resource_url.endswith(play["id"]), timeout=20)
            tones = await act("alice", alice, alice_path, "sendDtmfTones", {"tones": ["tone4", "tone2", "pound"]})
            done = await bob_bot.wait_for(lambda n: n.resource_url.endswith(rec["id"]), timeout=20)
            await alice_bot.wait_for(lambda n: n.resource_url.endswith(tones["id"]), timeout=20)
            recording = done[0].resource_data
            at = time.monotonic()
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {recording['recordingAccessToken']}"}
                async with http.get(recording["recordingLocation"], headers=headers) as resp:
                    wav = await resp.read()
                    seconds = max(0, len(wav) - 44) / 32000
                    timeline.rest(at, "bob", "GET", "/media/recordings/…", resp.status, f"{seconds:.1f} s of audio")
            at = time.monotonic()
            status = await alice.hang_up(call["id"])
            timeline.rest(at, "alice", "DELETE", f"/v1.0/communications/calls/{call['id'][:8]}…", status)
            await alice_bot.wait_for(lambda n: n.change_type == "deleted" and n.resource_url.endswith(call["id"]))
            await bob_bot.wait_for(lambda n: n.change_type == "deleted" and n.resource_url.endswith(incoming.call_id))
        timeline.notes("alice", alice_bot.notifications, names)
        timeline.notes("bob", bob_bot.notifications, names)
        timeline.print()
        health: dict[str, Any] = node.health()
        print(
            f"\nnode: {health['calls']} active calls, {health['notifications']['delivered']} notifications "
            f"delivered, every one signed (RS256, aud = the bot's app id) and checked by the bot."
        )
        if serve:
            print(
                f"\nServing on {node.public_url} (Ctrl-C to stop). Tenant 'contoso.example'; "
                f"token endpoint {node.public_url}/contoso.example/oauth2/v2.0/token"
            )
            try:
                await asyncio.Event().wait()
            finally:
                await alice_bot.stop()
                await bob_bot.stop()
        await alice_bot.stop()
        await bob_bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep the node running after the demo call")
    parser.add_argument("--db", default=os.environ.get("OPENCOMMS_DEMO_DB", "var/demo.db"), help="SQLite file")
    args = parser.parse_args()
    try:
        fresh_database(Path(args.db))
        asyncio.run(demo(args.serve, Path(args.db)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
