"""Filtered dense search on a lance store: the way LanceStore.query picks by the share of rows a
filter passes (exactly over them, unfiltered neighbours filtered after, or the HNSW index under
the filter) against always the index under the filter, in one run: each dev question both ways
back to back, the order alternating. Also the share of the top 10 the two agree on.

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

from common import LATENCY_HEAD, condensed, dev_questions, header, load, pct, record, table  # noqa: E402

from rag.filters import Filters  # noqa: E402

FILTERS = ({"origin": "Embassy Djibouti"}, {"origin": "Embassy Phnom Penh"},
           {"origin": "Embassy Phnom Penh", "date_from": "2008-01-01", "date_to": "2009-12-31"},
           {"date_from": "2009-01-01", "date_to": "2009-12-31"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lance-uri", required=True)
    ap.add_argument("--questions", type=int, default=30)
    args = ap.parse_args()

    from rag.answer.retrieve import FUSION_DEPTH, open_retriever
    from rag.index import lance_store
    from rag.index.lance_db import where_clause
    from rag.settings import Settings

    start_load = load()
    uri = Path(args.lance_uri).expanduser()
    settings = Settings(index_dir=uri.parent / "index", store="lance", lance_uri=str(uri), sentence_vectors=False)
    retriever = open_retriever(settings, "dense")
    store = retriever.store
    vectors = [retriever.encoder.encode_query(condensed(c)) for c in dev_questions()[: args.questions]]
    chosen = (lance_store.EXACT_ROWS, lance_store.EXACT_SHARE, lance_store.BROAD_SHARE)
    ways = {"chosen by share": chosen, "the index under the filter": (0, 0.0, 2.0)}
    rows = []
    for f in FILTERS:
        filters = Filters.parse(f)
        store.query(vectors[0], FUSION_DEPTH, filters)  # counts the filter's rows once, as a server would
        times: dict[str, list[float]] = {name: [] for name in ways}
        agree = []
        for i, vector in enumerate(vectors):
            top = {}
            for name in (list(ways) if i % 2 == 0 else list(reversed(ways))):
                lance_store.EXACT_ROWS, lance_store.EXACT_SHARE, lance_store.BROAD_SHARE = ways[name]
                t = time.perf_counter()
                top[name] = [h.chunk_id for h in store.query(vector, FUSION_DEPTH, filters)][:10]
                times[name].append((time.perf_counter() - t) * 1000)
            agree.append(len(set(top["chosen by share"]) & set(top["the index under the filter"])) / 10)
        lance_store.EXACT_ROWS, lance_store.EXACT_SHARE, lance_store.BROAD_SHARE = chosen
        label = ", ".join(f"{k}={v}" for k, v in f.items())
        passing = store.table.count_rows(where_clause(filters))
        for name, ts in times.items():
            rows.append([f"{label} ({passing:,} rows): {name}", pct(ts, 50), pct(ts, 95), max(ts)])
        rows.append([f"{label}: top 10 shared", sum(agree) / len(agree), "", ""])
    body = "\n".join([
        f"Dense top {FUSION_DEPTH} over {uri} ({store.count():,} chunks), {len(vectors)} dev questions per filter, "
        f"both ways back to back. Load average at start {start_load}, at end {load()}.", "", table(LATENCY_HEAD, rows)])
    record("lance_filter", header(), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
