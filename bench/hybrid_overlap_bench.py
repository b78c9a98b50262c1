"""Hybrid search with its BM25 side overlapped (Retriever.search: a thread runs it while the
question is encoded and searched densely) against the two sides one after the other, in one run:
each dev question is asked both ways back to back, the order alternating, after 10 warm-up
questions. Also counts the questions whose top 10 differ (a question naming a cable is left out:
the sequential side does not pull that cable in, so it would differ by construction).

    python bench/hybrid_overlap_bench.py [--index DIR] [--lance-uri URI] [--origin EMBASSY] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LATENCY_HEAD, condensed, dev_questions, header, load, pct, record, table  # noqa: E402

from rag.filters import Filters  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=str(Path.home() / ".cache" / "cablerag" / "shared"))
    ap.add_argument("--lance-uri", default="", help="time the lance store at URI instead of the Chroma index")
    ap.add_argument("--origin", default="", help="filter every question to this origin")
    ap.add_argument("--rounds", type=int, default=3, help="times each question is asked each way")
    args = ap.parse_args()

    from rag.answer.retrieve import FUSION_DEPTH, open_retriever, rrf
    from rag.citation import CABLE_ID
    from rag.settings import Settings

    start_load = load()
    store = {"store": "lance", "lance_uri": args.lance_uri, "sentence_vectors": False} if args.lance_uri else {}
    settings = Settings(index_dir=Path(args.index).expanduser(), **store)
    retriever = open_retriever(settings, "hybrid")
    filters = Filters(origin=args.origin) if args.origin else Filters()
    k = settings.top_k
    questions = [q for q in (condensed(c) for c in dev_questions()) if not CABLE_ID.search(q.upper())]

    def sequential(question: str):
        vector = retriever.encoder.encode_query(question)
        dense = retriever.dense(question, FUSION_DEPTH, filters, vector)
        return rrf([dense, retriever.bm25(question, FUSION_DEPTH, filters)], weights=[retriever.dense_weight, 1.0])[:k]

    def overlapped(question: str):
        return retriever.search(question, k, filters)

    ways = {"one after the other": sequential, "BM25 overlapped (Retriever.search)": overlapped}
    for question in questions[:10]:
        for way in ways.values():
            way(question)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(args.rounds):
        for i, question in enumerate(questions):
            for name in (list(ways) if (i + r) % 2 == 0 else list(reversed(ways))):
                t = time.perf_counter()
                ways[name](question)
                times[name].append((time.perf_counter() - t) * 1000)
    differ = sum([h.chunk_id for h in sequential(q)] != [h.chunk_id for h in overlapped(q)] for q in questions)
    rows = [[name, pct(ts, 50), pct(ts, 95), max(ts)] for name, ts in times.items()]
    where = args.lance_uri or settings.index_dir
    body = "\n".join([
        f"Hybrid retrieval (top {k}) over {where} ({retriever.store.count():,} chunks)"
        f"{f', origin {args.origin}' if args.origin else ''}: {len(questions)} dev questions that name no cable, "
        f"{args.rounds} rounds, both ways back to back. Top 10 differ for {differ} of {len(questions)}. Load "
        f"average at start {start_load}, at end {load()}.", "", table(LATENCY_HEAD, rows)])
    record("hybrid_overlap", header(), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
