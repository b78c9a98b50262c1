"""Query latency on a built index: dense, BM25, hybrid and hybrid + extractive answer.

Median and p95 over the 80 dev questions (evals/dev.jsonl, with their filters and follow-up
history), after 10 warm-up questions per mode, plus the stages of a hybrid search, the
process's memory, and filtered dense search by Chroma's `where` against our row path. Default
index: all of ../shared/cables at ~/.cache/cablerag/shared (`rag ingest ../shared/cables
--index ~/.cache/cablerag/shared`, which also brings an older index's BM25 up to date).

    python bench/query_bench.py [--index DIR] [--chroma-url URL] [--encoder minilm|minilm-int8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (FILTERED_HEAD, LATENCY_HEAD, dev_questions, dir_mib, filtered_dense_rows, header,  # noqa: E402
                    latency_rows, load, peak_rss_mib, record, rss_mib, table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=str(Path.home() / ".cache" / "cablerag" / "shared"))
    ap.add_argument("--chroma-url", default="")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--repeat", type=int, default=1, help="run the 80 questions this many times")
    ap.add_argument("--threads", type=int, default=0, help="torch / onnxruntime threads (default: one per core)")
    args = ap.parse_args()

    from rag.index.embed import set_threads
    from rag.settings import Settings

    set_threads(args.threads or None)
    start_load = load()
    settings = Settings(index_dir=Path(args.index).expanduser(), chroma_url=args.chroma_url, encoder=args.encoder)
    cases = dev_questions() * args.repeat
    rss0 = rss_mib()
    t = time.perf_counter()
    rows, _ = latency_rows(settings, cases)
    wall = time.perf_counter() - t
    filtered = filtered_dense_rows(settings, cases)
    from rag.answer.retrieve import open_retriever

    r = open_retriever(settings)
    chunks = r.store.count()
    body = [
        f"Index {settings.chroma_url or settings.index_dir}: {chunks:,} chunks, {len(r.lexical):,} BM25 rows, "
        f"{dir_mib(settings.index_dir):,.0f} MiB on disk; encoder {args.encoder}; {len(cases)} questions "
        f"({wall:.0f} s in all). Load average at start {start_load}, at end {load()}.", "",
        table(LATENCY_HEAD, rows), "",
        f"Process memory: RSS {rss_mib():,.0f} MiB after the run (peak {peak_rss_mib():,.0f} MiB; "
        f"{rss0:,.0f} MiB before opening the index).", "",
        "Filtered dense search, top 50, 5 dev questions per filter: Chroma's `where` against the row path "
        "(exact over the passing rows, or Chroma's unfiltered neighbours checked by row for a broad filter):", "",
        table(FILTERED_HEAD, filtered),
    ]
    record("query", header(), "\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
