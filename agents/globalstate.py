"""Enterprise and commodity state shared by every worker of the consumer group, in Redis.

The join is per conveyance (the Kafka key), so one worker owns each conveyance. The cross-conveyance tables
are not: an enterprise's declarations, an HS code's unit values and a declarant's results arrive on every
partition. Each worker keeps them in its feature engine as before, and around each batch:

* ``prefetch(records)`` (before the batch): for the enterprises, (HS code, origin) pairs and parties of the
  batch's declarations, of the declarations a weighbridge reading in the batch may release and of those whose
  deadline is due, one read (a script returning one JSON document) of what all workers wrote, which replaces
  the engine's local state of those keys (``Enterprise.load``, ``Valuation.load``, ``History.load``), except
  the enterprises and medians this worker holds as Redis has them (``Held``: only their version is read);
* ``stage(pipe)`` (in the batch's MULTI/EXEC, with the changelog and the applied offsets): what the batch took
  in, as idempotent updates keyed by declaration id: a redelivered declaration (after a kill -9, before its
  offsets were saved) adds the same member again, not a second one.

Layout (``<ns>:g:`` prefix; every key expires ``ttl_s`` after its last write):

=========================  =====  ===========================================================================
``ent:<enterprise>``       zset   member ``[ts, decl_id, value_cny, hs_code]``, score ts; 7 days + 10 min
``hsfirst:<enterprise>``   hash   HS code -> first ts; ``_since`` -> the enterprise's first ts (min, by Lua);
                                  ``_v`` -> the version of the last write (``Held``)
``med:<hs>|<origin>``      zset   member ``[ts, decl_id, unit_value]``, score ts; the latest 101
``medv:<hs>|<origin>``     str    the version of the median's last write
``hist:<kind>:<id>``       hash   ``n`` inspections, ``v`` violations
``res:<decl_id>``          str    a result already counted (3 days): the dedupe of ``hist``
=========================  =====  ===========================================================================

With ``group`` (the engine), the site budgets, the grades and the model are held alike by every worker too:
the decision log of agents/grouplog.py rides the same read and the same MULTI/EXEC.

Failure: every read and write goes through the runtime's retry (the worker holds and retries with backoff
while Redis is down; nothing is decided on a partial view, nothing is lost).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from agents.grouplog import GroupLog
from features.config import DAY, MIN
from features.enterprise import Member
from features.history import KINDS, Result
from features.valuation import Value

log = logging.getLogger("bukong.globalstate")

HORIZON_MS = 7 * DAY + 10 * MIN  # enterprise velocity's longest window plus one bucket
MEDIAN_KEEP = 101  # the median's window (FeatureConfig.hs_median_size)

# What a batch's declarations add to their enterprises, in one script (one reply to parse instead of five
# per enterprise). KEYS: per enterprise its member zset and its first-ts hash. ARGV: ttl_s, then per
# enterprise: n, the exclusive trim bound "(<ts>", n (score, member) pairs, m, m (field, ts) pairs, where a
# field's ts is kept only if lower than the one held (the first time an HS code was seen).
MEMBERS_LUA = """
local ttl, a = ARGV[1], 2
for k = 1, #KEYS, 2 do
  local n, cutoff = tonumber(ARGV[a]), ARGV[a + 1]
  a = a + 2
  for j = a, a + 2 * n - 1, 2000 do  -- unpack() at most 1,000 members at a time (Lua's stack)
    redis.call('ZADD', KEYS[k], unpack(ARGV, j, math.min(j + 1999, a + 2 * n - 1)))
  end
  a = a + 2 * n
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', cutoff)
  redis.call('EXPIRE', KEYS[k], ttl)
  local nf = tonumber(ARGV[a])
  a = a + 1
  for i = 1, nf do
    local cur = redis.call('HGET', KEYS[k + 1], ARGV[a])
    if (not cur) or tonumber(ARGV[a + 1]) < tonumber(cur) then
      redis.call('HSET', KEYS[k + 1], ARGV[a], ARGV[a + 1])
    end
    a = a + 2
  end
  redis.call('EXPIRE', KEYS[k + 1], ttl)
  if redis.call('HGET', KEYS[k + 1], '_v') == ARGV[a] then
    redis.call('HSET', KEYS[k + 1], '_v', ARGV[a + 1])
  else
    redis.call('HSET', KEYS[k + 1], '_v', '-' .. ARGV[a + 1])
  end
  a = a + 2
end
return 1
"""

# A batch's unit values per (HS code, origin), the same way. KEYS: per pair its member zset and its version
# string. ARGV: ttl_s, keep, then per pair: n, n (score, member) pairs, the version expected, the new one.
MEDIANS_LUA = """
local ttl, keep, a = ARGV[1], tonumber(ARGV[2]), 3
for k = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  a = a + 1
  for j = a, a + 2 * n - 1, 2000 do
    redis.call('ZADD', KEYS[k], unpack(ARGV, j, math.min(j + 1999, a + 2 * n - 1)))
  end
  a = a + 2 * n
  redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -keep - 1)
  redis.call('EXPIRE', KEYS[k], ttl)
  if redis.call('GET', KEYS[k + 1]) == ARGV[a] then
    redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'EX', ttl)
  else
    redis.call('SET', KEYS[k + 1], '-' .. ARGV[a + 1], 'EX', ttl)
  end
  a = a + 2
end
return 1
"""

READ_LUA = """
local ne, nm, np, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, k, a = {}, 1, 5
for i = 1, ne do
  if redis.call('HGET', KEYS[k + 1], '_v') == ARGV[a] then
    out[#out + 1] = '0'
  else
    local z = redis.call('ZRANGE', KEYS[k], 0, -1)
    local h = redis.call('HGETALL', KEYS[k + 1])
    local f = {}
    for j = 1, #h, 2 do f[#f + 1] = cjson.encode(h[j]) .. ':' .. h[j + 1] end
    out[#out + 1] = '[[' .. table.concat(z, ',') .. '],{' .. table.concat(f, ',') .. '}]'
  end
  k, a = k + 2, a + 1
end
for i = 1, nm do
  local v = redis.call('GET', KEYS[k + 1])
  if v and v == ARGV[a] then
    out[#out + 1] = '0'
  else
    local z = redis.call('ZRANGE', KEYS[k], -keep, -1)
    out[#out + 1] = '[' .. (v or 'null') .. ',[' .. table.concat(z, ',') .. ']]'
  end
  k, a = k + 2, a + 1
end
for i = 1, np do
  local h = redis.call('HMGET', KEYS[k], 'n', 'v')
  out[#out + 1] = '[' .. (h[1] or 'null') .. ',' .. (h[2] or 'null') .. ']'
  k = k + 1
end
return '[' .. table.concat(out, ',') .. ']'
"""

RESULT_LUA = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[2]) then return 0 end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'n', 1)
  redis.call('HINCRBY', KEYS[i], 'v', ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 1
"""


MAX_HELD = 200_000  # keys whose version a worker remembers (past it, it forgets all and reads them in full)
Order = tuple[int, str]  # (event time, declaration id): the order a load applies a key's members in


class Held:
    """The shared keys this worker holds exactly as the group wrote them, so that its read skips them.

    Every write of an enterprise or a median leaves a version on the key (``_v`` in the first-seen hash, a
    ``medv:`` string): a new one when the version it found was the one the writer expected, else that one
    negated, which no worker holds. A worker holds a key at the version it read in full, or at the one its
    own write left when nothing came in between (the version it expected was still there) and its state of
    the key is what a load would give: the key was in its engine, and what it took in came after what it
    held, in (event time, declaration id) order. Anything else (another worker's write, a key taken in out
    of order, a key its engine dropped, a failed or retried save) and the next read is in full, as before.
    """

    def __init__(self) -> None:
        self.version: dict[str, str] = {}
        self.last: dict[str, Order] = {}
        self.pending: dict[str, tuple[str, Order]] = {}  # staged with the batch; held once it is saved
        self.evictions: int | None = None
        self.skipped = 0  # keys a read did not need
        self.full = 0  # keys read in full
        self._seq = int.from_bytes(os.urandom(5), "big") << 8

    def known(self, key: str, earliest: int | None = None) -> str:
        """The version held of ``key``, or "" (read it in full). With ``earliest`` (the event time of the
        earliest declaration the batch may decide with it), only if none is older than what is held: the
        read trims an enterprise at a horizon behind its latest declaration, and a late one's window would
        reach what it trimmed and this worker kept."""
        last = self.last.get(key)
        if last is None or (earliest is not None and earliest < last[0]):
            return ""
        return self.version.get(key, "")

    def saved(self, evictions: int | None) -> None:
        """The previous batch's save landed (the runtime saves a batch before the next begins)."""
        if evictions is None or evictions != self.evictions or len(self.version) > MAX_HELD:
            self.version.clear()
            self.last.clear()
            self.pending.clear()
        for key, (version, last) in self.pending.items():
            self.version[key], self.last[key] = version, last
        self.pending.clear()
        self.evictions = evictions

    def loaded(self, key: str, version: Any, last: Order | None) -> None:
        self.full += 1
        self.pending.pop(key, None)
        if version is None or last is None:
            self.version.pop(key, None)
            self.last.pop(key, None)
        else:
            self.version[key], self.last[key] = str(version), last

    def took(self, key: str, order: list[Order], exact: bool) -> tuple[str, str]:
        """A write of ``key`` that takes in ``order``: the version it expects and the one it leaves."""
        self._seq += 1
        new = str(self._seq)
        expected = self.version.pop(key, "")
        prev = self.last.pop(key, None)
        self.pending.pop(key, None)
        if not exact or expected == "" or prev is None:
            return expected, new
        for o in order:
            if o <= prev:
                return expected, new
            prev = o
        self.pending[key] = (new, prev)
        return expected, new


class SharedFacts:
    def __init__(
        self,
        redis: Any,
        joiner: Any,
        namespace: str = "bukong",
        ttl_s: int = 30 * 86_400,
        group: Any = None,
        hold: bool = True,
    ) -> None:
        self.redis = redis
        self.hold = hold  # False: every read in full (the reference the held reads are tested against)
        self.joiner = joiner
        self.ns = f"{namespace}:g:"
        self.ttl_s = ttl_s
        self._unsent: tuple[list[Member], list[Value], list[Result]] = ([], [], [])
        self.unreadable = 0  # keys whose shared state could not be read (kept this worker's own)
        self.held = Held()
        joiner.share()
        # the engine (``group``): its site budgets, grades and model follow the group's decision log
        self.log = GroupLog(redis, group, namespace) if group is not None else None

    # -- keys --------------------------------------------------------------------------------------------
    def _ent(self, ent: str) -> str:
        return f"{self.ns}ent:{ent}"

    def _first(self, ent: str) -> str:
        return f"{self.ns}hsfirst:{ent}"

    def _med(self, hs: str, origin: str) -> str:
        return f"{self.ns}med:{hs}|{origin}"

    def _medv(self, hs: str, origin: str) -> str:
        return f"{self.ns}medv:{hs}|{origin}"

    def _evictions(self) -> int | None:
        """Keys the engine's shared tables dropped so far (None: a table that drops keys unseen)."""
        total = 0
        ent, val = self.joiner.enterprise, self.joiner.valuation
        for store in (ent.ents, ent.splits, val.medians):
            n = getattr(store, "evicted", None)
            if n is None or getattr(store, "ttl_ms", None) is not None:
                return None
            total += n
        return total

    def _hist(self, kind: str, id_: str) -> str:
        return f"{self.ns}hist:{kind}:{id_}"

    # -- read --------------------------------------------------------------------------------------------
    def declarations(self, records: Sequence[Any], watermark_ms: int | None) -> list[dict[str, Any]]:
        """The declarations a batch (or a deadline tick) may decide."""
        out: list[dict[str, Any]] = []
        for rec in records:
            if rec.topic == "declarations":
                try:
                    d = orjson.loads(rec.value)
                except orjson.JSONDecodeError:
                    continue  # the batch dead-letters it
                if isinstance(d, dict) and isinstance(d.get("enterprise_id"), str):
                    out.append(d)
            elif rec.topic == "logistics" and rec.key is not None:
                out += self.joiner.pending(rec.key.decode("utf-8", "replace"))
        if watermark_ms is not None:
            out += self.joiner.due(watermark_ms)  # with the held declarations the input clock passed
        elif (releasable := getattr(self.joiner, "releasable", None)) is not None:
            out += releasable()  # a batch decides them too (agents/inputclock.py)
        return out

    async def prefetch(self, records: Sequence[Any] = (), watermark_ms: int | None = None) -> int:
        """Load the shared state of every key the batch may read; returns the keys loaded. The previous
        batch's writes succeeded (the runtime saves a batch before it takes the next), so they are dropped."""
        self._unsent = ([], [], [])
        self.held.saved(self._evictions())
        ents: set[str] = set()
        meds: set[tuple[str, str]] = set()
        parties: set[tuple[str, str]] = set()
        decls = self.declarations(records, watermark_ms)
        if self.log is not None:
            self.log.saved()
            if decls and self.log.cursor is None:
                await self.log.catch_up()
        earliest: dict[str, int] = {}
        for d in decls:
            ent = d["enterprise_id"]
            ents.add(ent)
            ts = d.get("ts_ms")
            earliest[ent] = min(earliest.get(ent, ts), ts) if isinstance(ts, int) else -1
            meds.add((str(d.get("hs_code", "")), str(d.get("origin", ""))))
            for kind, id_ in zip(KINDS, (ent, d.get("conveyance_id"), d.get("declarant_id")), strict=True):
                if isinstance(id_, str) and id_:
                    parties.add((kind, id_))
        if not (ents or meds or parties):
            return 0
        e, m, p = sorted(ents), sorted(meds), sorted(parties)
        keys = [k for ent in e for k in (self._ent(ent), self._first(ent))]
        keys += [k for hs, origin in m for k in (self._med(hs, origin), self._medv(hs, origin))]
        keys += [self._hist(kind, id_) for kind, id_ in p]
        # one script, one reply: every key's state as one JSON document (a reply element costs ~5 µs to
        # parse in redis-py, a JSON value ~50 ns in orjson), or 0 for a key held at the version Redis has
        # (class Held); the group log's news in the same round trip
        held, ent, val, hold = self.held, self.joiner.enterprise, self.joiner.valuation, self.hold
        versions = [held.known(self._ent(x), earliest[x]) if hold and ent.incremental(x) else "" for x in e]
        versions += [held.known(self._med(*x)) if hold and val.incremental(x) else "" for x in m]
        pipe = self.redis.pipeline(transaction=False)
        pipe.eval(READ_LUA, len(keys), *keys, len(e), len(m), len(p), MEDIAN_KEEP, *versions)
        logged = self.log is not None and self.log.queue_read(pipe)
        replies = await pipe.execute()
        raw = replies[0]
        if logged and self.log is not None:
            await self.log.read_rest(replies[1])
        try:
            self._load_parsed(e, m, p, orjson.loads(raw))
        except (ValueError, TypeError, KeyError, IndexError):  # a key in a shape we do not write (the JSON
            # decode error is a ValueError): read key by key, skip the unreadable ones
            self._load(e, m, p, await self._read_each(e, m, p))
        return len(e) + len(m) + len(p)

    async def _read_each(self, e: list[str], m: list[tuple[str, str]], p: list[tuple[str, str]]) -> list[Any]:
        for ent in e:
            self.held.loaded(self._ent(ent), None, None)
        for hs, origin in m:
            self.held.loaded(self._med(hs, origin), None, None)
        pipe = self.redis.pipeline(transaction=False)
        for ent in e:
            pipe.zrange(self._ent(ent), 0, -1)
            pipe.hgetall(self._first(ent))
        for hs, origin in m:
            pipe.zrange(self._med(hs, origin), -MEDIAN_KEEP, -1)
        for kind, id_ in p:
            pipe.hmget(self._hist(kind, id_), "n", "v")
        return await pipe.execute()

    def _load_parsed(
        self, e: list[str], m: list[tuple[str, str]], p: list[tuple[str, str]], res: list[Any]
    ) -> None:
        """Load the script's document: per enterprise [members, {hs: first ts}], per median [version,
        members], per party [n, v] (null when unknown); 0 for a key held as it is."""
        j, held = self.joiner, self.held
        # what the engine took in and the batch has not staged yet is not in Redis: a key loaded now is not
        # held as this worker's state of it after that write (its takes were replaced by the load)
        hold = not (j.enterprise.shared or j.valuation.shared)
        i = 0
        for ent in e:
            doc = res[i]
            i += 1
            if doc == 0:
                held.skipped += 1
                continue
            rows, first = doc
            version = first.pop("_v", None)
            if rows:
                since = first.pop("_since", rows[0][0])
                j.enterprise.load(ent, since, first, [(ent, ts, d, float(v), hs) for ts, d, v, hs in rows])
            held.loaded(self._ent(ent), version, _latest(rows) if rows and hold else None)
        for hs, origin in m:
            doc = res[i]
            i += 1
            if doc == 0:
                held.skipped += 1
                continue
            version, rows = doc
            if rows:
                j.valuation.load((hs, origin), [(hs, origin, ts, d, float(uv)) for ts, d, uv in rows])
            held.loaded(self._med(hs, origin), version, _latest(rows) if rows and hold else None)
        for key in p:
            n, v = res[i]
            i += 1
            if n is not None:
                j.history.load(key, float(n), float(v or 0))

    def _load(self, e: list[str], m: list[tuple[str, str]], p: list[tuple[str, str]], res: list[Any]) -> None:
        i = 0
        for ent in e:
            self._guard(f"enterprise {ent}", self._load_ent, ent, res[i], res[i + 1])
            i += 2
        for hs, origin in m:
            self._guard(f"median {hs}|{origin}", self._load_med, hs, origin, res[i])
            i += 1
        for key in p:
            self._guard(f"history {key}", self._load_hist, key, res[i])
            i += 1

    def _guard(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """A key Redis holds in a shape we cannot read (written by hand, or by another version) never stops
        the worker: counted, logged, and the worker's own state of that key is kept."""
        try:
            fn(*args)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # orjson's decode error is a ValueError
            self.unreadable += 1
            log.warning(
                "shared state of %s unreadable (%s: %s); keeping this worker's own",
                what,
                type(exc).__name__,
                exc,
            )

    def _load_ent(self, ent: str, zs: list[bytes], first: dict[Any, Any]) -> None:
        if zs:
            hs_first = {_s(k): int(v) for k, v in first.items()}
            rows = _rows(zs)
            hs_first.pop("_v", None)
            since = hs_first.pop("_since", rows[0][0])
            members = [(ent, int(ts), str(decl_id), float(value), str(hs)) for ts, decl_id, value, hs in rows]
            self.joiner.enterprise.load(ent, int(since), hs_first, members)

    def _load_med(self, hs: str, origin: str, zs: list[bytes]) -> None:
        if zs:
            values = [(hs, origin, int(ts), str(decl_id), float(uv)) for ts, decl_id, uv in _rows(zs)]
            self.joiner.valuation.load((hs, origin), values)

    def _load_hist(self, key: tuple[str, str], nv: list[Any]) -> None:
        n, v = nv
        if n is not None:
            self.joiner.history.load(key, float(n), float(v or 0))

    # -- write -------------------------------------------------------------------------------------------
    def stage(self, pipe: Any) -> None:
        """Queue what the engine took in since the last batch (and anything not yet known written)."""
        new_m, new_v, new_r = self.joiner.drain_shared()
        members, values, results = self._unsent
        members += new_m
        values += new_v
        results += new_r
        self._stage_members(pipe, members)
        self._stage_medians(pipe, values)
        if self.log is not None:
            self.log.stage(pipe)
        for decl_id, parties, violated in results:
            keys = [self._hist(k, i) for k, i in zip(KINDS, parties, strict=True) if i]
            pipe.eval(
                RESULT_LUA,
                1 + len(keys),
                f"{self.ns}res:{decl_id}",
                *keys,
                int(violated),
                3 * 86_400,
                self.ttl_s,
            )

    def _stage_medians(self, pipe: Any, values: Iterable[Value]) -> None:
        meds: dict[tuple[str, str], dict[bytes, int]] = {}
        order: dict[tuple[str, str], list[Order]] = {}
        for hs, origin, ts, decl_id, uv in values:
            meds.setdefault((hs, origin), {})[orjson.dumps([ts, decl_id, uv])] = ts
            order.setdefault((hs, origin), []).append((ts, decl_id))
        if not meds:
            return
        keys: list[str] = []
        args: list[Any] = [self.ttl_s, MEDIAN_KEEP]
        for (hs, origin), mapping in meds.items():
            keys += [self._med(hs, origin), self._medv(hs, origin)]
            args.append(len(mapping))
            for member, ts in mapping.items():
                args += [ts, member]
            exact = self.joiner.valuation.incremental((hs, origin))
            args += self.held.took(self._med(hs, origin), order[(hs, origin)], exact)
        pipe.eval(MEDIANS_LUA, len(keys), *keys, *args)

    def _stage_members(self, pipe: Any, members: Iterable[Member]) -> None:
        by_ent: dict[str, dict[bytes, int]] = {}
        first: dict[str, dict[str, int]] = {}
        order: dict[str, list[Order]] = {}
        for ent, ts, decl_id, value, hs in members:
            by_ent.setdefault(ent, {})[orjson.dumps([ts, decl_id, value, hs])] = ts
            order.setdefault(ent, []).append((ts, decl_id))
            f = first.setdefault(ent, {})
            f[hs] = min(ts, f.get(hs, ts))
            f["_since"] = min(ts, f.get("_since", ts))
        if not by_ent:
            return
        keys: list[str] = []
        args: list[Any] = [self.ttl_s]
        for ent, mapping in by_ent.items():
            keys += [self._ent(ent), self._first(ent)]
            args += [len(mapping), f"({max(mapping.values()) - HORIZON_MS}"]
            for member, ts in mapping.items():
                args += [ts, member]
            args.append(len(first[ent]))
            for kv in first[ent].items():
                args += kv
            args += self.held.took(self._ent(ent), order[ent], self.joiner.enterprise.incremental(ent))
        pipe.eval(MEMBERS_LUA, len(keys), *keys, *args)


def _latest(rows: list[Any]) -> Order:
    """The latest (event time, declaration id) of a key's members as the read returns them (in score order:
    the latest time last; members of one time in byte order, so the greatest id is looked for among them)."""
    ts = rows[-1][0]
    best = rows[-1][1]
    for row in reversed(rows):
        if row[0] != ts:
            break
        best = max(best, row[1])
    return (ts, best)


def _rows(members: list[bytes]) -> list[Any]:
    """Sorted-set members (JSON arrays) parsed in one call."""
    return orjson.loads(b"[" + b",".join(members) + b"]")


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
