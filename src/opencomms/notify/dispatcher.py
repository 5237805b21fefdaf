"""Notification dispatcher: drains the store's outbox by POSTing each entry to its bot's callback URL.

Owns the HTTP client session, one FIFO lane per order key (call), retry timers and a fixed pool of workers.
It must not build notification bodies, mint tokens or touch call state: it gets bytes, a signer and a policy.

Design notes
------------
* **submit and transactions.** `submit()` is synchronous: it appends the entry to the store (inside the
  caller's store transaction, if any) and *stages* it in memory. Staged entries reach the lanes on a later
  loop iteration (`loop.call_soon`), i.e. after the caller's synchronous code, including any enclosing
  `with store.transaction():`, has finished, so nothing is sent before its state change commits.
  A plain `store.transaction()` that rolls back cannot be observed by the dispatcher (the Store interface
  has no per-entry lookup), so the notification of a rolled-back change would still be sent once.
  Blocks that can roll back should therefore use `Dispatcher.transaction()`: it wraps `store.transaction()`
  and keeps the entries submitted inside it back until the outermost block commits, discarding them on
  rollback. Like the store, it is connection-wide: never `await` inside a transaction.
* **Task model.** `max_in_flight` worker tasks, owned by the dispatcher's TaskGroup, take order keys from
  one ready queue. A key is in that queue at most once and only while its head entry is due and not in
  flight, which gives strict per-key order with no per-key locks; a failing head blocks only its own key.
  Retry deadlines are loop timers (`call_later`) that put the key back in the queue; nothing polls.
* **HTTP client.** POSTs to http:// URLs go through `notify.http1` (keep-alive connections, httptools), several
  times cheaper per request than aiohttp; https, and every URL when a `session_factory` is given, use aiohttp.
* **Egress policy.** Every attempt and every redirect hop is checked by the node's egress policy
  (`opencomms.net.egress`): URL and IP literal before the POST, host names at connect time by its checking
  resolver (both clients connect only to checked addresses). A refused destination drops the entry (counted as
  `refused`); a refused redirect never moves the callback.
* **Redirects.** 301/302/307/308 re-POST the same body and headers (the bearer token included, as Graph
  does) to the resolved Location, up to `max_redirects` hops. When the chain ends somewhere else, the
  head entry and every later entry of that key still aimed at the old URL move to the new one (persisted),
  and `on_redirect(order_key, new_url)` is called once so the owner can update the call's callbackUri.
* **Delivery guarantee.** At least once: an entry leaves the store only after a final outcome (2xx, drop or
  give-up). An attempt cut short by `aclose()` or a crash is repeated later with the same
  `opencomms-delivery-id`, which bots use to drop duplicates.
* **Two ways in, one outbox.** A conversation command's notifications are written by the ledger with the
  conversation (the async conversation store) and handed over with `release()` once committed; media operations
  and tones still `submit()` through the synchronous store. Both write the same outbox (the SQLite file's table,
  or the node's MemoryStore behind the memory conversation store); the dispatcher loads, removes and updates
  entries through the async outbox (`outbox`), whose writes the SQLite store merges with its commits.
* **Batched removals.** Finished entries are not removed from the store one commit each: they leave together
  after `remove_batch_s` (5 ms), in one write, and on close. A lane moves on
  to its next entry only once its head's removal has committed, so that a crash re-sends at most the one entry
  per key that was in flight (with the same delivery id).
* **Storage faults.** A removal batch, a retry's bookkeeping or a redirect's update that cannot be written (disk
  full, the write lock held elsewhere) is logged once per fault streak and tried again `fault_retry` seconds later;
  it never ends a worker, the dispatcher or the node. Entries not yet removed may be delivered again (same id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol

import aiohttp
from yarl import URL

from opencomms.domain.ids import new_id
from opencomms.net.egress import EgressPolicy, EgressRefused, refusal
from opencomms.notify.claims import ClaimingOutbox, claim_loop
from opencomms.notify.http1 import Http1Poster
from opencomms.notify.retry import Outcome, RetryPolicy, classify, parse_retry_after
from opencomms.store.base import OutboxEntry, Store

__all__ = ["DispatchStats", "Dispatcher"]

log = logging.getLogger("opencomms.notify")

_DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class DispatchStats:
    """A snapshot of the dispatcher's counters since it started."""

    delivered: int
    """Entries a bot acknowledged with a 2xx."""
    retried: int
    """Failed attempts that were rescheduled."""
    dropped: int
    """Entries removed without delivery because the answer ruled out a retry (4xx, bad redirect)."""
    redirected: int
    """Redirect hops followed."""
    given_up: int
    """Entries removed after exhausting the retry policy."""
    refused: int
    """Entries dropped because their URL, or a redirect's Location, is a destination the egress policy refuses
    (also counted in `dropped`)."""
    pending: int
    """Entries accepted but not finished yet (staged, queued, waiting for a retry or in flight)."""


class Outbox(Protocol):
    """The outbox as the dispatcher reads it (`store.conversations.ConversationStore` implements it)."""

    async def outbox_load(self) -> list[OutboxEntry]: ...

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None: ...

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None: ...


class _SyncOutbox:
    """The synchronous store's outbox behind the async interface (a dispatcher without a conversation store)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def outbox_load(self) -> list[OutboxEntry]:
        return self._store.outbox_load()

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        with self._store.transaction():
            self._store.outbox_remove_many(list(entry_ids))

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        with self._store.transaction():
            for entry in entries:
                self._store.outbox_update(entry)


class _LaneState(enum.Enum):
    IDLE = enum.auto()
    """Nothing scheduled; a lane with entries never stays idle."""
    READY = enum.auto()
    """The key sits in the ready queue."""
    SENDING = enum.auto()
    """A worker is attempting the head entry."""
    WAITING = enum.auto()
    """A retry timer is armed for the head entry."""


class _Lane:
    """The pending entries of one order key, in seq order; the head is the only one ever attempted."""

    __slots__ = ("entries", "state", "timer")

    def __init__(self) -> None:
        self.entries: collections.deque[OutboxEntry] = collections.deque()
        self.state = _LaneState.IDLE
        self.timer: asyncio.TimerHandle | None = None


class _RunState(enum.Enum):
    NEW = enum.auto()
    RUNNING = enum.auto()
    CLOSED = enum.auto()


class _Unsendable(Exception):
    """The URL cannot be requested at all (malformed, not http/https)."""


class Dispatcher:
    """Delivers outbox entries over HTTP: in order per order key, retried, redirected, bounded."""

    def __init__(
        self,
        store: Store,
        *,
        sign: Callable[[str, str], str],
        policy: RetryPolicy = _DEFAULT_POLICY,
        timeout: float = 5.0,
        max_in_flight: int = 256,
        max_redirects: int = 5,
        on_redirect: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        user_agent: str = "opencomms/0.1",
        remove_batch_s: float = 0.005,
        fault_retry: float = 1.0,
        egress: EgressPolicy | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self._store = store
        self._outbox: Outbox = outbox if outbox is not None else _SyncOutbox(store)
        """Where entries are loaded, removed and updated (the same outbox `store` appends to)."""
        self._sign = sign
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_s = timeout
        self._fast: Http1Poster | None = None
        self._max_in_flight = max_in_flight
        self._max_redirects = max_redirects
        self._on_redirect = on_redirect
        self._clock = clock
        self._session_factory = session_factory
        self._user_agent = user_agent
        self._rand = random.Random()
        self._remove_batch_s = remove_batch_s
        self._fault_retry = fault_retry
        self._faulted = False
        """The last store write failed (a fault streak is logged once)."""
        self.store_faults = 0
        """Store writes that failed and were retried later."""
        self._egress = egress
        """Where deliveries may go; None (tests of the dispatcher alone) checks nothing. The node always gives one."""
        self._passed: set[str] = set()
        """URLs that passed the egress policy's URL check (a verdict that depends only on the URL and the policy)."""
        self._finished: list[tuple[str, str, _Lane]] = []
        """(entry id, key, lane) of heads with a final outcome, not yet removed from the store: their lanes move on
        only once the removal commits, so that a crash re-sends at most the one head per key in flight."""
        self._removal_armed = False
        """A worker waits to remove the finished entries."""

        self._run = _RunState.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stack = contextlib.AsyncExitStack()
        self._workers: list[asyncio.Task[None]] = []
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._lanes: dict[str, _Lane] = {}
        self._staged: list[OutboxEntry] = []
        self._flush_handle: asyncio.Handle | None = None
        self._tx_depth = 0
        self._tx_staged: list[OutboxEntry] = []
        """Entries submitted inside `transaction()`: written when its outermost block ends, staged on commit."""
        self._idle = asyncio.Event()
        self._idle.set()

        self._pending = 0
        self._delivered = 0
        self._retried = 0
        self._dropped = 0
        self._redirected = 0
        self._given_up = 0
        self._refused = 0
        self.on_staged: Callable[[OutboxEntry], None] | None = None
        """Observer of every entry committed for delivery (the metrics read call ends from it); None: none."""
        self.on_delivered: Callable[[float], None] | None = None
        """Observer of each delivery's latency (seconds from submit to the bot's 2xx); None: none."""

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown(exc_type, exc, tb)

    async def start(self) -> None:
        """Open the HTTP session, load every pending entry from the store and start the workers.

        Call `start()` and `aclose()` from the same task (or use `async with`): the worker TaskGroup
        belongs to it. Storage faults inside a worker are retried (see the module notes), never raised there.
        """
        if self._run is not _RunState.NEW:
            raise RuntimeError("a Dispatcher can be started once")
        self._loop = asyncio.get_running_loop()
        try:
            self._session = self._session_factory() if self._session_factory else self._default_session()
            self._stack.push_async_callback(self._session.close)
            if self._session_factory is None:  # http:// callbacks take the lighter client (see notify.http1)
                self._fast = Http1Poster(
                    timeout=self._timeout_s, max_idle_per_origin=self._max_in_flight, egress=self._egress
                )
                self._stack.callback(self._fast.close)
            group = await self._stack.enter_async_context(asyncio.TaskGroup())
            # Start it before anything submits or releases: an entry written while the load is under way could be
            # missed until the next start.
            for entry in await self._outbox.outbox_load():
                self._pending += 1
                self._enqueue(entry)
            if self._pending:
                self._idle.clear()
            self._run = _RunState.RUNNING
            self._workers = [
                group.create_task(self._work(), name=f"notify-worker-{i}") for i in range(self._max_in_flight)
            ]
            if isinstance(self._outbox, ClaimingOutbox):  # a cluster's outbox: deliver what no live node holds
                claims = claim_loop(self._outbox, self.held_ids, self.release, lambda e: self._fault(e, "claiming"))
                self._workers.append(group.create_task(claims, name="notify-claims"))
        except BaseException:
            self._run = _RunState.CLOSED
            self._forget()
            await self._stack.aclose()
            raise

    async def aclose(self) -> None:
        """Cancel in-flight attempts (their entries stay in the store) and close the session. Idempotent."""
        await self._shutdown(None, None, None)

    async def _shutdown(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._run is _RunState.CLOSED:
            return
        self._run = _RunState.CLOSED
        try:
            await self._remove_finished()
        except Exception:  # the store is broken or closed: those entries are delivered again later
            log.exception("removing delivered notifications from the store failed")
        self._forget()
        for worker in self._workers:
            worker.cancel()
        self._workers = []
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            self._idle.set()  # wake wait_idle() callers; they see the closed state

    def _forget(self) -> None:
        """Drop all in-memory scheduling state; the store keeps every unfinished entry."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for lane in self._lanes.values():
            if lane.timer is not None:
                lane.timer.cancel()
        self._lanes.clear()
        self._staged.clear()
        self._tx_staged.clear()
        self._ready = asyncio.Queue()
        self._pending = 0

    def _default_session(self) -> aiohttp.ClientSession:
        if self._egress is not None:
            connector = self._egress.connector(limit=self._max_in_flight, limit_per_host=0)
        else:
            connector = aiohttp.TCPConnector(limit=self._max_in_flight, limit_per_host=0)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    # -- public API --------------------------------------------------------------------------------------
    def submit(self, *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes) -> OutboxEntry:
        """Persist a new delivery and schedule it (on a later loop iteration; see the module notes).

        Synchronous, so that it can run inside the caller's store transaction. Before `start()` or after
        `aclose()` the entry is only persisted; the next dispatcher to start on the store delivers it.
        Inside `transaction()` the entries are written together (one statement) when the outermost block ends,
        still inside its store transaction; the entry returned then has no `seq` yet (0).
        Not thread-safe: call it on the dispatcher's loop (the store has the same rule).
        """
        now = self._clock()
        entry = OutboxEntry(
            id=new_id(),
            order_key=order_key,
            app_id=app_id,
            tenant_id=tenant_id,
            url=url,
            body=body,
            created_at=now,
            next_attempt_at=now,
        )
        if self._tx_depth:  # written at the end of the outermost block, in its store transaction
            self._tx_staged.append(entry)
            if self._run is _RunState.RUNNING:
                self._pending += 1
                self._idle.clear()
            return entry
        entry = self._store.outbox_append(entry)
        if self._run is _RunState.RUNNING:
            self._pending += 1
            self._idle.clear()
            self._stage(entry)
        return entry

    def release(self, entries: list[OutboxEntry]) -> None:
        """Deliver entries that were committed to the outbox by someone else (the ledger, with a conversation).
        Before `start()` or after `aclose()` nothing happens: the next start loads them."""
        if self._run is not _RunState.RUNNING or not entries:
            return
        self._pending += len(entries)
        self._idle.clear()
        for entry in entries:
            self._stage(entry)

    def held_ids(self) -> set[str]:
        """Ids of the entries this dispatcher holds (queued, waiting, in flight or finished but not removed)."""
        held = {entry.id for lane in self._lanes.values() for entry in lane.entries}
        held.update(entry.id for entry in self._staged)
        held.update(entry_id for entry_id, _, _ in self._finished)
        return held

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """`store.transaction()` that also holds back the entries submitted inside it until the commit.

        On rollback those entries are forgotten (the store has rolled them back too). Nestable like the
        store's: only the outermost block decides. Use it as the outermost transaction.
        """
        outermost = self._tx_depth == 0
        self._tx_depth += 1
        try:
            with self._store.transaction():
                yield
                if outermost and self._tx_staged:
                    self._tx_staged = self._store.outbox_append_many(self._tx_staged)
        except BaseException:
            if outermost and self._tx_staged:
                if self._run is _RunState.RUNNING:
                    self._pending -= len(self._tx_staged)
                self._tx_staged.clear()
                if self._pending == 0:
                    self._idle.set()
            raise
        else:
            if outermost and self._tx_staged:
                committed, self._tx_staged = self._tx_staged, []
                if self._run is _RunState.RUNNING:
                    for entry in committed:
                        self._stage(entry)
        finally:
            self._tx_depth -= 1

    async def wait_idle(self) -> None:
        """Return once no entry is pending (all delivered, dropped or given up). Raises if closed first."""
        if self._run is _RunState.NEW:
            raise RuntimeError("dispatcher not started")
        while True:
            await self._idle.wait()
            if self._run is _RunState.CLOSED:
                raise RuntimeError("dispatcher closed")
            if self._pending == 0:
                return
            self._idle.clear()  # pragma: no cover - defensive, the event tracks _pending

    @property
    def stats(self) -> DispatchStats:
        return DispatchStats(
            delivered=self._delivered,
            retried=self._retried,
            dropped=self._dropped,
            redirected=self._redirected,
            given_up=self._given_up,
            refused=self._refused,
            pending=self._pending,
        )

    # -- scheduling --------------------------------------------------------------------------------------
    def _stage(self, entry: OutboxEntry) -> None:
        self._staged.append(entry)
        if self.on_staged is not None:
            self.on_staged(entry)
        if self._flush_handle is None:
            assert self._loop is not None  # set by start(); submit only stages while running
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        staged, self._staged = self._staged, []
        for entry in staged:
            self._enqueue(entry)

    def _enqueue(self, entry: OutboxEntry) -> None:
        lane = self._lanes.get(entry.order_key)
        if lane is None:
            lane = self._lanes[entry.order_key] = _Lane()
        lane.entries.append(entry)
        if lane.state is _LaneState.IDLE:
            self._arm(entry.order_key, lane)

    def _arm(self, key: str, lane: _Lane) -> None:
        """Schedule the lane's head: into the ready queue if due, else on a timer."""
        delay = lane.entries[0].next_attempt_at - self._clock()
        if delay <= 0:
            lane.state = _LaneState.READY
            self._ready.put_nowait(key)
        else:
            assert self._loop is not None
            lane.state = _LaneState.WAITING
            lane.timer = self._loop.call_later(delay, self._wake, key)

    def _wake(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is not None and lane.state is _LaneState.WAITING:
            lane.timer = None
            lane.state = _LaneState.READY
            self._ready.put_nowait(key)

    def _finish_head(self, key: str, lane: _Lane) -> None:
        lane.entries.popleft()
        self._pending -= 1
        if lane.entries:
            self._arm(key, lane)
        else:
            lane.state = _LaneState.IDLE
            del self._lanes[key]
            if self._pending == 0:
                self._idle.set()

    async def _remove_finished(self) -> None:
        """Remove the finished entries from the store (one write), then move their lanes on."""
        if self._finished:
            finished, self._finished = self._finished, []
            try:
                await self._outbox.outbox_remove([entry_id for entry_id, _, _ in finished])
            except BaseException:
                self._finished[:0] = finished  # still to be removed
                raise
            self._recovered()
            self._advance(finished)

    def _fault(self, exc: Exception, what: str) -> None:
        """A store write failed: log the first of a streak (with its cause), count every one."""
        self.store_faults += 1
        if not self._faulted:
            self._faulted = True
            log.warning("notification store write failed (%s), retrying every %.1f s: %s", what, self._fault_retry, exc)

    def _recovered(self) -> None:
        if self._faulted:
            self._faulted = False
            log.info("notification store writes work again")

    def _advance(self, removed: list[tuple[str, str, _Lane]]) -> None:
        if self._run is not _RunState.RUNNING:
            return
        for _, key, lane in removed:
            if self._lanes.get(key) is lane:
                self._finish_head(key, lane)

    async def _finish(self, key: str, lane: _Lane, entry: OutboxEntry) -> None:
        """The head entry has a final outcome: remove it, then move the lane on. Removals are batched: they go
        after `remove_batch_s` in this worker; a storage fault retries the removal every `fault_retry` seconds."""
        self._finished.append((entry.id, key, lane))
        if not self._removal_armed:
            self._removal_armed = True
            try:
                delay = self._remove_batch_s
                while True:
                    await asyncio.sleep(delay)
                    try:
                        await self._remove_finished()
                    except Exception as exc:  # a store fault: the entries wait, the worker lives on
                        self._fault(exc, "removing finished entries")
                        delay = self._fault_retry
                        continue
                    if not self._finished:  # else: heads finished while the removal was under way
                        break
                    delay = self._remove_batch_s
            finally:
                self._removal_armed = False

    # -- delivery ----------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            lane = self._lanes.get(key)
            if lane is None or lane.state is not _LaneState.READY:
                continue  # pragma: no cover - defensive
            lane.state = _LaneState.SENDING
            await self._attempt(key, lane)

    async def _attempt(self, key: str, lane: _Lane) -> None:
        """Attempt the head of a lane (following redirects) and apply the outcome."""
        entry = lane.entries[0]
        origin = url = entry.url
        status: int | None = None
        retry_after: str | None = None
        reason = ""
        hops = 0
        while True:
            try:
                status, location, retry_after = await self._post(url, entry)
            except _Unsendable as exc:
                outcome, reason = Outcome.DROP, str(exc)
                break
            except EgressRefused as exc:
                self._refused += 1
                outcome, reason = Outcome.DROP, f"{'redirect ' if hops else ''}destination refused: {exc.reason}"
                break
            outcome = classify(status, location is not None)
            if outcome is not Outcome.REDIRECT:
                break
            assert location is not None
            target = _resolve(url, location)
            if target is None:
                outcome, reason = Outcome.DROP, "unusable redirect Location"
                break
            if hops >= self._max_redirects:
                outcome, reason = Outcome.DROP, f"more than {self._max_redirects} redirects"
                break
            if self._egress is not None:
                try:  # judged before following: a refused Location is never requested nor made the callback
                    self._egress.check_url(target)
                except EgressRefused as exc:
                    self._refused += 1
                    outcome, reason = Outcome.DROP, f"redirect destination refused: {exc.reason}"
                    break
            hops += 1
            self._redirected += 1
            url = target

        if url != origin and reason == "":
            await self._moved(key, lane, origin, url)

        if outcome is Outcome.DELIVERED:
            self._delivered += 1
            if self.on_delivered is not None:
                self.on_delivered(self._clock() - entry.created_at)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("notification delivered", extra=_extra(entry, status, url))
            await self._finish(key, lane, entry)
        elif outcome is Outcome.DROP:
            self._dropped += 1
            log.warning(
                "notification dropped (status %s%s) for %s",
                status,
                f", {reason}" if reason else "",
                _loggable(url),
                extra=_extra(entry, status, url),
            )
            await self._finish(key, lane, entry)
        else:
            await self._retry(key, lane, entry, url, status, retry_after)

    async def _retry(
        self, key: str, lane: _Lane, entry: OutboxEntry, url: str, status: int | None, retry_after: str | None
    ) -> None:
        now = self._clock()
        attempts = entry.attempts + 1
        if self._policy.should_give_up(attempts, entry.created_at, now):
            self._given_up += 1
            log.warning(
                "notification given up after %d attempts over %.1f s (last status %s) for %s",
                attempts,
                now - entry.created_at,
                status,
                _loggable(url),
                extra=_extra(entry, status, url),
            )
            await self._finish(key, lane, entry)
            return
        delay = self._policy.next_delay(
            attempts, retry_after=parse_retry_after(retry_after, now), rand=self._rand.random()
        )
        updated = entry.with_attempt(now + delay)
        if updated.url != url:
            updated = replace(updated, url=url)
        try:
            await self._outbox.outbox_update([updated])
        except Exception as exc:  # the retry goes ahead; a restart repeats the attempt count from the store
            self._fault(exc, "recording a failed attempt")
        else:
            self._recovered()
        lane.entries[0] = updated
        self._retried += 1
        if log.isEnabledFor(logging.INFO):
            log.info(
                "notification attempt %d failed (status %s), retrying in %.2f s",
                attempts,
                status,
                delay,
                extra=_extra(entry, status, url),
            )
        assert self._loop is not None
        lane.state = _LaneState.WAITING
        lane.timer = self._loop.call_later(delay, self._wake, key)

    async def _moved(self, key: str, lane: _Lane, old: str, new: str) -> None:
        """The bot moved this key's callback: point its later entries at `new` and tell the owner."""
        try:
            await self._move_queued(key, lane, old, new)
        except Exception as exc:  # later entries keep the old URL (redirected again); the call still moves below
            self._fault(exc, "moving queued entries")
        log.info("callback moved to %s", _loggable(new), extra={"call_id": key})
        if self._on_redirect is not None:
            try:
                self._on_redirect(key, new)
            except Exception:
                log.exception("on_redirect callback failed", extra={"call_id": key})

    async def _move_queued(self, key: str, lane: _Lane, old: str, new: str) -> None:
        moved: list[OutboxEntry] = []
        for i in range(1, len(lane.entries)):
            queued = lane.entries[i]
            if queued.url == old:
                lane.entries[i] = replace(queued, url=new)
                moved.append(lane.entries[i])
        for staged in (self._staged, self._tx_staged):
            for i, queued in enumerate(staged):
                if queued.order_key == key and queued.url == old:
                    staged[i] = replace(queued, url=new)
                    moved.append(staged[i])
        if moved:
            await self._outbox.outbox_update(moved)

    async def _post(self, url: str, entry: OutboxEntry) -> tuple[int | None, str | None, str | None]:
        """One HTTP POST. Returns (status or None on network error/timeout, Location, Retry-After)."""
        session = self._session
        assert session is not None
        try:
            token = self._sign(entry.app_id, entry.tenant_id)
        except Exception:
            log.exception("signing the callback token failed", extra=_extra(entry, None, url))
            return None, None, None
        headers = {
            "Content-Type": "application/json",
            "Authorization": "Bearer " + token,
            "opencomms-delivery-id": entry.id,
            "User-Agent": self._user_agent,
        }
        if self._egress is not None and url not in self._passed:
            try:
                self._egress.check_url(url)  # URL rules and IP literals; host names are checked at connect time
            except EgressRefused as exc:
                if exc.bad_url:
                    raise _Unsendable(f"invalid callback URL: {exc.reason}") from None
                raise
            if len(self._passed) >= 1024:
                self._passed.clear()
            self._passed.add(url)
        fast = self._fast
        if fast is not None and fast.handles(url):
            try:
                return await fast.post(url, headers, entry.body)
            except ValueError:
                pass  # not a URL it takes: aiohttp decides (and reports it unsendable if it is)
            except EgressRefused:
                raise
            except (TimeoutError, OSError) as exc:
                if log.isEnabledFor(logging.INFO):
                    log.info("notification attempt failed: %s", type(exc).__name__, extra=_extra(entry, None, url))
                return None, None, None
            except Exception:  # a bug in the client must not stop deliveries: the attempt fails and is retried
                log.exception("notification attempt failed", extra=_extra(entry, None, url))
                return None, None, None
        try:
            async with session.post(
                url, data=entry.body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                await resp.read()  # drain, so that the connection goes back to the pool
                return resp.status, resp.headers.get("Location"), resp.headers.get("Retry-After")
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise _Unsendable("invalid callback URL") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            refused = refusal(exc)
            if refused is not None:
                raise refused from None
            if log.isEnabledFor(logging.INFO):
                log.info("notification attempt failed: %s", type(exc).__name__, extra=_extra(entry, None, url))
            return None, None, None


def _resolve(base: str, location: str) -> str | None:
    """Absolute http(s) URL of a Location header relative to the request URL, or None if unusable."""
    try:
        target = URL(base).join(URL(location))
    except (ValueError, TypeError):
        return None
    if target.scheme not in ("http", "https") or not target.host:
        return None
    return str(target)


def _loggable(url: str) -> str:
    """The URL without credentials, query or fragment (these may carry secrets)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


def _extra(entry: OutboxEntry, status: int | None, url: str) -> dict[str, object]:
    return {"delivery_id": entry.id, "call_id": entry.order_key, "status": status, "url": _loggable(url)}
