"""Filtered search on a lance store, three ways in one run, each dev question every way back to
back (the order rotating), under filters from a small embassy to a year:

  picked        as the store searches: dense by the share of rows a filter passes (exactly over
                them, from their vectors held in memory after the filter's first search from
                HELD_MIN_ROWS rows on; unfiltered neighbours filtered after; or the HNSW index
                under the filter), a date range's whole months matched by the `month` bitmap
  as before     the same, but no vectors held and date ranges of `date_int` only (as before
                rag.index.lance_held and the `month` column)
  under filter  dense always through the index under the filter, date ranges of `date_int`

For each: dense top 50, BM25 top 50 and hybrid retrieval (Retriever.search, top 10) p50/p95;
how many of the hybrid top 10 match the third way's (ties between the copies of one paragraph
in a synthetic store can reorder them); and the first dense search under each filter, which
counts its rows and, picked, reads their vectors into memory.

    python bench/lance_filter_bench.py --lance-uri URI [--questions 30]

Meant for a store past VECTOR_INDEX_ROWS (below it there is no index, and every way is exact):
`python bench/lance_scale_bench.py --sizes 3000000 --keep` leaves one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import condensed, dev_questions, header, load, pct, record, table  # noqa: E402

from rag.filters import Filters  # noqa: E402
from rag.index.lance_store import HELD_MIN_ROWS as DEFAULT_HELD  # noqa: E402

FILTERS = ({"origin": "Embassy Djibouti"}, {"origin": "Embassy Phnom Penh"},
           {"origin": "Embassy Phnom Penh", "date_from": "2008-01-01", "date_to": "2009-12-31"},
           {"date_from": "2009-01-01", "date_to": "2009-12-31"})


# (EXACT_ROWS, EXACT_SHARE, BROAD_SHARE, HELD_MIN_ROWS, months); None: the modules' own.
WAYS = {
    "picked": None,
    "as before": (None, None, None, float("inf"), False),
    "under filter": (0, 0.0, 2.0, float("inf"), False),
}


def use(store, way) -> None:
    """Set the thresholds and the form of `where` of one way."""
    from rag.index import lance_db, lance_store

    own = (lance_db.EXACT_ROWS, lance_db.EXACT_SHARE, lance_db.BROAD_SHARE, DEFAULT_HELD, True)
    values = [o if v is None else v for v, o in zip(way or own, own)]
    lance_store.EXACT_ROWS, lance_store.EXACT_SHARE, lance_store.BROAD_SHARE, lance_store.HELD_MIN_ROWS = values[:4]
    store.where = lambda filters: lance_db.where_clause(filters, values[4] and store.months)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lance-uri", required=True)
    ap.add_argument("--questions", type=int, default=30)
    args = ap.parse_args()

    from rag.answer.retrieve import FUSION_DEPTH, open_retriever
    from rag.index.lance_db import where_clause
    from rag.settings import Settings

    start_load = load()
    uri = Path(args.lance_uri).expanduser()
    settings = Settings(index_dir=uri.parent / "index", store="lance", lance_uri=str(uri), sentence_vectors=False)
    retriever = open_retriever(settings, "hybrid")
    store, lexical = retriever.store, retriever.lexical
    questions = [condensed(c) for c in dev_questions()[: args.questions]]
    vectors = [retriever.encoder.encode_query(q) for q in questions]
    rows = []
    for f in FILTERS:
        filters = Filters.parse(f)
        label = ", ".join(f"{k}={v}" for k, v in f.items())
        first = {}
        for name, way in WAYS.items():
            use(store, way)
            store._held.clear()
            store._passing.clear()
            t = time.perf_counter()
            store.query(vectors[0], FUSION_DEPTH, filters)
            first[name] = (time.perf_counter() - t) * 1000
        times = {(name, part): [] for name in WAYS for part in ("dense", "BM25", "hybrid")}
        agree: dict[str, list[float]] = {name: [] for name in WAYS}
        for i, (question, vector) in enumerate(zip(questions, vectors)):
            order = list(WAYS)[i % 3:] + list(WAYS)[: i % 3]
            top = {}
            for name in order:
                use(store, WAYS[name])
                for part, search in (("dense", lambda: store.query(vector, FUSION_DEPTH, filters)),
                                     ("BM25", lambda: lexical.search(question, FUSION_DEPTH, filters)),
                                     ("hybrid", lambda: retriever.search(question, 10, filters, vector))):
                    t = time.perf_counter()
                    found = search()
                    times[(name, part)].append((time.perf_counter() - t) * 1000)
                top[name] = [h.chunk_id for h in found]
            for name in WAYS:
                agree[name].append(len(set(top[name]) & set(top["under filter"])) / 10)
        use(store, None)
        passing = store.table.count_rows(where_clause(filters))
        for name in WAYS:
            cells = [f"{pct(times[(name, part)], 50):,.0f} / {pct(times[(name, part)], 95):,.0f}"
                     for part in ("dense", "BM25", "hybrid")]
            rows.append([label, f"{passing:,}", name, f"{first[name]:,.0f}", *cells,
                         f"{sum(agree[name]) / len(agree[name]):.2f}"])
    body = "\n".join([
        f"Over {uri} ({store.count():,} chunks), {len(questions)} dev questions per filter, the three ways back to "
        f"back. Load average at start {start_load}, at end {load()}.", "", table(HEAD, rows)])
    record("lance_filter", header(), body)
    return 0


HEAD = ["filter", "rows passing", "way", "first dense ms", "dense p50 / p95 ms", "BM25 p50 / p95 ms",
        "hybrid p50 / p95 ms", "hybrid top 10 as under the filter"]


if __name__ == "__main__":
    raise SystemExit(main())
