"""`make demo`: start a node on the embedded SQLite store and show two calls with their timelines.

1. Bot to bot: Alice calls Bob; Bob answers, subscribes to tones and records; Alice speaks a text-to-speech
   prompt and presses keys; Bob's recording is downloaded with its token; Alice hangs up.
2. A phone calls the IVR: a scripted SIP/RTP call on loopback (`opencomms.testing.VirtualCaller`) dials the
   IVR's number; the IVR (examples/ivr when it can be loaded, else a small built-in one) answers and plays its
   menu, the caller presses 3, leaves a spoken message after the beep, presses #, and the IVR hangs up.

`--serve` keeps the node and the IVR running afterwards, so a softphone can call in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from opencomms import blas as _blas  # noqa: F401  (pins BLAS threads before numpy loads)

# isort: split
import numpy as np
import numpy.typing as npt

from opencomms.config import EgressConfig, NodeConfig, SipConfig
from opencomms.media.wav import decode_wav
from opencomms.server import Node
from opencomms.tasks import TaskSet
from opencomms.testing import (
    CallFailed,
    GraphClient,
    Notification,
    RecordingBot,
    VirtualCaller,
    contains,
    running_node,
    speechlike,
)
from opencomms.testing.harness import app_target
from opencomms.testing.listen import SpeechSegment

PERMISSIONS = ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"]
IVR_NUMBER = "+14255550100"
CALLER_NUMBER = "+12065550123"
MESSAGE = "Hello, this is Dana from Fabrikam. Please call me back."

REPOSITORY = Path(__file__).resolve().parents[2]
"""The checkout this module runs from (src layout), where examples/ lives."""

Samples = npt.NDArray[np.int16]
Row = tuple[float, str, str, str, str]


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _sip_port(preferred: int) -> int:
    """`preferred` if it is free for both UDP and TCP on loopback, else another port that is."""
    for candidate in (preferred, *([0] * 20)):
        with socket.socket(type=socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind(("127.0.0.1", candidate))
                port = int(udp.getsockname()[1])
                tcp.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise OSError("no free SIP port on 127.0.0.1")


def _short(url: str, call_id: str) -> str:
    url = url.replace(call_id, call_id[:8] + "…") if call_id else url
    if "/operations/" in url:
        head, _, op_id = url.rpartition("/")
        url = f"{head}/{op_id[:8]}…"
    return url


def describe(change_type: str, data: Any, names: dict[str, str]) -> str:
    """One line for a notification: the state, an operation's outcome, a tone, who calls."""
    data = data if isinstance(data, dict) else {}
    detail = str(data.get("state") or "")
    kind = str(data.get("@odata.type", "")).rsplit(".", 1)[-1]
    if kind.endswith("Operation"):
        detail = f"{kind} {data.get('status')}"
        if data.get("completionReason"):
            detail += f" ({data['completionReason']})"
    if data.get("toneInfo"):
        detail = f"toneInfo #{data['toneInfo']['sequenceId']} {data['toneInfo']['tone']}"
    if change_type == "created":
        identity = data.get("source", {}).get("identity", {})
        caller = identity.get("application", {}).get("id") or identity.get("phone", {}).get("id") or ""
        detail = f"incoming call from {names.get(caller, caller or 'unknown')}"
    result = data.get("resultInfo")
    if result:
        detail += f"  resultInfo {result['code']}/{result['subcode']} ({result['message']})"
    return detail


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[tuple[float, str]] = []

    def add(self, at: float, who: str, text: str) -> None:
        self.rows.append((at, f"{who:5} {text}"))

    def rest(self, at: float, who: str, method: str, path: str, status: int, note: str = "") -> None:
        """A REST request that was sent at `at` (answered with `status`)."""
        self.add(at, who, f"-> {method:6} {path:52} {status} {note}")

    def notification(self, at: float, who: str, change_type: str, url: str, call_id: str, detail: str) -> None:
        self.add(at, who, f"<- {change_type:7} {_short(url, call_id):51} {detail}")

    def notes(self, who: str, items: list[Notification], names: dict[str, str]) -> None:
        for n in items:
            detail = describe(n.change_type, n.resource_data, names)
            self.notification(n.received_at, who, n.change_type, n.resource_url, n.call_id, detail)

    def print(self) -> None:
        for t, line in sorted(self.rows):
            print(f"  {1000 * (t - self.t0):8.1f} ms  {line}")


def fresh_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


# -- part 1: bot to bot ------------------------------------------------------------------------------------


async def bot_to_bot(node: Node, alice_bot: RecordingBot, bob_bot: RecordingBot, secrets: dict[str, str]) -> None:
    names = {alice_bot.app_id: "Alice", bob_bot.app_id: "Bob"}
    print(
        "\n1. Bot to bot. Alice calls Bob; Bob answers, subscribes to tones and records; Alice says a sentence"
        "\n(text-to-speech) and presses 4, 2, #; Bob downloads the recording; Alice hangs up. Timeline:\n"
    )
    timeline = Timeline()
    async with (
        GraphClient(node.public_url, "contoso.example", alice_bot.app_id, secrets["alice"]) as alice,
        GraphClient(node.public_url, "contoso.example", bob_bot.app_id, secrets["bob"]) as bob,
    ):
        timeline.t0 = at = time.monotonic()
        status, call = await alice.create_call(alice_bot.url, [app_target(bob_bot.app_id)])
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


# -- part 2: a phone calls the IVR -------------------------------------------------------------------------


@dataclasses.dataclass
class Ivr:
    """The IVR the phone calls: its webhook URL, what it saw (timeline rows), its recordings."""

    kind: str
    url: str
    rows: Callable[[], list[Row]]
    """(time, changeType, resourceUrl, callId, detail) of each notification it received so far."""
    recordings: list[Samples] = dataclasses.field(default_factory=list)
    voicemail: Any = None
    """Awaitable giving the next saved message as 16 kHz samples (None: look in `recordings`)."""


def _say(text: str) -> dict[str, Any]:
    return {"@odata.type": "#opencomms.textPrompt", "text": text, "voice": "en-us"}


class BuiltinIvr:
    """A small IVR on the harness's RecordingBot and GraphClient: menu, keys, voicemail, goodbye."""

    MENU = "Welcome to Contoso. For our opening hours, press 1. To leave a message, press 3."

    def __init__(self, bot: RecordingBot, client: GraphClient) -> None:
        self.bot = bot
        self.client = client
        self.recordings: list[Samples] = []
        self._tasks = TaskSet("demo-bot")
        bot.responder = self._on_post

    def _on_post(self, body: dict[str, Any]) -> int:
        for item in body.get("value", []):
            if item.get("changeType") == "created":
                call_id = str(item.get("resourceUrl", "")).split("/")[3]
                self._tasks.spawn(self._call(call_id))
        return 202

    async def close(self) -> None:
        await self._tasks.close()

    async def _op(self, call_id: str, action: str, body: Any, timeout: float = 60.0) -> dict[str, Any]:
        status, op, _ = await self.client.request("POST", f"/communications/calls/{call_id}/{action}", body)
        if status != 200:
            raise RuntimeError(f"{action} failed: {status} {op}")
        if op.get("status") in ("completed", "failed"):
            result: dict[str, Any] = op
            return result
        done = await self.bot.wait_for(
            lambda n: n.change_type == "deleted" and n.resource_url.endswith(op["id"]), timeout=timeout
        )
        data: dict[str, Any] = done[0].resource_data
        return data

    def _tones(self, call_id: str) -> list[str]:
        return [
            n.resource_data["toneInfo"]["tone"]
            for n in self.bot.for_call(call_id)
            if isinstance(n.resource_data, dict) and n.resource_data.get("toneInfo")
        ]

    async def _call(self, call_id: str) -> None:
        try:
            await self._script(call_id)
        except (TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            print(f"  (built-in IVR: call {call_id[:8]}… ended early: {type(exc).__name__} {exc})", file=sys.stderr)

    async def _script(self, call_id: str) -> None:
        await self.client.answer(call_id)
        await self.bot.wait_state(call_id, "established", timeout=10)
        await self._op(call_id, "subscribeToTone", {}, timeout=5)
        for _ in range(3):
            key = await self._menu(call_id)
            if key is None:
                continue
            if key == "tone3":
                await self._voicemail(call_id)
                break
            if key == "tone1":
                await self._op(call_id, "playPrompt", {"prompts": [_say("We are open from nine to five.")]})
        else:
            await self._op(call_id, "playPrompt", {"prompts": [_say("Goodbye.")]})
        await self.client.hang_up(call_id)

    async def _menu(self, call_id: str) -> str | None:
        """Play the menu; the first key pressed (during it: barge-in, or up to 8 s after), None if none."""
        seen = len(self._tones(call_id))
        status, menu, _ = await self.client.request(
            "POST", f"/communications/calls/{call_id}/playPrompt", {"prompts": [_say(self.MENU)]}
        )
        if status != 200:
            raise RuntimeError(f"playPrompt failed: {status} {menu}")

        def pressed() -> bool:
            return len(self._tones(call_id)) > seen

        def played() -> bool:
            notes = self.bot.notifications
            return any(n.change_type == "deleted" and n.resource_url.endswith(menu["id"]) for n in notes)

        await self.bot.wait_for(lambda _: pressed() or played(), timeout=60)
        if not pressed():
            try:
                await self.bot.wait_for(lambda _: pressed(), timeout=8)
            except TimeoutError:
                return None
        if not played():  # barge-in: the key stops the menu
            await self.client.request("POST", f"/communications/calls/{call_id}/cancelMediaProcessing", {})
        return self._tones(call_id)[seen]

    async def _voicemail(self, call_id: str) -> None:
        record = {
            "prompts": [_say("Please leave a message after the tone. Press the pound key when you are done.")],
            "playBeep": True,
            "stopTones": ["#"],
            "maxRecordDurationInSeconds": 60,
            "initialSilenceTimeoutInSeconds": 10,
            "maxSilenceTimeoutInSeconds": 5,
        }
        done = await self._op(call_id, "recordResponse", record, timeout=90)
        if done.get("recordingLocation"):
            headers = {"Authorization": f"Bearer {done['recordingAccessToken']}"}
            async with aiohttp.ClientSession() as http, http.get(done["recordingLocation"], headers=headers) as r:
                self.recordings.append(np.array(decode_wav(await r.read())))
        await self._op(call_id, "playPrompt", {"prompts": [_say("Thank you, your message has been saved. Goodbye.")]})


@asynccontextmanager
async def builtin_ivr(node: Node, tenant_id: str, app_id: str, secret: str) -> AsyncIterator[Ivr]:
    bot = await RecordingBot(app_id=app_id, jwks_url=f"{node.public_url}/common/discovery/v2.0/keys").start("/ivr")
    try:
        async with GraphClient(node.public_url, tenant_id, app_id, secret) as client:
            logic = BuiltinIvr(bot, client)

            def rows() -> list[Row]:
                return [
                    (
                        n.received_at,
                        n.change_type,
                        n.resource_url,
                        n.call_id,
                        describe(n.change_type, n.resource_data, {}),
                    )
                    for n in bot.notifications
                ]

            try:
                yield Ivr("built-in IVR (opencomms.demo.BuiltinIvr)", bot.url, rows, recordings=logic.recordings)
            finally:
                await logic.close()
    finally:
        await bot.stop()


@asynccontextmanager
async def example_ivr(node: Node, tenant_id: str, app_id: str, secret: str, operator: str) -> AsyncIterator[Ivr]:
    """examples/ivr (the YAML-menu IVR on the SDK), run in this process; its notifications are observed."""
    if str(REPOSITORY) not in sys.path:  # run from elsewhere: the checkout's examples/
        sys.path.append(str(REPOSITORY))
    app = importlib.import_module("examples.ivr.app")
    menu = importlib.import_module("examples.ivr.menu")
    common = importlib.import_module("examples.common")
    config = menu.load_menu_file(Path(str(app.__file__)).with_name("menu.yaml"), {"IVR_OPERATOR_APP_ID": operator})
    settings = common.BotSettings(node_url=node.public_url, tenant=tenant_id, app_id=app_id, secret=secret)
    voicemail_dir = Path("var/voicemail")
    async with app.run_ivr(config, settings, voicemail_dir=voicemail_dir) as bot:
        seen: list[Row] = []
        ivr = Ivr("examples/ivr (menu.yaml, on the opencomms SDK)", bot.callback_url, lambda: list(seen))
        receiver = bot.comms.receiver
        inner = receiver.handler

        async def observe(note: Any) -> None:  # every notification, as the SDK hands it to the IVR
            detail = describe(note.change_type, note.data, {})
            seen.append((time.monotonic(), note.change_type, note.resource_url, note.call_id, detail))
            await inner(note)

        receiver.handler = observe

        async def message() -> Samples | None:
            result = await bot.next_result(timeout=30)
            path = getattr(result, "voicemail", None)
            return None if path is None else np.array(decode_wav(await asyncio.to_thread(Path(path).read_bytes)))

        ivr.voicemail = message
        yield ivr


async def spoken_message() -> Samples:
    """The caller's message, spoken by espeak-ng (16 kHz); a synthetic voice if espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return speechlike(4.0)
    proc = await asyncio.create_subprocess_exec(
        exe, "--stdout", "-v", "en-us", "-s", "165", MESSAGE, stdout=asyncio.subprocess.PIPE
    )
    wav, _ = await proc.communicate()
    return np.array(decode_wav(wav))


async def phone_call(node: Node, ivr: Ivr, number: str) -> bool:
    """The scripted call; prints its timeline and returns whether it went as expected."""
    sip_host, sip_port = node.config.sip.host, node.sip.port if node.sip else 0
    print(
        f"\n2. A phone calls the IVR ({ivr.kind}). A scripted SIP/RTP call on loopback dials {number};"
        "\nthe IVR answers and plays its menu; the caller presses 3 (barge-in), leaves a message after the beep,"
        "\npresses #,"
        " and the IVR says goodbye and hangs up. Timeline:\n"
    )
    timeline = Timeline()
    message = await spoken_message()
    failure = ""
    async with VirtualCaller((sip_host, sip_port), number=CALLER_NUMBER, display_name="Dana") as caller:
        timeline.t0 = time.monotonic()
        call = await caller.dial(number)
        try:
            await call.wait_answered(timeout=15)
            await call.wait_for_speech(timeout=15)  # the greeting and the menu ...
            await call.hear(2.5)
            await call.press("3")  # ... which the caller interrupts (barge-in)
            await call.wait_for_speech(timeout=15)  # "please leave a message after the tone", then the beep
            await call.wait_for_silence(0.8, timeout=40)
            await call.play_wav(message)
            await call.press("#")
            await call.wait_ended(timeout=20)  # "thank you ... goodbye", then the IVR hangs up (BYE)
        except (TimeoutError, CallFailed, RuntimeError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
            await call.hang_up()
        speech: list[SpeechSegment] = call.speech
        heard = call.heard_seconds
    for entry in call.timeline:
        timeline.add(entry.at, "phone", entry.what.replace("→", "->").replace("←", "<-"))
    for at, change, url, call_id, detail in ivr.rows():
        timeline.notification(at, "ivr", change, url, call_id, detail)
    timeline.print()
    print(
        f"\n  phone: {call.status} {call.reason}, ended by the {call.ended_by}; heard {heard:.1f} s of audio "
        f"with {len(speech)} stretches of sound; {call.rtp_stats.packets_sent} RTP packets sent, "
        f"{call.rtp_stats.packets_received} received, {call.rtp_stats.packets_lost} lost"
    )
    if failure:
        print(f"  the scripted call did not go as expected: {failure}")
        return False
    recording: Samples | None = None
    if ivr.voicemail is not None:
        with contextlib.suppress(TimeoutError):
            recording = await ivr.voicemail()
    elif ivr.recordings:
        recording = ivr.recordings[-1]
    if recording is None:
        print("  the IVR saved no recording")
        return False
    share = contains(recording, message)
    print(
        f"  the IVR's recording: {recording.size / 16000:.1f} s; {100 * share:.0f} % of the caller's "
        f"{message.size / 16000:.1f} s message found in it (100 ms pieces, correlation >= 0.9)"
    )
    return share > 0.5


# -- the whole demo ------------------------------------------------------------------------------------------


@asynccontextmanager
async def start_ivr(node: Node, tenant_id: str, operator: str, builtin: bool) -> AsyncIterator[Ivr]:
    """Register the IVR (an app with the number IVR_NUMBER) and run it: examples/ivr, else the built-in one."""
    app, secret = node.directory.create_app(tenant_id, "Contoso IVR", permissions=PERMISSIONS)
    node.directory.create_instance(app.id, "Contoso main line", phone_number=IVR_NUMBER)
    async with contextlib.AsyncExitStack() as stack:
        ivr: Ivr | None = None
        if not builtin:
            try:
                ivr = await stack.enter_async_context(example_ivr(node, tenant_id, app.id, secret, operator))
            except Exception as exc:  # not there yet or broken: say so and use the built-in one
                print(f"\n(examples/ivr could not be started: {type(exc).__name__}: {exc}; using the built-in IVR)")
        if ivr is None:
            ivr = await stack.enter_async_context(builtin_ivr(node, tenant_id, app.id, secret))
        node.directory.update_app(dataclasses.replace(app, callback_url=ivr.url))
        yield ivr


async def demo(serve: bool, db: Path, sip_port: int, builtin: bool) -> bool:
    """Run the demo; False if the phone call did not go as scripted."""
    cfg = NodeConfig(
        host="127.0.0.1",
        port=_port(8080),
        store_url=f"sqlite:///{db}",
        log_level="warning",
        log_format="text",
        sip=SipConfig(host="127.0.0.1", port=_sip_port(sip_port)),
        egress=EgressConfig(allow=("127.0.0.1", "::1")),  # the demo's bots run on this host
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
        assert node.sip is not None
        print(f"opencomms node on {node.public_url}, SIP on {cfg.sip.host}:{node.sip.port}  (embedded store {db})")
        print(f"  tenant Contoso {tenant.id}")
        print(f"  bot Alice client_id={alice_app.id}  webhook {alice_bot.url}")
        print(f"  bot Bob   client_id={bob_app.id}  webhook {bob_bot.url}")
        ok = False
        try:
            await bot_to_bot(node, alice_bot, bob_bot, {"alice": alice_secret, "bob": bob_secret})
            async with start_ivr(node, tenant.id, bob_app.id, builtin) as ivr:
                ok = await phone_call(node, ivr, IVR_NUMBER)
                health: dict[str, Any] = node.health()
                print(
                    f"\nnode: {health['calls']} active calls, {health['notifications']['delivered']} notifications "
                    f"delivered, every one signed (RS256, aud = the bot's app id) and checked by the bot."
                )
                if serve:
                    sip = f"{cfg.sip.host}:{node.sip.port}"
                    print(
                        f"\nServing on {node.public_url} (Ctrl-C to stop). Tenant 'contoso.example'; "
                        f"token endpoint {node.public_url}/contoso.example/oauth2/v2.0/token"
                        f"\nCall the IVR from a softphone: sip:{IVR_NUMBER}@{sip} (UDP or TCP, no registration;"
                        f" PCMU/PCMA, RFC 4733 DTMF)\n  e.g. baresip: /dial sip:{IVR_NUMBER}@{sip}"
                        f"    SIPp: sipp -sn uac -s {IVR_NUMBER.lstrip('+')} {sip} -m 1"
                    )
                    await asyncio.Event().wait()
        finally:
            await alice_bot.stop()
            await bob_bot.stop()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="keep the node and the IVR running after the demo")
    parser.add_argument("--db", default=os.environ.get("OPENCOMMS_DEMO_DB", "var/demo.db"), help="SQLite file")
    parser.add_argument("--sip-port", type=int, default=5060, help="SIP port (another free one if taken)")
    parser.add_argument("--builtin-ivr", action="store_true", help="use the built-in IVR, not examples/ivr")
    args = parser.parse_args()
    try:
        fresh_database(Path(args.db))
        ok = asyncio.run(demo(args.serve, Path(args.db), args.sip_port, args.builtin_ivr))
    except KeyboardInterrupt:
        return
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
