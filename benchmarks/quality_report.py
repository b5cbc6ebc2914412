"""The quality benchmark's figures: the random expectation, per-run rows, per-seed aggregation with 95%
intervals, budget deviations, and the precision / value-recall curves against the budget (PNG)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.quality_common import DAY_MS, Item, World, mean_ci

MIN_SITE_DAY = 50  # a site-day with fewer declarations is too small to judge its share


def random_expectation(
    world: World, items: Sequence[Item], target: float, draws: int = 200
) -> dict[str, Any]:
    """Uniform draws of ``target`` of each site's declarations each day (physical inspection, detected as
    the oracle would): mean precision and value recall over ``draws`` draws, with their 2.5-97.5% spread."""
    import numpy as np

    found = np.zeros(len(items))
    value = np.zeros(len(items))
    oracle = world.oracle_factory() if world.oracle_factory is not None else None
    index = {it.decl["decl_id"]: i for i, it in enumerate(items)}
    for i, it in enumerate(items):
        if not it.violation:
            continue
        if oracle is None:
            found[i], value[i] = 1.0, it.fraud_value
            continue
        decl_id = it.decl["decl_id"]
        cmd = {"command_id": f"rnd-{decl_id}", "decl_id": decl_id, "lane": "physical_inspection"}
        oracle.on_command({**cmd, "decided_ts_ms": it.ts_ms}, it.ts_ms)
    if oracle is not None:
        for res in oracle.due(2**62):
            i = index[res["decl_id"]]
            found[i] = res["outcome"] == "violation"
            value[i] = float(res.get("found_value_cny", 0.0))
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[(str(it.decl.get("port", "")), (it.ts_ms - world.start_ms) // DAY_MS)].append(i)
    total_value = sum(it.fraud_value for it in items if it.violation) or 1.0
    rng = np.random.default_rng(world.seed)
    precisions, recalls = [], []
    for _ in range(draws):
        picked: list[int] = []
        for idx in groups.values():
            k = int(np.floor(target * len(idx) + rng.random()))  # stochastic rounding keeps the share exact
            picked.extend(rng.choice(idx, size=min(k, len(idx)), replace=False).tolist())
        sel = np.array(picked, dtype=int)
        precisions.append(float(found[sel].mean()) if len(sel) else 0.0)
        recalls.append(float(value[sel].sum() / total_value))
    p, r = np.array(precisions), np.array(recalls)
    return {
        "precision": round(float(p.mean()), 4),
        "precision_p2_5": round(float(np.percentile(p, 2.5)), 4),
        "precision_p97_5": round(float(np.percentile(p, 97.5)), 4),
        "value_recall": round(float(r.mean()), 4),
        "value_recall_p2_5": round(float(np.percentile(r, 2.5)), 4),
        "value_recall_p97_5": round(float(np.percentile(r, 97.5)), 4),
        "draws": draws,
    }


def _detection(per_day: dict[tuple[int, str], list[int]], day: int, typology: str) -> float | None:
    found, occurred = per_day.get((day, typology), [0, 0])
    return round(found / occurred, 3) if occurred else None


def row(s: Any, items_value: float, target: float, world: World) -> dict[str, Any]:
    """One strategy's figures in one run (one seed, one budget)."""
    t = s.tally
    worst, where = 0.0, ""
    for (site, day), (n, k) in t.site_day.items():
        if n >= MIN_SITE_DAY and abs(k / n - target) > abs(worst):
            worst, where = k / n - target, f"{site} day {day}"
    out: dict[str, Any] = {
        "precision": round(t.found / t.inspections, 4) if t.inspections else 0.0,
        "value_recall": round(t.found_value / items_value, 4) if items_value else 0.0,
        "inspections": t.inspections,
        "found": t.found,
        "max_site_day_deviation_points": round(100 * worst, 2),
        "max_site_day_deviation_at": where,
        "audits": {
            "n": int(t.audits[0]),
            "found": int(t.audits[1]),
            "value_recall": round(t.audits[2] / items_value, 4) if items_value else 0.0,
        },
        **_split(t.by_selection, t.inspections),
        "by_selection": {
            sel: {"inspections": n, "precision": round(f / n, 3) if n else 0.0}
            for sel, (n, f) in sorted(t.by_selection.items())
        },
    }
    if world.drift_day is not None and world.new_typology is not None:
        out["new_typology"] = world.new_typology
        out["new_typology_day_after"] = _detection(t.per_day, world.drift_day + 1, world.new_typology)
    return out


def _split(by_selection: dict[str, list[int]], inspections: int) -> dict[str, Any]:
    """Precision of the targeted inspections (hard rule, rule, model), of the random picks and of the
    exploration picks, apart; a strategy without random (exploration) picks has no ``precision_random``
    (``precision_explore``)."""
    rnd_n, rnd_f = by_selection.get("random", [0, 0])
    exp_n, exp_f = by_selection.get("explore", [0, 0])
    tgt_n = sum(n for sel, (n, _) in by_selection.items() if sel not in ("random", "explore"))
    tgt_f = sum(f for sel, (_, f) in by_selection.items() if sel not in ("random", "explore"))
    out: dict[str, Any] = {
        "precision_targeted": round(tgt_f / tgt_n, 4) if tgt_n else 0.0,
        "random_share_of_inspections": round(rnd_n / inspections, 4) if inspections else 0.0,
    }
    if rnd_n:
        out["precision_random"] = round(rnd_f / rnd_n, 4)
    if exp_n:
        out["precision_explore"] = round(exp_f / exp_n, 4)
        out["explore_share_of_inspections"] = round(exp_n / inspections, 4) if inspections else 0.0
    return out


NUMBERS = (
    "precision",
    "value_recall",
    "max_site_day_deviation_points",
    "new_typology_day_after",
    "precision_targeted",
    "precision_random",
    "random_share_of_inspections",
    "precision_explore",
    "explore_share_of_inspections",
)
PEERS = ("random", "rules", "rules_random", "batch_rules", "batch")
SIGNED = ("max_site_day_deviation_points",)  # every other figure is a share in [0, 1]


def aggregate(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per strategy: mean and 95% interval over the runs (seeds) of each figure and of the hybrid's ratios."""
    out: dict[str, dict[str, Any]] = {}
    for name in runs[0]:
        agg: dict[str, Any] = {}
        for key in NUMBERS:
            xs = [r[name][key] for r in runs if r[name].get(key) is not None]
            if xs:
                agg[key] = mean_ci(xs) if key in SIGNED else mean_ci(xs, 0.0, 1.0)
        if "max_site_day_deviation_points" in agg:
            worst = max((r[name]["max_site_day_deviation_points"] for r in runs), key=abs)
            agg["max_site_day_deviation_points"]["worst"] = worst
        out[name] = agg
    ratios: dict[str, Any] = {}
    for peer in PEERS:
        if peer in runs[0] and "hybrid" in runs[0]:
            xs = [r["hybrid"]["precision"] / r[peer]["precision"] for r in runs if r[peer]["precision"] > 0]
            ratios[f"hybrid_over_{peer}"] = mean_ci(xs, 0.0)
    for peer in ("rules", "rules_random"):  # the targeted inspections alone: the random share set aside
        if peer in runs[0] and "hybrid" in runs[0]:
            key = "precision_targeted"
            xs = [r["hybrid"][key] / r[peer][key] for r in runs if r[peer].get(key)]
            ratios[f"hybrid_over_{peer}_targeted"] = mean_ci(xs, 0.0)
    out["hybrid"]["ratios"] = ratios
    for name in runs[0]:  # a learner beside the production model (quality --learners): paired per seed
        base, plus, _ = name.partition("+")
        if not plus or base not in runs[0]:
            continue
        extra: dict[str, Any] = {}
        for key in ("precision", "value_recall"):
            xs = [r[name][key] / r[base][key] for r in runs if r[base][key]]
            extra[f"{key}_over_{base}"] = mean_ci(xs)
        for peer in ("rules", "batch_rules") if base == "hybrid" else ():
            xs = [r[name]["precision"] / r[peer]["precision"] for r in runs if r[peer]["precision"] > 0]
            extra[f"precision_over_{peer}"] = mean_ci(xs)
        out[name]["ratios"] = extra
    return out


def plot_curves(curves: dict[float, dict[str, dict[str, Any]]], path: Path, title: str) -> None:
    """Precision and value recall (mean, 95% interval) against the budget, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(curves)
    names = list(curves[budgets[0]])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("precision", "value_recall"), strict=True):
        for name in names:
            ys = [curves[b][name][key] for b in budgets]
            xs = [100 * b for b in budgets]
            ax.plot(xs, [y["mean"] for y in ys], marker="o", label=name)
            ax.fill_between(xs, [y["lo"] for y in ys], [y["hi"] for y in ys], alpha=0.15)
        ax.set_xlabel("inspection budget (% of declarations)")
        ax.set_ylabel(key.replace("_", " "))
        ax.set_xscale("log")
        ax.set_xticks([100 * b for b in budgets], [f"{100 * b:g}%" for b in budgets])
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_report(name: str, r: dict[str, Any], out: Callable[[str], None], strategies: Sequence[str]) -> None:
    """A scenario's results as the benchmark prints them: a line per strategy, then the ratios."""
    out(
        f"scenario {name}, policy {r.get('policy', 'graded')}: budget {r['budget']:.0%}, "
        f"{r['seeds']} seeds x {r['days']} days (mean [95% interval])"
    )
    names = [s for s in r if isinstance(r[s], dict) and "precision" in r[s]]
    for s in ("random", *strategies, *sorted(n for n in names if "+" in n)):
        row = r[s]
        p, v = row["precision"], row["value_recall"]
        line = f"  {s:14s} precision {p['mean']:.3f} [{p['lo']:.3f}, {p['hi']:.3f}]"
        line += f"  value recall {v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
        if "precision_targeted" in row:
            line += f"  targeted {row['precision_targeted']['mean']:.3f}"
            line += f" random {row['precision_random']['mean']:.3f}" if "precision_random" in row else ""
            if "precision_explore" in row:
                line += f" explore {row['precision_explore']['mean']:.3f}"
                line += f" ({row['explore_share_of_inspections']['mean']:.1%} of inspections)"
        if "max_site_day_deviation_points" in row:
            line += f"  worst site-day {row['max_site_day_deviation_points']['worst']:+.1f} pt"
        if "new_typology_day_after" in row:
            line += f"  new typology day after {row['new_typology_day_after']['mean']:.2f}"
        out(line)
    for k, v in r["hybrid"]["ratios"].items():
        if not v.get("n"):  # the peer found nothing in any seed: no ratio
            out(f"  {k:28s} n/a (the peer found no fraud in any seed)")
            continue
        out(f"  {k:28s} {v['mean']:.2f}x [{v['lo']:.2f}, {v['hi']:.2f}]")
    for s in sorted(n for n in names if "+" in n):
        for k, v in r[s].get("ratios", {}).items():
            out(f"  {s} {k:28s} {v['mean']:.3f}x [{v['lo']:.3f}, {v['hi']:.3f}] (paired per seed)")
    for k, paired in r.items():
        if k.startswith("hybrid_vs_"):
            for key, v in paired.items():
                out(f"  {k} {key:14s} {v['mean']:.3f}x [{v['lo']:.3f}, {v['hi']:.3f}] (paired per seed)")
