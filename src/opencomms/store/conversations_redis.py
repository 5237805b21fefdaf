"""The Redis conversation store: many nodes share the conversations, each one owned by one node under a lease.

Each commit is one Lua script (atomic in Redis, see store.redis_common for the keys): it checks that this node
holds the conversation's lease with the token it was granted and that the stored version is the one the writer
loaded, then writes the document, its leg index, its deadline and its outbox entries (appended to the outbox stream
and read into this node's pending list of the consumer group in the same step). A node whose lease lapsed is
refused with `LeaseLost` (a StaleVersion: the ledger drops its cached copy and reloads, taking the lease again only
if nobody else did), and a lease token lower than the one the document was last written with is refused too, so a
node back from a pause or a partition never overwrites newer state.

Leases: `load` takes the lease of a conversation nobody holds (SET with a TTL and a token from a counter; taking
over another node's conversation also claims that node's pending notifications first, see `on_claimed`), renews
it when it is this node's, and refuses with `NotOwner` (503, Retry-After) when another live node holds it. A
background task renews every lease this node holds every third of the lease time; leases go with a deleted
conversation and are handed back on close. Timers (`due`, `next_deadline`) list only conversations this node owns
or nobody owns. Commits, loads, timer queries and outbox bookkeeping share one pipeline at a time
(store.redis_batch). Redis errors (refused, timed out, read-only, out of memory) are StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rx

from opencomms.domain.errors import ServiceUnavailable
from opencomms.store import redis_common as rc
from opencomms.store.base import OutboxEntry, StoreUnavailable
from opencomms.store.conversations import ConversationStore, Loaded, StaleVersion, check_commit
from opencomms.store.redis_batch import Pipeliner, sha1
from opencomms.store.sqlite import _dumps, _loads
from opencomms.tasks import honour_cancel

__all__ = ["LeaseLost", "NotOwner", "RedisConversationStore"]

log = logging.getLogger("opencomms.store")

FAULTS = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, rx.ReadOnlyError, rx.OutOfMemoryError)
"""redis-py errors that are the environment's, not a bug: StoreUnavailable."""


class LeaseLost(StaleVersion):
    """This node no longer holds the conversation's lease (it lapsed, or another node took it): nothing of the
    write was stored. A StaleVersion, so the ledger reloads the conversation (taking the lease again only if it is
    free) and reruns the command on what the store holds."""

    def __init__(self, conv_id: str, owner: str) -> None:
        super().__init__(conv_id, -1, -1)
        self.args = (f"conversation {conv_id}: this node's lease lapsed (owner now: {owner or 'nobody'})",)
        self.owner = owner
        """The lease's holder when the write was refused ("node|token"; empty: nobody)."""


class NotOwner(ServiceUnavailable):
    """Another node owns the conversation: this node may not load it for writing (503 + Retry-After until the
    request is forwarded to its owner, or the owner's lease lapses)."""

    def __init__(self, conv_id: str, owner: str) -> None:
        super().__init__(f"conversation {conv_id} is served by node {owner.split('|')[0]}", retry_after=1)
        self.conv_id = conv_id
        self.owner = owner
        self.owner_node = owner.split("|")[0]
        """The owning node's id: the API forwards the request there (cluster.forward)."""


REMEMBERED = 8192
"""Conversations (and legs) of other nodes remembered at most; past it the memory starts afresh."""

_COMMIT, _LOAD, _DUE, _REMOVE = (sha1(script) for script in (rc.COMMIT, rc.LOAD, rc.DUE, rc.REMOVE))


def _settle(done: asyncio.Future[int], raw: asyncio.Future[Any], outcome: Callable[[Any], int]) -> None:
    """Hand a commit's caller its outcome, once the pipeline has the reply."""
    if done.done():
        return
    if raw.cancelled():
        done.cancel()
        return
    exc = raw.exception()
    if exc is None:
        try:
            done.set_result(outcome(raw.result()))
        except Exception as refused:  # StaleVersion, LeaseLost, NotOwner
            done.set_exception(refused)
    else:
        done.set_exception(exc)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConversationStore(ConversationStore):
    """Conversations and the outbox in one Redis, shared by the nodes (see the module notes)."""

    def __init__(self, target: rc.RedisTarget, *, client: aioredis.Redis | None = None) -> None:
        rc.check_url(target.url)
        self.target = target
        self.node = target.node
        wait = max(1.0, 4 * target.timeout)  # the loop does not wait for these: a loaded Redis gets longer
        self._redis = client or aioredis.Redis.from_url(target.url, socket_timeout=wait, socket_connect_timeout=wait)
        k = target.key
        self._fixed = {
            "legs": k("legs"),
            "deadlines": k("deadlines"),
            "convs": k("convs"),
            "fence": k("fence"),
            "outbox": k("outbox"),
            "seq": k("outbox", "seq"),
            "ids": k("outbox", "ids"),
            "state": k("outbox", "state"),
        }
        self._owner_prefix = k("owner") + ":"
        self._renew_script = self._redis.register_script(rc.RENEW)
        self._release_script = self._redis.register_script(rc.RELEASE)
        self._keep_script = self._redis.register_script(rc.KEEP)
        self._unowned_script = self._redis.register_script(rc.UNOWNED)
        self._pipe = Pipeliner(
            self._redis,
            [rc.COMMIT, rc.LOAD, rc.DUE, rc.REMOVE],
            lambda exc: rc.unavailable(exc, rc.redacted(self.target.url)),
            FAULTS,
        )
        """Commits, loads, timers and outbox bookkeeping: one pipeline at a time (store.redis_batch)."""
        self._held: dict[str, str] = {}
        """conversation id -> the lease token this node holds on it."""
        self._renewer: asyncio.Task[None] | None = None
        self._group = False
        self._closed = False
        self.outbox_poll = target.poll
        """Seconds between the dispatcher's claims (notify.claims)."""
        self.on_claimed: Callable[[list[OutboxEntry]], None] | None = None
        """Hears the notifications taken over with a conversation (the dispatcher's claim loop sets it)."""
        self.leases_lost = 0
        """Leases found taken or lapsed when renewing."""
        self._others: dict[str, tuple[str, float]] = {}
        """conversation id -> (its owner "node|token", until when): another node's conversation, refused with
        NotOwner from memory for a third of a lease (a request forwarded to a node that no longer owns it is answered
        503 + Retry-After; a conversation found unowned by the sweep is forgotten here at once)."""
        self._leg_convs: dict[str, tuple[str, float]] = {}
        """leg id -> (conversation id, until when): the store's leg index, remembered as long as `_others`."""

    @property
    def leases(self) -> int:
        """Conversations this node holds the lease of."""
        return len(self._held)

    def _conv(self, conv_id: str) -> str:
        return self.target.key("conv", conv_id)

    def _owner(self, conv_id: str) -> str:
        return self._owner_prefix + conv_id

    def _script(self, sha: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        if self._closed:
            raise StoreUnavailable("the conversation store is closed", reason="unavailable")
        return self._pipe.submit("EVALSHA", sha, len(keys), *keys, *args)

    async def _call(self, pending: Awaitable[Any]) -> Any:
        if self._closed:
            if isinstance(pending, Coroutine):
                pending.close()
            raise StoreUnavailable("the conversation store is closed", reason="unavailable")
        try:
            result = await pending
        except FAULTS as exc:
            raise rc.unavailable(exc, rc.redacted(self.target.url)) from exc
        honour_cancel()  # redis-py may have swallowed a cancellation: this caller must not go on
        return result

    async def _ready(self) -> None:
        """Once: the consumer group exists, the lease renewal runs."""
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(), name="opencomms-leases")
        if not self._group:
            try:
                await self._call(self._redis.xgroup_create(self._fixed["outbox"], rc.GROUP, id="0", mkstream=True))
            except rx.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._group = True

    # -- conversations ---------------------------------------------------------------------------------------
    def _remember(self, memory: dict[str, tuple[str, float]], key: str, value: str) -> None:
        if len(memory) >= REMEMBERED:
            memory.clear()
        memory[key] = (value, time.monotonic() + self.target.lease / 3)

    @staticmethod
    def _recall(memory: dict[str, tuple[str, float]], key: str) -> str | None:
        known = memory.get(key)
        if known is None:
            return None
        if known[1] > time.monotonic():
            return known[0]
        del memory[key]
        return None

    async def load(self, conv_id: str) -> Loaded | None:
        await self._ready()
        owner = None if conv_id in self._held else self._recall(self._others, conv_id)
        if owner is not None:  # another node's, a moment ago: no round trip to learn it again
            raise NotOwner(conv_id, owner)
        res = await self._script(
            _LOAD, [self._conv(conv_id), self._owner(conv_id), self._fixed["fence"]], [self.node, self.target.lease_ms]
        )
        tag = _s(res[0])
        if tag == "owner":
            self._held.pop(conv_id, None)
            self._remember(self._others, conv_id, _s(res[1]))
            raise NotOwner(conv_id, _s(res[1]))
        self._others.pop(conv_id, None)
        if tag == "none":
            return None
        if conv_id not in self._held and self._leg_convs:  # taken over: its legs are this node's to write now
            self._leg_convs.clear()  # (rare: cheaper to relearn every remembered leg than to search for its own)
        self._held[conv_id] = _s(res[1])
        previous = _s(res[4])
        if previous:  # a takeover: the last writer's undelivered notifications go before anything this one adds
            await self._adopt(previous)
        return Loaded(_loads(res[2]), int(res[3]))

    async def _adopt(self, node: str) -> None:
        """Claim every notification pending on `node` (whose lease on a conversation lapsed) and hand them to
        `on_claimed` at once, without waiting for them to go idle: per-call order across a takeover."""
        out = self._fixed["outbox"]
        pending = await self._call(self._redis.xpending_range(out, rc.GROUP, "-", "+", 10_000, consumername=node))
        if not pending:
            return
        ids = [p["message_id"] for p in pending]
        claimed = await self._call(self._redis.xclaim(out, rc.GROUP, self.node, 0, ids))
        entries = await self._decode(claimed)
        if entries:
            log.info("took over %d notifications of node %s", len(entries), node)
            if self.on_claimed is not None:
                self.on_claimed(entries)

    def commit(
        self,
        conv_id: str,
        expected_version: int,
        doc: dict[str, Any] | None,
        outbox: Sequence[OutboxEntry] = (),
        *,
        legs: Collection[str] | None = None,
        deadline: float | None = None,
    ) -> Awaitable[int]:
        check_commit(expected_version, doc)
        token = self._held.get(conv_id)
        if token is None:  # a new conversation takes its lease in the write; any other write needs one held
            token = "" if expected_version == 0 else "-"
        text = "" if doc is None else _dumps(doc)  # fails here, before anything is sent
        entries = list(outbox)
        args: list[Any] = [
            conv_id,
            expected_version,
            text,
            "del" if doc is None else "put",
            "-" if legs is None else orjson.dumps(list(legs)),
            "" if deadline is None else repr(deadline),
            self.node,
            token,
            self.target.lease_ms,
            len(entries),
            *rc.entry_args(entries),
        ]
        if not self._group:  # the first write: the consumer group first
            return asyncio.ensure_future(self._first_commit(conv_id, expected_version, args))
        # Queued now: the write goes on even if the caller is cancelled (await the result to learn the outcome).
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._send_commit(conv_id, args).add_done_callback(
            lambda raw: _settle(done, raw, lambda res: self._committed(conv_id, expected_version, args, res))
        )
        return done

    async def _first_commit(self, conv_id: str, expected: int, args: list[Any]) -> int:
        await self._ready()
        return self._committed(conv_id, expected, args, await self._send_commit(conv_id, args))

    def _send_commit(self, conv_id: str, args: list[Any]) -> asyncio.Future[Any]:
        f = self._fixed
        keys = [self._conv(conv_id), self._owner(conv_id), f["legs"], f["deadlines"], f["convs"], f["fence"]]
        return self._script(_COMMIT, [*keys, f["outbox"], f["seq"], f["ids"]], args)

    def _committed(self, conv_id: str, expected: int, args: list[Any], res: Any) -> int:
        """The outcome of a commit script's reply: the new version, or the refusal as an error."""
        tag = _s(res[0])
        if tag == "ok":
            version = int(res[1])
            if args[3] == "del":
                self._held.pop(conv_id, None)
            else:
                self._held[conv_id] = _s(res[2])
            return version
        if tag == "stale":
            raise StaleVersion(conv_id, expected, int(res[1]))
        self._held.pop(conv_id, None)
        if tag == "owner":
            raise NotOwner(conv_id, _s(res[1]))
        raise LeaseLost(conv_id, _s(res[1]))

    async def find_leg(self, leg_id: str, *, remembered: bool = True) -> str | None:
        """The conversation of leg `leg_id` (remembered for a third of a lease; `remembered=False`: ask Redis, for
        whether the conversation still exists)."""
        known = self._recall(self._leg_convs, leg_id) if remembered else None
        if known is not None:
            return known
        got = await self._pipe.submit("HGET", self._fixed["legs"], leg_id)
        if got is None:
            return None
        conv_id = _s(got)
        if conv_id not in self._held:  # this node's own writes change its legs: only other nodes' are remembered
            self._remember(self._leg_convs, leg_id, conv_id)
        return conv_id

    async def due(self, now: float, limit: int = 256) -> list[tuple[str, float]]:
        return await self._due(repr(now), limit)

    async def _due(self, now: str, limit: int) -> list[tuple[str, float]]:
        await self._ready()
        res = await self._script(_DUE, [self._fixed["deadlines"]], [now, limit, self.node, self._owner_prefix])
        return [(_s(res[i]), float(res[i + 1])) for i in range(0, len(res), 2)]

    async def next_deadline(self) -> float | None:
        first = await self._due("+inf", 1)
        return first[0][1] if first else None

    async def live(self, after: str = "", limit: int = 1000) -> list[str]:
        start = f"({after}" if after else "-"
        ids = await self._call(self._redis.zrange(self._fixed["convs"], start, "+", bylex=True, offset=0, num=limit))
        return [_s(i) for i in ids]

    async def unowned(self, limit: int = 256) -> list[str]:
        """Live conversations whose lease nobody holds (their owner died or let go), at most `limit`: the cluster's
        sweep loads them, which ends their orphaned legs and fires their timers (cluster.orphans)."""
        found: list[str] = []
        start = 0
        while len(found) < limit:
            res = await self._call(
                self._unowned_script(keys=[self._fixed["convs"]], args=[self._owner_prefix, limit - len(found), start])
            )
            found += [_s(i) for i in res[1:]]
            for conv_id in found:  # its owner is gone: the next load asks Redis (and takes it over)
                self._others.pop(conv_id, None)
            start = int(res[0])
            if start == 0:
                break
        return found

    # -- leases ----------------------------------------------------------------------------------------------
    async def _renew_loop(self) -> None:
        while True:
            honour_cancel()
            await asyncio.sleep(self.target.lease / 3)
            try:
                await self.renew()
            except StoreUnavailable as exc:
                log.warning("conversation leases not renewed: %s", exc.message)
            except Exception:
                log.exception("renewing conversation leases failed")

    async def renew(self) -> list[str]:
        """Extend every lease this node holds; returns (and forgets) the conversations whose lease was lost."""
        lost: list[str] = []
        held = list(self._held.items())
        for start in range(0, len(held), 500):
            chunk = held[start : start + 500]
            res = await self._call(
                self._renew_script(
                    keys=[self._owner(c) for c, _ in chunk],
                    args=[self.node, self.target.lease_ms, *(t for _, t in chunk)],
                )
            )
            for i in res:
                conv_id, token = chunk[int(i) - 1]
                if self._held.get(conv_id) == token:  # not ended (deleted, lease let go) while the script ran
                    del self._held[conv_id]
                    lost.append(conv_id)
        if lost:
            self.leases_lost += len(lost)
            log.warning("lost the lease of %d conversations", len(lost))
        return lost

    # -- outbox ----------------------------------------------------------------------------------------------
    async def _read(self, start: str, count: int) -> list[OutboxEntry]:
        """XREADGROUP from `start` (">": new entries; "0": this node's pending ones), decoded."""
        got = await self._call(self._redis.xreadgroup(rc.GROUP, self.node, {self._fixed["outbox"]: start}, count=count))
        pairs = got[0][1] if got else []
        return await self._decode(pairs)

    async def _decode(self, pairs: list[Any]) -> list[OutboxEntry]:
        gone = [sid for sid, fields in pairs if not fields]
        if gone:  # deleted while pending (finished elsewhere): acknowledge
            await self._call(self._redis.xack(self._fixed["outbox"], rc.GROUP, *gone))
        live = [(sid, fields) for sid, fields in pairs if fields]
        if not live:
            return []
        ids = [_s(fields.get(b"i", fields.get("i"))) for _, fields in live]
        states = await self._call(self._redis.hmget(self._fixed["state"], ids))
        entries = [rc.decode_entry(fields, state) for (_, fields), state in zip(live, states, strict=True)]
        return sorted((e for e in entries if e is not None), key=lambda e: e.seq)

    async def outbox_load(self) -> list[OutboxEntry]:
        """This node's pending entries (a restart with the same node id) and any entry nobody has read yet."""
        await self._ready()
        mine = await self._read("0", 100_000)
        return mine + await self._read(">", 100_000)

    async def outbox_claim(self) -> list[OutboxEntry]:
        """Keep this node's pending entries fresh, then take the entries of nodes silent for `claim_idle`
        (XAUTOCLAIM) and the entries nobody has read: what the dispatcher should deliver besides its own."""
        await self._ready()
        out = self._fixed["outbox"]
        await self._call(self._keep_script(keys=[out], args=[self.node, self.target.claim_idle_ms // 3]))
        claimed: list[Any] = []
        cursor = "0-0"
        for _ in range(16):
            res = await self._call(
                self._redis.xautoclaim(out, rc.GROUP, self.node, self.target.claim_idle_ms, cursor, count=256)
            )
            claimed += res[1]
            cursor = _s(res[0])
            if cursor == "0-0":
                break
        entries = await self._decode(claimed)
        if entries:
            log.info("claimed %d notifications of silent nodes", len(entries))
        return entries + await self._read(">", 1000)

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        ids = list(entry_ids)
        f = self._fixed
        for start in range(0, len(ids), 500):
            await self._script(_REMOVE, [f["outbox"], f["ids"], f["state"]], ids[start : start + 500])

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        mapping = {e.id: rc.encode_state(e) for e in entries}
        if mapping:
            await self._pipe.submit("HSET", self._fixed["state"], *(v for item in mapping.items() for v in item))

    async def aclose(self) -> None:
        if self._closed:
            return
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        held, self._held = list(self._held.items()), {}
        with contextlib.suppress(*FAULTS):  # the leases lapse by themselves anyway
            for start in range(0, len(held), 500):
                chunk = held[start : start + 500]
                await self._release_script(
                    keys=[self._owner(c) for c, _ in chunk], args=[self.node, *(t for _, t in chunk)]
                )
        self._closed = True
        await self._pipe.aclose()
        await self._redis.aclose()
