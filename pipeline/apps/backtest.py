"""Backtest: replay a recording through the same pure core with a candidate pack and the live pack.

Per rule: hits, hits per site per day (the inspection load it would put on each site), and — with the ground
truth — precision (share of hits that are frauds) and the value at stake it would have found; then the
difference against the live pack. Writes a markdown report and a PNG plot.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from pipeline.contracts.events import TOPIC_KIND, ContractError, validate
from pipeline.core.assemble import build_joiner
from pipeline.core.engine import ReplayClock
from rules.engine import CompiledPack
from rules.pack import PackError, load_pack

DAY = 86_400_000
NEVER = 2**62


@dataclass
class RuleResult:
    hits: int = 0
    frauds: int = 0
    value_found: float = 0.0
    per_site_day: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))

    @property
    def precision(self) -> float | None:
        return self.frauds / self.hits if self.hits else None


def read_events(
    path: Path, bad: list[int] | None = None, reasons: Counter[str] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (topic, event) records of a recording, each checked against its contract as a worker checks it
    (the core only ever sees valid events); lines that are not such records are skipped, their line numbers
    appended to ``bad`` and their reasons counted in ``reasons`` (reported, never dropped silently)."""
    with open(path, "rb") as fh:
        for no, line in enumerate(fh, 1):
            reason = ""
            try:
                rec = orjson.loads(line)
                topic, ev = rec["topic"], rec["event"]
                kind = TOPIC_KIND.get(topic) if isinstance(topic, str) else None
                if kind is None:
                    reason = "unknown_topic"
                else:
                    validate(kind, ev)
            except ContractError as exc:
                reason = exc.reason
            except (orjson.JSONDecodeError, KeyError, TypeError):
                reason = "not_a_record"
            if not reason:
                yield topic, ev
            elif line.strip():
                if bad is not None:
                    bad.append(no)
                if reasons is not None:
                    reasons[reason] += 1


def _json_lines(path: Path, what: str) -> list[dict[str, Any]]:
    """The JSON objects of a file, one a line (blank lines skipped); a clear SystemExit otherwise."""
    out = []
    try:
        with open(path, "rb") as fh:
            for no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    x = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise SystemExit(f"error: {path}:{no}: {what}: not a JSON object ({exc})") from None
                if not isinstance(x, dict):
                    raise SystemExit(f"error: {path}:{no}: {what}: not a JSON object")
                out.append(x | {"__line__": no})
    except OSError as exc:
        raise SystemExit(f"error: {path}: cannot read the {what}: {exc.strerror or exc}") from None
    return out


def read_watchlists(path: Path) -> Any:
    """Watchlist entries (JSON lines ``{"kind", "id", "source"}``, the simulator's ``<out>.intel.jsonl``),
    live for the whole replay."""
    from features.watchlist import Watchlists

    w = Watchlists()
    for x in _json_lines(path, "watchlist"):
        if not isinstance(x.get("kind"), str) or not isinstance(x.get("id"), str):
            raise SystemExit(f"error: {path}:{x['__line__']}: a watchlist entry needs 'kind' and 'id' (text)")
        w.add(x["kind"], x["id"], x.get("source") or "intel", NEVER)
    return w


def replay_facts(
    events: Iterable[tuple[str, dict[str, Any]]], watchlists: Any = None
) -> Iterator[dict[str, Any]]:
    """The facts of every declaration a recording decides, through the same feature engine the stream runs
    (plus ``ts_ms``, the declaration's event time)."""

    joiner = build_joiner(watchlists=watchlists)
    clock = ReplayClock(events)
    for topic, ev, tick in clock:  # deadlines fire when they did live
        ready = joiner.on_event(topic, ev)
        if tick is not None:
            ready += joiner.advance(tick)
        for r in ready:
            yield {**r.facts, "ts_ms": r.decl["ts_ms"]}
    for r in joiner.advance(clock.latest + DAY):
        yield {**r.facts, "ts_ms": r.decl["ts_ms"]}


def evaluate(
    pack: CompiledPack, facts_source: Iterable[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> tuple[dict[str, RuleResult], int]:
    """Every rule of the pack (shadow rules included) over every declaration's facts (``decl_id``, ``port``
    and ``ts_ms`` among them); the number of declarations."""
    results: dict[str, RuleResult] = {r.rule.id: RuleResult() for r in pack.rules}
    decided = 0
    for facts in facts_source:
        decided += 1
        t = truth.get(facts.get("decl_id", ""), {})
        site_day = (facts.get("port", ""), int(facts.get("ts_ms", 0)) // DAY)
        for hit in pack.evaluate(facts):
            res = results[hit.rule_id]
            res.hits += 1
            res.per_site_day[site_day] += 1
            if t.get("is_fraud"):
                res.frauds += 1
                res.value_found += float(t.get("value_at_stake_cny", 0.0))
    return results, decided


def backtest(
    candidate: Path,
    baseline: Path,
    events: Path,
    truth_path: Path | None,
    out: Path,
    watchlist: Path | None = None,
) -> int:
    """The report of ``python -m pipeline rules backtest``; exit code. Watchlists come from ``watchlist`` or,
    when not given, from the recording's ``<name>.intel.jsonl`` beside it if there is one."""
    try:
        cand = CompiledPack.compile(load_pack(candidate))
        base = CompiledPack.compile(load_pack(baseline))
    except PackError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        return _backtest(cand, base, events, truth_path, out, watchlist)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1


def _backtest(
    cand: CompiledPack,
    base: CompiledPack,
    events: Path,
    truth_path: Path | None,
    out: Path,
    watchlist: Path | None,
) -> int:
    truth: dict[str, dict[str, Any]] = {}
    if truth_path:
        truth = {str(t.get("decl_id")): t for t in _json_lines(truth_path, "ground truth")}
    if watchlist is None and events.with_suffix(".intel.jsonl").exists():
        watchlist = events.with_suffix(".intel.jsonl")
    watch = read_watchlists(watchlist) if watchlist else None
    if watchlist:
        print(f"watchlists from {watchlist}", file=sys.stderr)
    if not events.is_file():
        raise SystemExit(f"error: {events}: no such recording (bukong simulate --out writes one)")
    bad: list[int] = []
    reasons: Counter[str] = Counter()
    evs = tqdm(read_events(events, bad, reasons), desc="replay", unit=" ev", file=sys.stderr, mininterval=1)
    facts = list(replay_facts(evs, watch))  # one replay, both packs on the same facts
    if not facts:
        why = f" ({len(bad)} line(s) skipped: {dict(reasons.most_common())})" if bad else ""
        raise SystemExit(
            f"error: {events}: no declaration to decide{why}; a recording is one "
            '{"topic": ..., "event": ...} a line, as `bukong simulate --out` writes'
        )
    res_c, n = evaluate(cand, tqdm(facts, desc="candidate", unit=" decl", file=sys.stderr), truth)
    res_b, _ = evaluate(base, tqdm(facts, desc="baseline", unit=" decl", file=sys.stderr), truth)
    if bad:
        print(
            f"{events}: {len(bad)} line(s) are not recorded events (or break their contract), skipped: "
            f"lines {bad[:10]}"
            f"{' ...' if len(bad) > 10 else ''} (reasons: {dict(reasons.most_common())})",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    report = render(cand, res_c, base, res_b, n, bool(truth))
    (out / "backtest.md").write_text(report)
    plot(res_c, res_b, out / "backtest.png")
    print(report)
    summary = {
        rid: {
            "hits": r.hits,
            "precision": r.precision if truth else None,
            "value_found_cny": round(r.value_found, 2),
            "baseline_hits": res_b[rid].hits if rid in res_b else None,
            "errors": cand.errors().get(rid, 0),
        }
        for rid, r in res_c.items()
    }
    print(orjson.dumps({"declarations": n, "skipped_lines": len(bad), "rules": summary}).decode())
    return 0


def render(
    pack: CompiledPack,
    res: dict[str, RuleResult],
    live: CompiledPack,
    base: dict[str, RuleResult],
    n: int,
    with_truth: bool,
) -> str:
    days = len({day for x in res.values() for _, day in x.per_site_day}) or 1
    lines = [
        f"# Backtest of '{pack.name}' version {pack.version} against '{live.name}' version {live.version}",
        "",
        f"{n} declarations decided. Site-day load: hits per site per day (mean over the sites and days the",
        "rule fired on, and the busiest site-day).",
        "",
        "| rule | status | hits | per site-day mean / max | precision | value found (CNY) "
        "| live hits | change | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    errors, last = pack.errors(), pack.last_errors()
    for r in pack.rules:
        rid = r.rule.id
        x = res[rid]
        loads = list(x.per_site_day.values())
        load = f"{sum(loads) / len(loads):.1f} / {max(loads)}" if loads else "0 / 0"
        prec = f"{x.precision:.1%}" if with_truth and x.precision is not None else "-"
        b = base.get(rid)
        change = "new rule" if b is None else f"{x.hits - b.hits:+d}"
        lines.append(
            f"| {rid} | {r.rule.status} | {x.hits} | {load} | {prec} | {x.value_found:,.0f} | "
            f"{b.hits if b else '-'} | {change} | {errors.get(rid, 0)} |"
        )
    for rid, b in base.items():
        if rid not in res:
            lines.append(f"| {rid} | removed | 0 | - | - | - | {b.hits} | {-b.hits:+d} | - |")
    lines += ["", f"{days} day(s) of events."]
    if errors:
        lines += ["", "Evaluation errors (no hit; fix the rule or guard it, e.g. `n > 0 && x / n > 1`):", ""]
        lines += [f"- {rid}: {k} of {n} declarations, last: {last.get(rid, '')}" for rid, k in errors.items()]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, RuleResult], base: dict[str, RuleResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(dict.fromkeys([*res, *base]))
    xs = range(len(ids))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(ids)), 4.5))
    ax.bar(
        [x - 0.2 for x in xs],
        [base[i].hits if i in base else 0 for i in ids],
        0.4,
        label="live pack: hits",
        color="#9aa5b1",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [res[i].hits if i in res else 0 for i in ids],
        0.4,
        label="candidate: hits",
        color="#12324a",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [res[i].frauds if i in res else 0 for i in ids],
        0.4,
        label="candidate: hits that were frauds",
        color="#a4161a",
    )
    ax.set_xticks(list(xs), ids, rotation=30, ha="right")
    ax.set_ylabel("declarations")
    ax.set_title("Backtest: hits per rule, candidate vs live pack")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
