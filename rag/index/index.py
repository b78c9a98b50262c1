"""`Index`: one index, its folder (rag.index.layout) or a collection on a Chroma server, and
every way the faces open it.

Reading an index takes three parts that must agree: the Chroma store, the BM25 sidecar built
from the store's current generation, and the sentence vectors. `Index.open` hands them out
together, or StaleIndex saying how to repair it when the sidecar is out of step; nothing else
opens them. The answer layer builds its retriever over these parts; `rag show`, the cable panel
and the APIs read a cable through `Index.cable`; `rag stats` through `Index.stats` and `verify`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import RagError, StaleIndex
from rag.index import demo
from rag.index.cable import cable_chunks, cable_view
from rag.index.layout import chroma_dir
from rag.index.rows import RowIndex
from rag.index.sentences import SentenceVectors
from rag.index.stats import Part, index_stats, verify
from rag.index.store import Store
from rag.settings import Settings, get_settings
from rag.types import Hit

if TYPE_CHECKING:
    from rag.index.ingest import IngestReport
    from rag.index.lance_index import LanceIndex


@dataclass(frozen=True)
class Parts:
    """An index opened for reading: the store, and the sidecar and sentence vectors that were
    built from the store's generation."""

    store: Store
    lexical: RowIndex
    sentences: SentenceVectors | None = None

    def stats(self) -> dict:
        """What the index holds, counted from the loaded sidecar (no scan of the store)."""
        return index_stats(self.store, self.lexical)

    def cable(self, cable_id: str) -> dict | None:
        """The cable view (rag.index.cable) of one cable; None when the index does not hold it."""
        return cable_view(self.store, self.lexical, cable_id)

    def chunks(self, cable_id: str) -> list[Hit]:
        return cable_chunks(self.store, self.lexical, cable_id)

    def newer(self) -> Parts | None:
        """The store and sidecar of the store's current generation, once an ingest has built the
        sidecar, or these with the sentence vectors of their generation, once an ingest has
        swapped them in after the sidecar; None while these are current or the next are not
        built yet (every hit's text is read from the store, so until then an answer still cites
        only what the store holds)."""
        generation = self.store.generation
        sentences = SentenceVectors.at(self.lexical.path.parent)
        if generation == self.lexical.generation:
            current = self.sentences is not None and self.sentences.meta.get("generation") == generation
            if current or sentences.generation() != generation:
                return None
            return Parts(self.store, self.lexical, sentences.load())
        fresh = RowIndex(self.lexical.path)
        if fresh.generation_on_disk() != generation or fresh.load().generation != generation:
            return None
        # The store is opened again too: this one's vectors are those of its own generation.
        store = self.store.view()
        store.load_vectors()
        # Every write advances the generation first, so one unchanged after the load means
        # the vectors loaded are this generation's; changed, the next ingest has begun.
        if store.generation != generation:
            return None
        return Parts(store, fresh, sentences.load())


def index_for(settings: Settings | None = None) -> Index | LanceIndex:
    """The index of `settings`: the Chroma store and its sidecar, or the lance store
    (`--store lance`), which offers the same methods."""
    settings = get_settings(settings)
    if settings.store == "lance":
        from rag.index.lance_index import LanceIndex

        return LanceIndex(settings)
    return Index(settings)


class Index:
    """The index of `settings`: `--index DIR` (or a Chroma server) with its sidecar files."""

    def __init__(self, settings: Settings | None = None):
        self.settings = get_settings(settings)

    @property
    def root(self) -> Path:
        return Path(self.settings.index_dir)

    @property
    def location(self) -> str:
        return self.settings.chroma_url or str(self.root)

    def exists(self) -> bool:
        """A store is there (a folder without one, or a server without the collection, is not)."""
        return Store.exists(self.settings)

    def has_store_folder(self) -> bool:
        return bool(self.settings.chroma_url) or chroma_dir(self.root).exists()

    def ensure(self, progress: bool = True) -> bool:
        """Build the demo at the default ./index when no index is there; NoIndex elsewhere. True
        if it built."""
        return demo.ensure_index(self.settings, progress)

    def require(self) -> None:
        """NoIndex, in one line, where the demo is never built and no index is."""
        demo.require_index(self.settings)

    def store(self, model_id: str | None = None, dimension: int | None = None, create: bool = False) -> Store:
        """The store, checked against the encoder's model (None: whatever model built it)."""
        return Store(self.settings, model_id=model_id, dimension=dimension, create=create)

    def sidecar(self) -> RowIndex:
        return RowIndex.at(self.settings)

    def sentence_vectors(self) -> SentenceVectors:
        return SentenceVectors.at(self.root)

    def open(self, store: Store) -> Parts:
        """The sidecar and sentence vectors beside `store`, loaded whole; StaleIndex when the
        sidecar was built from another generation of the store."""
        self.require_current()
        lexical = self.sidecar().load()
        self.require_in_step(store.generation, lexical.generation)
        return Parts(store, lexical, self.sentence_vectors().load())

    def reader(self) -> Parts:
        """The parts for reading cables, opened with whatever model built the index: only stored
        text is read, so no encoder is loaded (about a second)."""
        self.ensure()
        return self.open(self.store())

    def cable(self, cable_id: str) -> dict | None:
        return self.reader().cable(cable_id)

    def ingest(self, paths: list[str | Path], progress: bool = True, rebuild: bool = False) -> IngestReport:
        from rag.index.ingest import ingest

        return ingest(paths, self.settings, progress, rebuild)

    def stats(self, open_store: Callable[[], Store] | None = None) -> dict:
        """What the index holds, counted from the sidecar (no scan of the store). `open_store`
        opens the store checked against an encoder's model; by default, whatever built it."""
        if not self.has_store_folder():
            raise RagError(f"no index at {self.root}: run 'rag ingest PATH --index {self.root}' first")
        return index_stats((open_store or self.store)(), self.sidecar())

    def verify(self) -> list[Part]:
        """Every part checked in full, one line each (`rag stats --verify`)."""
        return verify(self.settings)

    def generation(self) -> int:
        """The store's generation as committed now, read without loading an encoder."""
        return Store.generation_at(self.settings)

    def check_in_step(self) -> None:
        """`require_in_step` for an index that exists, without loading a model."""
        if self.exists():
            self.require_current()
            self.require_in_step(Store.generation_at(self.settings), self.sidecar().generation_on_disk())

    def require_current(self) -> None:
        """StaleIndex in one line when the index was built by an older version of cablerag, whose
        layout this one does not read: `rag ingest` brings it up to date (the store's chunks are
        kept, only the sidecar is made again)."""
        if self.sidecar().predates_generations():
            raise StaleIndex(f"the index at {self.location} was built by an older version of cablerag: "
                             f"run 'rag ingest PATH --index {self.root}' to bring it up to date")

    def require_in_step(self, store_generation: int, sidecar_generation: int | None) -> None:
        """StaleIndex, saying how to repair it, unless the sidecar was built from the store's
        current generation."""
        if sidecar_generation == store_generation:
            return
        where = self.location
        repair = f"rag ingest PATH --index {self.root}" + (f" --chroma-url {where}" if self.settings.chroma_url else "")
        if self.settings.chroma_url:
            # The sidecar is this machine's; the store is shared, and other machines write to it.
            raise StaleIndex(f"{self.root} holds no sidecar built from what the store at {where} holds now (a new "
                             "replica, or another machine ingested since): 'rag serve' builds it from the store by "
                             f"itself, or run '{repair}' with any of its cables (nothing is embedded again)")
        what = ("has no BM25 sidecar built from what it holds" if sidecar_generation is None else
                "changed after its BM25 sidecar was built "
                f"(store generation {store_generation}, sidecar {sidecar_generation})")
        raise StaleIndex(f"the index at {where} {what}: an ingest was interrupted or is still running; "
                         f"run '{repair}' again with its cables to finish it")
