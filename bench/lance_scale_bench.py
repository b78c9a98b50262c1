"""Scale of the lance store (`--store lance`): the synthetic corpus of scale_bench.py (real
paragraphs and their perturbed real vectors, re-combined into new cables) grown in place to 1M
and 3M chunks in a LanceDB database.

At each size:
  fill      the first --base (100k) chunks are written with the project's chunker and row format
            (rag.chunk.chunk_cables, LanceStore._row) as Arrow appends of 50k rows: the bulk path
            only, since a first ingest into an empty store has nothing to look up (the per-batch id
            lookups and term-count merges of LanceStore._write are measured by `new cables`). The
            rest of each size is copies of those rows under new cable ids (`09SYNTH12C3`) with their
            vectors perturbed again, appended by Arrow: Python builds 1–3k rows/s on this shared
            machine, which would take most of an hour to 3M, and a copy keeps what the measures
            depend on (each real paragraph ~41 times at 3M, as in scale_bench.py; real headers,
            filters and lengths). The `terms` table gets the counts of every 20th row, scaled up:
            the idfs of the corpus, without tokenizing 3M texts.
  optimize  LanceStore.optimize, as `rag ingest` ends: compacts the appended fragments and brings
            the indexes there are up to date (`compact + update`), then creates the missing ones
            (scalar, the full-text index, IVF_HNSW_SQ from 100k rows); each index's build is timed.
  new cables  --new-cables (1,000) new synthetic cables through the project's own LanceIngester
            (lookups by id and cable, merge_insert, term counts), then its optimize: the wall time
            of an incremental `rag ingest`, excluding encoding (the stub encoder's time is taken off).
  queries   a fresh process opens the store and times the 80 dev questions (dense, BM25, hybrid,
            stages, and hybrid under an origin and a date-range filter): p50/p95, RSS, disk.

    python bench/lance_scale_bench.py [--sizes 1000000,3000000] [--base 100000] [--source DIR] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (FILTER_CASES, LATENCY_HEAD, PoolEncoder, child_result, dev_questions, dir_mib,  # noqa: E402
                    disk_free_gib, filtered_latency_rows, interrupt_on_term, latency_rows, load, mode_cells,
                    peak_rss_mib, read_pool, record_scale, rss_mib, stages_note, synthetic_cables, table)

from rag.filters import Filters  # noqa: E402

# Rows per Arrow append while filling: few enough fragments for the compaction to merge, small
# enough to hold in memory.
FILL_ROWS = 50_000
# One row in this many is tokenized for the `terms` table's counts.
TERM_SAMPLE = 20
# A small embassy, a large one, a year (a third of the corpus), and a large embassy over two years.
QUERY_FILTERS = (FILTER_CASES[0], FILTER_CASES[1], FILTER_CASES[5],
                 Filters.parse({"origin": "Embassy Phnom Penh", "date_from": "2008-01-01", "date_to": "2009-12-31"}))


def lance_settings(uri: Path):
    from rag.settings import Settings

    # Sentence vectors would be encoded by the real encoder: encoding is not what is measured.
    return Settings(index_dir=uri.parent / "index", store="lance", lance_uri=str(uri), sentence_vectors=False)


def query_child(uri: Path) -> int:
    rss0 = rss_mib()
    settings = lance_settings(uri)
    rows, _ = latency_rows(settings, dev_questions(), answer=False)
    filtered = filtered_latency_rows(settings, dev_questions(), QUERY_FILTERS)
    print("RESULT " + json.dumps({"rows": rows, "filtered": filtered, "rss": rss_mib(), "peak": peak_rss_mib(),
                                  "rss0": rss0}))
    return 0


class Terms:
    """The term counts of a sample of the filled rows, written scaled to the rows filled."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.sampled = 0

    def add(self, search_texts: list[str]) -> None:
        from rag.index.lance_terms import term_counts

        sample = search_texts[::TERM_SAMPLE]
        self.counts.update(term_counts(sample))
        self.sampled += len(sample)

    def write(self, store, rows: int) -> None:
        import pyarrow as pa

        from rag.index.lance_db import TERMS

        terms = store.side_table(TERMS)
        scale = rows / max(self.sampled, 1)
        batch = pa.table({"term": list(self.counts), "df": [round(n * scale) for n in self.counts.values()]},
                         schema=terms.schema)
        terms.merge_insert("term").when_matched_update_all().when_not_matched_insert_all().execute(batch)


def fill(store, encoder, cables, need: int, batch_cables: int, terms: Terms) -> tuple:
    """Append new cables' chunks until `need` are stored: (the rows appended, cables, seconds
    without the stub encoder's)."""
    import pyarrow as pa

    from rag.chunk import chunk_cables
    from rag.index.lance_store import LanceStore

    rows, appended, done, cable_count, encode_s = [], [], 0, 0, 0.0
    start = time.perf_counter()
    while done < need:
        group = [next(cables) for _ in range(batch_cables)]
        chunks = chunk_cables(group, encoder.count_tokens, encoder.max_tokens)
        t = time.perf_counter()
        vectors = encoder.encode_documents([c.embed_text for c in chunks])
        encode_s += time.perf_counter() - t
        rows += [LanceStore._row(c, v) for c, v in zip(chunks, vectors)]
        done += len(chunks)
        cable_count += len(group)
        if len(rows) >= FILL_ROWS or done >= need:
            appended.append(pa.Table.from_pylist(rows, schema=store.table.schema))
            store.table.add(appended[-1])
            terms.add([r["search_text"] for r in rows])
            rows = []
            print(f"  filled {done:,} / {need:,}", file=sys.stderr, flush=True)
    return pa.concat_tables(appended), cable_count, time.perf_counter() - start - encode_s


def copy_of(base, copy: int, noise: float, rng):
    """`base` under new cable ids (suffix C<copy>) with its vectors perturbed again, as PoolEncoder
    perturbs them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    renamed = {name: pc.replace_substring_regex(base[name], r"SYNTH(\d+)", rf"SYNTH\1C{copy}")
               for name in ("id", "cable_id", "search_text", "metadata")}
    vectors = base["vector"].combine_chunks()
    v = vectors.values.to_numpy().reshape(len(base), -1)
    v = v + noise * rng.standard_normal(v.shape).astype(np.float32) / np.sqrt(v.shape[1])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    renamed["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).ravel()), v.shape[1])
    for name, column in renamed.items():
        base = base.set_column(base.schema.get_field_index(name), name, column)
    return base


def timed_optimize(store) -> dict[str, float]:
    """LanceStore.optimize, with the seconds of each index it creates and of the table's `optimize`."""
    spent: dict[str, float] = {}
    table = store.table

    def timing(name_of, call):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                name = name_of(args)
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return timed

    table.create_index = timing(lambda args: args[0], table.create_index)
    table.optimize = timing(lambda args: "compact + update", table.optimize)
    t = time.perf_counter()
    try:
        store.optimize()
    finally:
        del table.create_index, table.optimize
    spent["total"] = time.perf_counter() - t
    return spent


def index_summary(spent: dict[str, float]) -> str:
    scalar = sum(s for name, s in spent.items() if name not in ("search_text", "vector", "compact + update", "total"))
    parts = [("FTS", spent.get("search_text")), ("vector", spent.get("vector")), ("scalar", scalar or None),
             ("compact + update", spent.get("compact + update"))]
    return f"{spent['total']:.0f} (" + ", ".join(f"{name} {s:.0f}" for name, s in parts if s) + ")"


def new_cables(ingester, cables, count: int) -> dict:
    """`count` new cables through LanceIngester, then its index update: an incremental ingest."""
    from rag.index.ingest import IngestReport

    report = IngestReport()
    batch = ingester.settings.ingest_batch
    t = time.perf_counter()
    for i in range(0, count, batch):
        ingester._write_batch([next(cables) for _ in range(min(batch, count - i))], report)
    write_s = time.perf_counter() - t - report.embed_seconds
    spent = timed_optimize(ingester.store)
    return {"chunks": report.chunks, "write_s": write_s, "optimize": spent}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,3000000", help="chunk counts, ascending")
    ap.add_argument("--source", default=str(Path.home() / ".cache" / "cablerag" / "shared"))
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "cablerag" / "lance-scale-bench"))
    ap.add_argument("--noise", type=float, default=0.15)
    ap.add_argument("--base", type=int, default=100_000, help="chunks built row by row; the rest are copies of them")
    ap.add_argument("--new-cables", type=int, default=1000, help="cables of the incremental ingest at each size")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic database")
    ap.add_argument("--query-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.query_child:
        return query_child(Path(args.query_child))

    from rag.index.lance_ingest import LanceIngester

    work = Path(args.work).expanduser()
    uri = work / "cables.lance"
    settings = lance_settings(uri)
    start_load = load()
    shutil.rmtree(work, ignore_errors=True)
    print(f"disk free at {work}: {disk_free_gib(work):.0f} GiB", flush=True)
    pool = read_pool(Path(args.source).expanduser())
    print(f"pool: {len(pool['texts']):,} real chunks with vectors from {args.source}", flush=True)
    encoder = PoolEncoder(pool, args.noise)
    ingester = LanceIngester(settings, encoder=encoder, progress=False)
    store = ingester.store
    cables = synthetic_cables(pool)
    terms = Terms()
    rows, notes = [], []
    total, cable_count, filled, copies, copy_s = 0, 0, 0, 0, 0.0
    rng = np.random.default_rng(1)
    interrupt_on_term()
    try:
        base, base_cables, base_s = fill(store, encoder, cables, args.base, settings.ingest_batch, terms)
        total, cable_count, filled = len(base), base_cables, len(base)
        for size in [int(s) for s in args.sizes.split(",")]:
            while total < size:
                copies += 1
                t = time.perf_counter()
                store.table.add(copy_of(base, copies, args.noise, rng))
                copy_s += time.perf_counter() - t
                total, cable_count, filled = total + len(base), cable_count + base_cables, filled + len(base)
            terms.write(store, filled)
            fill_rates = f"{len(base) / base_s:,.0f} / {copies * len(base) / copy_s:,.0f}" if copies else "–"
            print(f"{total:,} chunks: fill {fill_rates} chunks/s; optimize …", flush=True)
            build = timed_optimize(store)
            build_peak = peak_rss_mib()
            print(f"  optimize {index_summary(build)} s; {args.new_cables:,} new cables …", flush=True)
            new = new_cables(ingester, cables, args.new_cables)
            total, cable_count = store.count(), cable_count + args.new_cables
            print(f"  {new['chunks']:,} chunks written in {new['write_s']:.1f} s, optimize "
                  f"{index_summary(new['optimize'])} s; querying …", flush=True)
            q = child_result(__file__, "--query-child", str(uri))
            disk = dir_mib(uri) * 2**20
            rows.append([
                f"{total:,}", f"{cable_count:,}", fill_rates, index_summary(build),
                f"{new['write_s'] + new['optimize']['total']:.0f} ({new['write_s']:.0f} + "
                f"{new['optimize']['total']:.0f}); {new['chunks'] / new['write_s']:,.0f} chunks/s",
                f"{disk / 2**30:.1f} ({disk / total:,.0f})", f"{q['rss'] / 1024:.1f} / {build_peak / 1024:.1f}",
                *mode_cells(q["rows"]),
            ])
            notes.append(stages_note(total, q["rows"]))
            notes.append(f"Filtered hybrid retrieval at {total:,} chunks, 80 dev questions per filter:\n\n"
                         + table(LATENCY_HEAD, q["filtered"]) + "\n")
            notes.append(f"{args.new_cables:,} new cables at {total:,} chunks: optimize after them "
                         f"{json.dumps({k: round(v, 1) for k, v in new['optimize'].items()})} s")
            print(table(HEAD, rows[-1:]), *notes[-3:], sep="\n", flush=True)
            if disk_free_gib(work) < 20:
                notes.append(f"stopped after {total:,}: under 20 GiB of disk left")
                break
    except KeyboardInterrupt:
        notes.append(f"interrupted at {total:,} chunks; sizes above it not measured")
    description = (
        f"Lance store (lancedb, local folder {uri}). Synthetic corpus from {len(pool['texts']):,} real chunks of "
        f"{args.source} and their real embeddings (perturbed by noise {args.noise}), re-combined into new cables, "
        f"as in scale_bench.py. Nothing is encoded. 'fill' = bulk append of the first {args.base:,} chunks through "
        f"the project's chunker and row format, then copies of them under new cable ids, vectors perturbed again; 'optimize' = LanceStore.optimize after the fill (index builds); '{args.new_cables:,} new cables' "
        f"= LanceIngester._write_batch (lookups, merge_insert, term counts) + its optimize, wall time excluding "
        f"encoding; disk = the whole database folder (superseded files included: Lance keeps them 7 days); query "
        f"RSS = a fresh process after the 80 dev questions in every mode, peak = the bench process through the "
        f"index build. The machine is shared with other jobs (load average at start {start_load}, at end "
        f"{load()}): compare within a run."
    )
    return record_scale("lance_scale", description, HEAD, rows, notes, work, args.keep)


HEAD = ["chunks", "cables", "fill chunks/s (rows / copies)", "optimize s (FTS, vector, scalar, compact + update)",
        "new cables s (write + optimize); write rate", "disk GiB (bytes/chunk)", "query RSS / build peak GiB",
        "dense p50/p95 ms", "BM25 p50/p95 ms", "hybrid p50/p95 ms"]


if __name__ == "__main__":
    raise SystemExit(main())
