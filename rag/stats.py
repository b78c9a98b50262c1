"""What an index holds: cables, paragraphs, date range, origins, model."""

from __future__ import annotations

import numpy as np

from rag.index_health import refresh_hint
from rag.rows import RowIndex
from rag.sentences import SentenceVectors
from rag.store import Store


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
    """Whether answers read their sentences' vectors from the index (rag.sentences) or encode them."""
    meta = kept.on_disk()
    built = meta.get("generation")
    if built is None:
        return "none: answers encode their sentences ('rag ingest' adds them)"
    problem = kept.problem()
    if problem:
        return f"damaged, so answers encode their sentences: {problem}: {refresh_hint(kept.path.parent)}"
    count = f"{meta.get('sentences', 0):,} sentences"
    return f"ok ({count})" if built == generation else f"from generation {built} ({count}): 'rag ingest' brings them up to date"
