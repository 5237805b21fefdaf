"""What the Redis stores share: key names, the Lua scripts, the outbox stream's entry format, and fault mapping.

Layout (every key starts with the configured prefix, `opencomms:` by default):

    conv:<id>      hash   doc, version, fence (token of its last writer), node (its last writer), legs (JSON list)
    owner:<id>     string "<node>|<token>" with a TTL: the conversation's owner under a lease
    fence          counter of lease tokens (a fencing token grows with every new lease)
    legs           hash   leg id -> conversation id
    deadlines      zset   conversation id scored by its earliest timer
    convs          zset   every live conversation (score 0, paged by id with ZRANGE BYLEX)
    outbox         stream notifications, read through the consumer group `dispatch` (one consumer per node)
    outbox:seq     counter numbering the outbox entries
    outbox:ids     hash   delivery id -> stream id
    outbox:state   hash   delivery id -> retry bookkeeping (attempts, next attempt, url), JSON
    doc:<kind>     hash   key -> JSON document (directory, keys, SIP accounts, bindings, operations)
    docs:gen       counter of document writes (lets a node's caches see other nodes' writes)

Every write of a conversation is one Lua script (atomic in Redis): the lease and version checks, the document, its
leg index, its deadline, and its outbox entries, which the same script reads into the writing node's pending list of
the consumer group, so no other node picks them up while the writer delivers them. Scripts name some keys they
compute (owner keys, docs) rather than pass them in KEYS: one Redis (or a primary with replicas), not a Cluster.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opencomms.store.base import OutboxEntry, StoreUnavailable

if TYPE_CHECKING:
    from opencomms.config import ClusterConfig

GROUP = "dispatch"
"""The outbox stream's consumer group (every node's dispatcher is a consumer of it)."""

ENTRY_FIELDS = 10
"""ARGV values per outbox entry passed to a script (see `entry_args`)."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the Redis store lives and how this node uses it (from the store URL and the cluster config)."""

    url: str
    node: str
    prefix: str = "opencomms:"
    lease: float = 3.0
    claim_idle: float = 1.5
    poll: float = 0.5
    timeout: float = 0.25

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    @property
    def claim_idle_ms(self) -> int:
        return max(1, int(self.claim_idle * 1000))

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


def default_node_id() -> str:
    """host-pid: unique on one machine and across machines."""
    return f"{socket.gethostname()}-{os.getpid()}"


def redis_target(url: str, cluster: ClusterConfig) -> RedisTarget | None:
    """The RedisTarget of a node configured with store `url` and `cluster` (None: the store is not Redis)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return RedisTarget(
        url,
        cluster.node_id or default_node_id(),
        prefix=cluster.key_prefix,
        lease=cluster.lease,
        claim_idle=cluster.claim_idle,
        poll=cluster.poll,
        timeout=cluster.timeout,
    )


def check_url(url: str) -> None:
    """Refuse a redis URL that cannot name a database (`redis://host:port/db`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ValueError(f"unsupported store url: {url!r} (use redis://host:port/db)")


def unavailable(exc: BaseException, target: str) -> StoreUnavailable:
    """The StoreUnavailable for a redis-py error (connection refused, timeout, Redis loading or read-only)."""
    text = str(exc)
    reason = "readonly" if "READONLY" in text else "full" if "OOM" in text else "unavailable"
    return StoreUnavailable(f"store {target} is unreachable: {type(exc).__name__}: {text}", reason=reason)


def redacted(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def entry_args(entries: list[OutboxEntry]) -> list[Any]:
    """The ARGV values of outbox entries for the append part of a script, in order (a seq of 0: numbered by the
    script; another: reserved beforehand with INCRBY on outbox:seq)."""
    args: list[Any] = []
    for e in entries:
        args += [
            e.id,
            e.order_key,
            e.app_id,
            e.tenant_id,
            e.url,
            e.body,
            repr(e.created_at),
            repr(e.next_attempt_at),
            e.attempts,
            e.seq,
        ]
    return args


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_entry(fields: dict[Any, Any], state: bytes | str | None) -> OutboxEntry | None:
    """The OutboxEntry of a stream entry's fields, with its retry bookkeeping applied (None: deleted meanwhile)."""
    if not fields:
        return None
    f = {_text(k): v for k, v in fields.items()}
    body = f["b"]
    entry = OutboxEntry(
        id=_text(f["i"]),
        order_key=_text(f["k"]),
        app_id=_text(f["a"]),
        tenant_id=_text(f["t"]),
        url=_text(f["u"]),
        body=body if isinstance(body, bytes) else body.encode(),
        created_at=float(f["c"]),
        next_attempt_at=float(f["n"]),
        attempts=int(f["x"]),
        seq=int(f["s"]),
    )
    if state is not None:
        url, next_attempt_at, attempts = _text(state).split("\n", 2)
        entry = OutboxEntry(
            entry.id,
            entry.order_key,
            entry.app_id,
            entry.tenant_id,
            url,
            entry.body,
            entry.created_at,
            float(next_attempt_at),
            int(attempts),
            entry.seq,
        )
    return entry


def encode_state(entry: OutboxEntry) -> str:
    """What `outbox_update` keeps of an entry (url, next attempt, attempts) in `outbox:state`."""
    return f"{entry.url}\n{entry.next_attempt_at!r}\n{entry.attempts}"


# -- Lua ---------------------------------------------------------------------------------------------------------
# The append part, shared: ARGV from `base` holds ENTRY_FIELDS (10) values per entry; KEYS[s], KEYS[s+1], KEYS[s+2] are
# outbox, outbox:seq, outbox:ids. The new entries go straight into `node`'s pending list (XREADGROUP ... >), so the
# writer delivers them and nobody else reads them unless that node falls silent (then they are claimed).
_APPEND = """
local function append(s, base, n, node, out)
  for i = 0, n - 1 do
    local b = base + i * 10
    local seq = ARGV[b + 9]
    if seq == '0' then seq = redis.call('INCR', KEYS[s + 1]) end
    local sid = redis.call('XADD', KEYS[s], '*', 'i', ARGV[b], 'k', ARGV[b + 1], 'a', ARGV[b + 2], 't', ARGV[b + 3],
      'u', ARGV[b + 4], 'b', ARGV[b + 5], 'c', ARGV[b + 6], 'n', ARGV[b + 7], 'x', ARGV[b + 8], 's', seq)
    redis.call('HSET', KEYS[s + 2], ARGV[b], sid)
    table.insert(out, seq)
  end
  if n > 0 then
    redis.call('XREADGROUP', 'GROUP', 'dispatch', node, 'COUNT', n, 'STREAMS', KEYS[s], '>')
  end
  return out
end
"""

APPEND = (
    _APPEND
    + """
-- KEYS: outbox, outbox:seq, outbox:ids; ARGV: node, n, entries...
return append(1, 3, tonumber(ARGV[2]), ARGV[1], {})
"""
)

COMMIT = (
    _APPEND
    + """
-- KEYS: conv, owner, legs, deadlines, convs, fence, outbox, outbox:seq, outbox:ids
-- ARGV: 1 conv id, 2 expected version, 3 doc, 4 'put'|'del', 5 legs JSON or '-', 6 deadline or '', 7 node,
--       8 token ('' = take the lease of a new conversation; '-': none held), 9 lease ms, 10 n entries, 11.. entries
local conv, expected, node, token = ARGV[1], tonumber(ARGV[2]), ARGV[7], ARGV[8]
local cur = redis.call('HMGET', KEYS[1], 'version', 'fence', 'legs')
local version = tonumber(cur[1]) or 0
if version ~= expected then return {'stale', version} end
local owner = redis.call('GET', KEYS[2])
if token == '' then
  if owner then
    local sep = string.find(owner, '|', 1, true)
    if string.sub(owner, 1, sep - 1) ~= node then return {'owner', owner} end
    token = string.sub(owner, sep + 1)
  else
    token = tostring(redis.call('INCR', KEYS[6]))
  end
elseif owner ~= node .. '|' .. token then
  return {'lease', owner or ''}
end
if cur[2] and tonumber(cur[2]) > tonumber(token) then return {'lease', owner or ''} end
local function unlegs()
  if cur[3] then
    for _, leg in ipairs(cjson.decode(cur[3])) do
      if redis.call('HGET', KEYS[3], leg) == conv then redis.call('HDEL', KEYS[3], leg) end
    end
  end
end
local newver = 0
if ARGV[4] == 'del' then
  unlegs()
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[4], conv)
  redis.call('ZREM', KEYS[5], conv)
  redis.call('DEL', KEYS[2])
else
  newver = expected + 1
  redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'version', newver, 'fence', token, 'node', node)
  if ARGV[5] ~= '-' then
    unlegs()
    for _, leg in ipairs(cjson.decode(ARGV[5])) do redis.call('HSET', KEYS[3], leg, conv) end
    redis.call('HSET', KEYS[1], 'legs', ARGV[5])
  end
  if ARGV[6] == '' then redis.call('ZREM', KEYS[4], conv) else redis.call('ZADD', KEYS[4], ARGV[6], conv) end
  if expected == 0 then redis.call('ZADD', KEYS[5], 0, conv) end
  redis.call('SET', KEYS[2], node .. '|' .. token, 'PX', ARGV[9])
end
return append(7, 11, tonumber(ARGV[10]), node, {'ok', newver, token})
"""
)

DOCS = (
    _APPEND
    + """
-- KEYS: outbox, outbox:seq, outbox:ids, docs:gen, document hashes...; ARGV: 1 node, 2 n entries, 3 bump ('1': INCR
-- docs:gen), 4 n documents, then 4 per document (index of its hash in KEYS, 'h' put | 'd' delete, field, JSON), then
-- the entries. A transaction of the synchronous store in one step: its documents and its outbox entries (numbered
-- here, in commit order) land together, in one round trip.
local b = 5
for _ = 1, tonumber(ARGV[4]) do
  local key = KEYS[tonumber(ARGV[b])]
  if ARGV[b + 1] == 'd' then
    redis.call('HDEL', key, ARGV[b + 2])
  else
    redis.call('HSET', key, ARGV[b + 2], ARGV[b + 3])
  end
  b = b + 4
end
if ARGV[3] == '1' then redis.call('INCR', KEYS[4]) end
return append(1, b, tonumber(ARGV[2]), ARGV[1], {})
"""
)

SWAP = """
-- KEYS: document hash, docs:gen; ARGV: field, '1' when it is expected to exist ('0': absent), the expected JSON,
-- the new JSON, '1' to bump docs:gen. Writes the document only if it is still what the writer read or guessed:
-- returns {1}, else {0} (absent now) or {0, current JSON} for the writer to merge into and try again.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '0' then
  if cur then return {0, cur} end
elseif cur ~= ARGV[3] then
  if cur then return {0, cur} end
  return {0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if ARGV[5] == '1' then redis.call('INCR', KEYS[2]) end
return {1}
"""

LOAD = """
-- KEYS: conv, owner, fence; ARGV: node, lease ms. Loads the conversation under this node's lease (taken when free);
-- a takeover also names the node that wrote it last (its pending notifications go first).
local owner = redis.call('GET', KEYS[2])
local token
if owner then
  local sep = string.find(owner, '|', 1, true)
  if string.sub(owner, 1, sep - 1) ~= ARGV[1] then return {'owner', owner} end
  token = string.sub(owner, sep + 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local cur = redis.call('HMGET', KEYS[1], 'doc', 'version', 'node')
if not cur[1] then return {'none'} end
local previous = ''
if not token then
  token = tostring(redis.call('INCR', KEYS[3]))
  redis.call('SET', KEYS[2], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
  if cur[3] and cur[3] ~= ARGV[1] then previous = cur[3] end
end
return {'ok', token, cur[1], cur[2], previous}
"""

RENEW = """
-- KEYS: owner keys; ARGV: node, lease ms, token per key. Returns the 1-based indexes of the leases lost.
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] .. '|' .. ARGV[i + 2] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""

RELEASE = """
-- KEYS: owner keys; ARGV: node, token per key. Gives up the leases still held (a node leaving).
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] .. '|' .. ARGV[i + 1] then redis.call('DEL', key) end
end
return 0
"""

DUE = """
-- KEYS: deadlines; ARGV: now, limit, node, owner key prefix. Conversations due whose lease is this node's or free.
local limit, mine, out, start = tonumber(ARGV[2]), ARGV[3] .. '|', {}, 0
while start < 4096 do
  local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', start, 256)
  for i = 1, #items, 2 do
    local owner = redis.call('GET', ARGV[4] .. items[i])
    if (not owner) or string.sub(owner, 1, #mine) == mine then
      table.insert(out, items[i])
      table.insert(out, items[i + 1])
      if #out >= limit * 2 then return out end
    end
  end
  if #items < 512 then return out end
  start = start + 256
end
return out
"""

REMOVE = """
-- KEYS: outbox, outbox:ids, outbox:state; ARGV: delivery ids. Acknowledge and delete finished entries.
for _, id in ipairs(ARGV) do
  local sid = redis.call('HGET', KEYS[2], id)
  if sid then
    redis.call('XACK', KEYS[1], 'dispatch', sid)
    redis.call('XDEL', KEYS[1], sid)
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('HDEL', KEYS[3], id)
end
return 0
"""

KEEP = """
-- KEYS: outbox; ARGV: node, idle ms. Reset the idle time of this node's pending entries older than `idle`: a node
-- alive keeps what it holds (entries waiting for a retry included); a silent node's entries age and are claimed.
local pending = redis.call('XPENDING', KEYS[1], 'dispatch', 'IDLE', ARGV[2], '-', '+', 1000, ARGV[1])
local args = {'XCLAIM', KEYS[1], 'dispatch', ARGV[1], 0}
for _, p in ipairs(pending) do table.insert(args, p[1]) end
if #args == 5 then return 0 end
table.insert(args, 'JUSTID')
redis.call(unpack(args))
return #args - 6
"""

UNOWNED = """
-- KEYS: convs; ARGV: owner key prefix, limit, start index. Live conversations nobody holds the lease of (their
-- owner died or let go), from `start` in id order; returns {next start (0: done), ids...}.
local out, start, limit = {0}, tonumber(ARGV[3]), tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], start, start + 999)
for i, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    table.insert(out, id)
    if #out > limit then out[1] = start + i; return out end
  end
end
if #ids == 1000 then out[1] = start + 1000 end
return out
"""
