"""Helpers shared by the benchmarks: machine facts, memory, percentiles, tables, result files.

Benchmarks are scripts that print tables (not timed tests). Each one also appends its table,
with the date, `nproc` and the load average, to bench/results/<name>.md.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared"
DEV = ROOT / "evals" / "dev.jsonl"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.filters import Filters  # noqa: E402 — after the path and the environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, {mem:.0f} GiB RAM, no GPU"


def header() -> str:
    return f"{datetime.now():%Y-%m-%d %H:%M} · {machine()} · load average at start {load()}"


def _status_kib(field: str, pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size now."""
    return _status_kib("VmRSS", pid) / 1024


def peak_rss_mib(pid: int | str = "self") -> float:
    """High-water mark of the resident set size."""
    return _status_kib("VmHWM", pid) / 1024


def tree_rss_mib(pid: int) -> float:
    """RSS of a process and its children (a server that forks)."""
    total = rss_mib(pid)
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += tree_rss_mib(int(child))
    except OSError:
        pass
    return total


def dir_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


def pct(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if 0 < q < 100 else values[-1]


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header_row: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header_row]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(cells[0]) + " |", "| " + " | ".join("---" for _ in cells[0]) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def record_scale(name: str, description: str, head: list[str], rows: list, notes: list[str], work: Path,
                 keep: bool) -> int:
    """Record a scale run (what it measured, its table, its notes) in bench/results/<name>.md, and
    remove its work folder unless `keep`."""
    record(name, header(), "\n".join([description, "", table(head, rows), "", *[f"- {n}" for n in notes]]))
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def record(name: str, title: str, body: str) -> Path:
    """Print `body` and append it, dated, to bench/results/<name>.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    text = f"\n## {title}\n\n{body.rstrip()}\n"
    print(text)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
    print(f"(appended to {path.relative_to(ROOT)})")
    return path


def disk_free_gib(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / 2**30


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def dev_questions(path: Path = DEV) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Query latency, shared by query_bench, server_bench and scale_bench


def condensed(case: dict) -> str:
    from rag.answer.chat import condense

    return condense(case["question"], case.get("history") or None, None)


def latency_rows(settings, cases: list[dict], modes=("dense", "bm25", "hybrid"), answer: bool = True,
                 warmup: int = 10, stages: bool = True) -> tuple[list[list], dict]:
    """Median and p95 (ms) of retrieval per mode, of the extractive answer (hybrid), and of the
    hybrid retrieval's stages, over `cases` after `warmup` untimed questions per mode."""
    from dataclasses import replace

    from rag.answer.pipeline import Pipeline
    from rag.answer.retrieve import FUSION_DEPTH, open_retriever

    base = open_retriever(settings, "hybrid")
    k = settings.top_k
    rows, raw = [], {}
    questions = [(condensed(c), Filters.parse(c.get("filters"))) for c in cases]
    for mode in modes:
        times = raw[mode] = timed_searches(replace(base, mode=mode), questions, k, warmup)
        rows.append([f"{mode} retrieval (top {k})", pct(times, 50), pct(times, 95), max(times)])
    if answer:
        pipeline = Pipeline(settings.with_(retrieval="hybrid", llm="extractive"), retriever=replace(base, mode="hybrid"))
        for c in cases[:warmup]:
            pipeline.ask(c["question"], history=c.get("history") or None, filters=Filters.parse(c.get("filters")))
        times = []
        for c in cases:
            t = time.perf_counter()
            pipeline.ask(c["question"], history=c.get("history") or None, filters=Filters.parse(c.get("filters")))
            times.append((time.perf_counter() - t) * 1000)
        raw["answer"] = times
        rows.append(["hybrid + extractive answer + verification (Pipeline.ask)", pct(times, 50), pct(times, 95), max(times)])
    if stages:
        store, lexical, encoder = base.store, base.lexical, base.encoder
        parts: dict[str, list[float]] = {"encode query": [], "dense search (50, with docs+vectors)": [],
                                         "BM25 search (50)": [], "store get (50 BM25 ids)": []}
        for q, f in questions:
            t0 = time.perf_counter()
            vec = encoder.encode_query(q)
            t1 = time.perf_counter()
            base.dense(q, FUSION_DEPTH, f, vec)
            t2 = time.perf_counter()
            ranked = lexical.search(q, FUSION_DEPTH, f)
            t3 = time.perf_counter()
            store.get([cid for cid, _ in ranked])
            t4 = time.perf_counter()
            for name, a, b in zip(parts, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                parts[name].append((b - a) * 1000)
        for name, times in parts.items():
            rows.append([f"  stage: {name}", pct(times, 50), pct(times, 95), max(times)])
    return rows, raw


def timed_searches(retriever, questions: list[tuple], k: int, warmup: int) -> list[float]:
    """Milliseconds of `retriever.search` for each (question, filters), after `warmup` untimed."""
    for q, f in questions[:warmup]:
        retriever.search(q, k, f)
    times = []
    for q, f in questions:
        t = time.perf_counter()
        retriever.search(q, k, f)
        times.append((time.perf_counter() - t) * 1000)
    return times


def filtered_latency_rows(settings, cases: list[dict], filters: tuple, mode: str = "hybrid",
                          warmup: int = 10) -> list[list]:
    """p50 / p95 / max (ms) of retrieval in `mode` for every case's question under each of `filters`
    (in place of the case's own), as `rag ask --origin … --from … --to …` runs it."""
    from rag.answer.retrieve import open_retriever

    retriever = open_retriever(settings, mode)
    questions = [condensed(c) for c in cases]
    rows = []
    for f in filters:
        times = timed_searches(retriever, [(q, f) for q in questions], settings.top_k, warmup)
        label = ", ".join(f"{k}={v}" for k, v in f.to_json().items())
        rows.append([f"{mode} + {label}", pct(times, 50), pct(times, 95), max(times)])
    return rows


LATENCY_HEAD = ["what", "p50 ms", "p95 ms", "max ms"]


def mode_cells(rows: list[list]) -> list[str]:
    """'p50 / p95' of dense, BM25 and hybrid retrieval from latency_rows' rows."""
    by_mode = {r[0].split(" retrieval")[0]: r for r in rows if " retrieval (top " in r[0]}
    return [f"{fmt(by_mode[m][1])} / {fmt(by_mode[m][2])}" for m in ("dense", "bm25", "hybrid")]


def stages_note(total: int, rows: list[list]) -> str:
    """One line of the hybrid retrieval's stages from latency_rows' rows."""
    return f"Stages at {total:,} chunks (p50 / p95 ms): " + "; ".join(
        f"{r[0].replace('  stage: ', '')} {fmt(r[1])} / {fmt(r[2])}" for r in rows if "stage" in r[0])

# From one small embassy to a broad date range: how a filter's share of the corpus moves the cost.
FILTER_CASES = tuple(Filters.parse(f) for f in (
    {"origin": "Embassy Djibouti"},
    {"origin": "Embassy Phnom Penh"},
    {"origin": "Embassy Mexico", "classification": "SECRET"},
    {"tag": "KTIP"},
    {"classification": "SECRET"},
    {"date_from": "2009-01-01", "date_to": "2009-12-31"},
))
FILTERED_HEAD = ["filter", "chunks passing", "Chroma where p50 / max ms", "rows path p50 / max ms",
                 "top-10 agreement"]


def filtered_dense_rows(settings, cases: list[dict], per_filter: int = 5) -> list[list]:
    """Dense top 50 under each of FILTER_CASES for `per_filter` dev questions: Chroma's `where`
    (Store.query) against the row path Retriever.dense takes when the index holds its vectors,
    and how many of the top 10 the two share (the row path is exact; HNSW under a filter is not)."""
    from rag.answer.retrieve import FUSION_DEPTH, open_retriever

    retriever = open_retriever(settings, "dense")
    vectors = [retriever.encoder.encode_query(condensed(c)) for c in cases[:per_filter]]
    rows = []
    for filters in FILTER_CASES:
        passing = retriever.lexical.filter_rows(filters)
        where_ms, rows_ms, agree = [], [], []
        for vec in vectors:
            t = time.perf_counter()
            chroma = retriever.store.query(vec, FUSION_DEPTH, filters)
            where_ms.append((time.perf_counter() - t) * 1000)
            if retriever.lexical.has_vectors():
                t = time.perf_counter()
                ours = retriever.dense("", FUSION_DEPTH, filters, vec)
                rows_ms.append((time.perf_counter() - t) * 1000)
                top = {h.chunk_id for h in chroma[:10]}
                if top:
                    agree.append(len(top & {h.chunk_id for h in ours[:10]}) / len(top))
        label = ", ".join(f"{k}={v}" for k, v in filters.to_json().items())
        rows.append([label, f"{len(passing):,}", f"{fmt(pct(where_ms, 50))} / {fmt(max(where_ms))}",
                     f"{fmt(pct(rows_ms, 50))} / {fmt(max(rows_ms))}" if rows_ms else "– (no vectors in the index)",
                     f"{statistics.mean(agree):.2f}" if agree else "–"])
    return rows


def child_result(script: str, *args: str) -> dict:
    """Run `script` with `args` in a fresh process (cold caches of its own, its own peak RSS) and
    return the JSON it prints on its `RESULT ` line."""
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child {script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_term() -> None:
    """`kill` as well as Ctrl-C (a backgrounded run ignores SIGINT) stops a scale run with the sizes
    measured so far recorded."""
    signal.signal(signal.SIGTERM, _interrupt)


# ---------------------------------------------------------------------------------------------
# The synthetic corpus of scale_bench and lance_scale_bench: real paragraphs and their real
# vectors, re-combined into new cables


def read_pool(source: Path, page: int = 5000, limit: int = 0) -> dict:
    """Every chunk (or the first `limit`) of the source index: text, metadata, vector."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(source / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_collection("cables", embedding_function=None)
    n = min(col.count(), limit or col.count())
    vectors = np.empty((n, int(col.metadata["embed_dim"])), dtype=np.float32)
    texts, metas = [], []
    offset = 0
    while offset < n:
        got = col.get(limit=min(page, n - offset), offset=offset, include=["documents", "metadatas", "embeddings"])
        if not got["ids"]:
            break
        m = len(got["ids"])
        vectors[offset : offset + m] = np.asarray(got["embeddings"], dtype=np.float32)
        texts += got["documents"]
        metas += got["metadatas"]
        offset += m
    return {"model_id": col.metadata["embed_model"], "dim": vectors.shape[1], "texts": texts,
            "metas": metas, "vectors": vectors[:offset]}


class PoolEncoder:
    """Stands in for the encoder: the vector of the real paragraph a chunk was built from."""

    max_tokens = 254

    def __init__(self, pool: dict, noise: float, seed: int = 0):
        self.model_id, self.dimension = pool["model_id"], pool["dim"]
        self.vectors = pool["vectors"]
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.by_text = {t: i for i, t in enumerate(pool["texts"])}

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [1] * len(texts)  # pool chunks already fit the window: never split

    def encode_documents(self, texts: list[str], progress=None) -> np.ndarray:
        rows = [self.by_text[t.split("\n", 1)[1]] for t in texts]
        v = self.vectors[rows]
        if self.noise:
            g = self.rng.standard_normal(v.shape).astype(np.float32) / np.sqrt(v.shape[1])
            v = v + self.noise * g
            v /= np.linalg.norm(v, axis=1, keepdims=True)
        if progress:
            progress(len(texts))
        return v.astype(np.float32)


def synthetic_cables(pool: dict, seed: int = 0):
    """Endless new cables: a real header, a real number of real paragraphs, a new id."""
    from rag.types import Cable, Paragraph

    rng = random.Random(seed)
    by_cable: dict[str, list[int]] = {}
    for i, m in enumerate(pool["metas"]):
        by_cable.setdefault(m["cable_id"], []).append(i)
    heads = [pool["metas"][rows[0]] for rows in by_cable.values()]
    sizes = [len(rows) for rows in by_cable.values()]
    n_pool = len(pool["texts"])
    j = 0
    while True:
        head = rng.choice(heads)
        d = date.fromisoformat(head["date"]) if head.get("date") else None
        cid = f"{(d.year % 100) if d else 0:02d}SYNTH{j}"
        cable = Cable(cid, head.get("subject", ""), d, head.get("classification", ""), head.get("origin", ""),
                      tags=list(head.get("tags") or []))
        for number, row in enumerate(rng.sample(range(n_pool), min(rng.choice(sizes), n_pool)), start=1):
            meta = pool["metas"][row]
            cable.paragraphs.append(Paragraph(cid, number, pool["texts"][row], heading=meta.get("heading", "")))
        j += 1
        yield cable
