"""What an index holds: cables, paragraphs, date range, origins, model; and whether each of its
parts is sound (`rag stats --verify`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.errors import NoIndex
from rag.index import hnsw_files
from rag.index.health import SQLITE, rebuild_hint, refresh_hint, require_directory, sqlite_problem, sqlite_quick_check
from rag.index.layout import CHROMA, chroma_dir
from rag.index.rows import RowIndex
from rag.index.sentences import SentenceVectors
from rag.index.store import Store
from rag.settings import Settings, get_settings


def chunk_counts(ids_sorted: np.ndarray) -> tuple[int, int]:
    """(cables, paragraphs) among the sorted UTF-8 chunk ids `<cable>:<paragraph>[:<part>]`,
    counted on their bytes, not as Python strings (millions at full scale): sorted, a cable's ids
    are adjacent; a paragraph is its unsplit chunk or its part 0."""
    n = len(ids_sorted)
    if not n:
        return 0, 0
    width = ids_sorted.dtype.itemsize
    chars = np.asarray(ids_sorted).view(np.uint8).reshape(n, width)
    colons = chars == ord(":")
    cable = np.where(np.arange(width) < colons.argmax(1)[:, None], chars, 0)
    cables = 1 + int(np.count_nonzero((cable[1:] != cable[:-1]).any(1)))
    rows, last = np.arange(n), np.count_nonzero(chars, 1) - 1  # numpy pads with NUL; ids hold none
    part_zero = (chars[rows, last] == ord("0")) & (chars[rows, last - 1] == ord(":"))
    per_row = colons.sum(1)
    return cables, int(np.count_nonzero((per_row == 1) | ((per_row == 2) & part_zero)))


def index_stats(store: Store, lexical: RowIndex) -> dict:
    """Counts come from the sidecar's columns (one row per chunk), so stats on millions of chunks
    take no scan of the store."""
    meta = store.metadata
    stats = {
        "location": store.location,
        "chunks": store.count(),
        "model": meta.get("embed_model"),
        "dimension": meta.get("embed_dim"),
    }
    if not lexical.exists():
        return {**stats, "cables": None, "paragraphs": None, "bm25": "missing: run 'rag ingest' again"}
    problem = lexical.problem()
    if problem:
        return {**stats, "cables": None, "paragraphs": None,
                "bm25": f"damaged: {problem}: {refresh_hint(lexical.path.parent)}"}
    cols, vocab = lexical._columns, lexical._vocab
    cables, paragraphs = chunk_counts(lexical._sorted_ids[0])
    dates = cols["date_int"][cols["date_int"] > 0]
    per_origin = np.bincount(cols["origin_codes"], minlength=len(vocab["origins"]))
    top = np.argsort(-per_origin, kind="stable")[:10]
    fmt = lambda d: f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}"  # noqa: E731
    store_generation, sidecar_generation = store.generation, lexical.generation_on_disk()
    return {
        **stats,
        "cables": cables,
        "paragraphs": paragraphs,
        "date_from": fmt(int(dates.min())) if len(dates) else None,
        "date_to": fmt(int(dates.max())) if len(dates) else None,
        "origins": int(np.count_nonzero(per_origin)),
        "top_origins": [(vocab["origins"][i], int(per_origin[i])) for i in top if per_origin[i]],
        "classifications": vocab["classes"],
        "generation": store_generation,
        "bm25": "ok" if sidecar_generation == store_generation else
                f"stale (built from generation {sidecar_generation}): run 'rag ingest' again",
        "sentence_vectors": sentence_vectors_state(SentenceVectors.at(lexical.path.parent), store_generation),
    }


def sentence_vectors_state(kept: SentenceVectors, generation: int) -> str:
    """Whether answers read their sentences' vectors from the index (rag.index.sentences) or encode them."""
    meta = kept.on_disk()
    built = meta.get("generation")
    if built is None:
        return "none: answers encode their sentences ('rag ingest' adds them)"
    problem = kept.problem()
    if problem:
        return f"damaged, so answers encode their sentences: {problem}: {refresh_hint(kept.path.parent)}"
    count = f"{meta.get('sentences', 0):,} sentences"
    return f"ok ({count})" if built == generation else f"from generation {built} ({count}): 'rag ingest' brings them up to date"


@dataclass
class Part:
    """One part of an index as `rag stats --verify` prints it."""

    name: str
    problem: str | None
    detail: str = ""

    @property
    def line(self) -> str:
        return f"{self.name:>10}: " + (f"damaged: {self.problem}" if self.problem else f"ok{self.detail and f' ({self.detail})'}")


def verify(settings: Settings | None = None) -> list[Part]:
    """Every part of the index checked in full, in the order `rag stats --verify` prints them (the
    store's SQLite and HNSW files only when it is embedded: a Chroma server keeps its own)."""
    settings = get_settings(settings)
    require_directory(settings.index_dir)
    parts = [] if settings.chroma_url else _verify_store(settings)
    sidecar = RowIndex.at(settings)
    problem = sidecar.problem(deep=True) if sidecar.exists() else "bm25/columns.npz is missing"
    parts.append(Part("sidecar", problem and f"{problem}: {refresh_hint(settings.index_dir)}",
                      "" if problem else f"{sidecar.rows_on_disk():,} rows, generation {sidecar.generation_on_disk()}"))
    kept = SentenceVectors.at(settings.index_dir)
    meta = kept.on_disk()
    problem = kept.problem() if kept.exists() else None
    parts.append(Part("sentences", problem and f"{problem}: {refresh_hint(settings.index_dir)}",
                      f"{meta.get('sentences', 0):,} sentences, generation {meta.get('generation')}"
                      if kept.exists() else "none kept: answers encode their sentences"))
    return parts


def _verify_store(settings: Settings) -> list[Part]:
    """The embedded store's parts: its SQLite file and its HNSW segments."""
    store_dir = chroma_dir(settings.index_dir)
    if not (store_dir / SQLITE).exists():
        raise NoIndex(f"no index at {settings.index_dir}: run 'rag ingest PATH --index {settings.index_dir}' first")
    sqlite = sqlite_problem(store_dir / SQLITE) or sqlite_quick_check(store_dir / SQLITE)
    segments = hnsw_files.segments(store_dir)
    hnsw = [f"{CHROMA}/{p}" for segment in segments for p in hnsw_files.problems(segment)]
    hint = rebuild_hint(settings.index_dir)
    return [Part("sqlite", sqlite and f"{sqlite}: {hint}", f"{(store_dir / SQLITE).stat().st_size:,} bytes, quick_check ok"),
            Part("hnsw", f"{'; '.join(hnsw)}: {hint}" if hnsw else None, f"{len(segments)} segment{'s' * (len(segments) != 1)}")]
