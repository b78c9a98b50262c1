"""Sentence vectors kept from ingest: the vectors of every paragraph's candidate sentences.

The extractive answer scores the sentences of its top paragraphs against the question
(rag.answer). Encoding them per question was ~60 % of a cold answer's CPU, and a server under load
rarely sees the same paragraphs twice, so ingest encodes them once, with the encoder that answers
use (`get_encoder(..., queries=True)`), and keeps them here. Stored as float16: on the 180 dev
questions the answers were the same, character for character, as with float32, at half the disk
(~0.8 KiB a sentence; 207 MB for the 72,861 paragraphs of the shared cables).

Content-addressed: an entry's key is a digest of the paragraph's candidate sentences, so an entry
is right for any generation of the index that holds that text, a paragraph this store lacks (an
index built before it, a changed sentence splitter) is a miss, and the answerer encodes it as
before. Files: `keys.npy` (sorted 16-byte digests), `offsets.npy` (the rows of key i are
offsets[i]:offsets[i + 1]), `vectors.f16` (rows of the model's dimension), `meta.json` (model,
dimension, the store generation it was built from). Built in a temporary folder swapped into
place; the sentences encoded so far are kept there in parts, so a killed build resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag.text import is_injection, split_sentences

DIRNAME = "sentences"
META = "meta.json"
KEY_BYTES = 16
# Sentences per part of a build: ~1 MB of float16 vectors, about 20 s of encoding on 2 cores, so
# a killed build loses little.
PART = 4096


def candidate_sentences(text: str) -> list[tuple[int, str]]:
    """(position, sentence) of a paragraph's sentences that an answer may quote: those that read as
    instructions are left out."""
    return [(pos, s) for pos, s in enumerate(split_sentences(text)) if not is_injection(s)]


def key_of(sentences: list[str]) -> bytes:
    """A digest of the sentences, without trailing NUL bytes: numpy's fixed-width bytes drop them
    when an entry is read back, and the key must read back as it was made."""
    return hashlib.blake2b("\x1f".join(sentences).encode("utf-8"), digest_size=KEY_BYTES).digest().rstrip(b"\0")


class SentenceVectors:
    """The store of one index: `get` the vectors of a paragraph's candidate sentences, or None."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def at(cls, index_dir: Path) -> "SentenceVectors":
        return cls(Path(index_dir) / DIRNAME)

    def exists(self) -> bool:
        return (self.path / META).exists()

    @cached_property
    def meta(self) -> dict:
        try:
            return json.loads((self.path / META).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def generation(self) -> int | None:
        """The store generation this was built from (None when there is none), read from disk."""
        self.__dict__.pop("meta", None)
        return self.meta.get("generation")

    def load(self) -> "SentenceVectors":
        """Open the files now (memory-mapped), so a rebuild swapping the folder later cannot pair
        one build's keys with another's vectors; a store that is absent or half-swapped stays empty."""
        self.__dict__.pop("meta", None)
        self.__dict__.pop("_open", None)
        try:
            meta = self.meta
            keys = np.load(self.path / "keys.npy", mmap_mode="r")
            offsets = np.load(self.path / "offsets.npy", mmap_mode="r")
            vectors = np.memmap(self.path / "vectors.f16", dtype=np.float16, mode="r")
        except (FileNotFoundError, ValueError):
            return self
        if not meta or len(offsets) != len(keys) + 1 or vectors.size != int(offsets[-1]) * meta["dimension"]:
            return self
        self._open = (keys, offsets, vectors.reshape(-1, meta["dimension"]))
        return self

    def __len__(self) -> int:
        return len(self._open[0]) if "_open" in self.__dict__ else 0

    def get(self, sentences: list[str], model_id: str) -> np.ndarray | None:
        """float32 vectors of `sentences` (one paragraph's candidates, in order), read-only; None
        when this store does not hold them or was made by another model."""
        if not len(self) or self.meta.get("model") != model_id:
            return None
        keys, offsets, vectors = self._open
        key = key_of(sentences)
        at = int(np.searchsorted(keys, np.bytes_(key)))
        if at == len(keys) or keys[at] != key:
            return None
        start, end = int(offsets[at]), int(offsets[at + 1])
        if end - start != len(sentences):
            return None
        found = vectors[start:end].astype(np.float32)
        found.flags.writeable = False
        return found

    def build(self, texts: Iterable[str], encode: Callable[[list[str]], np.ndarray], model_id: str,
              dimension: int, generation: int, progress: Callable[[int], None] | None = None,
              on_total: Callable[[int], None] | None = None) -> "SentenceVectors":
        """Make the store for every paragraph of `texts`: vectors this store or an interrupted build
        already holds are kept, the rest encoded by `encode` in parts (`on_total(n)` hears how many
        sentences that is, `progress(n)` of each part done); then swapped in whole."""
        wanted: dict[bytes, list[str]] = {}
        for text in texts:
            sentences = [s for _, s in candidate_sentences(text)]
            if sentences:
                wanted.setdefault(key_of(sentences), sentences)
        tmp = self.path.with_name(self.path.name + ".tmp")
        parts_dir = tmp / "parts"
        same_model = {"model": model_id, "dimension": dimension}
        if _read_json(tmp / META) != same_model:
            shutil.rmtree(tmp, ignore_errors=True)
        parts_dir.mkdir(parents=True, exist_ok=True)
        (tmp / META).write_text(json.dumps(same_model))

        sources = _Sources(dimension)
        self.load()
        if len(self) and all(self.meta.get(k) == v for k, v in same_model.items()):
            sources.add(*self._open)
        for part in sorted(parts_dir.glob("part-*.npz")):
            with np.load(part) as npz:
                sources.add(npz["keys"], npz["offsets"], npz["vectors"])
        todo = [k for k in wanted if not sources.has(k)]
        if on_total:
            on_total(sum(len(wanted[k]) for k in todo))

        start, number = 0, len(list(parts_dir.glob("part-*.npz")))
        while start < len(todo):
            end, count = start, 0
            while end < len(todo) and (count == 0 or count + len(wanted[todo[end]]) <= PART):
                count += len(wanted[todo[end]])
                end += 1
            keys = todo[start:end]
            vectors = encode([s for k in keys for s in wanted[k]]).astype(np.float16)
            offsets = np.concatenate([[0], np.cumsum([len(wanted[k]) for k in keys])]).astype(np.int64)
            key_array = np.array(keys, dtype=f"S{KEY_BYTES}")
            part = parts_dir / f"part-{number:06d}.npz"
            np.savez(part.with_suffix(".tmp.npz"), keys=key_array, offsets=offsets, vectors=vectors)
            os.replace(part.with_suffix(".tmp.npz"), part)
            sources.add(key_array, offsets, vectors)
            number += 1
            start = end
            if progress:
                progress(count)

        final = tmp / "final"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir()
        ordered = sorted(wanted)
        counts = np.array([len(wanted[k]) for k in ordered], dtype=np.int64)
        np.save(final / "keys.npy", np.array(ordered, dtype=f"S{KEY_BYTES}"))
        np.save(final / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        with open(final / "vectors.f16", "wb") as out:
            for key in ordered:
                out.write(sources.vectors(key).tobytes())
        (final / META).write_text(json.dumps({**same_model, "generation": generation,
                                              "paragraphs": len(ordered), "sentences": int(counts.sum())}))
        old = self.path.with_name(self.path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(final, self.path)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return SentenceVectors(self.path).load()


class _Sources:
    """Vectors already made, by key: the previous store's and the parts of this build."""

    def __init__(self, dimension: int):
        self.dimension = dimension
        self.where: dict[bytes, tuple[np.ndarray, int, int]] = {}

    def add(self, keys: np.ndarray, offsets: np.ndarray, vectors: np.ndarray) -> None:
        vectors = vectors.reshape(-1, self.dimension)
        for i, key in enumerate(keys):
            self.where[bytes(key)] = (vectors, int(offsets[i]), int(offsets[i + 1]))

    def has(self, key: bytes) -> bool:
        return key in self.where

    def vectors(self, key: bytes) -> np.ndarray:
        rows, start, end = self.where[key]
        return rows[start:end]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
