"""Enterprise and commodity state shared by every worker of the consumer group, in Redis.

The join is per conveyance (the Kafka key), so one worker owns each conveyance. The cross-conveyance tables
are not: an enterprise's declarations, an HS code's unit values and a declarant's results arrive on every
partition. Each worker keeps them in its feature engine as before, and around each batch:

* ``prefetch(records)`` (before the batch): for the enterprises, (HS code, origin) pairs and parties of the
  batch's declarations, of the declarations a weighbridge reading in the batch may release and of those whose
  deadline is due, one read (a script returning one JSON document) of what all workers wrote, which replaces
  the engine's local state of those keys (``Enterprise.load``, ``Valuation.load``, ``History.load``);
* a read-through cache (per worker, LRU, ``cache_keys`` keys) of the enterprise and median keys as Redis holds
  them, each with the key's version stamp: the read sends the stamps it holds and Redis returns only the keys
  whose stamp differs (``0`` for the others), so a key only this worker writes costs a ``GET`` and no
  transfer. The engine is still loaded from the full state of every key (from the cache when unchanged), so
  a worker decides exactly as it did reading everything;
* ``stage(pipe)`` (in the batch's MULTI/EXEC, with the changelog and the applied offsets): what the batch took
  in, as idempotent updates keyed by declaration id: a redelivered declaration (after a kill -9, before its
  offsets were saved) adds the same member again, not a second one. Every write of an ``ent``/``med`` key
  sets its version stamp (``VER_LUA``, in the same MULTI/EXEC): this worker's new stamp if the key was still
  at the stamp its cache holds, else that stamp plus ``!`` (another worker wrote in between: the next read
  fetches the whole key). The cache then takes this worker's own updates in the way Redis does (the same
  members, trims and minimums), at the next ``prefetch``, once the write is known done.

Layout (``<ns>:g:`` prefix; every key expires ``ttl_s`` after its last write):

=========================  =====  ===========================================================================
``ent:<enterprise>``       zset   member ``[ts, decl_id, value_cny, hs_code]``, score ts; 7 days + 10 min
``hsfirst:<enterprise>``   hash   HS code -> first ts; ``_since`` -> the enterprise's first ts (min, by Lua)
``med:<hs>|<origin>``      zset   member ``[ts, decl_id, unit_value]``, score ts; the latest 101
``hist:<kind>:<id>``       hash   ``n`` inspections, ``v`` violations
``res:<decl_id>``          str    a result already counted (3 days): the dedupe of ``hist``
=========================  =====  ===========================================================================

Version stamps (``<ns>:gv:`` prefix, expiring with their key): ``ent:<enterprise>`` (of ``ent`` and
``hsfirst``) and ``med:<hs>|<origin>``, strings ``<writer>.<seq>`` (``!`` appended when the writer's cache
was stale). They are cache metadata, not state: a redelivered batch sets a new stamp (the workers read that
key once more) and changes none of the ``<ns>:g:`` keys. A key without a stamp (written by hand or by an
older version) is read whole on every batch, as before.

Failure: every read and write goes through the runtime's retry (the worker holds and retries with backoff
while Redis is down; nothing is decided on a partial view, nothing is lost).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from features.config import DAY, MIN
from features.enterprise import Member
from features.history import KINDS, Result
from features.valuation import Value

log = logging.getLogger("bukong.globalstate")

HORIZON_MS = 7 * DAY + 10 * MIN  # enterprise velocity's longest window plus one bucket
MEDIAN_KEEP = 101  # the median's window (FeatureConfig.hs_median_size)

MIN_LUA = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (not cur) or tonumber(ARGV[i + 1]) < tonumber(cur) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

VER_LUA = """
local new = ARGV[2]
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then new = new .. '!' end
redis.call('SET', KEYS[1], new, 'EX', ARGV[3])
return 1
"""

# per enterprise (keys ent, hsfirst, stamp) and per median (keys med, stamp): 0 when the stamp is the one the
# worker holds (ARGV after the counts), else [stamp or "", members, {hs: first ts}] / [stamp or "", members]
READ_LUA = """
local ne, nm, np, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, k, a = {}, 1, 5
for i = 1, ne do
  local v = redis.call('GET', KEYS[k + 2])
  if v and v == ARGV[a] then
    out[#out + 1] = '0'
  else
    local z = redis.call('ZRANGE', KEYS[k], 0, -1)
    local h = redis.call('HGETALL', KEYS[k + 1])
    local f = {}
    for j = 1, #h, 2 do f[#f + 1] = cjson.encode(h[j]) .. ':' .. h[j + 1] end
    local doc = '[' .. cjson.encode(v or '') .. ',[' .. table.concat(z, ',') .. '],{'
    out[#out + 1] = doc .. table.concat(f, ',') .. '}]'
  end
  k, a = k + 3, a + 1
end
for i = 1, nm do
  local v = redis.call('GET', KEYS[k + 1])
  if v and v == ARGV[a] then
    out[#out + 1] = '0'
  else
    local z = redis.call('ZRANGE', KEYS[k], -keep, -1)
    out[#out + 1] = '[' .. cjson.encode(v or '') .. ',[' .. table.concat(z, ',') .. ']]'
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


# a cached key as Redis holds it: its version stamp and its state. Enterprise: members (as loaded) and the
# ``hsfirst`` hash (field order kept); median: member bytes -> (ts, decl_id, unit value)
EntEntry = tuple[str, dict[Member, None], dict[str, int]]
MedEntry = tuple[str, dict[bytes, tuple[int, str, float]]]


class SharedFacts:
    def __init__(
        self,
        redis: Any,
        joiner: Any,
        namespace: str = "bukong",
        ttl_s: int = 30 * 86_400,
        cache_keys: int = 50_000,
    ) -> None:
        self.redis = redis
        self.joiner = joiner
        self.ns = f"{namespace}:g:"
        self.vns = f"{namespace}:gv:"
        self.ttl_s = ttl_s
        self._unsent: tuple[list[Member], list[Value], list[Result]] = ([], [], [])
        self.unreadable = 0  # keys whose shared state could not be read (kept this worker's own)
        # read-through cache of ent/med keys, LRU-bounded; ("e", ent) or ("m", (hs, origin)) -> entry
        self.cache_keys = cache_keys
        self._cache: OrderedDict[tuple[str, Any], Any] = OrderedDict()
        self._pending: dict[tuple[str, Any], Any] = {}  # the last staged write's cache entries (None: drop)
        self._writer = os.urandom(6).hex()
        self._seq = 0
        self.cache_hits = 0  # keys read unchanged (nothing transferred)
        self.cache_misses = 0  # keys Redis sent whole (changed by another worker, new, or not cached)
        joiner.share()

    # -- keys --------------------------------------------------------------------------------------------
    def _ent(self, ent: str) -> str:
        return f"{self.ns}ent:{ent}"

    def _first(self, ent: str) -> str:
        return f"{self.ns}hsfirst:{ent}"

    def _med(self, hs: str, origin: str) -> str:
        return f"{self.ns}med:{hs}|{origin}"

    def _hist(self, kind: str, id_: str) -> str:
        return f"{self.ns}hist:{kind}:{id_}"

    def _ver(self, ck: tuple[str, Any]) -> str:
        kind, k = ck
        return f"{self.vns}ent:{k}" if kind == "e" else f"{self.vns}med:{k[0]}|{k[1]}"

    # -- cache -------------------------------------------------------------------------------------------
    def _held(self, ck: tuple[str, Any]) -> str:
        entry = self._cache.get(ck)
        if entry is None:
            return ""
        self._cache.move_to_end(ck)  # the batch's keys are the last the cache evicts while it reads them
        return str(entry[0])

    def _keep(self, ck: tuple[str, Any], entry: Any) -> None:
        cache = self._cache
        if entry is None or not (entry[0] or not any(entry[1:])):  # an unstamped key is not cached (read
            cache.pop(ck, None)  # whole every time) unless absent: this worker's first write then stamps it
            return
        cache[ck] = entry
        cache.move_to_end(ck)
        while len(cache) > self.cache_keys:
            cache.popitem(last=False)

    def _commit(self) -> None:
        """The last staged write is done (the runtime saves a batch before it reads for the next)."""
        for ck, entry in self._pending.items():
            self._keep(ck, entry)
        self._pending = {}

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
            out += self.joiner.due(watermark_ms)
        return out

    async def prefetch(self, records: Sequence[Any] = (), watermark_ms: int | None = None) -> int:
        """Load the shared state of every key the batch may read; returns the keys loaded. The previous
        batch's writes succeeded (the runtime saves a batch before it takes the next), so they are dropped."""
        self._unsent = ([], [], [])
        self._commit()
        ents: set[str] = set()
        meds: set[tuple[str, str]] = set()
        parties: set[tuple[str, str]] = set()
        for d in self.declarations(records, watermark_ms):
            ent = d["enterprise_id"]
            ents.add(ent)
            meds.add((str(d.get("hs_code", "")), str(d.get("origin", ""))))
            for kind, id_ in zip(KINDS, (ent, d.get("conveyance_id"), d.get("declarant_id")), strict=True):
                if isinstance(id_, str) and id_:
                    parties.add((kind, id_))
        if not (ents or meds or parties):
            return 0
        e, m, p = sorted(ents), sorted(meds), sorted(parties)
        keys = [k for ent in e for k in (self._ent(ent), self._first(ent))]
        keys = [k for ent in e for k in (self._ent(ent), self._first(ent), self._ver(("e", ent)))]
        keys += [k for hs, origin in m for k in (self._med(hs, origin), self._ver(("m", (hs, origin))))]
        keys += [self._hist(kind, id_) for kind, id_ in p]
        held = [self._held(("e", ent)) for ent in e] + [self._held(("m", key)) for key in m]
        # one script, one reply: every changed key's state as one JSON document (a reply element costs ~5 µs
        # to parse in redis-py, a JSON value ~50 ns in orjson), 0 for a key at the stamp this worker holds
        raw = await self.redis.eval(READ_LUA, len(keys), *keys, len(e), len(m), len(p), MEDIAN_KEEP, *held)
        try:
            self._load_parsed(e, m, p, orjson.loads(raw))
        except (ValueError, TypeError, KeyError, IndexError):  # a key in a shape we do not write (the JSON
            # decode error is a ValueError): read key by key, skip the unreadable ones
            for ck in [("e", ent) for ent in e] + [("m", key) for key in m]:
                self._cache.pop(ck, None)
            self._load(e, m, p, await self._read_each(e, m, p))
        return len(e) + len(m) + len(p)

    async def _read_each(self, e: list[str], m: list[tuple[str, str]], p: list[tuple[str, str]]) -> list[Any]:
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
        """Load the script's document: per enterprise 0 (unchanged: the cached state) or [stamp, members,
        {hs: first ts}], per median 0 or [stamp, members], per party [n, v] (null when unknown). The engine is
        loaded from the key's whole state either way: what it decides does not depend on the cache."""
        j = self.joiner
        i = 0
        for ent in e:
            ent_entry = self._got_ent(ent, res[i])
            i += 1
            members, first = ent_entry[1], dict(ent_entry[2])
            if members:
                since = first.pop("_since", min(mb[1] for mb in members))
                j.enterprise.load(ent, since, first, list(members))
        for hs, origin in m:
            med_entry = self._got_med((hs, origin), res[i])
            i += 1
            if med_entry[1]:
                vals = [(hs, origin, ts, d, uv) for ts, d, uv in med_entry[1].values()]
                j.valuation.load((hs, origin), vals)
        for key in p:
            n, v = res[i]
            i += 1
            if n is not None:
                j.history.load(key, float(n), float(v or 0))

    def _got_ent(self, ent: str, doc: Any) -> EntEntry:
        ck = ("e", ent)
        if doc == 0:
            self.cache_hits += 1
            entry: EntEntry = self._cache[ck]
            self._cache.move_to_end(ck)
            return entry
        self.cache_misses += 1
        ver, rows, first = doc
        entry = (str(ver), {(ent, ts, d, float(v), hs): None for ts, d, v, hs in rows}, first)
        self._keep(ck, entry)
        return entry

    def _got_med(self, key: tuple[str, str], doc: Any) -> MedEntry:
        ck = ("m", key)
        if doc == 0:
            self.cache_hits += 1
            entry: MedEntry = self._cache[ck]
            self._cache.move_to_end(ck)
            return entry
        self.cache_misses += 1
        ver, rows = doc
        vals = {orjson.dumps([ts, d, uv]): (ts, d, float(uv)) for ts, d, uv in rows}
        entry = (str(ver), vals)
        self._keep(ck, entry)
        return entry

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
        """Queue what the engine took in since the last batch (and anything not yet known written), with the
        keys' version stamps; the cache entries the write makes are kept for the next ``prefetch``."""
        new_m, new_v, new_r = self.joiner.drain_shared()
        members, values, results = self._unsent
        members += new_m
        values += new_v
        results += new_r
        self._seq += 1
        stamp = f"{self._writer}.{self._seq}"
        self._pending = {}
        self._stage_members(pipe, members, stamp)
        meds: dict[tuple[str, str], dict[bytes, tuple[int, str, float]]] = {}
        for hs, origin, ts, decl_id, uv in values:
            meds.setdefault((hs, origin), {})[orjson.dumps([ts, decl_id, uv])] = (ts, decl_id, uv)
        for (hs, origin), rows in meds.items():
            key = self._med(hs, origin)
            pipe.zadd(key, {b: row[0] for b, row in rows.items()})
            pipe.zremrangebyrank(key, 0, -MEDIAN_KEEP - 1)
            pipe.expire(key, self.ttl_s)
            self._stage_stamp(pipe, ("m", (hs, origin)), stamp, _mirror_med, rows)
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

    def _stage_stamp(
        self, pipe: Any, ck: tuple[str, Any], stamp: str, mirror: Callable[..., Any], *update: Any
    ) -> None:
        """Set the key's stamp (``!`` appended unless it is still at the one the cache holds) and keep, for
        after the write, the cache entry Redis will then hold: the cached one with this update applied."""
        old = self._cache.get(ck)
        pipe.eval(VER_LUA, 1, self._ver(ck), "" if old is None else old[0], stamp, self.ttl_s)
        self._pending[ck] = None if old is None else (stamp, *mirror(old, *update))

    def _stage_members(self, pipe: Any, members: Iterable[Member], stamp: str) -> None:
        by_ent: dict[str, dict[bytes, int]] = {}
        first: dict[str, dict[str, int]] = {}
        batch: dict[str, list[Member]] = {}
        for mb in members:
            ent, ts, decl_id, value, hs = mb
            by_ent.setdefault(ent, {})[orjson.dumps([ts, decl_id, value, hs])] = ts
            batch.setdefault(ent, []).append(mb)
            f = first.setdefault(ent, {})
            f[hs] = min(ts, f.get(hs, ts))
            f["_since"] = min(ts, f.get("_since", ts))
        for ent, mapping in by_ent.items():
            key = self._ent(ent)
            pipe.zadd(key, mapping)
            pipe.zremrangebyscore(key, "-inf", f"({max(mapping.values()) - HORIZON_MS}")
            pipe.expire(key, self.ttl_s)
            fkey = self._first(ent)
            pipe.eval(MIN_LUA, 1, fkey, *[x for kv in first[ent].items() for x in kv])
            pipe.expire(fkey, self.ttl_s)
            self._stage_stamp(pipe, ("e", ent), stamp, _mirror_ent, batch[ent], first[ent])


def _mirror_ent(old: EntEntry, batch: list[Member], first: dict[str, int]) -> tuple[Any, ...]:
    """An enterprise's state after this worker's write, as Redis makes it: the members added (one per
    declaration), those older than the batch's latest minus the horizon trimmed, first times the minimum."""
    members = dict(old[1])
    members.update(dict.fromkeys(batch))
    cutoff = max(mb[1] for mb in batch) - HORIZON_MS
    members = {mb: None for mb in members if mb[1] >= cutoff}
    hs_first = dict(old[2])
    for f, ts in first.items():
        cur = hs_first.get(f)
        if cur is None or ts < cur:
            hs_first[f] = ts
    return members, hs_first


def _mirror_med(old: MedEntry, rows: dict[bytes, tuple[int, str, float]]) -> tuple[Any, ...]:
    """A median's members after this worker's write, as Redis makes them: the latest ``MEDIAN_KEEP`` by
    (score, member bytes)."""
    vals = dict(old[1])
    vals.update(rows)
    if len(vals) > MEDIAN_KEEP:
        keep = sorted(vals, key=lambda b: (vals[b][0], b))[-MEDIAN_KEEP:]
        vals = {b: vals[b] for b in keep}
    return (vals,)


def _rows(members: list[bytes]) -> list[Any]:
    """Sorted-set members (JSON arrays) parsed in one call."""
    return orjson.loads(b"[" + b",".join(members) + b"]")


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
