"""Ray ingest benchmark: the cost of spreading an ingest into the lance store over workers.

In one run, on the demo corpus (300 cables, 3,258 paragraphs) and the packaged MiniLM, each into
a fresh LanceDB database:

  (a) one process, 2 threads: `rag ingest --store lance` (rag.index.lance_ingest);
  (b) 2 Ray workers, 1 thread each: `rag ingest --store lance --workers 2` (rag.index.lance_workers)
      on a local Ray started once before (a) and timed apart, as a cluster's would be.

Both timings include loading the models (in (b), in each worker), encoding the paragraphs and
their sentences, the commits and the index update. The target: (b)'s rate at least 0.9 of (a)'s.

    python bench/ray_ingest_bench.py [--cables N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, load, record, table  # noqa: E402

from rag.index.demo import DEMO_DIR  # noqa: E402
from rag.settings import Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cables", type=int, default=0, help="only the first N demo cables (a smoke run)")
    args = parser.parse_args()
    files = sorted(DEMO_DIR.glob("*.txt"))[: args.cables or None]
    started = header()

    import ray

    from rag.index.lance_workers import OBJECT_STORE_BYTES, SYSTEM_CONFIG

    # Before anything loads lancedb or torch here: Ray forks its processes at start.
    clock = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             object_store_memory=OBJECT_STORE_BYTES, _system_config=SYSTEM_CONFIG)
    ray_seconds = time.perf_counter() - clock

    from rag.index.embed import set_threads
    from rag.index.lance_ingest import ingest_lance

    rows = []
    with tempfile.TemporaryDirectory(prefix="ray-ingest-bench-") as tmp:
        for name, workers in (("(a) 1 process × 2 threads", None), ("(b) 2 Ray workers × 1 thread", 2)):
            settings = Settings(store="lance", lance_uri=str(Path(tmp) / f"db-{workers}"), index_dir=Path(tmp) / "unused",
                                device="cpu")
            if workers is None:
                set_threads(2)
            at_start = load()
            clock = time.perf_counter()
            report = ingest_lance(files, settings, progress=False, workers=workers)
            seconds = time.perf_counter() - clock
            assert report.ok and report.embedded == report.chunks, report.summary()
            rows.append([name, report.chunks, report.sentences, seconds, report.chunks / seconds, at_start, load()])
    ray.shutdown()
    ratio = rows[1][4] / rows[0][4]
    # What `rag ingest --workers 2` pays on a machine without a running Ray: the start as well.
    with_start = rows[1][1] / (rows[1][3] + ray_seconds) / rows[0][4]
    body = "\n".join([
        f"{started}; {len(files)} demo cables, packaged MiniLM on the CPU",
        "",
        table(["run", "paragraphs", "sentences", "seconds", "paragraphs/s", "load at start", "load at end"], rows),
        "",
        f"(b) / (a): {ratio:.2f}× (target ≥ 0.9×); starting the local Ray (before (a), not in (b)): {ray_seconds:.1f} s, "
        f"{with_start:.2f}× with it",
    ])
    record("ray_ingest", "Ray ingest: 2 workers × 1 thread vs 1 process × 2 threads", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
