"""Fit the second ranking stage and the evidence check on a suite, cross-validated by case.

Runs every case's retrieval once (the same code path as `rag ask`, with ranking and refusal
off), computes the ranking features of its candidates (rag.answer.rank.FEATURES), and fits:

1. the ranker: logistic regression, candidate → "is a gold paragraph";
2. the evidence check: logistic regression over the question's signals (rag.answer.evidence.SIGNALS),
   computed from lists ranked by out-of-fold ranker scores, → "is answerable", on the cases
   the stated checks (rag.answer.evidence.EvidenceCheck.rule) leave to it; its threshold is the
   highest whose out-of-fold false-refusal rate, with the stated checks' refusals, stays
   within --max-false-refusal.

Both are scored out of fold first (5 folds by case; the figures printed are those), then
refitted on every case and written to rag/models/ranker.json and rag/models/evidence.json.

    python evals/fit_models.py --questions evals/dev.jsonl --index ~/.cache/cablerag/shared
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedKFold
from tqdm import tqdm

from rag.answer.chat import condense
from rag.answer.evidence import SIGNALS, EvidenceCheck, signals
from rag.answer.pipeline import Pipeline
from rag.answer.rank import FEATURES, LinearModel
from rag.evaluation.suite import load_suite
from rag.settings import Settings

MODELS = Path(__file__).resolve().parents[1] / "rag" / "models"
FOLDS = 5
SEED = 2010


def fit(x: np.ndarray, y: np.ndarray, c: float, balanced: bool) -> LinearModel:
    return LinearModel.fit(FEATURES if x.shape[1] == len(FEATURES) else SIGNALS, x, y, c, balanced)


def first_gold(cands, gold) -> int | None:
    seen = []
    for c in cands:
        key = (c.hit.cable_id, c.hit.paragraph)
        if key not in seen:
            seen.append(key)
        if key in gold:
            return len(seen)
    return None


def ranking_figures(lists, golds) -> dict:
    ranks = [first_gold(c, g) for c, g in zip(lists, golds) if g]
    return {"hit@1": np.mean([r == 1 for r in ranks]), "hit@5": np.mean([r is not None and r <= 5 for r in ranks]),
            "mrr@10": np.mean([1 / r if r and r <= 10 else 0 for r in ranks])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", default="evals/dev.jsonl", help="suite to fit on (JSONL)")
    parser.add_argument("--index", type=Path, required=True, help="index holding every gold cable of the suite")
    parser.add_argument("--max-false-refusal", type=float, default=0.0,
                        help="out-of-fold false-refusal rate the evidence threshold may reach (default 0: refuse only below every answerable case)")
    parser.add_argument("--c", type=float, default=0.1, help="inverse regularisation of both models (default 0.1)")
    parser.add_argument("--dry-run", action="store_true", help="print the cross-validated figures, write nothing")
    args = parser.parse_args()

    cases = load_suite(args.questions)
    pipeline = Pipeline(Settings().with_(index_dir=args.index.expanduser(), rank=False, refuse=False))
    questions, lists = [], []
    for case in tqdm(cases, desc="candidates", unit="case"):
        standalone = condense(case.question, list(case.history) or None, None)
        question, found = pipeline.candidates(case.question, standalone, case.filters)
        questions.append(question)
        lists.append(found)
    golds = [set(case.gold) for case in cases]

    # Ranker: one row per candidate, grouped by case.
    rows = [(i, c) for i, found in enumerate(lists) if golds[i] for c in found]
    x = np.stack([c.features for _, c in rows])
    y = np.array([(c.hit.cable_id, c.hit.paragraph) in golds[i] for i, c in rows], dtype=int)
    groups = np.array([i for i, _ in rows])
    oof = np.zeros(len(rows))
    for train, test in GroupKFold(n_splits=FOLDS).split(x, y, groups):
        oof[test] = fit(x[train], y[train], args.c, balanced=False).score(x[test])
    scored: dict[int, list] = {i: [] for i in range(len(cases))}
    for (i, c), s in zip(rows, oof):
        scored[i].append(replace(c, hit=replace(c.hit, score=float(s))))
    ranker = fit(x, y, args.c, balanced=False)
    for i, found in enumerate(lists):
        if not golds[i]:  # unanswerable cases: ranked by the model fitted on every answerable case
            s = ranker.score(np.stack([c.features for c in found])) if found else []
            scored[i] = [replace(c, hit=replace(c.hit, score=float(v))) for c, v in zip(found, s)]
    ranked = [sorted(scored[i], key=lambda c: -c.hit.score) for i in range(len(cases))]
    before, after = ranking_figures(lists, golds), ranking_figures(ranked, golds)
    print(f"ranking ({len(rows)} candidates of {sum(bool(g) for g in golds)} cases), retrieval order → "
          f"out-of-fold ranker:")
    for k in before:
        print(f"  {k:7} {before[k]:.3f} → {after[k]:.3f}")

    # Evidence: one row per case the stated checks leave open, from the out-of-fold ranked lists.
    lexical = pipeline.retriever.lexical
    ruled = [EvidenceCheck(None).rule(q, r, lexical) for q, r in zip(questions, ranked)]
    answerable = np.array([bool(g) for g in golds])
    rule_refused = np.array([v is not None and not v.answerable for v in ruled])
    open_ = np.array([v is None for v in ruled])
    xe = np.stack([signals(q, r, lexical.bm25.idf) for q, r in zip(questions, ranked)])[open_]
    ye = answerable[open_].astype(int)
    oof_e = np.zeros(len(ye))
    for train, test in StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED).split(xe, ye):
        oof_e[test] = fit(xe[train], ye[train], args.c, balanced=True).score(xe[test])
    print(f"evidence: stated checks refuse {rule_refused[~answerable].sum()} of {(~answerable).sum()} unanswerable "
          f"and {rule_refused[answerable].sum()} of {answerable.sum()} answerable cases")

    def rates(t: float) -> tuple[float, float]:
        refused = rule_refused.copy()
        refused[open_] = oof_e < t
        return float(refused[~answerable].mean()), float(refused[answerable].mean())

    threshold, best = float(oof_e.min()) - 1, rates(float(oof_e.min()) - 1)
    for t in np.sort(oof_e):
        if rates(t)[1] <= args.max_false_refusal:
            threshold, best = float(t), rates(t)
    print(f"evidence with the model, out of fold at the chosen threshold: refusal accuracy {best[0]:.3f}, "
          f"false refusals {best[1]:.3f}")
    evidence = replace(fit(xe, ye, args.c, balanced=True), threshold=threshold)

    for model, names in ((ranker, FEATURES), (evidence, SIGNALS)):
        print("  " + ", ".join(f"{n} {w:+.2f}" for n, w in zip(names, model.coef)))
    if args.dry_run:
        return
    source = {"suite": str(args.questions), "cases": len(cases), "folds": FOLDS, "c": args.c}
    ranker = replace(ranker, meta={**source, "out_of_fold": {k: round(float(v), 4) for k, v in after.items()},
                                   "retrieval_order": {k: round(float(v), 4) for k, v in before.items()}})
    evidence = replace(evidence, meta={**source, "max_false_refusal": args.max_false_refusal,
                                       "out_of_fold": {"refusal_accuracy": round(best[0], 4),
                                                       "false_refusal_rate": round(best[1], 4)}})
    MODELS.mkdir(exist_ok=True)
    for name, model in (("ranker.json", ranker), ("evidence.json", evidence)):
        (MODELS / name).write_text(json.dumps(model.to_json(), indent=1) + "\n")
        print(f"wrote {MODELS / name}")


if __name__ == "__main__":
    main()
