"""`rag ingest --store lance --workers N` (or `--ray-address ADDR`): an ingest into the lance store
spread over Ray workers; the one module that imports Ray.

The driver lists the cable files and deals them to the workers by size. Each worker
(rag.index.lance_shard) parses its files, chunks them, looks up the table at the version the
ingest started from, encodes what changed and writes Lance data files. The driver then commits
each table once: the chunks (new rows, with the rows of changed and removed cables dropped, in
one commit), the term counts, the sentence vectors; and brings the indexes up to the new rows
(`optimize`) as a serial ingest does. A run with nothing to do commits nothing.

Interrupted (Ctrl-C, a worker lost) before a commit, a table stays at its previous version: the
files the workers wrote are named by no version, so no reader opens them. As in a serial ingest,
a run stopped between the chunks' commit and the term counts' leaves those counts off.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import RagError, require_extra
from rag.index.embed import ENCODER_TYPES, get_encoder
from rag.index.ingest import IngestReport, Skipped, cable_files, iter_sources
from rag.index.lance_db import SENTENCES, TERMS, drop_tables
from rag.index.lance_fragments import commit, dataset_uri
from rag.index.lance_shard import Order, Shard, Written
from rag.index.lance_store import LanceStore
from rag.index.lance_terms import add_counts
from rag.settings import Settings

# What a local Ray keeps in shared memory: the workers hand back fragment metadata, ids and term
# counts, never rows, so Ray's default (30% of the machine's memory) is far more than needed.
OBJECT_STORE_BYTES = 256 * 1024**2
# The workers do the ingest's work, as a serial ingest's process does: at Ray's default niceness
# (15) they would yield the cores to every other process on the machine.
SYSTEM_CONFIG = {"worker_niceness": 0}


def require_ray() -> None:
    require_extra("ray", "--workers", "ray", "lance")


def _ray():
    require_ray()
    import ray

    return ray


@contextmanager
def cluster(workers: int, address: str) -> Iterator[int]:
    """Ray, joined at `address` or started here with a CPU per thread of `workers` workers that
    share this machine's cores, and shut down after; a Ray this process started already (the
    tests') is used as it is. Yields the CPUs of the cluster."""
    ray = _ray()
    owned = not ray.is_initialized()
    # The workers' output (the models' loading bars) stays in Ray's logs: a worker's failure
    # reaches the driver as its exception.
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    if owned and address:
        ray.init(address=address, **quiet)
    elif owned:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ray.init(num_cpus=workers * threads, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                 _system_config=SYSTEM_CONFIG, **quiet)
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        if owned:
            ray.shutdown()


def _get(refs: list) -> list:
    """The workers' answers; a worker's failure as one line (its RagError as it is)."""
    ray = _ray()
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RagError):
            raise cause from None
        raise RagError(f"an ingest worker failed: {type(cause).__name__}: {cause}".splitlines()[0]) from exc
    except ray.exceptions.RayActorError as exc:
        raise RagError(f"an ingest worker died: {exc}".splitlines()[0]) from exc


def listed(paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """The cable files of `paths` (a folder's, recursively), as absolute paths: a worker does not
    share the driver's working directory."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        found = cable_files(path) if path.is_dir() else [path]
        # A folder with no cable file: the serial ingest's one line for it.
        skipped.extend(item for item in ([] if found else iter_sources([path])) if isinstance(item, Skipped))
        files.extend(found)
    return files, skipped


def shares(files: list[Path], workers: int) -> list[list[tuple[int, str]]]:
    """`files` dealt to `workers`, the largest first to the least loaded, each with its place in
    the ingest's order."""
    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:  # a worker reports it as skipped
            return 0

    loads, dealt = [0] * workers, [[] for _ in range(workers)]
    for position, path in sorted(enumerate(files), key=lambda f: -size(f[1])):
        least = loads.index(min(loads))
        dealt[least].append((position, str(path)))
        loads[least] += size(path)
    return [sorted(share) for share in dealt]


def superseded(found: list[list[tuple[str, Order]]]) -> list[set[Order]]:
    """For each worker, the copies of its cables that a copy later in the order replaces."""
    last: dict[str, Order] = {}
    for cables in found:
        for cable_id, order in cables:
            last[cable_id] = max(order, last.get(cable_id, order))
    return [{order for cable_id, order in cables if order != last[cable_id]} for cables in found]


def merged(written: list[Written], skipped: list[Skipped]) -> IngestReport:
    total = IngestReport(skipped=list(skipped))
    for report in (w.report for w in written):
        for name in ("cables", "chunks", "embedded", "relabelled", "deleted", "embed_seconds"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.empty.extend(report.empty)
    return total


def dealt_sentences(written: list[Written]) -> list[list[str]]:
    """For each worker, the digests whose sentences it encodes: a sentence that two workers lack
    is encoded by the first of them only."""
    owner: dict[str, int] = {}
    for i, w in enumerate(written):
        for key in w.lacking:
            owner.setdefault(key, i)
    keys: list[list[str]] = [[] for _ in written]
    for key, i in owner.items():
        keys[i].append(key)
    return keys


def ingest_spread(paths: list[str | Path], settings: Settings, workers: int | None, address: str = "",
                  progress: bool = True, rebuild: bool = False) -> IngestReport:
    """Ingest `paths` into the lance store of `settings` over `workers` Ray workers (None: one per
    CPU of the cluster at `address`), first dropping its tables when `rebuild`. The caller holds
    the writer lock."""
    started = time.perf_counter()
    files, skipped = listed(paths)
    # Ray forks its processes before lancedb runs here: lancedb warns of every fork after it has.
    with cluster(workers or 1, address) as cpus:
        if rebuild:
            drop_tables(settings)
        # The model's id and dimension: the model itself loads only in the workers.
        encoder = get_encoder(settings.encoder, settings.embed_batch_size, settings.device,
                              precision=settings.precision)
        store = LanceStore(settings, model_id=encoder.model_id, dimension=encoder.dimension, create=True)
        sentences, terms = store.side_table(SENTENCES), store.side_table(TERMS)
        count = max(1, min(workers or cpus, len(files)))
        threads = max(1, cpus // count)
        if progress:
            print(f"ingest: {len(files)} files over {count} workers, {threads} thread{'s' * (threads > 1)} each",
                  file=sys.stderr)
        worker = _ray().remote(Shard).options(num_cpus=threads)
        shards = [worker.remote(settings, store.version, sentences.version, dict(ENCODER_TYPES), threads)
                  for _ in range(count)]
        read = _get([shard.read.remote(share) for shard, share in zip(shards, shares(files, count))])
        skipped.extend(item for _, lost in read for item in lost)
        written = _get([shard.write.remote(drop) for shard, drop in zip(shards, superseded([f for f, _ in read]))])
        encoded = _get([shard.encode_sentences.remote(keys) for shard, keys in zip(shards, dealt_sentences(written))
                        if keys])
    report = merged(written, skipped)
    delta: Counter = Counter()
    for w in written:
        delta.update(w.terms)
    # The chunks first, then their term counts, as a serial ingest writes them.
    commit(dataset_uri(store.table), store.version, [f for w in written for f in w.fragments],
           sorted({cid for w in written for cid in w.removed}))
    add_counts(terms, delta)
    commit(dataset_uri(sentences), sentences.version, [f for _, fragments in encoded for f in fragments])
    report.sentences = sum(n for n, _ in encoded)
    for item in report.skipped:
        print(item, file=sys.stderr)
    for cable_id in report.empty:
        print(f"no paragraphs in {cable_id}: the cable holds only its header", file=sys.stderr)
    if progress:
        print("updating the LanceDB indexes", file=sys.stderr)
    store.view().optimize()
    report.seconds = time.perf_counter() - started
    return report
