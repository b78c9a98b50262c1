"""`LanceLexical`: the lance store's answer to what the answer layer asks of the BM25 sidecar
(rag.index.rows.RowIndex): BM25 search by LanceDB's full-text index, scores of given chunks,
document frequencies and idfs, the filter choices, the latest date, and the cable lookups.

It reads the `chunks` table at the version of the store it is made with, so its searches,
counts and vocabulary all come from that one version.
"""

from __future__ import annotations

import json
import re
from functools import cached_property

import numpy as np

from rag.filters import Filters
from rag.index.bm25 import stemmer, tokenize
from rag.index.lance_db import NO_FILTERS, TERMS, among, quote
from rag.index.lance_store import HIT_COLUMNS, LanceStore
from rag.index.lance_terms import document_frequency
from rag.spelling import variants

_WORD = re.compile(r"[A-Za-z]+")
# Document frequencies kept per open version (they cannot change under it): questions share
# most of their words, and each lookup in the terms table is a query (~10 ms).
KEPT_TERMS = 100_000


class LanceLexical:
    """BM25 and the row-level lookups over one version of a lance store."""

    def __init__(self, store: LanceStore):
        self.store = store
        self.table = store.table
        self.terms = store.side_table(TERMS)
        self.generation = store.version
        self.path = store.location
        self._df: dict[str, int] = {}

    def exists(self) -> bool:
        return True

    def has_vectors(self) -> bool:
        """False: a filtered dense search goes to the store, whose `where` is indexed (not rows here)."""
        return False

    @cached_property
    def _size(self) -> int:
        return self.table.count_rows()

    def __len__(self) -> int:
        return self._size

    @property
    def bm25(self) -> LanceLexical:
        """What rag.index.rows.RowIndex.bm25 offers the ranker: `idf` and `document_frequency`."""
        return self

    def with_spellings(self, query: str) -> str:
        """The query, with the other spellings of each of its words that no chunk holds
        ("favour" → "favor"), as the sidecar's BM25 adds them (rag.index.bm25.BM25.query_tokens)."""
        spelt = {word: forms for word in _WORD.findall(query) if (forms := variants(word))}
        if not spelt:
            return query
        stems = {word: stemmer().stemWord(word.lower()) for word in spelt}
        missing = {stem for stem, df in zip(stems.values(), self.document_frequency(list(stems.values()))) if not df}
        extra = [form for word, forms in spelt.items() if stems[word] in missing for form in sorted(forms)]
        return " ".join([query, *extra])

    def search(self, query: str, k: int, filters: Filters = NO_FILTERS) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the best `k` chunks that pass the filters."""
        if k <= 0 or not tokenize([query])[0]:
            return []
        search = self.table.search(self.with_spellings(query), query_type="fts", fts_columns="search_text")
        search = search.select([*HIT_COLUMNS, "_score"]).limit(k)
        where = self.store.where(filters)
        if where:
            search = search.where(where, prefilter=True)
        rows = search.to_arrow().to_pylist()
        self.store.remember(rows)
        return [(row["id"], float(row["_score"])) for row in rows]

    def scores_of(self, query: str, ids: list[str]) -> np.ndarray:
        """The BM25 score of each chunk id for `query` (0 for an id not held or not matched)."""
        if not ids or not tokenize([query])[0]:
            return np.zeros(len(ids))
        unique = list(dict.fromkeys(ids))
        search = self.table.search(self.with_spellings(query), query_type="fts", fts_columns="search_text").select(["id", "_score"])
        rows = search.where(among("id", unique), prefilter=True).limit(len(unique)).to_list()
        score = {row["id"]: float(row["_score"]) for row in rows}
        return np.array([score.get(i, 0.0) for i in ids])

    def document_frequency(self, terms: list[str]) -> np.ndarray:
        """How many chunks hold each stemmed term (0 for a term the index has never seen)."""
        known = {t: self._df.get(t) for t in dict.fromkeys(terms)}
        missing = [t for t, df in known.items() if df is None]
        if missing:
            fresh = dict(zip(missing, document_frequency(self.terms, missing).tolist()))
            known.update(fresh)
            if len(self._df) > KEPT_TERMS:
                self._df = {}
            self._df.update(fresh)
        return np.array([known[t] for t in terms], dtype=np.int64)

    def idf(self, terms: list[str]) -> np.ndarray:
        """BM25's idf of each stemmed term, as rag.index.bm25.BM25.idf computes it."""
        df = np.maximum(self.document_frequency(terms), 1).astype(np.float64)
        return np.log(1 + (len(self) - df + 0.5) / (df + 0.5))

    @cached_property
    def columns(self):
        """The filter columns of every chunk as Arrow (a few bytes a chunk, never Python objects):
        read once per version, for the choices, the dates and the stats."""
        return self.table.search().select(["origin", "classification", "tags", "date_int"]).to_arrow()

    @cached_property
    def last_date(self) -> int:
        """The latest cable date the index holds, as YYYYMMDD (0 when none is known)."""
        import pyarrow.compute as pc

        return int(pc.max(self.columns["date_int"]).as_py() or 0)

    def vocabulary(self) -> dict[str, list[str]]:
        """Every origin, classification and tag the index holds: the values filters can take."""
        import pyarrow.compute as pc

        cols = self.columns

        def values(column) -> list[str]:
            return sorted(v for v in pc.unique(column).to_pylist() if v)

        return {"origins": values(cols["origin"]), "classifications": values(cols["classification"]),
                "tags": values(pc.list_flatten(cols["tags"]))}

    def _chunks_of(self, where: str) -> list[dict]:
        rows = self.table.search().where(where).select(["id", "cable_id", "metadata", "refs"]).to_arrow().to_pylist()
        for row in rows:
            meta = json.loads(row.pop("metadata"))
            row["order"] = (meta["paragraph"], meta.get("occurrence", 0), meta.get("part", 0))
        return rows

    def ids_of_cables(self, cable_ids: list[str]) -> list[str]:
        """The chunk ids of these cables, cable by cable, each cable's in reading order."""
        if not cable_ids:
            return []
        rows = self._chunks_of(among("cable_id", list(dict.fromkeys(cable_ids))))
        rank = {c: i for i, c in enumerate(dict.fromkeys(cable_ids))}
        return [row["id"] for row in sorted(rows, key=lambda r: (rank[r["cable_id"]], r["order"]))]

    def cable_rows(self, cable_id: str) -> list[str]:
        """The chunks of one cable (their ids: the lance store has no row numbers to give)."""
        return self.ids_of_cables([cable_id])

    def chunk_of_each(self, cable_ids: list[str]) -> dict[str, str]:
        """One chunk id of each of these cables that the index holds."""
        found: dict[str, str] = {}
        for row in self._chunks_of(among("cable_id", list(dict.fromkeys(cable_ids)))) if cable_ids else []:
            found.setdefault(row["cable_id"], row["id"])
        return found

    def references(self, cable_id: str) -> list[str]:
        """The cables this cable's REF lines name, in their order (every chunk carries them)."""
        rows = self.table.search().where(f"cable_id = {quote(cable_id)}").select(["refs"]).limit(1).to_list()
        return list(rows[0]["refs"] or []) if rows else []

    def referenced_by(self, cable_id: str) -> list[str]:
        """The cables of the index whose REF lines name this cable, in id order (by the refs index)."""
        rows = self.table.search().where(f"array_has_any(refs, [{quote(cable_id)}])").select(["cable_id"]).to_arrow()
        return sorted(set(rows["cable_id"].to_pylist()))
