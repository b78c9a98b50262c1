"""`LanceIndex` and `LanceParts`: the lance store (`--store lance --lance-uri URI`) behind the
interface of rag.index.index's `Index` and `Parts`, so the answer layer, `rag show` and `rag
stats` read it without knowing which store they read.

A LanceParts is one version of the `chunks` table: its store, lexical side and sentence vectors
all read that version; `newer` opens the latest one, and searches running on the old parts finish
on them. There is no sidecar to fall out of step with the store: a server is behind the store
only until it opens the latest version (rag.serve.service, within RAG_REFRESH seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import NoIndex
from rag.index.cable import cable_chunks, cable_view
from rag.index.ingest import IngestReport
from rag.index.lance_db import CHUNKS, SENTENCES, connect, open_table
from rag.index.lance_ingest import ingest_lance
from rag.index.lance_lexical import LanceLexical
from rag.index.lance_sentences import LanceSentences
from rag.index.lance_store import LanceStore
from rag.index.stats import Part
from rag.settings import Settings, get_settings
from rag.types import Hit


@dataclass(frozen=True)
class LanceParts:
    """One version of a lance store opened for reading (what rag.index.index.Parts is for Chroma)."""

    store: LanceStore
    lexical: LanceLexical
    sentences: LanceSentences | None = None

    @classmethod
    def of(cls, store: LanceStore) -> LanceParts:
        return cls(store, LanceLexical(store), LanceSentences(store.side_table(SENTENCES)))

    def stats(self) -> dict:
        return lance_stats(self.store, self.lexical, self.sentences)

    def cable(self, cable_id: str) -> dict | None:
        return cable_view(self.store, self.lexical, cable_id)

    def chunks(self, cable_id: str) -> list[Hit]:
        return cable_chunks(self.store, self.lexical, cable_id)

    def newer(self) -> LanceParts | None:
        """The parts of the table's latest version; None while this one is the latest."""
        store = self.store.view()
        return None if store.version == self.store.version else LanceParts.of(store)


def lance_stats(store: LanceStore, lexical: LanceLexical, sentences: LanceSentences | None) -> dict:
    """What the store holds, counted from the version it reads (a scan of a few columns)."""
    import pyarrow.compute as pc

    meta = store.metadata
    ids = store.table.search().select(["id", "cable_id"]).to_arrow()
    # A paragraph is a chunk `<cable>:<paragraph>`, or part 0 of one split in parts.
    whole = pc.or_(pc.equal(pc.count_substring(ids["id"], ":"), 1), pc.ends_with(ids["id"], ":0"))
    dates = pc.filter(lexical.columns["date_int"], pc.greater(lexical.columns["date_int"], 0))
    counted = pc.value_counts(pc.filter(lexical.columns["origin"], pc.not_equal(lexical.columns["origin"], "")))
    per_origin = sorted(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()),
                        key=lambda pair: (-pair[1], pair[0]))
    fmt = lambda d: f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}"
    return {
        "location": store.location, "store": "lance", "chunks": len(ids), "model": meta["embed_model"],
        "dimension": meta["embed_dim"], "cables": pc.count_distinct(ids["cable_id"]).as_py(),
        "paragraphs": pc.sum(whole).as_py() or 0,
        "date_from": fmt(pc.min(dates).as_py()) if len(dates) else None,
        "date_to": fmt(pc.max(dates).as_py()) if len(dates) else None,
        "origins": len(per_origin), "top_origins": per_origin[:10],
        "classifications": lexical.vocabulary()["classifications"],
        "generation": store.version,
        "indexes": ", ".join(sorted(f"{i.columns[0]} ({i.index_type})" for i in store.table.list_indices())),
        "sentence_vectors": f"{len(sentences):,} paragraphs" if sentences is not None else "none",
    }


class LanceIndex:
    """The lance store of `settings`, with the methods of rag.index.index.Index."""

    def __init__(self, settings: Settings | None = None):
        self.settings = get_settings(settings)

    @property
    def root(self) -> Path:
        return Path(self.settings.index_dir)

    @property
    def location(self) -> str:
        return self.settings.lance_uri

    def exists(self) -> bool:
        try:
            return open_table(connect(self.settings), CHUNKS) is not None
        except NoIndex:
            return False

    def has_store_folder(self) -> bool:
        return self.exists()

    def ensure(self, progress: bool = True) -> bool:
        """NoIndex when the database holds no chunks: the demo is built only into the Chroma store."""
        self.require()
        return False

    def require(self) -> None:
        self.store()

    def store(self, model_id: str | None = None, dimension: int | None = None, create: bool = False) -> LanceStore:
        return LanceStore(self.settings, model_id=model_id, dimension=dimension, create=create)

    def open(self, store: LanceStore) -> LanceParts:
        return LanceParts.of(store)

    def reader(self) -> LanceParts:
        return self.open(self.store())

    def cable(self, cable_id: str) -> dict | None:
        return self.reader().cable(cable_id)

    def stats(self, open_store: Callable[[], LanceStore] | None = None) -> dict:
        return self.open((open_store or self.store)()).stats()

    def verify(self) -> list[Part]:
        """Each table with its version and rows, and each index with the rows it does not cover yet."""
        store = self.store()
        parts = [Part(CHUNKS, None, f"{store.count():,} rows, version {store.version}")]
        for index in store.table.list_indices():
            stats = store.table.index_stats(index.name)
            behind = getattr(stats, "num_unindexed_rows", 0)
            parts.append(Part(index.name, None, f"{index.index_type}" + (f", {behind:,} rows not indexed yet" if behind else "")))
        return parts

    def generation(self) -> int:
        """The latest version of the `chunks` table."""
        return self.store().generation

    def check_in_step(self) -> None:
        """Nothing to check: the lance store has no sidecar to fall out of step with it."""

    def ingest(self, paths: list[str | Path], progress: bool = True, rebuild: bool = False,
               vectors_from: Path | None = None, workers: int | None = None, ray_address: str = "") -> IngestReport:
        return ingest_lance(paths, self.settings, progress, rebuild, vectors_from, workers, ray_address)
