"""Scale: a synthetic corpus of real paragraphs at 250k, 1M and 3M chunks.

The paragraphs (and their vectors) come from a built index of real cables (default: all of
../shared/cables at ~/.cache/cablerag/shared), read through the Chroma collection with
include=["embeddings"]. They are re-combined into new cables with new ids (`09SYNTH123`):
each new cable takes the header (subject, origin, date, classification, tags) of a random real
cable and a random set of real paragraphs, as many as a real cable has, so text statistics
(BM25's vocabulary, lengths, filters) stay real. A paragraph's vector is the real embedding of
the paragraph it was built from, plus a small random perturbation (cosine ≈ 0.99 to it) so that
the ~30 copies of a paragraph at 3M are not exact duplicates in the HNSW graph (they would not
be in reality either: the context line embedded with a paragraph names its new cable).

Nothing is encoded: the store side of `rag ingest` is measured (rag.index.ingest.Ingester with a
stub encoder that returns those vectors and no-op token counts: hash lookup, Chroma upsert)
and then the BM25 rebuild as `rag ingest` runs it (RowIndex.build over store.iter_all()).
The corpus grows in place from one size to the next. At each size, a fresh process opens the
index and times the 80 dev questions (dense, BM25, hybrid, stages) and reports its memory.

    python bench/scale_bench.py [--sizes 250000,1000000] [--source DIR] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (FILTERED_HEAD, PoolEncoder, child_result, dev_questions, dir_mib, disk_free_gib,  # noqa: E402
                    filtered_dense_rows, fmt, header, interrupt_on_term, latency_rows, load, mode_cells, peak_rss_mib,
                    read_pool, record, record_scale, rss_mib, stages_note, synthetic_cables, table)


def query_child(index: Path) -> int:
    from rag.settings import Settings

    rss0 = rss_mib()
    settings = Settings(index_dir=index)
    rows, _ = latency_rows(settings, dev_questions(), answer=False)
    filtered = filtered_dense_rows(settings, dev_questions())
    print("RESULT " + json.dumps({"rows": rows, "filtered": filtered, "rss": rss_mib(), "peak": peak_rss_mib(),
                                  "rss0": rss0}))
    return 0


def measure(settings, total: int, cables: str, store_rate, rebuild_s: float, ingest_peak: float,
            rows: list, notes: list) -> None:
    """Disk and a fresh process's query latency and memory at this size: one row of HEAD, and the
    notes (stages, filtered search)."""
    chroma_mib, bm25_mib = dir_mib(settings.index_dir / "chroma"), dir_mib(settings.index_dir / "bm25")
    print(f"{total:,} chunks: store {fmt(store_rate, 0)} chunks/s, BM25 rebuild {rebuild_s:.0f} s; querying …",
          flush=True)
    q = child_result(__file__, "--query-child", str(settings.index_dir))
    rows.append([
        f"{total:,}", cables, store_rate, rebuild_s, (chroma_mib + bm25_mib) / 1024,
        f"{chroma_mib / 1024:.1f} + {bm25_mib / 1024:.2f}", q["rss"] / 1024, ingest_peak / 1024,
        *mode_cells(q["rows"]),
    ])
    notes.append(stages_note(total, q["rows"]))
    notes.append(f"Filtered dense search at {total:,} chunks, top 50, 5 dev questions per filter:\n\n"
                 + table(FILTERED_HEAD, q["filtered"]) + "\n")
    print(table(HEAD, rows[-1:]), flush=True)
    print(notes[-2], notes[-1], sep="\n", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="250000,1000000", help="chunk counts, ascending (e.g. 250000,1000000,3000000)")
    ap.add_argument("--source", default=str(Path.home() / ".cache" / "cablerag" / "shared"))
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "cablerag" / "scale-bench"))
    ap.add_argument("--noise", type=float, default=0.15)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic index")
    ap.add_argument("--requery", action="store_true",
                    help="measure a kept synthetic index again (after `rag ingest` would refresh its BM25 "
                         "and vectors) instead of building one")
    ap.add_argument("--query-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.query_child:
        return query_child(Path(args.query_child))

    from tqdm import tqdm

    from rag.index.ingest import Ingester, IngestReport
    from rag.settings import Settings

    work = Path(args.work).expanduser()
    settings = Settings(index_dir=work / "index")
    start_load = load()
    rows, notes = [], []
    if args.requery:
        if not (settings.index_dir / "chroma").exists():
            print(f"scale_bench: no kept index at {settings.index_dir}: run with --keep first", file=sys.stderr)
            return 2
        ingester = Ingester(settings, encoder=PoolEncoder(read_pool(settings.index_dir, limit=1), 0.0))
        t = time.perf_counter()
        ingester.refresh_lexical(progress=True)
        total = ingester.store.count()
        measure(settings, total, "–", None, time.perf_counter() - t, peak_rss_mib(), rows, notes)
        body = [f"A kept synthetic index ({work}) measured again; 'BM25 rebuild s' is the refresh `rag ingest` "
                f"makes of an index whose BM25 lacks the vectors (0 when none is needed). Load average at start "
                f"{start_load}, at end {load()}.", "", table(HEAD, rows), "", *[f"- {n}" for n in notes]]
        record("scale", header(), "\n".join(body))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    shutil.rmtree(work, ignore_errors=True)
    print(f"disk free at {work}: {disk_free_gib(work):.0f} GiB", flush=True)
    t = time.perf_counter()
    pool = read_pool(Path(args.source).expanduser())
    pool_s = time.perf_counter() - t
    print(f"pool: {len(pool['texts']):,} real chunks with vectors from {args.source} ({pool_s:.0f} s)", flush=True)
    ingester = Ingester(settings, encoder=PoolEncoder(pool, args.noise))
    cables = synthetic_cables(pool)
    total, cable_count = 0, 0
    batch_cables = settings.ingest_batch
    interrupt_on_term()
    try:
        for size in sizes:
            report = IngestReport()
            t0 = time.perf_counter()
            with tqdm(total=size - total, unit="chunk", desc=f"store → {size:,}", file=sys.stderr) as bar:
                while total < size:
                    batch = [next(cables) for _ in range(batch_cables)]
                    before = report.chunks
                    ingester._write_batch(batch, report)
                    total += report.chunks - before
                    cable_count += len(batch)
                    bar.update(report.chunks - before)
            step_s = time.perf_counter() - t0 - report.embed_seconds  # the stub's vector lookup is not store time
            t1 = time.perf_counter()
            ingester.refresh_lexical(progress=True)
            measure(settings, total, f"{cable_count:,}", report.chunks / step_s, time.perf_counter() - t1,
                    peak_rss_mib(), rows, notes)
            if disk_free_gib(work) < 20:
                notes.append(f"stopped after {total:,}: under 20 GiB of disk left")
                break
    except KeyboardInterrupt:
        # Keep (and record) the sizes already measured: the 3M step alone can take hours.
        notes.append(f"interrupted at {total:,} chunks; sizes above it not measured")
    description = (
        f"Synthetic corpus from {len(pool['texts']):,} real chunks of {args.source} and their real embeddings "
        f"(read from the Chroma collection with include=['embeddings']; perturbed by noise {args.noise}, "
        f"cosine ≈ 0.99 to the original), re-combined into new cables with new ids. Store side only (no "
        f"encoding): Ingester._write_batch with a stub encoder, {batch_cables} cables per batch, then the BM25 "
        f"rebuild as `rag ingest` runs it. Query memory = RSS of a fresh process after opening the index and "
        f"running the 80 dev questions in 3 modes. Load average at start {start_load}, at end {load()}."
    )
    return record_scale("scale", description, HEAD, rows, notes, work, args.keep)


HEAD = ["chunks", "cables", "store ingest chunks/s", "BM25 rebuild s", "disk GiB", "chroma + bm25 GiB",
        "query RSS GiB", "ingest peak RSS GiB", "dense p50/p95 ms", "BM25 p50/p95 ms", "hybrid p50/p95 ms"]


if __name__ == "__main__":
    raise SystemExit(main())
