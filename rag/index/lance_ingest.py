"""Ingest into the lance store: rag.index.ingest's Ingester (read, chunk, embed what changed, by
the same content and metadata hashes) writing to a LanceStore, whose indexes it then brings up
to date with `optimize` instead of rebuilding a sidecar.

Each batch's new paragraphs have their sentences encoded right after they are written, so a run
killed half-way leaves at most one batch without them (answers encode those themselves).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

from rag.errors import RagError
from rag.index.embed import Encoder, get_encoder
from rag.index.ingest import Ingester, IngestReport
from rag.index.lance_db import SENTENCES, drop_tables
from rag.index.lance_sentences import LanceSentences
from rag.index.lance_store import LanceStore
from rag.index.writer import writing
from rag.settings import Settings, get_settings
from rag.types import Cable


class LanceIngester(Ingester):
    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None):
        self.settings = get_settings(settings)
        self.encoder = encoder or get_encoder(self.settings.encoder, self.settings.embed_batch_size, self.settings.device,
                                              precision=self.settings.precision)
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
            # The encoder answers use, so stored vectors are the ones an answer would compute.
            encoder = get_encoder(self.settings.encoder, self.settings.embed_batch_size, self.settings.device,
                                  queries=True)
            sentences = LanceSentences(self.store.side_table(SENTENCES))
            self.sentences_encoded += sentences.add(written, encoder.encode_documents, encoder.model_id)

    def refresh_lexical(self, progress: bool = True) -> None:
        """The full-text, scalar and vector indexes brought up to the rows written."""
        if progress:
            print("updating the LanceDB indexes", file=sys.stderr)
        self.store.optimize()

    def refresh_sentences(self, progress: bool = True) -> int:
        return self.sentences_encoded


def ingest_lance(paths: list[str | Path], settings: Settings | None = None, progress: bool = True,
                 rebuild: bool = False) -> IngestReport:
    """`rag ingest --store lance`: ingest `paths` into the LanceDB database of `settings`. On a
    local folder the writer lock of rag.index.writer keeps a second ingest out; on object storage
    Lance's own commits keep each write whole, and one ingest at a time is the caller's care."""
    if not paths:
        raise RagError("nothing to ingest: give cable files, directories or a cables.csv")
    settings = get_settings(settings)
    if rebuild:
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise RagError(f"no such file or directory: {missing[0]}: the index was left as it is")
    uri = settings.lance_uri.strip()
    local = uri and "://" not in uri
    with writing(Path(uri).expanduser()) if local else nullcontext():
        if rebuild:
            drop_tables(settings)
        return LanceIngester(settings).run(paths, progress)
