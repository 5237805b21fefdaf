"""Call-me bot: places an outbound call, speaks a one-time code (text-to-speech) and waits for a DTMF confirmation.

    BOT_SECRET=... python -m examples.callme --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --to +14255550123 [--source-instance <instance id>] [--code 123456]

`--to` is a phone number (reached through the node's SIP trunk; `--source-instance` names the application
instance whose number is shown as the caller id) or `--to-app <app id>` for another bot. The result is printed
as one JSON line; the exit status is 0 when the callee pressed 1 to confirm, 1 otherwise.

Written in the straightforward style of the Calling SDK: `await` each step of one call. `call_me()` is the
whole flow for programs and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from examples.common import BotSettings, SettingsError, host_port, setup_logging
from opencomms.sdk import (
    GraphError,
    application_instance_source,
    application_target,
    phone_target,
    serve_receiver,
    text_prompt,
)
from opencomms.sdk.calling import Call, CommunicationsClient, OperationFailed
from opencomms.sdk.calling import CallEnded as CallGone

log = logging.getLogger("examples.callme")

CONFIRM, DECLINE = "1", "2"


@dataclass(frozen=True, slots=True)
class CallMeResult:
    call_id: str
    code: str
    outcome: str
    """"confirmed", "declined", "no response", "not answered", "hung up" or "failed"."""
    keys: str = ""

    @property
    def confirmed(self) -> bool:
        return self.outcome == "confirmed"


def new_code(digits: int = 6) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(digits))


def code_prompt(code: str, voice: str | None = "en-us") -> list[dict[str, Any]]:
    """What the callee hears: the code twice, digit by digit, then the choice."""
    spelled = ", ".join(code)
    text = (
        f"Hello. Your code is: {spelled}. Again: {spelled}. "
        f"Press {CONFIRM} to confirm, or {DECLINE} if you did not ask for it."
    )
    return [text_prompt(text, voice)]


async def _say_and_listen(call: Call, prompts: Sequence[dict[str, Any]], timeout: float) -> str | None:
    """Play `prompts`; a key pressed meanwhile interrupts them. Returns the key, or None after `timeout` of quiet."""
    play = asyncio.create_task(call.play_prompt(prompts))
    tone = asyncio.create_task(call.next_tone())
    try:
        done, _ = await asyncio.wait({play, tone}, return_when=asyncio.FIRST_COMPLETED)
        if tone in done:
            if not play.done():
                await call.cancel_media_processing()  # barge-in
            return tone.result().key
        error = play.exception()
        if isinstance(error, CallGone):
            raise error
        try:
            return (await asyncio.wait_for(asyncio.shield(tone), timeout)).key
        except TimeoutError:
            return None
    finally:
        for task in (play, tone):
            task.cancel()
        await asyncio.gather(play, tone, return_exceptions=True)


async def call_me(
    comms: CommunicationsClient,
    target: dict[str, Any],
    *,
    code: str | None = None,
    source: dict[str, Any] | None = None,
    attempts: int = 2,
    key_timeout: float = 10.0,
    ring_timeout: float = 40.0,
    voice: str | None = "en-us",
) -> CallMeResult:
    """Call `target`, speak the code, wait for 1 (confirm) or 2 (decline); up to `attempts` times."""
    code = code or new_code()
    options: dict[str, Any] = {} if source is None else {"source": source}
    try:
        call = await comms.create_call([target], **options)
    except GraphError as exc:
        log.warning("call could not be placed: %s", exc)
        return CallMeResult("", code, "failed")
    try:
        await call.wait_state("established", timeout=ring_timeout)
    except (CallGone, TimeoutError):
        if not call.terminated.is_set():
            await call.hang_up()
        return CallMeResult(call.id, code, "not answered")
    keys, outcome = "", "no response"
    try:
        await call.subscribe_to_tone()
        prompts = code_prompt(code, voice)
        for _ in range(attempts):
            key = await _say_and_listen(call, prompts, key_timeout)
            if key is None:
                continue
            keys += key
            if key == CONFIRM:
                outcome = "confirmed"
                break
            if key == DECLINE:
                outcome = "declined"
                break
            prompts = [text_prompt("Sorry, that key is not valid.", voice), *code_prompt(code, voice)]
        goodbye = {"confirmed": "Thank you, your code is confirmed.", "declined": "Thank you, nothing was done."}
        await call.play_prompt([text_prompt(f"{goodbye.get(outcome, 'Sorry, no answer.')} Goodbye.", voice)])
        await call.hang_up()
    except CallGone:
        return CallMeResult(call.id, code, "hung up" if outcome == "no response" else outcome, keys)
    except (OperationFailed, GraphError, TimeoutError) as exc:
        log.warning("%s: call-me failed: %s", call.id, exc)
        if not call.terminated.is_set():
            await call.hang_up()
        return CallMeResult(call.id, code, outcome if outcome != "no response" else "failed", keys)
    return CallMeResult(call.id, code, outcome, keys)


@asynccontextmanager
async def callme_client(
    settings: BotSettings, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[CommunicationsClient]:
    """A CommunicationsClient whose notification endpoint is served on host:port (port 0: any free one)."""
    async with settings.client() as client:
        comms = CommunicationsClient(client, callback_uri="", app_id=settings.app_id, jwks_url=settings.jwks_url)
        async with comms, serve_receiver(comms.receiver, host, port) as base:
            comms.callback_uri = f"{base}/callme/calls"
            yield comms


async def _main(args: argparse.Namespace) -> CallMeResult:
    settings = BotSettings.from_args(args)
    target = phone_target(args.to) if args.to else application_target(args.to_app)
    source = application_instance_source(args.source_instance) if args.source_instance else None
    host, port = args.listen
    async with callme_client(settings, host=host, port=port) as comms:
        return await call_me(comms, target, code=args.code, source=source, key_timeout=args.key_timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.callme", description=__doc__.split("\n")[0])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--to", help="phone number to call (E.164, through the node's SIP trunk)")
    who.add_argument("--to-app", help="application id of a bot to call instead")
    parser.add_argument("--source-instance", help="application instance presented as the caller")
    parser.add_argument("--code", help="the code to speak (default: 6 random digits)")
    parser.add_argument("--key-timeout", type=float, default=10.0, help="seconds to wait for a key")
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 0), help="HOST:PORT for notifications")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.code is not None and not (args.code.isdigit() and 1 <= len(args.code) <= 12):
        parser.error("--code must be 1 to 12 digits")
    setup_logging()
    try:
        result = asyncio.run(_main(args))
    except SettingsError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(json.dumps({**asdict(result), "confirmed": result.confirmed}))
    return 0 if result.confirmed else 1


if __name__ == "__main__":
    raise SystemExit(main())
