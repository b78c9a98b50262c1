"""One worker's share of an ingest spread over workers (rag.index.lance_workers, which runs a
`Shard` as a Ray actor): it reads its cable files, chunks them, looks up what the table held at
the version the ingest started from, encodes what changed, and writes Lance data files that the
driver commits. Nothing here imports Ray, so a shard runs the same in a worker or in a test.

The shard is the serial ingester (rag.index.ingest) with a store whose writes become
uncommitted fragments (`PendingStore`): the same hashes decide what is encoded, relabelled and
removed, so workers and a serial ingest of the same files end with the same rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rag.index.embed import ENCODER_TYPES, get_encoder, sentence_encoder, set_threads
from rag.index.ingest import Ingester, IngestReport, Skipped, iter_sources
from rag.index.lance_db import SENTENCES
from rag.index.lance_fragments import dataset_uri, write
from rag.index.lance_sentences import LanceSentences, encode_sentences
from rag.index.lance_store import LanceStore
from rag.index.lance_terms import term_counts
from rag.settings import Settings
from rag.types import Cable, Chunk

# A cable's place in the ingest's order: (file, cable within the file). Of a cable given twice,
# the copy read last wins, as in a serial ingest.
Order = tuple[int, int]


@dataclass
class Written:
    """What one worker wrote, for the driver to commit."""

    report: IngestReport
    fragments: list  # the chunks' data files
    removed: list[str]  # the ids of stored chunks they replace or that are gone
    terms: Counter  # term → chunks gained (negative: lost)
    lacking: list[str]  # digests of the written paragraphs' sentences that the table lacks


class PendingStore(LanceStore):
    """The chunks table at the version the ingest started from, whose writes become data files
    (`fragments`), the ids they replace or remove (`removed`) and the change to the term counts
    (`terms`), all for the driver to commit."""

    def __init__(self, settings: Settings, version: int, *, model_id: str, dimension: int):
        super().__init__(settings, model_id=model_id, dimension=dimension)
        self.table.checkout(version)
        self.uri = dataset_uri(self.table)
        self.fragments: list = []
        self.removed: set[str] = set()
        self.terms: Counter = Counter()

    def _write(self, chunks: list[Chunk], vectors) -> None:
        if not chunks:
            return
        self._replace([c.id for c in chunks])
        rows = self.rows(chunks, vectors)
        self.fragments.extend(write(self.uri, self.version, rows))
        self.terms.update(term_counts(rows["search_text"].to_pylist()))

    def delete(self, ids: list[str]) -> None:
        self._replace(ids)

    def _replace(self, ids: list[str]) -> None:
        old = self._by_ids(ids, ["id", "search_text"])
        self.removed.update(old)
        self.terms.subtract(term_counts([row["search_text"] for row in old.values()]))


class Shard(Ingester):
    """`read`, then `write`, then `encode_sentences`: the driver settles between the steps what
    only it can see (which copy of a cable given twice wins, which worker encodes a sentence
    two workers lack)."""

    def __init__(self, settings: Settings, version: int, sentences_version: int, encoders: dict, threads: int):
        set_threads(threads)
        # The encoders registered in the driver (the tests' fake) are registered here too.
        ENCODER_TYPES.update(encoders)
        self.settings = settings
        self.encoder = get_encoder(settings.encoder, settings.embed_batch_size, settings.device,
                                   precision=settings.precision)
        self.store = PendingStore(settings, version, model_id=self.encoder.model_id, dimension=self.encoder.dimension)
        self.row_index = None
        self.seen: set[str] = set()
        self.sentences = LanceSentences(self.store.side_table(SENTENCES))
        self.sentences.table.checkout(sentences_version)
        self.sentences_uri = dataset_uri(self.sentences.table)
        self.cables: list[tuple[Order, Cable]] = []
        self.lacking: dict[str, list[str]] = {}

    def read(self, files: list[tuple[int, str]]) -> tuple[list[tuple[str, Order]], list[Skipped]]:
        """Parse `files` (each with its place among all files): every cable's id and order, and what
        could not be read."""
        skipped = []
        for position, path in files:
            for row, item in enumerate(iter_sources([path])):
                if isinstance(item, Skipped):
                    skipped.append(item)
                else:
                    self.cables.append(((position, row), item))
        return [(cable.id, order) for order, cable in self.cables], skipped

    def write(self, dropped: set[Order]) -> Written:
        """Chunk, encode and write the cables read, less the `dropped` copies."""
        report = IngestReport()
        cables = [cable for order, cable in self.cables if order not in dropped]
        self.cables = []
        for i in range(0, len(cables), self.settings.ingest_batch):
            # The serial ingest's batch, less its sentence step: which sentences to encode waits on
            # every worker's paragraphs.
            self._write_batch(cables[i : i + self.settings.ingest_batch], report)
        if self.settings.sentence_vectors:
            self.lacking = self.sentences.lacking(self.store.written, self._sentence_encoder().model_id)
        store = self.store
        return Written(report, store.fragments, sorted(store.removed), store.terms, list(self.lacking))

    def encode_sentences(self, keys: list[str]) -> tuple[int, list]:
        """Encode the sentences of these digests (of those `write` found lacking) and write them:
        how many sentences, and the fragments."""
        encoder = self._sentence_encoder()
        todo = {key: self.lacking[key] for key in keys}
        rows = self.sentences.rows(encode_sentences(todo, encoder.encode_documents), encoder.model_id)
        return sum(len(s) for s in todo.values()), write(self.sentences_uri, self.sentences.table.version, rows)

    def _sentence_encoder(self):
        # As the serial ingest's: this worker's own on a GPU, else the encoder answers use.
        return sentence_encoder(self.encoder)
