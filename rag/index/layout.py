"""The folder of an index, named in one place: what each part is called on disk.

    INDEX/chroma/       the Chroma store (SQLite + HNSW segments): chunks, vectors, metadata
    INDEX/bm25/         the sidecar: BM25 matrix, row columns, a copy of the vectors (rag.index.rows)
    INDEX/sentences/    each paragraph's sentences encoded once (rag.index.sentences)
    INDEX/ingest.lock   held by the one ingest writing to the index (rag.index.writer)
"""

from __future__ import annotations

from pathlib import Path

CHROMA = "chroma"
SIDECAR = "bm25"
SENTENCES = "sentences"
WRITER_LOCK = "ingest.lock"


def chroma_dir(root: Path) -> Path:
    return Path(root) / CHROMA


def sidecar_dir(root: Path) -> Path:
    return Path(root) / SIDECAR


def sentences_dir(root: Path) -> Path:
    return Path(root) / SENTENCES
