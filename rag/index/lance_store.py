"""`LanceStore`: the chunks of the lance store, with the methods of the Chroma store
(rag.index.store) that ingest, the retriever and the cable view call, answered by LanceDB.

Chunks keep Chroma's ids, content hash and metadata hash, so ingest stays incremental and
idempotent the same way. Dense search is LanceDB's (flat below VECTOR_INDEX_ROWS, HNSW above);
under a filter (a `where` on the scalar-indexed columns) it goes one of the ways `query` picks by
the share of rows that pass, and a filter never empties a top-k. A store reads the version of the
table it opened; `view` opens the latest.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

import numpy as np

from rag.errors import IndexMismatch, RagError
from rag.filters import Filters
from rag.index.bm25 import lexical_text
from rag.index.lance_db import (
    BROAD_SHARE,
    CHUNKS,
    EXACT_ROWS,
    EXACT_SHARE,
    NO_FILTERS,
    OVERSAMPLE,
    REFINE_FACTOR,
    SENTENCES,
    TERMS,
    VECTOR_INDEX_ROWS,
    among,
    chunk_schema,
    connect,
    create_table,
    keep_indexed,
    open_table,
    require_table,
    sentences_schema,
    terms_schema,
    where_clause,
)
from rag.index.lance_held import HeldRows
from rag.index.lance_terms import add_terms
from rag.index.store import HASH_KEY, META_HASH_KEY, metadata_hash
from rag.settings import Settings, get_settings
from rag.types import Chunk, Hit

# Ids per `IN (...)` lookup and rows per write.
STEP = 1000
INDEXES = {"id": "btree", "cable_id": "btree", "date_int": "btree", "month": "bitmap", "origin": "bitmap",
           "classification": "bitmap",
           "tags": "label_list", "refs": "label_list", "search_text": "fts"}
HIT_COLUMNS = ["id", "text", "metadata", "hash", "meta_hash", "vector"]
# Rows a search has read, kept for the `get` that follows it (the retriever reads a BM25 ranking's
# hits by id): a Lance query costs ~6 ms before it reads a row. A store reads one version, so a
# row it has read stays right for as long as it is kept.
RECENT_ROWS = 2048
# Filters whose passing rows a store keeps counted (each a cable, an embassy, a tag …).
KEPT_COUNTS = 10_000
# A filter searched exactly that passes at least this many rows has their vectors held in memory
# (rag.index.lance_held); fewer, and LanceDB reads them about as fast (1,140 rows at 3M: 33 ms).
# A cable's few rows (a question naming it) are never held.
HELD_MIN_ROWS = 2_000


def _metadata(row: dict) -> dict:
    """A row's metadata as the Chroma store returns it: the chunk's metadata and its two hashes."""
    return {**json.loads(row["metadata"]), HASH_KEY: row["hash"], META_HASH_KEY: row["meta_hash"]}


def _hit(row: dict, score: float, source: str) -> Hit:
    meta = _metadata(row)
    vector = None if row.get("vector") is None else np.asarray(row["vector"], dtype=np.float32)
    return Hit(row["id"], meta["cable_id"], int(meta["paragraph"]), row["text"], meta, score, source, vector)


class LanceStore:
    """The `chunks` table of one LanceDB database, embedded by one model."""

    def __init__(self, settings: Settings | None = None, *, model_id: str | None, dimension: int | None,
                 create: bool = False):
        """`model_id=None` opens the table whatever encoder built it: for reading stored text only."""
        self.settings = get_settings(settings)
        self._model_id, self._dimension = model_id, dimension
        self.db = connect(self.settings, create)
        self.table = open_table(self.db, CHUNKS)
        if self.table is None and create:
            self.table = create_table(self.db, CHUNKS, chunk_schema(model_id, dimension))
        if self.table is None:
            self.table = require_table(self.db, CHUNKS, self.location)
        meta = self.metadata
        if model_id is not None and (meta.get("embed_model"), meta.get("embed_dim")) != (model_id, dimension):
            raise IndexMismatch(
                f"the index at {self.location} was built with {meta.get('embed_model')} ({meta.get('embed_dim')} "
                f"dims), not {model_id} ({dimension} dims): use the same encoder, or ingest into a new --lance-uri")
        # The texts this store has written, whose sentences ingest encodes next (rag.index.lance_ingest).
        self.written: list[str] = []
        self._recent: OrderedDict[str, dict] = OrderedDict()
        self._recent_lock = threading.Lock()
        # How many rows pass each filter's `where`, in the version this store reads (a write of
        # its own moves it to a new one, and clears them).
        self._passing: dict[str, int] = {}
        self._held = HeldRows(self.table)
        # Whether the table has the `month` column (tables written before it lack it until their
        # next optimize): read once, a schema costs ~1 ms a question.
        self.months = "month" in self.table.schema.names

    @property
    def location(self) -> str:
        return self.settings.lance_uri

    @property
    def metadata(self) -> dict:
        """The embedding model and dimension that built the table."""
        meta = {k.decode(): v.decode() for k, v in (self.table.schema.metadata or {}).items()}
        return {"embed_model": meta.get("embed_model"), "embed_dim": int(meta.get("embed_dim") or -1)}

    @property
    def version(self) -> int:
        """The version of the table this store reads."""
        return self.table.version

    @property
    def generation(self) -> int:
        """The table's latest version, committed now (every write makes one)."""
        return require_table(self.db, CHUNKS, self.location).version

    def view(self) -> LanceStore:
        """This store opened again, at the table's latest version."""
        return LanceStore(self.settings, model_id=self._model_id, dimension=self._dimension)

    def side_table(self, name: str):
        """The `terms` or `sentences` table, created when missing."""
        schemas = {TERMS: terms_schema, SENTENCES: sentences_schema}
        return open_table(self.db, name) or create_table(self.db, name, schemas[name]())

    def where(self, filters: Filters) -> str | None:
        """The SQL `where` of the filters on this table (rag.index.lance_db.where_clause)."""
        return where_clause(filters, self.months)

    def count(self) -> int:
        return self.table.count_rows()

    def _rows(self, where: str, columns: list[str]) -> list[dict]:
        return self.table.search().where(where).select(columns).to_arrow().to_pylist()

    def _by_ids(self, ids: list[str], columns: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), STEP):
            found.update((row["id"], row) for row in self._rows(among("id", unique[i : i + STEP]), columns))
        return found

    def _of_cables(self, cable_ids: list[str], columns: list[str]) -> list[dict]:
        unique = list(dict.fromkeys(cable_ids))
        return [row for i in range(0, len(unique), STEP) for row in self._rows(among("cable_id", unique[i : i + STEP]), columns)]

    def chunk_metadata(self, ids: list[str]) -> dict[str, dict]:
        """chunk id → stored metadata of those of `ids` the store holds."""
        return {cid: _metadata(row) for cid, row in self._by_ids(ids, ["id", "metadata", "hash", "meta_hash"]).items()}

    def chunk_metadata_of_cables(self, cable_ids: list[str]) -> dict[str, dict]:
        """chunk id → stored metadata of every chunk of these cables (by the cable_id index)."""
        return {row["id"]: _metadata(row) for row in self._of_cables(cable_ids, ["id", "metadata", "hash", "meta_hash"])}

    def paragraph_texts(self, cable_ids: list[str]) -> dict[tuple[str, int], str]:
        """(cable id, paragraph) → text of every paragraph of these cables, split parts joined."""
        parts: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
        for row in self._of_cables(cable_ids, ["text", "metadata"]):
            meta = json.loads(row["metadata"])
            key = (meta["cable_id"], int(meta["paragraph"]))
            parts.setdefault(key, []).append((int(meta.get("occurrence", 0)), int(meta.get("part", 0)), row["text"]))
        return {key: " ".join(text for *_, text in sorted(chunks)) for key, chunks in parts.items()}

    def remember(self, rows: list[dict]) -> None:
        """Keep rows of HIT_COLUMNS that a search read, for `get`."""
        with self._recent_lock:
            for row in rows:
                self._recent[row["id"]] = row
                self._recent.move_to_end(row["id"])
            while len(self._recent) > RECENT_ROWS:
                self._recent.popitem(last=False)

    def get(self, ids: list[str]) -> list[Hit]:
        with self._recent_lock:
            by_id = {i: self._recent[i] for i in ids if i in self._recent}
        by_id.update(self._by_ids([i for i in ids if i not in by_id], HIT_COLUMNS))
        return [_hit(by_id[i], 0.0, "") for i in ids if i in by_id]

    def _nearest(self, embedding: np.ndarray, refine: int = REFINE_FACTOR):
        search = self.table.search(np.asarray(embedding, dtype=np.float32), vector_column_name="vector")
        return search.distance_type("cosine").refine_factor(refine)

    def query(self, embedding: np.ndarray, k: int, filters: Filters = NO_FILTERS) -> list[Hit]:
        """The `k` chunks nearest to `embedding` among those that pass the filters; score = cosine."""
        if k <= 0:
            return []
        columns = [*HIT_COLUMNS, "_distance"]
        where = self.where(filters)
        if where is None:
            rows = self._nearest(embedding).select(columns).limit(k).to_list()
            return [_hit(row, 1.0 - float(row["_distance"]), "dense") for row in rows]
        passing, total = self.passing(where), self.passing(None)
        exact = passing <= max(EXACT_ROWS, EXACT_SHARE * total) or total < VECTOR_INDEX_ROWS
        if exact and passing >= HELD_MIN_ROWS and passing * 4 * len(embedding) <= self._held.budget:
            return self._rows_of(self._held.nearest(where, embedding, k), "dense")
        if not exact and passing >= BROAD_SHARE * total:
            n = -(-k * OVERSAMPLE * total // passing)
            # Refined once: a refine factor makes the index visit that many times the n. Row ids
            # only, then the rows of the k: every column of n rows costs a third more.
            search = self._nearest(embedding, 1).where(where, prefilter=False).select(["_distance"])
            found = search.with_row_id(True).limit(n).to_list()
            if len(found) >= k:
                return self._rows_of([(row["_rowid"], 1.0 - float(row["_distance"])) for row in found[:k]], "dense")
        search = self._nearest(embedding).where(where, prefilter=True).select(columns).limit(k)
        rows = (search.bypass_vector_index() if exact else search).to_list()
        return [_hit(row, 1.0 - float(row["_distance"]), "dense") for row in rows]

    def _rows_of(self, ranked: list[tuple[int, float]], source: str) -> list[Hit]:
        """Hits of (row id, score), in their order: the rows read by row id."""
        if not ranked:
            return []
        found = self.table.take_row_ids([row_id for row_id, _ in ranked]).select(HIT_COLUMNS).with_row_id().to_list()
        by_row = {row["_rowid"]: row for row in found}
        return [_hit(by_row[row_id], score, source) for row_id, score in ranked if row_id in by_row]

    def passing(self, where: str | None) -> int:
        """How many rows pass `where` (all when None), in the version this store reads."""
        key = where or ""
        if key not in self._passing:
            if len(self._passing) >= KEPT_COUNTS:
                self._passing.clear()
            self._passing[key] = self.table.count_rows(where)
        return self._passing[key]

    def nearest_ids(self, embedding: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the `n` nearest chunks, unfiltered."""
        if n <= 0:
            return []
        rows = self._nearest(embedding).select(["id", "_distance"]).limit(n).to_list()
        return [(row["id"], 1.0 - float(row["_distance"])) for row in rows]

    def upsert(self, chunks: list[Chunk], embeddings: np.ndarray, previous: dict[str, dict]) -> None:
        """Store `chunks` with their embeddings, replacing the rows of the same ids."""
        self._write(chunks, np.asarray(embeddings, dtype=np.float32))
        self.written.extend(c.text for c in chunks)

    def update_metadata(self, chunks: list[Chunk], previous: dict[str, dict]) -> None:
        """Rewrite the metadata of stored chunks whose text is unchanged: their vectors are kept."""
        if chunks:
            stored = self._by_ids([c.id for c in chunks], ["id", "vector"])
            self._write(chunks, np.array([stored[c.id]["vector"] for c in chunks], dtype=np.float32))

    def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        old = self._by_ids(ids, ["id", "search_text"])
        for i in range(0, len(ids), STEP):
            self.table.delete(among("id", ids[i : i + STEP]))
        self._passing.clear()
        self._held.clear()
        add_terms(self.side_table(TERMS), [row["search_text"] for row in old.values()], [])

    def rows(self, chunks: list[Chunk], vectors: np.ndarray):
        """The arrow rows of `chunks` embedded as `vectors`, in the table's schema."""
        import pyarrow as pa

        return pa.Table.from_pylist([self._row(c, v) for c, v in zip(chunks, vectors)], schema=self.table.schema)

    def _write(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        old = self._by_ids([c.id for c in chunks], ["id", "search_text"])
        rows = self.rows(chunks, vectors)
        for i in range(0, len(rows), STEP):
            self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(
                rows.slice(i, STEP))
        self._passing.clear()
        self._held.clear()
        # After the chunks: a run killed between the two leaves the counts of one batch behind.
        add_terms(self.side_table(TERMS), [row["search_text"] for row in old.values()],
                  rows["search_text"].to_pylist())

    @staticmethod
    def _row(chunk: Chunk, vector: np.ndarray) -> dict:
        meta = chunk.metadata
        return {
            "id": chunk.id, "cable_id": meta["cable_id"], "paragraph": int(meta["paragraph"]), "text": chunk.text,
            "search_text": lexical_text(chunk.text, meta), "vector": vector.tolist(), "origin": meta.get("origin", ""),
            "classification": meta.get("classification", ""), "date_int": int(meta.get("date_int") or 0),
            "month": int(meta.get("date_int") or 0) // 100,
            "tags": list(meta.get("tags") or []), "refs": list(meta.get("refs") or []),
            "metadata": json.dumps(meta, ensure_ascii=False), "hash": chunk.content_hash,
            "meta_hash": metadata_hash(meta),
        }

    def optimize(self) -> None:
        """Bring every index up to the rows written (creating those the table lacks)."""
        try:
            if not self.months and self.count():
                # A table written before the `month` column: computed from `date_int`, in place.
                self.table.add_columns({"month": "CAST(date_int / 100 AS INT)"})
                self.months = True
            keep_indexed(self.table, INDEXES)
            keep_indexed(self.side_table(TERMS), {"term": "btree"})
            keep_indexed(self.side_table(SENTENCES), {"key": "btree"})
        except OSError as exc:
            raise RagError(f"cannot update the indexes at {self.location}: {exc}") from exc
        finally:
            # Compaction rewrites rows, and with them the row ids the held filters name.
            self._passing.clear()
            self._held.clear()
