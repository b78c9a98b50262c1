"""Ingest into the lance store: rag.index.ingest's Ingester (read, chunk, embed what changed, by
the same content and metadata hashes) writing to a LanceStore, whose indexes it then brings up
to date with `optimize` instead of rebuilding a sidecar.

Each batch's new paragraphs have their sentences encoded right after they are written, so a run
killed half-way leaves at most one batch without them (answers encode those themselves).

`--vectors-from DIR` moves an index built on the Chroma store into the lance store without
encoding again: a paragraph whose embedded text that index holds (by its content hash) takes the
stored vector, a paragraph whose candidate sentences it holds takes their vectors; the rest are
encoded. The vectors are the same numbers, so the two stores rank from the same vectors.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rag.errors import RagError
from rag.index.embed import Encoder, get_encoder, sentence_encoder
from rag.index.ingest import Ingester, IngestReport
from rag.index.lance_db import SENTENCES, drop_tables
from rag.index.lance_sentences import LanceSentences
from rag.index.lance_store import LanceStore
from rag.index.lance_writer import lance_writing
from rag.index.sentences import SentenceVectors
from rag.index.store import HASH_KEY, Store
from rag.settings import Settings, get_settings
from rag.types import Cable


class Reused:
    """The vectors of an index on the Chroma store, for an ingest into the lance store by the same
    model: the paragraphs' by content hash, and each paragraph's sentences by their digest."""

    def __init__(self, index_dir: Path, settings: Settings, encoder: Encoder, progress: bool = True):
        source = settings.with_(index_dir=Path(index_dir).expanduser(), store="chroma", chroma_url="")
        if not Store.exists(source):
            raise RagError(f"--vectors-from {index_dir}: no index there")
        store = Store(source, model_id=encoder.model_id, dimension=encoder.dimension)
        self.paragraphs: dict[str, np.ndarray] = {}
        with tqdm(total=store.count(), unit="paragraph", desc="vectors", disable=not progress) as bar:
            for page in store.iter_all(include=("metadatas", "embeddings")):
                for meta, vector in zip(page["metadatas"], page["embeddings"]):
                    self.paragraphs[meta[HASH_KEY]] = np.asarray(vector, dtype=np.float32)
                bar.update(len(page["metadatas"]))
        self.sentences = SentenceVectors.at(source.index_dir).load()

    def encoding(self, encode: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        """`encode` (Encoder.encode_documents of embedded texts) for only the texts not held."""
        def encode_documents(texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
            held = [self.paragraphs.get(hashlib.sha1(t.encode("utf-8")).hexdigest()[:16]) for t in texts]
            missing = [i for i, v in enumerate(held) if v is None]
            fresh = encode([texts[i] for i in missing], progress=progress)
            for i, vector in zip(missing, fresh):
                held[i] = vector
            if progress and len(missing) < len(texts):
                progress(len(texts) - len(missing))
            return np.stack(held) if held else fresh
        return encode_documents


class _Encoding:
    """An encoder whose `encode_documents` is replaced, for the rest the encoder itself."""

    def __init__(self, encoder: Encoder, encode_documents: Callable[..., np.ndarray]):
        self._encoder, self.encode_documents = encoder, encode_documents

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)


class LanceIngester(Ingester):
    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None, reused: Path | None = None,
                 progress: bool = True):
        self.settings = get_settings(settings)
        self.encoder = encoder or get_encoder(self.settings.encoder, self.settings.embed_batch_size, self.settings.device,
                                              precision=self.settings.precision)
        # Its sentence phase's encoder follows this one's device (rag.index.embed.sentence_encoder).
        self.own_encoder = self.encoder
        self.reused = Reused(reused, self.settings, self.encoder, progress) if reused else None
        if self.reused:
            self.encoder = _Encoding(self.encoder, self.reused.encoding(self.encoder.encode_documents))
        self.store = LanceStore(self.settings, model_id=self.encoder.model_id, dimension=self.encoder.dimension,
                                create=True)
        # The cable_id index finds a cable's stored chunks: no row index is needed (Ingester._stored).
        self.row_index = None
        self.seen: set[str] = set()
        self.sentences_encoded = 0

    def _write_batch(self, cables: list[Cable], report: IngestReport, on_cables=None) -> None:
        super()._write_batch(cables, report, on_cables)
        written, self.store.written = self.store.written, []
        if self.settings.sentence_vectors and written:
            encoder = sentence_encoder(self.own_encoder)
            sentences = LanceSentences(self.store.side_table(SENTENCES))
            known = (lambda found: self.reused.sentences.get(found, encoder.model_id)) if self.reused else None
            self.sentences_encoded += sentences.add(written, encoder.encode_documents, encoder.model_id, known)

    def refresh_lexical(self, progress: bool = True) -> None:
        """The full-text, scalar and vector indexes brought up to the rows written."""
        if progress:
            print("updating the LanceDB indexes", file=sys.stderr)
        self.store.optimize()

    def refresh_sentences(self, progress: bool = True) -> int:
        return self.sentences_encoded


def ingest_lance(paths: list[str | Path], settings: Settings | None = None, progress: bool = True,
                 rebuild: bool = False, vectors_from: Path | None = None, workers: int | None = None,
                 ray_address: str = "") -> IngestReport:
    """`rag ingest --store lance`: ingest `paths` into the LanceDB database of `settings`, taking
    the vectors the Chroma index at `vectors_from` holds, or spread over `workers` Ray workers
    (rag.index.lance_workers; on the cluster at `ray_address`), holding the store's writer lock
    (rag.index.lance_writer: IndexBusy while another ingest holds it)."""
    if not paths:
        raise RagError("nothing to ingest: give cable files, directories or a cables.csv")
    if workers is not None and workers < 1:
        raise RagError(f"--workers {workers}: give 1 or more")
    spread = (workers or 1) > 1 or bool(ray_address)
    if spread and vectors_from:
        raise RagError("--vectors-from reads the Chroma index in one process: leave out --workers and --ray-address")
    if spread:
        from rag.index.lance_workers import ingest_spread, require_ray

        require_ray()
    settings = get_settings(settings)
    if rebuild:
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise RagError(f"no such file or directory: {missing[0]}: the index was left as it is")
    with lance_writing(settings):
        if spread:
            return ingest_spread(paths, settings, workers, ray_address, progress, rebuild)
        if rebuild:
            drop_tables(settings)
        return LanceIngester(settings, reused=vectors_from, progress=progress).run(paths, progress)
