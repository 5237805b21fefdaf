"""The IVR as a stateless worker: any number of these behind one callback URL share every call through Redis.

    python -m examples.ivr.stateless --config examples/ivr/menu.yaml --redis redis://127.0.0.1:6379/0 \
        --listen 127.0.0.1:8081          # one worker; `python -m examples.ivr.cluster` runs several + a proxy

How a worker stays correct when another one dies at any instant:

* It answers a notification only after handling it (not 202 first), so the node keeps one notification per call
  in flight across all workers (per-call order holds globally), and a worker killed mid-notification makes
  the node (or the proxy) send it again, to a live worker.
* A call's document in Redis holds the machine's state and a *journal*: the previous state, the event and how
  many of its actions are done. The machine is pure, so a worker that finds an unfinished journal recomputes
  the actions and performs the rest (at least once), then handles its own event. Notifications already applied
  are remembered in the document, so a redelivered one changes nothing.
* Key timers live in a Redis sorted set; a worker claims a due timer with a short lease, and if it dies the
  lease runs out and another worker fires it. Timers of a call that moved on are ignored by the machine.
* One call's work is serialised by a Redis lock with a short expiry (a dead holder blocks the call for at most
  `LOCK_TTL` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from examples.common import BotSettings, SettingsError, host_port, serve_until_signalled, setup_logging
from examples.ivr.machine import (
    Action,
    Answer,
    CallIncoming,
    CancelMedia,
    CancelTimer,
    Event,
    Finished,
    HangUpCall,
    IvrState,
    Phase,
    PlayPrompts,
    RecordMessage,
    SaveVoicemail,
    StartTimer,
    SubscribeToTones,
    TimerFired,
    TransferCall,
    TransferFailed,
    step,
)
from examples.ivr.menu import MenuConfig, MenuError, load_menu_file
from examples.ivr.notes import context_for, decode_event, encode_event, events_for
from examples.ivr.voicemail import save_voicemail
from opencomms.sdk import (
    CallbackAuthError,
    CallbackValidator,
    CommsClient,
    GraphError,
    JwksCache,
    Notification,
    RedisCallState,
    parse_notifications,
    serve_receiver,
    service_hosted_media,
)

log = logging.getLogger("examples.ivr.stateless")

LOCK_TTL = 3.0
"""Seconds a call's lock outlives a worker that died holding it."""
LOCK_WAIT = 4.5
"""Seconds to wait for a call's lock (below the node's 5 s notification timeout)."""
TIMER_LEASE = 3.0
"""Seconds a claimed timer stays claimed; if its worker dies, another fires it after this."""
TIMER_POLL = 0.1
SEEN_KEEP = 32
"""Notifications remembered per call (enough for any redelivery the node does)."""

_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


class RedisTimers:
    """Key timers of every call in one sorted set (member `call_id|token`, score = due time, wall clock)."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        self._claim = redis.register_script(_CLAIM)

    async def start(self, call_id: str, token: int, seconds: float) -> None:
        await self.redis.zadd(self.key, {f"{call_id}|{token}": time.time() + seconds})

    async def cancel(self, call_id: str, token: int) -> None:
        await self.redis.zrem(self.key, f"{call_id}|{token}")

    async def claim_due(self, lease: float = TIMER_LEASE, limit: int = 50) -> list[tuple[str, int, str]]:
        """Due timers this worker now owns for `lease` seconds: (call id, token, member)."""
        now = time.time()
        due = await self.redis.zrangebyscore(self.key, 0, now, start=0, num=limit)
        owned = []
        for raw in due:
            member = raw.decode() if isinstance(raw, bytes) else str(raw)
            if await self._claim(keys=[self.key], args=[member, now, now + lease]):
                call_id, _, token = member.rpartition("|")
                owned.append((call_id, int(token), member))
        return owned

    async def done(self, member: str) -> None:
        await self.redis.zrem(self.key, member)


def note_key(note: Notification) -> str:
    """Identity of a notification across redeliveries (same delivery id, same content)."""
    digest = hashlib.sha256(json.dumps(note.raw, sort_keys=True).encode()).hexdigest()[:16]
    return f"{note.delivery_id}:{digest}"


class IvrWorker:
    """Handles any notification of any call: state and journal in Redis, actions through the REST client."""

    def __init__(
        self,
        config: MenuConfig,
        client: CommsClient,
        store: RedisCallState,
        redis: aioredis.Redis,
        *,
        prefix: str = "ivr",
        voicemail_dir: Path | None = None,
        name: str = "worker",
    ) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.redis = redis
        self.prefix = prefix
        self.timers = RedisTimers(redis, f"{prefix}:timers")
        self.voicemail_dir = voicemail_dir
        self.name = name
        self.prefetch = [p.to_graph()["mediaInfo"] for p in config.wav_prompts()]

    async def handle(self, note: Notification) -> None:
        """Apply one notification; raises if it could not be handled (the caller answers 5xx so it comes back)."""
        key = note_key(note)
        for i, event in enumerate(events_for(note)):
            await self.feed(note.call_id, event, f"{key}:{i}")

    async def feed(self, call_id: str, event: Event, key: str | None = None) -> None:
        """Apply one event to a call under its lock; `key` identifies a notification (applied at most once)."""
        async with self.store.lock(call_id, timeout=LOCK_TTL, wait=LOCK_WAIT):
            doc = await self.store.get(call_id)
            if doc is None:
                if not isinstance(event, CallIncoming):
                    return  # not a call of ours, or one that has ended
                doc = {"state": IvrState().to_dict(), "seen": []}
            queue = await self._finish_journal(call_id, doc)  # left over by a worker that died
            if key is None or key not in doc["seen"]:
                queue.append(event)
            while queue:
                current = queue.pop(0)
                state = IvrState.from_dict(doc["state"])
                new, actions = step(self.config, state, current)
                if not actions and new == state:
                    continue
                if current is event and key is not None:
                    doc["seen"] = [*doc["seen"], key][-SEEN_KEEP:]
                doc["state"] = new.to_dict()
                doc["journal"] = {"prev": state.to_dict(), "event": encode_event(current), "done": 0}
                await self.store.set(call_id, doc)  # the step is durable before any of its actions
                queue.extend(await self._finish_journal(call_id, doc))

    async def _finish_journal(self, call_id: str, doc: dict[str, Any]) -> list[Event]:
        """Perform the not yet done actions of the last step; returns the events they raised."""
        journal = doc.get("journal")
        if not journal:
            return []
        _, actions = step(self.config, IvrState.from_dict(journal["prev"]), decode_event(journal["event"]))
        raised: list[Event] = []
        for index in range(int(journal["done"]), len(actions)):
            follow_up = await self.perform(call_id, actions[index])
            if follow_up is not None:
                raised.append(follow_up)
            journal["done"] = index + 1
            if index + 1 < len(actions):
                await self.store.set(call_id, doc)
        del doc["journal"]
        if IvrState.from_dict(doc["state"]).phase is Phase.ENDED:
            await self.store.delete(call_id)
        else:
            await self.store.set(call_id, doc)
        return raised

    async def perform(self, call_id: str, action: Action) -> Event | None:
        """Do one action; the node refusing it is logged (the call may have ended meanwhile), not raised."""
        try:
            return await self._perform(call_id, action)
        except GraphError as exc:
            log.warning("%s: %s failed: %s", call_id, type(action).__name__, exc)
            return TransferFailed(exc.code) if isinstance(action, TransferCall) else None

    async def _perform(self, call_id: str, action: Action) -> Event | None:
        c = self.client
        if isinstance(action, Answer):
            await c.answer(call_id, media_config=service_hosted_media(self.prefetch))
        elif isinstance(action, SubscribeToTones):
            await c.subscribe_to_tone(call_id)
        elif isinstance(action, PlayPrompts):
            context = context_for(action.tag) if action.tag else None
            await c.play_prompt(call_id, [p.to_graph() for p in action.prompts], client_context=context)
        elif isinstance(action, RecordMessage):
            await c.record_response(
                call_id,
                prompts=[action.prompt.to_graph()],
                play_beep=action.beep,
                stop_tones=action.stop_tones,
                max_record_duration=action.max_seconds,
                initial_silence_timeout=action.initial_silence,
                max_silence_timeout=action.max_silence,
                client_context=context_for(action.tag),
            )
        elif isinstance(action, CancelMedia):
            await c.cancel_media_processing(call_id)
        elif isinstance(action, StartTimer):
            await self.timers.start(call_id, action.token, action.seconds)
        elif isinstance(action, CancelTimer):
            await self.timers.cancel(call_id, action.token)
        elif isinstance(action, TransferCall):
            await c.transfer(call_id, action.target.to_graph())
        elif isinstance(action, SaveVoicemail):
            if self.voicemail_dir is not None:
                audio = await c.download_recording(action.location, action.token)
                save_voicemail(self.voicemail_dir, action.mailbox, call_id, audio)
        elif isinstance(action, HangUpCall):
            await c.delete_call(call_id)
        elif isinstance(action, Finished):
            result = {"call_id": call_id, "outcome": action.outcome, "keys": action.keys, "worker": self.name}
            await self.redis.rpush(f"{self.prefix}:results", json.dumps(result))
            log.info("%s: call finished: %s", call_id, action.outcome)
        return None

    async def run_timers(self) -> None:
        """Fire due key timers (any worker's) until cancelled."""
        while True:
            try:
                for call_id, token, member in await self.timers.claim_due():
                    await self.feed(call_id, TimerFired(token))
                    await self.timers.done(member)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer sweep failed")
            await asyncio.sleep(TIMER_POLL)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class WorkerEndpoint:
    """The worker's callback endpoint (ASGI): validate the node's token, handle, and only then answer 202.

    A notification that could not be handled gets 500, so the node delivers it again (perhaps to another
    worker). Answering after handling is what keeps per-call order across workers.
    """

    def __init__(self, worker: IvrWorker, validator: CallbackValidator, max_body: int = 1 << 20) -> None:
        self.worker = worker
        self.validator = validator
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status = await self._handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _handle(self, scope: Scope, receive: Receive) -> int:
        if scope.get("method") != "POST":
            return 405
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        try:
            claims = await self.validator.validate(headers.get(b"authorization", b"").decode("latin-1"))
        except CallbackAuthError as exc:
            return exc.status
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return 413
            if not message.get("more_body", False):
                break
        delivery = headers.get(b"opencomms-delivery-id", b"").decode("latin-1")
        try:
            notes = parse_notifications(json.loads(body), delivery_id=delivery, tenant_id=claims.get("tid"))
        except ValueError:
            return 400
        try:
            for note in notes:
                await self.worker.handle(note)
        except Exception:
            log.exception("could not handle a notification; the node will send it again")
            return 500
        return 202

    async def aclose(self) -> None:
        await self.validator.jwks.close()


@asynccontextmanager
async def run_worker(
    config: MenuConfig,
    settings: BotSettings,
    redis_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    prefix: str = "ivr",
    voicemail_dir: Path | None = None,
    name: str = "worker",
) -> AsyncIterator[tuple[str, IvrWorker]]:
    """One worker serving HTTP on host:port; yields (its URL, the worker)."""
    redis = aioredis.Redis.from_url(redis_url)
    store = RedisCallState(prefix=prefix, ttl=3600, client=redis)
    async with settings.client() as client, aiohttp.ClientSession() as session:
        worker = IvrWorker(config, client, store, redis, prefix=prefix, voicemail_dir=voicemail_dir, name=name)
        validator = CallbackValidator(JwksCache(settings.jwks_url, session=session), app_id=settings.app_id)
        timers = asyncio.create_task(worker.run_timers())
        try:
            async with serve_receiver(WorkerEndpoint(worker, validator), host, port) as url:
                yield url, worker
        finally:
            timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timers
            await redis.aclose()


async def _main(args: argparse.Namespace) -> None:
    config = load_menu_file(args.config)
    settings = BotSettings.from_args(args)
    host, port = args.listen
    voicemail = Path(args.voicemail_dir) if args.voicemail_dir else None
    async with run_worker(
        config, settings, args.redis, host=host, port=port, prefix=args.prefix, voicemail_dir=voicemail, name=args.name
    ) as (url, _):
        await serve_until_signalled(f"READY {url}")  # the cluster launcher reads this line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.ivr.stateless", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(Path(__file__).with_name("menu.yaml")), help="menu YAML file")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL shared by the workers")
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any)")
    parser.add_argument("--prefix", default="ivr", help="Redis key prefix (one per IVR)")
    parser.add_argument("--voicemail-dir", help="where voicemail WAVs are saved (shared by the workers)")
    parser.add_argument("--name", default="worker", help="this worker's name in logs and results")
    parser.add_argument("-v", "--verbose", action="store_true")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        asyncio.run(_main(args))
    except (MenuError, SettingsError) as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
