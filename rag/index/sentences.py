"""Sentence vectors kept from ingest: the vectors of every paragraph's candidate sentences.

The extractive answer scores the sentences of its top paragraphs against the question
(rag.answer.backends). Encoding them per question was ~60 % of a cold answer's CPU, and a server under load
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
place; the sentences encoded so far are kept there in parts (each a folder renamed into place
whole), so a killed build resumes. A build holds in memory the sentences it must encode and
~100 bytes a paragraph; every vector it reuses or makes is read from a memory map.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag.index.layout import SENTENCES, sentences_dir
from rag.text import is_injection, split_sentences

META = "meta.json"
KEY_BYTES = 16
# Sentences per part of a build: ~3 MB of float16 vectors, about 20 s of encoding on 2 cores, so
# a killed build loses little.
PART = 4096
# Opening a store that a rebuild swaps out meanwhile is retried this many times.
LOAD_TRIES = 3
KEY = f"S{KEY_BYTES}"
_PART = re.compile(r"part-\d{6}")


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
        self.meta: dict = {}
        self._open: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def at(cls, index_dir: Path) -> "SentenceVectors":
        return cls(sentences_dir(index_dir))

    def exists(self) -> bool:
        return (self.path / META).exists()

    def on_disk(self) -> dict:
        """The description of the build now on disk (model, dimension, generation, counts); {} when none."""
        return _read_json(self.path / META) or {}

    def problem(self) -> str | None:
        """Why the build on disk cannot be read whole (a lookup would miss every paragraph and
        answers encode their sentences), naming the file; None when it can."""
        try:
            _open_build(self.path)
        except (OSError, ValueError, KeyError) as exc:
            return f"{SENTENCES}/{_culprit(self.path)} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        return None

    def generation(self) -> int | None:
        """The store generation the build now on disk was made from (None when there is none)."""
        return self.on_disk().get("generation")

    def load(self) -> "SentenceVectors":
        """Open the files of one build: through a descriptor of the folder, so a rebuild swapping
        it meanwhile cannot pair one build's keys with another's vectors (a folder removed under
        us is tried again). Absent or unreadable, the store stays empty and every lookup misses."""
        self.meta, self._open = {}, None
        for _ in range(LOAD_TRIES):
            try:
                meta, keys, offsets, vectors = _open_build(self.path)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError):
                # Unreadable: what it says of itself is kept (a server then does not try it again).
                self.meta = self.on_disk()
                return self
            self.meta, self._open = meta, (keys, offsets, vectors)
            return self
        return self

    def __len__(self) -> int:
        return len(self._open[0]) if self._open else 0

    def get(self, sentences: list[str], model_id: str) -> np.ndarray | None:
        """float32 vectors of `sentences` (one paragraph's candidates, in order), read-only; None
        when this store does not hold them or was made by another model."""
        if not self._open or self.meta.get("model") != model_id:
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
        tmp = self.path.with_name(self.path.name + ".tmp")
        old = self.path.with_name(self.path.name + ".old")
        parts_dir = tmp / "parts"
        same_model = {"model": model_id, "dimension": dimension}
        if _read_json(tmp / META) != same_model:
            shutil.rmtree(tmp, ignore_errors=True)
        parts_dir.mkdir(parents=True, exist_ok=True)
        (tmp / META).write_text(json.dumps(same_model))

        # The previous store, or the one a build killed while swapping left aside.
        sources = [built for built in (_open_or_none(self.path), _open_or_none(old))
                   if built and all(built[0].get(k) == v for k, v in same_model.items())][:1]
        number = 0
        for part in sorted(parts_dir.iterdir()):
            opened = _open_or_none(part) if _PART.fullmatch(part.name) else None
            if opened is None:  # half-written when a build was killed
                shutil.rmtree(part, ignore_errors=True)
            else:
                sources.append(opened)
                number = int(part.name[5:]) + 1
        known = _Known([keys for _, keys, _, _ in sources])

        keys, counts, todo = [], [], {}
        for text in texts:
            sentences = [s for _, s in candidate_sentences(text)]
            if sentences:
                key = key_of(sentences)
                keys.append(key)
                counts.append(len(sentences))
                if key not in todo and not known.has(key):
                    todo[key] = sentences
        if on_total:
            on_total(sum(len(v) for v in todo.values()))

        pending, start = list(todo), 0
        while start < len(pending):
            end, count = start, 0
            while end < len(pending) and (end == start or count + len(todo[pending[end]]) <= PART):
                count += len(todo[pending[end]])
                end += 1
            batch = pending[start:end]
            part = parts_dir / f"part-{number:06d}"
            sizes = [len(todo[k]) for k in batch]
            vectors = encode([s for k in batch for s in todo.pop(k)])
            _write_build(part, np.array(batch, dtype=KEY), sizes, vectors, same_model)
            sources.append(_open_build(part))
            number += 1
            start = end
            if progress:
                progress(count)

        final = tmp / "final"
        shutil.rmtree(final, ignore_errors=True)
        ordered, first = np.unique(np.array(keys, dtype=KEY), return_index=True)
        del keys
        known = _Known([keys for _, keys, _, _ in sources])
        _write_build(final, ordered, np.asarray(counts, dtype=np.int64)[first], None,
                     {**same_model, "generation": generation},
                     rows=(known.vectors(sources, key) for key in ordered))
        shutil.rmtree(old, ignore_errors=True)
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(final, self.path)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return SentenceVectors(self.path).load()


class _Known:
    """Which build holds each key, over several builds: their keys merged into one sorted array
    (~28 bytes a key) instead of a dict of millions of entries."""

    def __init__(self, key_arrays: list[np.ndarray]):
        self.keys = np.concatenate(key_arrays) if key_arrays else np.zeros(0, dtype=KEY)
        self.owner = np.concatenate([np.full(len(k), i, dtype=np.int32) for i, k in enumerate(key_arrays)]
                                    or [np.zeros(0, dtype=np.int32)])
        self.row = np.concatenate([np.arange(len(k), dtype=np.int64) for k in key_arrays] or [np.zeros(0, dtype=np.int64)])
        order = np.argsort(self.keys, kind="stable")
        self.keys, self.owner, self.row = self.keys[order], self.owner[order], self.row[order]

    def _find(self, key: bytes) -> int | None:
        at = int(np.searchsorted(self.keys, np.bytes_(key)))
        return at if at < len(self.keys) and self.keys[at] == key else None

    def has(self, key: bytes) -> bool:
        return self._find(key) is not None

    def vectors(self, sources: list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]], key: bytes) -> np.ndarray:
        at = self._find(key)
        _, _, offsets, vectors = sources[int(self.owner[at])]
        row = int(self.row[at])
        return vectors[int(offsets[row]) : int(offsets[row + 1])]


def _write_build(folder: Path, keys: np.ndarray, counts, vectors: np.ndarray | None, meta: dict, rows=None) -> None:
    """Write one build (a part, or the final store) into `folder`, whole: written beside it and
    renamed into place. `vectors` in one array, or `rows` as they come, one key's at a time."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.save(partial / "keys.npy", keys)
    np.save(partial / "offsets.npy", np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64))
    with open(partial / "vectors.f16", "wb") as out:
        if vectors is not None:
            out.write(np.asarray(vectors, dtype=np.float16).tobytes())
        for block in rows or ():
            out.write(np.asarray(block, dtype=np.float16).tobytes())
    sentences = int(np.sum(counts)) if len(keys) else 0
    (partial / META).write_text(json.dumps({**meta, "paragraphs": len(keys), "sentences": sentences}))
    os.replace(partial, folder)


def _open_build(folder: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(meta, keys, offsets, vectors) of one build, every file opened through one descriptor of
    its folder; the vectors memory-mapped. FileNotFoundError when it is absent or half-swapped;
    ValueError when its files disagree."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        def opened(name: str):
            return open(os.open(name, os.O_RDONLY, dir_fd=fd), "rb")

        with opened(META) as f:
            meta = json.loads(f.read())
        with opened("keys.npy") as f:
            keys = np.load(f)
        with opened("offsets.npy") as f:
            offsets = np.load(f)
        dimension = int(meta["dimension"])
        with opened("vectors.f16") as f:
            size = os.fstat(f.fileno()).st_size
            vectors = (np.memmap(f, dtype=np.float16, mode="r") if size else np.zeros(0, dtype=np.float16))
    finally:
        os.close(fd)
    if len(offsets) != len(keys) + 1 or vectors.size != int(offsets[-1]) * dimension:
        raise ValueError(f"the sentence vectors at {folder} do not match their keys")
    return meta, keys, offsets, vectors.reshape(-1, dimension)


def _culprit(folder: Path) -> str:
    """The first file of a build that does not open on its own; the vectors when every other
    one does (they then disagree with the keys)."""
    for name, read in ((META, lambda p: json.loads(p.read_text())), ("keys.npy", np.load), ("offsets.npy", np.load)):
        try:
            read(folder / name)
        except (OSError, ValueError):
            return name
    return "vectors.f16"


def _open_or_none(folder: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        return _open_build(folder)
    except (OSError, ValueError, KeyError):
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
