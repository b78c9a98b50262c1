"""The Chroma store: the one module that talks to chromadb.

Chunks are stored under stable ids (`<cable id>:<paragraph>[:<part>]`) with two hashes in their
metadata, one of the embedded text and one of the metadata, so re-ingesting the same cables
re-embeds nothing and a parser fix that changes only metadata rewrites only metadata. The
collection records the embedding model and dimension (opening it with another model is refused)
and a generation, advanced before every write, that the BM25 sidecar is checked against.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from typing import Callable, Iterator
from urllib.parse import urlparse

import numpy as np

from rag.errors import IndexMismatch, NoIndex, RagError
from rag.filters import Filters
from rag.index.health import SQLITE, check_store_files, damaged, rebuild_hint, require_directory, sqlite_quick_check
from rag.index.layout import chroma_dir
from rag.settings import Settings, get_settings
from rag.types import Chunk, Hit

HASH_KEY = "hash"
META_HASH_KEY = "meta_hash"
GENERATION_KEY = "generation"
# Part of every metadata hash: bump it when what a stored metadata value means changes while the
# value itself does not, so the next ingest rewrites every chunk's metadata (without re-embedding).
# A new key (the `refs` of cables with REF lines) changes the hash of the chunks that carry it by
# itself, so only those are rewritten.
SCHEMA_VERSION = 1
_METADATA = threading.Lock()


def metadata_hash(metadata: dict) -> str:
    """Hash of a chunk's metadata under this SCHEMA_VERSION (key order does not matter)."""
    blob = json.dumps([SCHEMA_VERSION, metadata], sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def _stored_metadata(chunk: Chunk, previous: dict | None) -> dict:
    """What to write for `chunk`: its metadata and hashes, and None for every key the stored copy
    has that the new one lacks (a tag list a parser fix removed), because Chroma's upsert and
    update merge metadata into what is stored instead of replacing it."""
    new = {**chunk.metadata, HASH_KEY: chunk.content_hash, META_HASH_KEY: metadata_hash(chunk.metadata)}
    return {**{key: None for key in previous or {} if key not in new}, **new}


def _generation(collection_metadata: dict | None) -> int:
    """A collection's generation; an index written before generations existed is generation 0."""
    return int((collection_metadata or {}).get(GENERATION_KEY, 0))


def _client(settings: Settings, own: bool = False):
    """A Chroma client for the index of `settings`; `own`: over a system of its own, which reads
    the embedded index as it is on disk now (see `Store`)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if not url.hostname:
            raise RagError(f"bad --chroma-url {settings.chroma_url!r}: expected http://host:port")
        return chromadb.HttpClient(
            host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https", settings=chroma_settings
        )
    # Before Chroma reads a byte: its hnswlib segfaults on some damaged files (rag.index.hnsw_files).
    check_store_files(settings)
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    path = str(chroma_dir(settings.index_dir))
    if own:
        from chromadb.api.shared_system_client import SharedSystemClient

        # chromadb keeps one system per path and process, whose HNSW index never reloads what
        # another process wrote: dropped from its cache here, the next client opens a new one.
        # Clients already open keep theirs.
        SharedSystemClient._identifier_to_system.pop(path, None)
        SharedSystemClient._identifier_to_refcount.pop(path, None)
    try:
        return chromadb.PersistentClient(path=path, settings=chroma_settings)
    except Exception as exc:
        raise _unreadable(settings, exc) from exc


def _unreadable(settings: Settings, exc: Exception) -> RagError:
    """What Chroma failing to open the embedded store means: DamagedIndex when SQLite's own
    check of every page finds the damage that the header checks before the open could not."""
    problem = sqlite_quick_check(chroma_dir(settings.index_dir) / SQLITE)
    if problem:
        return damaged(settings.index_dir, problem, rebuild_hint(settings.index_dir))
    return RagError(f"cannot open the index at {settings.index_dir}: {type(exc).__name__}: {exc}".splitlines()[0])


def where_clause(filters: Filters) -> dict | None:
    """Chroma `where` for the filters: cable_id, origin, classification and tag matched exactly,
    the dates as a range of `date_int`, combined with $and; None when nothing is filtered."""
    clauses = []
    if filters.cable_id:
        clauses.append({"cable_id": filters.cable_id})
    if filters.origin:
        clauses.append({"origin": filters.origin})
    if filters.classification:
        clauses.append({"classification": filters.classification})
    if filters.tag:
        clauses.append({"tags": {"$contains": filters.tag}})
    if filters.day_from:
        clauses.append({"date_int": {"$gte": filters.day_from}})
    if filters.day_to:
        clauses.append({"date_int": {"$lte": filters.day_to}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _hit(chunk_id: str, text: str, meta: dict, score: float, source: str, vector=None) -> Hit:
    vector = None if vector is None else np.asarray(vector, dtype=np.float32)
    return Hit(chunk_id, meta["cable_id"], int(meta["paragraph"]), text, meta, score, source, vector)


class Store:
    """A Chroma collection of paragraph chunks embedded by one model.

    Each Store of an embedded index opens a Chroma system of its own, and so sees the index as
    it is when opened: the vectors another process writes afterwards reach its HNSW index only
    through a new Store (`view`), while its SQLite reads (text, metadata) see them at once, so a
    chunk the other process deleted can come back from a search without its metadata, and is
    dropped (`query`)."""

    def __init__(self, settings: Settings | None = None, *, model_id: str | None, dimension: int | None,
                 create: bool = True):
        """`model_id=None` (with create=False) opens the collection whatever encoder built it:
        for reading stored text only, never for searching with vectors."""
        self.settings = get_settings(settings)
        self._model_id, self._dimension = model_id, dimension
        require_directory(self.settings.index_dir)
        if not create and not self.settings.chroma_url and not (chroma_dir(self.settings.index_dir)).exists():
            raise NoIndex(f"no index at {self.settings.index_dir}: run 'rag ingest PATH' first")
        self.client = _client(self.settings, own=True)
        self.max_batch = self.client.get_max_batch_size()
        name = self.settings.collection
        if create:
            self.collection = self.client.get_or_create_collection(
                name,
                embedding_function=None,  # never chromadb's default ONNX embedder: it downloads
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embed_model": model_id, "embed_dim": dimension},
            )
        else:
            try:
                self.collection = self.client.get_collection(name, embedding_function=None)
            except Exception as exc:
                if not self.settings.chroma_url and sqlite_quick_check(chroma_dir(self.settings.index_dir) / SQLITE):
                    raise _unreadable(self.settings, exc) from exc
                raise NoIndex(f"no index at {self.location}: run 'rag ingest PATH' first") from exc
        meta = self.collection.metadata or {}
        recorded = (meta.get("embed_model"), int(meta.get("embed_dim", -1)))
        if model_id is not None and recorded != (model_id, dimension):
            raise IndexMismatch(
                f"the index at {self.location} was built with {meta.get('embed_model')} "
                f"({meta.get('embed_dim')} dims), not {model_id} ({dimension} dims): "
                "use the same encoder, or ingest into a new --index"
            )

    def view(self) -> Store:
        """This store opened again: what the index holds now, the vectors written since this one
        was opened included."""
        return Store(self.settings, model_id=self._model_id, dimension=self._dimension, create=False)

    def load_vectors(self) -> None:
        """Load the HNSW index now, not in the first search: Chroma reads all of it then."""
        dim = int(self.metadata.get("embed_dim") or 0)
        if dim > 0:
            self.nearest_ids(np.ones(dim, dtype=np.float32), 1)

    @property
    def location(self) -> str:
        return self.settings.chroma_url or str(self.settings.index_dir)

    @classmethod
    def generation_at(cls, settings: Settings | None = None) -> int:
        """The generation of the index of `settings`, read without loading an encoder."""
        settings = get_settings(settings)
        return _generation(_client(settings).get_collection(settings.collection, embedding_function=None).metadata)

    def committed_metadata(self) -> dict:
        """The collection's metadata as committed now: re-read, not the copy cached on
        self.collection, since another process may be ingesting."""
        return self.client.get_collection(self.settings.collection, embedding_function=None).metadata or {}

    def change_collection_metadata(self, change: Callable[[dict], dict]) -> None:
        """Replace the collection's metadata by `change(committed)`. Read, change and write hold
        one lock in this process: the writer's lease (rag.index.lease) is renewed from a thread
        while the ingest advances the generation, and neither may write back the other's old value."""
        with _METADATA:
            self.collection.modify(metadata=change(self.committed_metadata()))

    @property
    def generation(self) -> int:
        """The store's generation as committed now."""
        return _generation(self.committed_metadata())

    def _advance(self) -> None:
        """Move to the next generation before a write, so a sidecar built from the old one stops
        matching even when this process dies half-way through the write."""
        self.change_collection_metadata(lambda committed: {**committed, GENERATION_KEY: _generation(committed) + 1})

    @classmethod
    def exists(cls, settings: Settings | None = None) -> bool:
        settings = get_settings(settings)
        require_directory(settings.index_dir)
        if not settings.chroma_url and not (chroma_dir(settings.index_dir)).exists():
            return False
        try:
            return settings.collection in [c.name for c in _client(settings).list_collections()]
        except RagError:
            raise
        except Exception as exc:
            # Not "no index": treating an unreachable server as empty would build the demo into it.
            where = f"the Chroma server at {settings.chroma_url}" if settings.chroma_url else f"the index at {settings.index_dir}"
            raise RagError(f"cannot read {where}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc

    @classmethod
    def discard(cls, settings: Settings | None = None) -> None:
        """Remove the collection, whatever state its files are in: the embedded store's folder
        (never opened: it may be damaged), or the collection on a Chroma server."""
        settings = get_settings(settings)
        require_directory(settings.index_dir)
        if not settings.chroma_url:
            shutil.rmtree(chroma_dir(settings.index_dir), ignore_errors=True)
        elif cls.exists(settings):
            _client(settings).delete_collection(settings.collection)

    def count(self) -> int:
        return self.collection.count()

    def chunk_metadata_of_cables(self, cable_ids: list[str]) -> dict[str, dict]:
        """chunk id → stored metadata of every chunk of these cables, found by Chroma's `where`
        (a scan of every metadata row: `chunk_metadata` is the fast path when the ids are known)."""
        found: dict[str, dict] = {}
        step = 500  # keeps the $in list, and the answer, of moderate size
        for i in range(0, len(cable_ids), step):
            got = self.collection.get(where={"cable_id": {"$in": cable_ids[i : i + step]}}, include=["metadatas"])
            found.update(zip(got["ids"], got["metadatas"]))
        return found

    def chunk_metadata(self, ids: list[str]) -> dict[str, dict]:
        """chunk id → stored metadata of those of `ids` the store holds (looked up by id)."""
        found: dict[str, dict] = {}
        for i in range(0, len(ids), self.max_batch):
            got = self.collection.get(ids=ids[i : i + self.max_batch], include=["metadatas"])
            found.update(zip(got["ids"], got["metadatas"]))
        return found

    @property
    def metadata(self) -> dict:
        """What the collection records about itself (the embedding model and its dimension)."""
        return self.collection.metadata or {}

    def paragraph_texts(self, cable_ids: list[str]) -> dict[tuple[str, int], str]:
        """(cable id, paragraph) → text of every paragraph of these cables, split parts joined."""
        parts: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
        ids = list(dict.fromkeys(cable_ids))
        step = 500  # keeps the $in list, and the answer, of moderate size
        for i in range(0, len(ids), step):
            got = self.collection.get(where={"cable_id": {"$in": ids[i : i + step]}}, include=["documents", "metadatas"])
            for doc, meta in zip(got["documents"], got["metadatas"]):
                key = (meta["cable_id"], int(meta["paragraph"]))
                parts.setdefault(key, []).append((int(meta.get("occurrence", 0)), int(meta.get("part", 0)), doc))
        return {key: " ".join(doc for *_, doc in sorted(chunks)) for key, chunks in parts.items()}

    def upsert(self, chunks: list[Chunk], embeddings: np.ndarray, previous: dict[str, dict]) -> None:
        """Store `chunks` with their embeddings; `previous` is what the store held for them
        (chunk id → metadata), whose keys the chunks no longer have are cleared."""
        if not chunks:
            return
        self._advance()
        for i in range(0, len(chunks), self.max_batch):
            part = chunks[i : i + self.max_batch]
            self.collection.upsert(
                ids=[c.id for c in part],
                embeddings=embeddings[i : i + self.max_batch],
                documents=[c.text for c in part],
                metadatas=[_stored_metadata(c, previous.get(c.id)) for c in part],
            )

    def update_metadata(self, chunks: list[Chunk], previous: dict[str, dict]) -> None:
        """Rewrite the metadata of stored chunks whose text is unchanged: no embedding needed."""
        if not chunks:
            return
        self._advance()
        for i in range(0, len(chunks), self.max_batch):
            part = chunks[i : i + self.max_batch]
            self.collection.update(ids=[c.id for c in part],
                                   metadatas=[_stored_metadata(c, previous.get(c.id)) for c in part])

    def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        self._advance()
        for i in range(0, len(ids), self.max_batch):
            self.collection.delete(ids=ids[i : i + self.max_batch])

    def query(self, embedding: np.ndarray, k: int, filters: Filters = Filters()) -> list[Hit]:
        # No count() first: it costs ~5 ms a query on 73k chunks, and Chroma already returns
        # fewer than k results when fewer match.
        if k <= 0:
            return []
        got = self.collection.query(
            query_embeddings=[embedding], n_results=k, where=where_clause(filters),
            include=["documents", "metadatas", "distances", "embeddings"],
        )
        return [
            _hit(cid, doc, meta, 1.0 - dist, "dense", vec)
            for cid, doc, meta, dist, vec in zip(got["ids"][0], got["documents"][0], got["metadatas"][0],
                                                 got["distances"][0], got["embeddings"][0])
            if meta is not None  # deleted by another process since this store was opened
        ]

    def nearest_ids(self, embedding: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the `n` nearest chunks, unfiltered: ids and distances only,
        which Chroma answers from the HNSW index without a metadata read."""
        if n <= 0:
            return []
        got = self.collection.query(query_embeddings=[embedding], n_results=n, include=["distances"])
        return [(cid, 1.0 - dist) for cid, dist in zip(got["ids"][0], got["distances"][0])]

    def get(self, ids: list[str]) -> list[Hit]:
        if not ids:
            return []
        got = self.collection.get(ids=ids, include=["documents", "metadatas", "embeddings"])
        by_id = {
            cid: _hit(cid, d, m, 0.0, "", v)
            for cid, d, m, v in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
        }
        return [by_id[i] for i in ids if i in by_id]

    def iter_all(self, batch: int = 5000, include: tuple[str, ...] = ("documents", "metadatas")) -> Iterator[dict]:
        """Every chunk, page by page (bounded memory: the ids, then one page at a time).

        Pages are fetched by id, not by `offset`: Chroma's SQLite skips `offset` rows for every
        page, so offset paging is quadratic (73k chunks: 17 s by offset, 8 s by id)."""
        ids = self.collection.get(include=[])["ids"]
        for i in range(0, len(ids), batch):
            yield self.collection.get(ids=ids[i : i + batch], include=list(include))
