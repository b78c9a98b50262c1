"""Calibrate the extractive backend's refusal threshold on a suite (the dev set).

The extractive answerer refuses when its best evidence score is below a threshold (on top of
the pipeline's evidence gate, which refuses when the top paragraphs never mention a name the
question asks about). This runs every case once with the threshold off, then sweeps it and
prints, for each, refusal
accuracy on unanswerable cases, false-refusal rate on the others, fact recall and citation
recall — the trade-off the threshold in rag/answer.py was chosen from.

    python evals/calibrate_refusal.py --questions evals/dev.jsonl --index ~/.cache/cablerag/shared
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rag.answer import ExtractiveAnswerer
from rag.chat import condense
from rag.cite import REFUSAL
from rag.evaluate import answer_text, load_suite
from rag.metrics import score_case, summarize
from rag.pipeline import Pipeline
from rag.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", default="evals/dev.jsonl")
    parser.add_argument("--index", required=True)
    parser.add_argument("--retrieval", default="hybrid")
    args = parser.parse_args()
    pipeline = Pipeline(Settings(index_dir=Path(args.index).expanduser(), retrieval=args.retrieval))
    pipeline.answerer = ExtractiveAnswerer(pipeline.retriever.encoder, refuse_below=-1.0)
    rows = []
    for case in load_suite(args.questions):
        answer = pipeline.ask(case.question, history=list(case.history) or None, filters=case.filters or None)
        standalone = condense(case.question, list(case.history) or None)
        hits = pipeline.retriever.search(standalone, pipeline.settings.top_k, case.filters or None)
        _, best = pipeline.answerer.pick(standalone if case.history else case.question, hits)
        rows.append((case, answer, best))
    print(f"{'threshold':>9} {'refusal_acc':>11} {'false_refusal':>13} {'fact_recall':>11} {'cit_recall':>10}")
    bests = np.array([b for _, _, b in rows])
    for threshold in np.round(np.quantile(bests, np.linspace(0, 0.5, 21)), 3):
        scores = []
        for case, answer, best in rows:
            refused = bool(answer.refusal_reason) or best < threshold
            cited = [] if refused else [(c.citation.cable_id, c.citation.paragraph) for c in answer.citations]
            scores.append(score_case(
                case.kind, ranked=[(h.cable_id, h.paragraph) for h in answer.hits], gold=case.gold,
                text=REFUSAL if refused else answer_text(answer.text), facts=case.facts, cited=cited,
                refused=refused, timings_ms=answer.timings_ms,
            ))
        a = summarize(scores)["answer"]
        print(f"{threshold:>9.3f} {a['refusal_accuracy'] or 0:>11.2f} {a['false_refusal_rate'] or 0:>13.2f} "
              f"{a['fact_recall'] or 0:>11.2f} {a['citation_recall'] or 0:>10.2f}")


if __name__ == "__main__":
    main()
