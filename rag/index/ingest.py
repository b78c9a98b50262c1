"""Cables in, paragraphs indexed: read → parse → chunk → embed what changed → store → BM25 → sentence vectors.

Idempotent and safe to interrupt: chunks have stable ids, content hashes and metadata hashes, so
a second run over the same files embeds nothing, a changed cable replaces its old chunks, changed
metadata is rewritten without embedding, and a run killed half-way is finished by running the
same command again. The BM25 sidecar is rebuilt from the store whenever it was built from another
generation of the store (every write advances it, so a killed run leaves them apart).
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from rag.cables import CableError, iter_csv_cables, read_cable_file
from rag.chunk import chunk_cables
from rag.errors import RagError
from rag.index.embed import Encoder, get_encoder, sentence_encoder
from rag.index.health import require_directory
from rag.index.layout import SENTENCES, SIDECAR
from rag.index.lease import writer_lease
from rag.index.rows import RowIndex
from rag.index.sentences import SentenceVectors
from rag.index.store import HASH_KEY, META_HASH_KEY, Store, metadata_hash
from rag.index.writer import writing
from rag.settings import Settings, get_settings
from rag.types import Cable


@dataclass
class Skipped:
    source: str
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.source}: {self.reason}"


@dataclass
class IngestReport:
    cables: int = 0
    chunks: int = 0
    embedded: int = 0
    relabelled: int = 0  # unchanged text, changed metadata: rewritten without embedding
    deleted: int = 0
    # Sentences encoded for the store of sentence vectors (rag.index.sentences), those of new paragraphs.
    sentences: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    # Cables that parsed but hold no paragraph (the file is only the header): indexed as nothing.
    empty: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.skipped

    def summary(self) -> str:
        rate = self.chunks / self.seconds if self.seconds else 0.0
        return (
            f"{self.cables} cables, {self.chunks} paragraphs ({self.embedded} embedded, "
            f"{self.relabelled} with new metadata, {self.chunks - self.embedded - self.relabelled} unchanged, "
            f"{self.deleted} removed), "
            f"{len(self.skipped)} skipped, {len(self.empty)} without paragraphs, "
            + (f"{self.sentences:,} sentences encoded for answers, " if self.sentences else "")
            + f"{self.seconds:.1f} s ({rate:.1f} paragraphs/s)"
        )


def cable_files(directory: Path) -> list[Path]:
    """The cable files under `directory`, recursively (*.txt and *.csv), in the order they are read."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".csv"))


def iter_sources(paths: Iterable[str | Path]) -> Iterator[Cable | Skipped]:
    """Cables from directories (recursively: *.txt and *.csv), single cable files and cables.csv."""
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            yield Skipped(str(path), "no such file or directory")
        elif path.is_dir():
            files = cable_files(path)
            if not files:
                yield Skipped(str(path), "directory holds no .txt or .csv files")
            yield from iter_sources(files)
        elif path.suffix.lower() == ".csv":
            for item in iter_csv_cables(path):
                yield Skipped(str(path), str(item)) if isinstance(item, CableError) else item
        else:
            try:
                yield read_cable_file(path)
            except CableError as exc:
                yield Skipped(str(path), str(exc))
            except OSError as exc:
                yield Skipped(str(path), exc.strerror or str(exc))


def count_files(paths: Iterable[str | Path]) -> int | None:
    """Cable files to read, for the progress bar; None when a CSV makes the total unknown."""
    total = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = cable_files(path)
            if any(p.suffix.lower() == ".csv" for p in files):
                return None
            total += len(files)
        elif path.suffix.lower() == ".csv":
            return None
        else:
            total += 1
    return total


def open_store(settings: Settings, encoder: Encoder, create: bool = True) -> Store:
    return Store(settings, model_id=encoder.model_id, dimension=encoder.dimension, create=create)


class Ingester:
    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None):
        self.settings = get_settings(settings)
        self.encoder = encoder or get_encoder(self.settings.encoder, self.settings.embed_batch_size, self.settings.device,
                                              precision=self.settings.precision)
        self.store = open_store(self.settings, self.encoder)
        self.lexical = RowIndex.at(self.settings)
        # A sidecar in step with the store at the start knows every stored chunk id by cable: see _stored.
        in_step = (self.lexical.generation_on_disk() == self.store.generation and self.lexical.problem() is None
                   and self.lexical.has_vectors())
        self.row_index = self.lexical if in_step else None
        self.seen: set[str] = set()  # cables this run has looked up, and may have written

    def _stored(self, cable_ids: list[str]) -> dict[str, dict]:
        """chunk id → stored metadata of every chunk of these cables. Looked up by id through the
        sidecar's row index, since Chroma's `where` scans every metadata row; a cable this run has
        already been through (given twice) may have chunks the sidecar lacks, so it goes by `where`."""
        if self.row_index is None:
            return self.store.chunk_metadata_of_cables(cable_ids)
        again = [c for c in cable_ids if c in self.seen]
        found = self.store.chunk_metadata(self.row_index.ids_of_cables([c for c in cable_ids if c not in self.seen]))
        found.update(self.store.chunk_metadata_of_cables(again))
        self.seen.update(cable_ids)
        return found

    def _write_batch(self, cables: list[Cable], report: IngestReport, on_cables=None) -> None:
        """Embed and store one batch; `on_cables(n)` hears of n more cables done as the
        encoder works through the batch (its texts are length-sorted, so progress is by share)."""
        # A cable given twice (a file and a CSV row) counts once: the last copy wins.
        given = len(cables)
        cables = list({c.id: c for c in cables}.values())
        report.empty.extend(c.id for c in cables if not c.paragraphs)
        chunks = chunk_cables(cables, self.encoder.count_tokens, self.encoder.max_tokens)
        stored = self._stored([c.id for c in cables])
        wanted = {c.id for c in chunks}
        stale = [cid for cid in stored if cid not in wanted]
        todo = [c for c in chunks if stored.get(c.id, {}).get(HASH_KEY) != c.content_hash]
        embedding = {c.id for c in todo}
        relabel = [c for c in chunks
                   if c.id not in embedding and stored[c.id].get(META_HASH_KEY) != metadata_hash(c.metadata)]
        started = time.perf_counter()
        reported, encoded = 0, 0

        def advance(n: int) -> None:
            nonlocal reported, encoded
            encoded += n
            due = given * encoded // max(len(todo), 1)
            if on_cables and due > reported:
                on_cables(due - reported)
                reported = due

        vectors = self.encoder.encode_documents([c.embed_text for c in todo], progress=advance)
        if on_cables and given > reported:
            on_cables(given - reported)
        report.embed_seconds += time.perf_counter() - started
        self.store.upsert(todo, vectors, stored)
        self.store.update_metadata(relabel, stored)
        self.store.delete(stale)
        report.cables += len(cables)
        report.chunks += len(chunks)
        report.embedded += len(todo)
        report.relabelled += len(relabel)
        report.deleted += len(stale)

    def run(self, paths: list[str | Path], progress: bool = True) -> IngestReport:
        from tqdm import tqdm

        report = IngestReport()
        started = time.perf_counter()
        bar = tqdm(total=count_files(paths), unit="cable", desc="ingest", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)
        batch: list[Cable] = []

        def flush() -> None:
            known = len(report.empty)
            self._write_batch(batch, report, on_cables=bar.update)
            for cable_id in report.empty[known:]:
                bar.write(f"no paragraphs in {cable_id}: the cable holds only its header", file=sys.stderr)
            elapsed = time.perf_counter() - started
            bar.set_postfix_str(f"{report.chunks / elapsed:.1f} paragraphs/s")
            batch.clear()

        try:
            for item in iter_sources(paths):
                if isinstance(item, Skipped):
                    report.skipped.append(item)
                    bar.write(str(item), file=sys.stderr)
                    bar.update(1)
                    continue
                batch.append(item)
                if len(batch) >= self.settings.ingest_batch:
                    flush()
            if batch:
                flush()
        finally:
            bar.close()
        self.refresh_lexical(progress)
        report.sentences = self.refresh_sentences(progress)
        report.seconds = time.perf_counter() - started
        return report

    def refresh_sentences(self, progress: bool = True) -> int:
        """Encode the sentences of the paragraphs that the store of sentence vectors (rag.index.sentences)
        lacks, when it was built from another generation of the store; how many it encoded. After
        the sidecar, so the index answers while they are encoded (a server reads them once they
        are swapped in)."""
        generation = self.store.generation
        sentences = SentenceVectors.at(self.settings.index_dir)
        if not self.settings.sentence_vectors or (sentences.generation() == generation and sentences.problem() is None):
            return 0
        from tqdm import tqdm

        encoder = sentence_encoder(self.encoder)
        texts = (text for page in self.store.iter_all(include=("documents",)) for text in page["documents"])
        encoded = 0
        with tqdm(total=0, unit="sentence", desc="sentences", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            def on_total(n: int) -> None:
                bar.total = n
                bar.refresh()

            def advance(n: int) -> None:
                nonlocal encoded
                encoded += n
                bar.update(n)

            sentences.build(texts, encoder.encode_documents, encoder.model_id, encoder.dimension, generation,
                            progress=advance, on_total=on_total)
        return encoded

    def refresh_lexical(self, progress: bool = True) -> None:
        """Rebuild the sidecar (BM25, and the vectors beside it) from the store when it was built
        from another generation of the store, predates the vectors or is damaged."""
        generation = self.store.generation
        on_disk = RowIndex(self.lexical.path)
        if on_disk.generation_on_disk() == generation and on_disk.problem() is None and on_disk.has_vectors():
            return
        from tqdm import tqdm

        with tqdm(total=self.store.count(), unit="paragraph", desc="bm25", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            pages = self.store.iter_all(include=("documents", "metadatas", "embeddings"))
            self.lexical = RowIndex.build(self.lexical.path, pages, generation, progress=bar.update)


def discard_index(settings: Settings) -> None:
    """Remove every part of the index of `settings`: the store, the sidecar and the sentence
    vectors, with what interrupted builds of them left beside them. Other files in the folder
    stay: `--index` may name a folder that holds more than the index."""
    Store.discard(settings)
    for name in (SIDECAR, SENTENCES):
        for suffix in ("", ".tmp", ".old"):
            shutil.rmtree(settings.index_dir / f"{name}{suffix}", ignore_errors=True)


def catch_up(settings: Settings | None = None, progress: bool = False) -> None:
    """Bring the sidecar and sentence vectors of this `--index` up to the store's generation,
    embedding no paragraph (only the sentences of paragraphs it has not seen): what a replica
    does when another machine has ingested into the shared Chroma server. Holds the writer lock:
    IndexBusy while an ingest here holds it (that ingest rebuilds them itself)."""
    settings = get_settings(settings)
    with writing(settings.index_dir):
        ingester = Ingester(settings)
        ingester.refresh_lexical(progress)
        ingester.refresh_sentences(progress)


def ingest(paths: list[str | Path], settings: Settings | None = None, progress: bool = True,
           rebuild: bool = False) -> IngestReport:
    """Ingest cables from `paths` into the index of `settings`, holding its writer lock
    (rag.index.writer: IndexBusy while another ingest holds it) and, on a Chroma server, the
    store's writer claim (rag.index.lease), which other machines' ingests see; see `Ingester`. `rebuild` first
    discards the index (a damaged one included), so it is built again from `paths` alone."""
    if not paths:
        raise RagError("nothing to ingest: give cable files, directories or a cables.csv")
    settings = get_settings(settings)
    require_directory(settings.index_dir)  # before the encoder loads
    if rebuild:
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise RagError(f"no such file or directory: {missing[0]}: the index was left as it is")
    with writing(settings.index_dir) as killed:
        if killed and progress:
            print(f"an ingest into {settings.index_dir} (pid {killed}) was killed before it finished: "
                  "this one takes over and completes its work", file=sys.stderr)
        if rebuild:
            discard_index(settings)
        ingester = Ingester(settings)
        # Machines sharing a Chroma server share no folder to lock: the collection holds the claim.
        with writer_lease(ingester.store) if settings.chroma_url else nullcontext():
            return ingester.run(paths, progress)
