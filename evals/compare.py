"""Paired bootstrap of two `rag eval` runs of one suite: is a change's difference real?

Each run's cases.jsonl holds per-case metrics. Cases are resampled with replacement (the same
resample for both runs, so the comparison is paired), and the 95% interval of the difference
in each metric is printed. An interval that excludes 0 is a difference the suite can see.

    python evals/compare.py evals/runs/BEFORE evals/runs/AFTER [--config hybrid+extractive]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEED = 2010
RESAMPLES = 10_000


def load(run: Path, config: str | None) -> dict[str, dict]:
    cases = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines() if line.strip()]
    configs = sorted({c["config"] for c in cases})
    chosen = config or configs[0]
    return {c["id"]: c for c in cases if c["config"] == chosen}


def metric_arrays(cases: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric → (numerator per case, denominator per case): pooled metrics stay pooled."""
    answerable = np.array([c["kind"] != "unanswerable" for c in cases])
    m = [c["metrics"] for c in cases]
    ranked = np.array([c["kind"] != "unanswerable" and bool(c["gold"]) for c in cases])
    shown = np.array([x.get("one_line", False) for x in m]) * answerable * 1.0
    return {
        "hit@1": (np.array([x["hit@1"] for x in m]) * ranked, ranked * 1.0),
        "mrr@10": (np.array([x["rr@10"] for x in m]) * ranked, ranked * 1.0),
        "citation_recall": (np.array([x["cited_gold"] > 0 for x in m]) * answerable, answerable * 1.0),
        "citation_precision": (np.array([x["cited_gold"] for x in m]) * answerable,
                               np.array([x["cited"] for x in m]) * answerable),
        "fact_recall": (np.array([x["facts_found"] for x in m]) * answerable,
                        np.array([x["facts_total"] for x in m]) * answerable),
        "refusal_accuracy": (np.array([x["refused"] for x in m]) * ~answerable, ~answerable * 1.0),
        "false_refusal_rate": (np.array([x["refused"] for x in m]) * answerable, answerable * 1.0),
        "one_line_shown": (shown, answerable * 1.0),
        "one_line_right": (np.array([x.get("one_line_right", False) for x in m]) * shown, shown),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="report directory of the first run")
    parser.add_argument("after", type=Path, help="report directory of the second run")
    parser.add_argument("--config", help="configuration name in both runs (default: the first of each)")
    args = parser.parse_args()
    before, after = load(args.before, args.config), load(args.after, args.config)
    ids = [i for i in before if i in after]
    a, b = metric_arrays([before[i] for i in ids]), metric_arrays([after[i] for i in ids])
    rng = np.random.default_rng(SEED)
    samples = rng.integers(0, len(ids), size=(RESAMPLES, len(ids)))
    print(f"{len(ids)} paired cases, {RESAMPLES} resamples")
    print(f"{'metric':20} {'before':>7} {'after':>7} {'diff':>7}   95% interval")
    for name in a:
        (na, da), (nb, db) = a[name], b[name]
        if not da.sum() or not db.sum():
            continue
        point = nb.sum() / db.sum() - na.sum() / da.sum()
        diffs = nb[samples].sum(1) / np.maximum(db[samples].sum(1), 1e-9) - na[samples].sum(1) / np.maximum(da[samples].sum(1), 1e-9)
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        print(f"{name:20} {na.sum() / da.sum():7.3f} {nb.sum() / db.sum():7.3f} {point:+7.3f}   [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
