"""The same facts on one worker or on several: the enterprise and commodity state is shared through Redis.

A slice of the recorded day (tests/golden) is split by conveyance over 1, 2 and 4 workers (the partition the
Kafka key picks), each a production engine (pipeline.core.assemble) with the shared state of
agents/globalstate.py on one real Redis (valkey). Records reach their owner in the day's order, one batch per
record, each batch read before and saved after, as the runtime does; deadlines are decided in event-time
order. Every declaration then gets the same cross-conveyance facts, and the same command, whichever worker
decided it. Saving a batch twice (a redelivery after a kill -9 before the offsets were saved) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import lzma
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from agents.changelog import kafka_partition
from agents.delivery import Record
from agents.globalstate import SharedFacts
from pipeline.contracts import events as c
from pipeline.contracts import sites
from pipeline.core.assemble import build_engine
from pipeline.core.decision.budget import BudgetConfig
from pipeline.core.decision.snapshots import Snapshot
from pipeline.core.engine import Decision, Engine
from pipeline.core.policy import INSPECTION_LANES, DecisionPolicy, PolicyConfig
from pipeline.io.embedded import EmbeddedServer
from tests.conftest import Stack, declaration, now_ms, start_worker, stop_worker, weighbridge
from tests.golden.replay import EVENTS, INTEL, NEVER

pytestmark = pytest.mark.integration

PARTITIONS = 4
HOURS = 9  # the day's first hours: ~120k records, ~500 declarations
GLOBAL = (
    "ent_decl_1h",
    "ent_decl_24h",
    "ent_decl_7d",
    "ent_value_24h",
    "ent_value_7d",
    "ent_new_hs_share",
    "split_count_24h",
    "split_value_24h",
    "hs_median_unit_value",
    "hs_median_n",
    "unit_value_ratio",
    "ent_violation_rate",
    "conv_violation_rate",
    "declarant_violation_rate",
)


def _slice() -> list[tuple[str, dict[str, Any]]]:
    out = []
    start = None
    for line in lzma.decompress(EVENTS.read_bytes()).splitlines():
        topic, ev = orjson.loads(line)
        start = ev["ts_ms"] if start is None else start
        if ev["ts_ms"] >= start + HOURS * 3_600_000:
            break
        out.append((topic, ev))
    return out


@pytest.fixture(scope="module")
def day() -> list[tuple[str, dict[str, Any]]]:
    return _slice()


@dataclass
class Worker:
    engine: Engine
    shared: SharedFacts
    staged: list[Any] = field(default_factory=list)  # every batch's pipeline commands, to replay them


def _engine(fixed_budget: bool) -> Engine:
    engine = build_engine()
    if fixed_budget:  # the site budget held at its cold value, no cap on a site's daily spend and no pacing
        # (all three kept per worker): the policy keeps no state that depends on which worker decided what
        budget = BudgetConfig(min_window=10**9)
        config = PolicyConfig(budget=budget, hard_cap_points=None, pace_slack=None)
        engine.policy = DecisionPolicy(config, rosters=sites.rosters())
    for lead in orjson.loads(INTEL.read_bytes()):
        engine.joiner.watch.add(lead["kind"], lead["id"], lead.get("source", "intel"), NEVER)  # type: ignore[attr-defined]
    return engine


async def _save(r: Any, w: Worker) -> None:
    pipe = r.pipeline(transaction=True)
    w.shared.stage(pipe)
    if len(pipe):
        w.staged.append(list(pipe.command_stack))
        await pipe.execute()


RESULT_AFTER_MS = 20 * 60_000  # a dispatched inspection's result comes back 20 min (event time) later


def _outcome(decl_id: str) -> str:
    """A result that does not depend on which worker asks: about a third of inspections find a violation."""
    return "violation" if hashlib.blake2b(decl_id.encode(), digest_size=2).digest()[0] < 86 else "clean"


async def _run(
    url: str,
    ns: str,
    n_workers: int,
    day: list[tuple[str, dict[str, Any]]],
    fixed_budget: bool = False,
    hold: bool = True,
) -> tuple[dict[str, Decision], list[Worker]]:
    r = aioredis.from_url(url)
    workers = []
    for _ in range(n_workers):
        engine = _engine(fixed_budget)
        workers.append(Worker(engine, SharedFacts(r, engine.joiner, namespace=ns, group=engine, hold=hold)))
    decided: dict[str, Decision] = {}
    results: list[tuple[int, str, dict[str, Any]]] = []  # heap: (due, decl id, command)

    def take(ds: list[Decision]) -> None:
        for d in ds:
            assert d.decl["decl_id"] not in decided
            decided[d.decl["decl_id"]] = d
            cmd = d.command
            if cmd is not None and cmd["lane"] in INSPECTION_LANES:
                heapq.heappush(results, (cmd["decided_ts_ms"] + RESULT_AFTER_MS, cmd["decl_id"], cmd))

    async def learn(wm: int) -> None:
        """Results due by ``wm``, each taken in by the worker of its conveyance's partition (results are
        keyed by conveyance), with the snapshot the runtime rebuilds from the stored command."""
        while results and results[0][0] <= wm:
            due, decl_id, cmd = heapq.heappop(results)
            w = workers[kafka_partition(cmd["conveyance_id"].encode(), PARTITIONS) % n_workers]
            ev = {
                "command_id": cmd["command_id"],
                "decl_id": decl_id,
                "ts_ms": due,
                "outcome": _outcome(decl_id),
            }
            snap = Snapshot(decl_id, cmd["decided_ts_ms"], cmd["facts"], w.engine.snapshot_meta(cmd))
            assert w.engine.on_result(ev, snap) is not None
            await _save(r, w)

    async def deadlines(wm: int) -> None:
        """Deadlines due by ``wm``, across workers in (due, declaration id) order, like one worker's heap."""
        while True:
            tops = [(w.engine.joiner.join.deadlines[0], w) for w in workers if w.engine.joiner.join.deadlines]  # type: ignore[attr-defined]
            due = [(top, w) for top, w in tops if top[0] <= wm]
            if not due:
                return
            (t, _, _), w = min(due, key=lambda x: x[0])
            await w.shared.prefetch((), t)
            take(w.engine.advance(t))
            await _save(r, w)

    for i, (topic, ev) in enumerate(day):
        await deadlines(ev["ts_ms"])
        await learn(ev["ts_ms"])
        key = ev["conveyance_id"].encode()
        w = workers[kafka_partition(key, PARTITIONS) % n_workers]
        rec = Record(topic, 0, i, ev["ts_ms"], key, orjson.dumps(ev))
        await w.shared.prefetch([rec])
        take(w.engine.process(topic, ev))
        await _save(r, w)
    await deadlines(day[-1][1]["ts_ms"] + 3_600_000)
    await r.aclose()
    return decided, workers


def _facts(d: Decision) -> dict[str, Any]:
    return {k: d.facts.get(k) for k in GLOBAL}


def _command(d: Decision) -> bytes | None:
    if d.command is None:
        return None
    cmd = {k: v for k, v in d.command.items() if k != "trigger"}  # the record that triggered it: per worker
    return orjson.dumps(cmd, option=orjson.OPT_SORT_KEYS)


async def _dump(url: str, ns: str) -> dict[bytes, Any]:
    r = aioredis.from_url(url)
    out: dict[bytes, Any] = {}
    async for k in r.scan_iter(f"{ns}:g:*"):
        t = await r.type(k)
        if t == b"zset":
            out[k] = await r.zrange(k, 0, -1, withscores=True)
        elif t == b"hash":
            out[k] = await r.hgetall(k)
        elif t == b"stream":
            out[k] = await r.xrange(k)
        else:
            out[k] = await r.get(k)
    await r.aclose()
    return out


def _hits(d: Decision) -> list[str]:
    return sorted(h.rule_id for h in d.hits)


def _learnt(w: Worker) -> tuple[int, dict[str, float], dict[str, Any]]:
    """What a worker's engine learnt and spent: results learnt, the model's weights, every site's budget."""
    model, policy = w.engine.model, w.engine.policy
    sites_ = sorted(policy.budget.sites)  # type: ignore[attr-defined]
    budget = {s: policy.budget.stats(s) for s in sites_}  # type: ignore[attr-defined]
    return model.champion.n_learned, model.champion.weights, budget  # type: ignore[union-attr]


def test_one_two_and_four_workers_decide_alike(
    valkey: EmbeddedServer, day: list[tuple[str, dict[str, Any]]]
) -> None:
    """The production engine, inspection results coming back: the same facts, rule hits and commands on 1, 2
    and 4 workers; every worker ends with the same model and the same site budgets; a worker that starts
    after the day catches up to them from the group's log."""
    url = f"redis://127.0.0.1:{valkey.port}/0"
    runs = {n: asyncio.run(_run(url, f"eq{n}", n, day)) for n in (1, 2, 4)}
    one, (alone,) = runs[1]
    assert len(one) > 300
    # one worker skips the read of what it holds as Redis does (agents/globalstate.py Held); the same worker
    # reading every key in full decides the same
    held = alone.shared.held
    # (a key is read in full twice before it is held: when first seen, and after its first write)
    assert held.skipped > 0.3 * (held.skipped + held.full), "one worker's reads skipped the keys it held"
    full, _ = asyncio.run(_run(url, "eq1full", 1, day, hold=False))
    assert full.keys() == one.keys()
    diff = [k for k in one if _facts(one[k]) != _facts(full[k]) or _command(one[k]) != _command(full[k])]
    assert not diff, f"held reads: facts or commands differ for {len(diff)} declarations, e.g. {diff[0]}"
    with_enterprise_history = sum(1 for d in one.values() if (d.facts.get("ent_decl_7d") or 0) > 1)
    assert with_enterprise_history > 30, "the slice exercises enterprises seen on several conveyances"
    learnt = _learnt(alone)
    assert learnt[0] >= 10, "results came back and were learnt"
    for n in (2, 4):
        many, workers = runs[n]
        assert many.keys() == one.keys()
        assert sum(1 for w in workers if w.engine.decided) == n, "every worker decided some declarations"
        diff = [k for k in one if _facts(one[k]) != _facts(many[k])]
        assert not diff, f"{n} workers: facts differ for {len(diff)} declarations, e.g. {diff[0]}"
        assert [k for k in one if _hits(one[k]) != _hits(many[k])] == []
        cmds = [k for k in one if _command(one[k]) != _command(many[k])]
        assert not cmds, f"{n} workers: commands differ for {len(cmds)} declarations, e.g. {cmds[0]}"
        assert sum(1 for w in workers if w.shared.log and w.shared.log.folded) == n
        # the last worker to decide folded everything; the others hold it once they read the log again
        for w in workers:
            assert w.shared.log is not None
            asyncio.run(_catch_up_reader(url, w))
            assert _learnt(w) == learnt, f"{n} workers: a worker's model or site budgets differ"

    # a worker that starts now decides with the group's state: the log folded from its start
    late = _engine(False)
    asyncio.run(_catch_up_reader(url, Worker(late, SharedFacts(None, late.joiner, "eq4", group=late))))
    assert _learnt(Worker(late, None)) == learnt  # type: ignore[arg-type]

    # a redelivery: every batch of the 4-worker run saved again changes none of the shared state
    _, workers = runs[4]
    before = asyncio.run(_dump(url, "eq4"))

    async def again() -> None:
        r = aioredis.from_url(url)
        for w in workers:
            for stack in w.staged:
                pipe = r.pipeline(transaction=True)
                pipe.command_stack.extend(stack)
                await pipe.execute()
        await r.aclose()

    asyncio.run(again())
    after = asyncio.run(_dump(url, "eq4"))
    assert _unversioned(after) == _unversioned(before)
    # the versions (agents/globalstate.py Held): a replayed write that found a version other than the one it
    # expected left one no worker holds (the next read of that key is in full); a key whose whole chain of
    # writes was replayed in order ends at the version it had, which its worker holds with the same state
    versions, was = _versions(after), _versions(before)
    assert versions.keys() == was.keys()
    assert [k for k, v in versions.items() if not (v.startswith(b"-") or v == was[k])] == []
    assert any(v.startswith(b"-") and v != was[k] for k, v in versions.items())


def _versions(dump: dict[bytes, Any]) -> dict[bytes, bytes]:
    out = {k: v for k, v in dump.items() if b":g:medv:" in k}
    out.update({k: v[b"_v"] for k, v in dump.items() if b":g:hsfirst:" in k and b"_v" in v})
    return out


def _unversioned(dump: dict[bytes, Any]) -> dict[bytes, Any]:
    out = {k: v for k, v in dump.items() if b":g:medv:" not in k}
    for k, v in out.items():
        if b":g:hsfirst:" in k:
            out[k] = {f: x for f, x in v.items() if f != b"_v"}
    return out


async def _catch_up_reader(url: str, w: Worker) -> None:
    """Read the group log up to its end (a new worker's ``catch_up``, or one more read for a running one)."""
    r = aioredis.from_url(url)
    log = w.shared.log
    assert log is not None
    log.redis = r
    if log.cursor is None:
        await log.catch_up()
    else:
        pipe = r.pipeline(transaction=False)
        log.queue_read(pipe)
        await log.read_rest((await pipe.execute())[0])
    await r.aclose()


def test_violation_history_is_shared_and_counted_once(valkey: EmbeddedServer) -> None:
    """A result learnt on one worker moves the violation rate another reads; saved twice, counted once."""
    url = f"redis://127.0.0.1:{valkey.port}/0"
    t0 = 1_790_000_000_000
    decl: dict[str, Any] = {
        "decl_id": "H1",
        "ts_ms": t0,
        "enterprise_id": "EH",
        "credit_grade": "general",
        "declarant_id": "BH",
        "hs_code": "270112",
        "goods": "coal",
        "origin": "MN",
        "port": "GQM",
        "mode": "self_drive",
        "conveyance_id": "SD-H1",
        "gross_kg": 1000.0,
        "net_kg": 900.0,
        "quantity": 0.9,
        "value_cny": 900.0,
    }

    async def main() -> tuple[float, float, float]:
        r = aioredis.from_url(url)
        a, b = _engine(False), _engine(False)
        sa, sb = SharedFacts(r, a.joiner, namespace="hist"), SharedFacts(r, b.joiner, namespace="hist")
        a.process("declarations", decl)
        result = {"command_id": "c1", "decl_id": "H1", "ts_ms": t0 + 3_600_000, "outcome": "violation"}
        a.joiner.on_event("inspection-results", result)
        w = Worker(a, sa)
        await _save(r, w)
        for stack in w.staged:  # the batch saved again (a redelivery)
            pipe = r.pipeline(transaction=True)
            pipe.command_stack.extend(stack)
            await pipe.execute()
        rates = []
        for n, plate in enumerate(("SD-H2", "SD-H3")):
            other: dict[str, Any] = {
                **decl,
                "decl_id": f"H{n + 2}",
                "conveyance_id": plate,
                "ts_ms": t0 + (n + 2) * 3_600_000,
            }
            rec = Record("declarations", 0, n, other["ts_ms"], plate.encode(), orjson.dumps(other))
            await sb.prefetch([rec])
            (d,) = b.process("declarations", other)
            rates.append(d.facts["ent_violation_rate"])
        await r.aclose()
        return rates[0], rates[1], d.facts["declarant_violation_rate"]

    ent1, ent2, declarant = asyncio.run(main())
    assert ent1 == ent2 == declarant == pytest.approx(2 / 21)  # (1 + 1) / (1 + 20): one violation, once


# ------------------------------------------------------------------------------ real workers, real broker
WORKER_PARTITIONS = 4
TRUCKS = 12
# taken in when a declaration arrives (the HS/origin median takes a unit value in when a declaration is
# decided, and real workers decide concurrently: its facts depend on which decision Redis saw first)
ENTERPRISE = tuple(k for k in GLOBAL if not k.startswith("hs_median") and k != "unit_value_ratio")


def _plates_on_every_partition(uid: str) -> list[str]:
    """TRUCKS plates whose conveyances land evenly on every partition (a random uid alone leaves one
    partition empty about one time in eight)."""
    per = TRUCKS // WORKER_PARTITIONS
    taken: dict[int, list[str]] = {p: [] for p in range(WORKER_PARTITIONS)}
    n = 0
    while any(len(v) < per for v in taken.values()):
        plate = f"S{n:03d}"
        part = kafka_partition(f"{plate}-{uid}".encode(), WORKER_PARTITIONS)
        if len(taken[part]) < per:
            taken[part].append(plate)
        n += 1
    return sorted(p for v in taken.values() for p in v)


def _split_input(uid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One enterprise's declarations just under the split threshold on many trucks (so on every partition),
    then their weighbridge readings, each truck overweight (always dispatched: the command carries the
    facts)."""
    t0 = now_ms()
    decls, weighs = [], []
    for i, plate in enumerate(_plates_on_every_partition(uid)):
        decls.append(
            declaration(uid, plate, ts_ms=t0 + i * 1000, enterprise_id=f"E-{uid}", value_cny=45e3 + i)
        )
        weighs.append(weighbridge(uid, plate, measured_kg=35_000, ts_ms=t0 + 60_000 + i * 1000))
    return decls, weighs


def _expected(decls: list[dict[str, Any]], weighs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The facts one engine gives when every declaration is in before any is decided."""
    from pipeline.core.assemble import build_joiner

    j = build_joiner()
    for d in decls:
        assert j.on_event("declarations", d) == []  # each waits for its weighbridge reading
    out = {}
    for w in weighs:
        for r in j.on_event("logistics", w):
            out[r.decl["decl_id"]] = {k: r.facts.get(k) for k in ENTERPRISE}
    return out


@pytest.mark.parametrize("workers", [1, 4], ids=["1-worker", "4-workers-one-killed"])
def test_real_workers_count_a_split_shipment_across_partitions(
    tmp_path: Path, uid: str, workers: int
) -> None:
    from kafka.admin import KafkaAdminClient

    from pipeline.io.embedded import servers
    from pipeline.io.harness import wait_workers_ready
    from pipeline.io.topics import create_topics

    env = {"BUKONG_PARTITIONS": str(WORKER_PARTITIONS), "BUKONG_SESSION_TIMEOUT_MS": "6000"}
    with servers(None, None) as srv:
        create_topics(srv.kafka, WORKER_PARTITIONS, 600_000)
        procs = [start_worker(srv, tmp_path, extra_env=env, index=i) for i in range(workers)]
        st = Stack(srv)
        r = redis_sync.Redis.from_url(srv.redis_url)
        try:
            wait_workers_ready(srv.redis_url, workers, len(c.INPUT_TOPICS), WORKER_PARTITIONS, timeout_s=90)
            decls, weighs = _split_input(uid)
            owners = {kafka_partition(d["conveyance_id"].encode(), WORKER_PARTITIONS) for d in decls}
            assert len(owners) == WORKER_PARTITIONS, "the trucks are spread over every partition"
            for d in decls:
                st.send(c.DECLARATIONS, d, key=d["conveyance_id"])
            deadline = time.monotonic() + 60
            while r.zcard(f"bukong:g:ent:E-{uid}") < TRUCKS and time.monotonic() < deadline:
                time.sleep(0.2)
            assert r.zcard(f"bukong:g:ent:E-{uid}") == TRUCKS, "every worker wrote its declarations"
            if workers > 1:  # one dies with pending joins; a survivor restores them and decides alike
                admin = KafkaAdminClient(bootstrap_servers=srv.kafka)
                try:
                    while time.monotonic() < deadline:
                        offs = admin.list_group_offsets("bukong").get("bukong", {})
                        if sum(o.offset for tp, o in offs.items() if tp.topic == c.DECLARATIONS) >= TRUCKS:
                            break
                        time.sleep(0.2)
                finally:
                    admin.close()
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(30)
            for w in weighs:
                st.send(c.LOGISTICS, w, key=w["conveyance_id"])
            cmds = st.read(
                c.DISPATCH_COMMANDS, want=TRUCKS, timeout_s=90, where=lambda x: uid in x["decl_id"]
            )
            # the site budget counted each decision once, whoever made it (the killed worker's included)
            logged = [orjson.loads(f[b"e"]) for _, f in r.xrange("bukong:g:log")]
            budget_refs = sorted(e[1] for e in logged if e[0] == "b" and uid in e[1])
            assert budget_refs == sorted(d["decl_id"] for d in decls)
        finally:
            for p in procs:
                stop_worker(p)
            if st._producer is not None:
                st._producer.close()
    got = {x["decl_id"]: {k: x["facts"].get(k) for k in ENTERPRISE} for x in cmds}
    assert len(cmds) == TRUCKS, "one command per declaration, none doubled"
    want = _expected(decls, weighs)
    assert got == want
    assert sorted(f["split_count_24h"] for f in got.values()) == list(range(1, TRUCKS + 1))


def test_unreadable_shared_state_never_stops_a_worker(valkey: EmbeddedServer) -> None:
    """A key in a shape the worker cannot read is counted and skipped; the declaration is still decided."""
    url = f"redis://127.0.0.1:{valkey.port}/0"
    t0 = 1_790_000_000_000
    decl = declaration("bad", "BAD1", ts_ms=t0, enterprise_id="E-BAD", mode="self_drive")

    async def main() -> tuple[int, list[Decision]]:
        r = aioredis.from_url(url)
        await r.zadd("bad:g:ent:E-BAD", {b"not json": t0 - 1, b'[1, "x"]': t0 - 2})
        await r.zadd("bad:g:med:270112|MN", {b"{}": t0 - 1})
        await r.hset("bad:g:hist:enterprise:E-BAD", mapping={"n": "many", "v": "1"})
        engine = _engine(False)
        sf = SharedFacts(r, engine.joiner, namespace="bad")
        rec = Record("declarations", 0, 0, t0, b"BAD1", orjson.dumps(decl))
        await sf.prefetch([rec, Record("declarations", 0, 1, t0, b"x", b"{not json")])
        out = engine.process("declarations", decl)
        await r.aclose()
        return sf.unreadable, out

    unreadable, out = asyncio.run(main())
    assert unreadable == 3
    assert (
        len(out) == 1 and out[0].facts["ent_decl_1h"] == 1
    )  # this worker's own state: the declaration itself
