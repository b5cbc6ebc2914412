"""Rules: 100 rules per event on the fast path vs the reference CEL runtime (cel-expr-python), same run.

The 100 rules are the starter pack's plus variants with other thresholds and sites (the way rule engineers
grow a pack); the facts come from a recorded simulator day, so the mix of hits is realistic. Reports µs per
event (all 100 rules) median and p99 for both paths and checks that they agree on every hit.

    .venv/bin/python benchmarks/rules_bench.py            # 2,000 declarations
    .venv/bin/python benchmarks/rules_bench.py --smoke    # seconds

The last stdout line is JSON with ``rules``, ``fast_us_per_event`` and ``runtime_us_per_event``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.core.assemble import build_joiner
from pipeline.io.harness import percentile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.apps.sim.scenario import load_scenario  # noqa: E402
from pipeline.apps.sim.world import Simulator  # noqa: E402
from pipeline.contracts import sites  # noqa: E402
from rules.engine import PACKS, CompiledPack  # noqa: E402
from rules.pack import parse_pack  # noqa: E402

VARIANTS = [
    ("weigh_excess_ratio > 0.05", "weigh_excess_ratio > {x:.3f}", (0.02, 0.2)),
    ("unit_value_ratio < 0.6", "unit_value_ratio < {x:.3f}", (0.3, 0.9)),
    ("split_count_24h >= 3", "split_count_24h >= {n}", (2, 8)),
    ("gps_gap_max_s > 1800.0", "gps_gap_max_s > {x:.1f}", (600.0, 3600.0)),
]


def hundred_rules() -> str:
    base = yaml.safe_load((PACKS / "starter.yaml").read_text())
    rules = list(base["rules"])
    ports = list(sites.PORTS)
    i = 0
    while len(rules) < 100:
        _, template, (lo, hi) = VARIANTS[i % len(VARIANTS)]
        x = lo + (hi - lo) * ((i * 37) % 100) / 100
        rule: dict[str, Any] = {
            "id": f"variant_{i:03d}",
            "title": "variant",
            "expression": template.format(x=x, n=int(x)),
            "lane": "document_check",
            "severity": "medium",
            "status": "active" if i % 3 else "shadow",
            "owner": "bench",
            "version": 1,
            "reason": "variant {gross_kg:.0f}",
        }
        if i % 4 == 0:
            rule["scope"] = ports[i % len(ports)]
            rule["expression"] = f"port == '{rule['scope']}' && " + rule["expression"]
        rules.append(rule)
        i += 1
    return yaml.safe_dump({"name": "bench", "version": 1, "rules": rules}, sort_keys=False)


def facts_sample(n: int) -> list[dict[str, Any]]:
    sim = Simulator(load_scenario("baseline"))
    fe = build_joiner()
    out: list[dict[str, Any]] = []
    for topic, _, ev in sim.events(3 * 86_400_000):
        out += [r.facts for r in fe.on_event(topic, ev)]
        if len(out) >= n:
            break
    return out[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    n = 200 if args.smoke else args.events
    pack = CompiledPack.compile(parse_pack(hundred_rules(), "<bench>"))
    facts = facts_sample(n)
    fast: list[float] = []
    runtime: list[float] = []
    got: list[list[str]] = []
    for _ in range(2 if args.smoke else 1):  # a warm-up pass in smoke runs, where there are few events
        fast.clear()
        got.clear()
        for f in facts:  # each path in its own pass, so neither evicts the other's working set per event
            t0 = time.perf_counter()
            hits = pack.evaluate(f)
            fast.append((time.perf_counter() - t0) * 1e6)
            got.append(sorted(h.rule_id for h in hits))
    want: list[list[str]] = []
    for f in facts:
        t0 = time.perf_counter()
        scope = ("global", f["port"])
        ref = [r.rule.id for r in pack.rules if r.rule.scope in scope and r.reference_matches(f)]
        runtime.append((time.perf_counter() - t0) * 1e6)
        want.append(sorted(ref))
    disagree = sum(a != b for a, b in zip(got, want, strict=True))

    out = {
        "rules": len(pack.rules),
        "events": len(facts),
        "fast_path_rules": pack.fast_count,
        "fast_us_per_event": round(statistics.median(fast), 2),
        "fast_us_p99": percentile(fast, 0.99),
        "runtime_us_per_event": round(statistics.median(runtime), 2),
        "runtime_us_p99": percentile(runtime, 0.99),
        "speedup": round(statistics.median(runtime) / statistics.median(fast), 1),
        "disagreements": disagree,
    }
    print("| path | µs/event median | p99 |\n|---|---|---|")
    print(f"| fast path | {out['fast_us_per_event']} | {out['fast_us_p99']} |")
    print(f"| CEL runtime (cel-expr-python) | {out['runtime_us_per_event']} | {out['runtime_us_p99']} |")
    print(orjson.dumps(out).decode())
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
