"""The BM25 index (bm25s), persisted beside the Chroma index and rebuilt from it after ingest.

Names, numbers and cable ids that the embedder blurs are matched exactly here. Filter columns
(origin, classification, date, tags) are kept as numpy arrays so a filtered search masks the
scores instead of filtering a top-k after the fact.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np

from rag.settings import Settings, get_settings

DIRNAME = "bm25"


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], stemmer=None) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer or _stemmer(), return_ids=False, show_progress=False)


def lexical_text(document: str, meta: dict) -> str:
    """What BM25 sees: the paragraph plus the words a reader uses to find it (id, subject, heading)."""
    return " ".join([meta.get("cable_id", ""), meta.get("subject", ""), meta.get("heading", ""), document])


class LexicalIndex:
    """BM25 over every chunk, with the chunk ids and filter columns in the same row order."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def at(cls, settings: Settings | None = None) -> "LexicalIndex":
        return cls(get_settings(settings).index_dir / DIRNAME)

    def exists(self) -> bool:
        return (self.path / "columns.npz").exists()

    @classmethod
    def build(cls, path: Path, pages, progress=None) -> "LexicalIndex":
        """Build from `pages` of Chroma `get` results and write atomically (a temp dir renamed
        into place), so an interrupted build never leaves a half-written index."""
        import bm25s

        stemmer = _stemmer()
        ids, tokens = [], []
        origin, classification, date_int, tags = [], [], [], []
        for page in pages:
            texts = [lexical_text(d, m) for d, m in zip(page["documents"], page["metadatas"])]
            tokens.extend(tokenize(texts, stemmer))
            ids.extend(page["ids"])
            for m in page["metadatas"]:
                origin.append(m.get("origin", ""))
                classification.append(m.get("classification", ""))
                date_int.append(int(m.get("date_int", 0)))
                tags.append(m.get("tags") or [])
            if progress:
                progress(len(page["ids"]))
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if ids:
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            retriever.save(str(tmp))
        origins, origin_codes = np.unique(np.array(origin, dtype=object).astype(str), return_inverse=True)
        classes, class_codes = np.unique(np.array(classification, dtype=object).astype(str), return_inverse=True)
        # Tags as CSR: the rows of tag i are tag_rows[tag_indptr[i]:tag_indptr[i + 1]].
        tag_lists: dict[str, list[int]] = {}
        for row, row_tags in enumerate(tags):
            for tag in row_tags:
                tag_lists.setdefault(tag, []).append(row)
        tag_names = sorted(tag_lists)
        tag_indptr = np.cumsum([0] + [len(tag_lists[t]) for t in tag_names])
        tag_rows = np.array([r for t in tag_names for r in tag_lists[t]], dtype=np.int32)
        np.savez(
            tmp / "columns.npz",
            ids=np.array(ids, dtype=str),
            origin_codes=origin_codes.astype(np.int32),
            class_codes=class_codes.astype(np.int32),
            date_int=np.array(date_int, dtype=np.int32),
            tag_indptr=tag_indptr.astype(np.int64),
            tag_rows=tag_rows,
        )
        (tmp / "vocab.json").write_text(
            json.dumps({"origins": origins.tolist(), "classes": classes.tolist(), "tags": tag_names})
        )
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return cls(path)

    @cached_property
    def _columns(self):
        cols = np.load(self.path / "columns.npz")
        return {k: cols[k] for k in cols.files}

    @cached_property
    def _vocab(self) -> dict:
        return json.loads((self.path / "vocab.json").read_text())

    @cached_property
    def _retriever(self):
        import bm25s

        return bm25s.BM25.load(str(self.path), mmap=True)

    @cached_property
    def _stemmer(self):
        return _stemmer()

    def __len__(self) -> int:
        return len(self._columns["ids"])

    def mask(self, filters: dict | None) -> np.ndarray | None:
        """1.0 for rows that pass every filter, else 0.0; None when nothing is filtered."""
        if not filters or not any(filters.get(k) for k in ("origin", "classification", "tag", "date_from", "date_to")):
            return None
        cols, vocab = self._columns, self._vocab
        keep = np.ones(len(self), dtype=bool)
        for key, names, codes in (("origin", "origins", "origin_codes"), ("classification", "classes", "class_codes")):
            if filters.get(key):
                code = vocab[names].index(filters[key]) if filters[key] in vocab[names] else -1
                keep &= cols[codes] == code
        if filters.get("tag"):
            tagged = np.zeros(len(self), dtype=bool)
            if filters["tag"] in vocab["tags"]:
                i = vocab["tags"].index(filters["tag"])
                tagged[cols["tag_rows"][cols["tag_indptr"][i] : cols["tag_indptr"][i + 1]]] = True
            keep &= tagged
        if filters.get("date_from"):
            keep &= cols["date_int"] >= int(filters["date_from"].replace("-", ""))
        if filters.get("date_to"):
            keep &= cols["date_int"] <= int(filters["date_to"].replace("-", ""))
        return keep.astype(np.float32)

    def search(self, query: str, k: int, filters: dict | None = None) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the best `k` rows with a positive score."""
        if not len(self):
            return []
        tokens = tokenize([query], self._stemmer)
        if not tokens[0]:
            return []
        mask = self.mask(filters)
        k = min(k, len(self))
        rows, scores = self._retriever.retrieve(tokens, k=k, weight_mask=mask, show_progress=False, return_as="tuple")
        ids = self._columns["ids"]
        return [(str(ids[r]), float(s)) for r, s in zip(rows[0], scores[0]) if s > 0]
