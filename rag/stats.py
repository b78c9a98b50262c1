"""What an index holds: cables, paragraphs, date range, origins, model."""

from __future__ import annotations

from collections import Counter

import numpy as np

from rag.lexical import LexicalIndex
from rag.store import Store


def index_stats(store: Store, lexical: LexicalIndex) -> dict:
    """Counts come from the BM25 columns (one row per chunk, already in memory-friendly arrays),
    so stats on millions of chunks take no scan of the store."""
    meta = store.metadata
    stats = {
        "location": store.location,
        "chunks": store.count(),
        "model": meta.get("embed_model"),
        "dimension": meta.get("embed_dim"),
    }
    if not lexical.exists():
        return {**stats, "cables": None, "paragraphs": None, "bm25": "missing: run 'rag ingest' again"}
    cols, vocab = lexical._columns, lexical._vocab
    ids = cols["ids"]
    paragraph_keys = {i.rsplit(":", 1)[0] if i.count(":") > 1 else i for i in ids.tolist()}
    dates = cols["date_int"][cols["date_int"] > 0]
    origins = Counter(np.asarray(vocab["origins"])[cols["origin_codes"]].tolist()) if len(ids) else Counter()
    fmt = lambda d: f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}"  # noqa: E731
    return {
        **stats,
        "cables": len({k.split(":", 1)[0] for k in paragraph_keys}),
        "paragraphs": len(paragraph_keys),
        "date_from": fmt(int(dates.min())) if len(dates) else None,
        "date_to": fmt(int(dates.max())) if len(dates) else None,
        "origins": len(origins),
        "top_origins": origins.most_common(10),
        "classifications": vocab["classes"],
        "bm25": "ok" if len(ids) == stats["chunks"] else f"stale ({len(ids)} rows): run 'rag ingest' again",
    }
