"""The row index: the sidecar persisted beside the Chroma index and rebuilt from it after ingest.

One row per chunk, the same row order in every file: the chunk ids (and a sorted copy for
id → row lookups), the filter columns (origin, classification, date, tags) as numpy arrays, a
memory-mapped copy of the normalised vectors, and the BM25 score matrix (rag.index.bm25). A filtered
search masks the scores instead of filtering a top-k after the fact. Beside the rows, the
references between cables (their REF lines, stored on every chunk as `refs`) as two sorted edge
lists, so the cable view finds what a cable references, and which cables of the index reference
it, by binary search instead of a scan of every chunk's metadata.

The vectors and filter columns are here because Chroma's filtered search does not hold at
scale: its `where` is evaluated in SQLite over every matching metadata row (a date range over
73k chunks: 155 ms, and linear in the corpus), and a small allowed set makes its HNSW walk most
of the graph (one embassy, 55 chunks: 50 ms). With the filter columns here, a filtered dense
search is an exact dot product over the rows that pass (`nearest`), or, for a broad filter,
Chroma's unfiltered top-n checked against the filter by row (`rows_of`).

The sidecar carries the store generation it was built from (rag.index.store), is built in a temporary
folder swapped into place, and is opened whole (`load`), so ids and rows always come from one
build. The chunk ids are a memory-mapped .npy, so a query touches only the rows it needs.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np

from rag.errors import StaleIndex
from rag.filters import Filters
from rag.index.bm25 import BM25, Builder
from rag.index.health import damaged, refresh_hint
from rag.index.layout import SIDECAR, sidecar_dir
from rag.settings import Settings, get_settings

VECTORS = "vectors.f32"
# The store generation the sidecar was built from (rag.index.store): written last, so a sidecar that has
# it is complete.
GENERATION = "generation"
# Opening a sidecar that a rebuild swaps out meanwhile is retried this many times.
LOAD_TRIES = 3
# Rows per block of an exact search: 32k × 384 floats is 48 MiB.
_BLOCK = 32_768
# What each cached part of an open sidecar reads, in the order `problem` opens them.
_FILES = (("_columns", "columns.npz or ids.npy"), ("_vocab", "vocab.json"), ("_vectors", VECTORS),
          ("_sorted_ids", "ids_sorted.npy or ids_order.npy"), ("bm25", "the BM25 score matrix (*.index.*)"))


class _Codes:
    """Strings → small integer codes, in order of first appearance."""

    def __init__(self):
        self.codes: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.codes)
        return code

    def names(self) -> list[str]:
        return list(self.codes)


def _reference_lists(edges: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The (citing, cited) edges twice, as UTF-8 arrays: sorted by the citing cable (a cable's
    references keep their REF-line order) and by the cited one, then the citing one."""
    citing = np.char.encode(np.array([a for a, _ in edges], dtype=str), "utf-8")
    cited = np.char.encode(np.array([b for _, b in edges], dtype=str), "utf-8")
    by_citing = np.argsort(citing, kind="stable")
    by_cited = np.lexsort((citing, cited))
    return {"ref_from": citing[by_citing], "ref_to": cited[by_citing],
            "ref_cited": cited[by_cited], "ref_citing": citing[by_cited]}


class RowIndex:
    """The sidecar: every chunk's id, filter columns, vector and BM25 scores, in one row order."""

    def __init__(self, path: Path):
        self.path = path
        self._last_keep: tuple[Filters, np.ndarray] | None = None
        # The generation of the files this object has opened (see `load`).
        self.generation: int | None = None

    @classmethod
    def at(cls, settings: Settings | None = None) -> "RowIndex":
        return cls(sidecar_dir(get_settings(settings).index_dir))

    def exists(self) -> bool:
        return (self.path / "columns.npz").exists()

    def generation_on_disk(self) -> int | None:
        """The generation of the sidecar now on disk: None when there is none (or one from a
        version of cablerag that recorded none: `predates_generations`)."""
        try:
            return int((self.path / GENERATION).read_text())
        except (ValueError, FileNotFoundError):  # overwritten, or never finished: ingest redoes it
            return None

    def predates_generations(self) -> bool:
        """A complete sidecar that records no generation: built by cablerag before 0.1.0 kept
        the store and the sidecar in step by generations."""
        return self.exists() and not (self.path / GENERATION).exists()

    def load(self) -> "RowIndex":
        """Open every file of the sidecar now, not on first use: a rebuild that swaps the
        directory later then cannot pair this generation's ids with the next one's rows (the
        memory maps keep the files they opened after the swap removes them). A load that
        straddles a swap is retried; files that do not agree with each other (`problem`) are
        DamagedIndex, naming the file."""
        for _ in range(LOAD_TRIES):
            before = self.generation_on_disk()
            if before is None and not self.exists():
                return self
            try:
                problem = self.problem()
            except FileNotFoundError:  # the folder was swapped out while it was opened
                problem = "swapped"
            if self.generation_on_disk() == before:
                if problem:
                    raise damaged(self.path.parent, problem, refresh_hint(self.path.parent))
                self.generation = before
                return self
            self._forget_files()
        raise StaleIndex(f"the BM25 sidecar at {self.path} kept changing while it was opened: "
                         "wait for the running 'rag ingest' to finish, then try again")

    @classmethod
    def build(cls, path: Path, pages, generation: int, progress=None) -> "RowIndex":
        """Build from `pages` of Chroma `get` results, read from the store at `generation`, and
        write atomically (a temp dir renamed into place, its generation file written last), so an
        interrupted build never leaves a half-written index.

        Memory stays about one page plus ~110 bytes per chunk (ids, lengths, filter columns) and
        the BM25 vocabulary: the score matrix is built in two passes by rag.index.bm25.Builder (scores
        equal bm25s's), the columns as the pages come. Pages that carry `embeddings` are
        appended, normalised, to the row-aligned vectors file as they come."""
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        spill = tmp / "spill"
        spill.mkdir(parents=True)
        bm25 = Builder(spill)
        id_parts = []
        origins, classes, tags = _Codes(), _Codes(), _Codes()
        # (citing cable, cited cable), read from the first chunk of each cable: every chunk
        # carries its cable's references.
        ref_edges: list[tuple[str, str]] = []
        cables_seen: set[str] = set()
        origin_parts, class_parts, date_parts, tag_row_parts, tag_code_parts = [], [], [], [], []
        n = 0
        dim = 0
        with open(tmp / VECTORS, "wb") as vectors:
            for page in pages:
                docs, metas, page_ids = page["documents"], page["metadatas"], page["ids"]
                if not page_ids:
                    continue
                if page.get("embeddings") is not None:
                    vecs = np.asarray(page["embeddings"], dtype=np.float32)
                    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
                    dim = vecs.shape[1]
                    vectors.write(vecs.tobytes())
                bm25.add(docs, metas, n)
                id_parts.append(np.array(page_ids, dtype=str))
                origin_parts.append(np.fromiter((origins(m.get("origin", "") or "") for m in metas), np.int32, len(metas)))
                class_parts.append(np.fromiter((classes(m.get("classification", "") or "") for m in metas), np.int32, len(metas)))
                date_parts.append(np.fromiter((int(m.get("date_int", 0) or 0) for m in metas), np.int32, len(metas)))
                for i, m in enumerate(metas):
                    for tag in m.get("tags") or []:
                        tag_row_parts.append(n + i)
                        tag_code_parts.append(tags(tag))
                    if m["cable_id"] not in cables_seen:
                        cables_seen.add(m["cable_id"])
                        ref_edges.extend((m["cable_id"], ref) for ref in m.get("refs") or [])
                n += len(page_ids)
                if progress:
                    progress(len(page_ids))

        if not dim:
            (tmp / VECTORS).unlink()
        if n:
            bm25.write(tmp, n)
        shutil.rmtree(spill, ignore_errors=True)
        ids = np.concatenate(id_parts) if id_parts else np.array([], dtype=str)
        np.save(tmp / "ids.npy", ids)
        # Sorted UTF-8 copies (a quarter of the size of numpy's UTF-32; same order) for id → row lookups.
        order = np.argsort(ids, kind="stable").astype(np.int32)
        np.save(tmp / "ids_sorted.npy", np.char.encode(ids[order], "utf-8"))
        np.save(tmp / "ids_order.npy", order)
        del order
        tag_rows = np.array(tag_row_parts, dtype=np.int32)
        tag_codes = np.array(tag_code_parts, dtype=np.int32)
        # Tags as CSR: the rows of tag i (in sorted name order) are tag_rows[tag_indptr[i]:tag_indptr[i + 1]].
        tag_names = tags.names()
        sorted_names = sorted(tag_names)
        rank = np.empty(len(tag_names), dtype=np.int32)
        rank[[tags.codes[t] for t in sorted_names]] = np.arange(len(tag_names), dtype=np.int32)
        tag_sorted = rank[tag_codes] if len(tag_codes) else tag_codes
        order = np.argsort(tag_sorted, kind="stable")
        tag_indptr = np.zeros(len(tag_names) + 1, dtype=np.int64)
        np.cumsum(np.bincount(tag_sorted, minlength=len(tag_names)), out=tag_indptr[1:])
        empty = np.array([], dtype=np.int32)
        np.savez(
            tmp / "columns.npz",
            origin_codes=np.concatenate(origin_parts) if origin_parts else empty,
            class_codes=np.concatenate(class_parts) if class_parts else empty,
            date_int=np.concatenate(date_parts) if date_parts else empty,
            tag_indptr=tag_indptr,
            tag_rows=tag_rows[order],
            **_reference_lists(ref_edges),
        )
        (tmp / "vocab.json").write_text(
            json.dumps({"origins": origins.names(), "classes": classes.names(), "tags": sorted_names,
                        "vector_dim": dim})
        )
        (tmp / GENERATION).write_text(str(generation))
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return cls(path).load()

    def rows_on_disk(self) -> int:
        """How many rows the sidecar now on disk holds, read from its ids' header alone."""
        return int(np.load(self.path / "ids.npy", mmap_mode="r").shape[0])

    def problem(self, deep: bool = False) -> str | None:
        """Open every file (as `load` does) and check that they agree with each other: None when
        they do, else what is wrong, naming the file. Shapes and codes always (milliseconds at
        millions of rows); `deep` also reads every BM25 posting, id order and vector."""
        for name, files in _FILES:
            if name == "bm25" and not len(self):  # an empty index has no score matrix
                continue
            try:
                getattr(self, name)
            except FileNotFoundError as exc:
                if not self.path.is_dir():
                    raise
                return f"{SIDECAR}/{Path(exc.filename or files).name} is missing"
            except Exception as exc:  # noqa: BLE001 — numpy, zipfile, json and bm25s each raise their own
                return f"{SIDECAR}/{files} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        try:
            return self._disagreement(deep)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            return f"{SIDECAR}/ columns.npz or vocab.json lack what they should hold ({type(exc).__name__}: {exc})"

    def _disagreement(self, deep: bool) -> str | None:
        cols, vocab, n = self._columns, self._vocab, len(self)
        for key in ("origin_codes", "class_codes", "date_int"):
            if len(cols[key]) != n:
                return f"{SIDECAR}/columns.npz holds {len(cols[key])} {key} for {n} rows"
        for key, names in (("origin_codes", "origins"), ("class_codes", "classes")):
            if n and not 0 <= int(cols[key].min()) <= int(cols[key].max()) < max(len(vocab[names]), 1):
                return f"{SIDECAR}/columns.npz holds {key} that vocab.json does not name"
        indptr = cols["tag_indptr"]
        if len(indptr) != len(vocab["tags"]) + 1 or int(indptr[-1]) != len(cols["tag_rows"]):
            return f"{SIDECAR}/columns.npz holds tag lists that do not match vocab.json"
        ids_sorted, order = self._sorted_ids
        if len(ids_sorted) != n or len(order) != n:
            return f"{SIDECAR}/ids_sorted.npy or ids_order.npy hold {len(ids_sorted)} ids for {n} rows"
        dim = self._vocab.get("vector_dim") or 0
        if dim and (self.path / VECTORS).stat().st_size != n * dim * 4:
            return f"{SIDECAR}/{VECTORS} holds {(self.path / VECTORS).stat().st_size:,} bytes, not {n} rows of {dim} floats"
        if n:
            scores = self.bm25.matrix.scores
            data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
            if (len(data) != len(indices) or len(indptr) != len(self.bm25.matrix.vocab_dict) + 1
                    or int(indptr[-1]) != len(data) or int(indptr[0]) != 0):
                return f"{SIDECAR}/ the BM25 score matrix files do not agree with each other"
        if deep and n:
            if not (np.diff(indptr) >= 0).all() or (len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) < n):
                return f"{SIDECAR}/indices.csc.index.npy names rows the sidecar does not hold"
            if not np.isfinite(data).all():
                return f"{SIDECAR}/data.csc.index.npy holds scores that are not numbers"
            if not (np.bincount(order, minlength=n) == 1).all() or (len(cols["tag_rows"]) and int(cols["tag_rows"].max()) >= n):
                return f"{SIDECAR}/ the row order or tag rows name rows the sidecar does not hold"
            if self._vectors is not None and not np.isfinite(self._vectors).all():
                return f"{SIDECAR}/{VECTORS} holds values that are not numbers"
        return None

    def _forget_files(self) -> None:
        for name in ("_columns", "_vocab", "_vectors", "_sorted_ids", "bm25", "last_date"):
            self.__dict__.pop(name, None)
        self._last_keep = None

    @cached_property
    def _columns(self) -> dict[str, np.ndarray]:
        """The filter columns and reference lists, read into memory, and the ids, memory-mapped."""
        with np.load(self.path / "columns.npz") as npz:
            columns = {key: npz[key] for key in npz.files}
        if "ids" not in columns:  # builds before the ids moved out of columns.npz kept them there
            columns["ids"] = np.load(self.path / "ids.npy", mmap_mode="r")
        return columns

    @cached_property
    def _vocab(self) -> dict:
        return json.loads((self.path / "vocab.json").read_text())

    @cached_property
    def bm25(self) -> BM25:
        """The BM25 score matrix over these rows (rag.index.bm25): idfs, document frequencies, scores."""
        return BM25(self.path, len(self))

    def vocabulary(self) -> dict[str, list[str]]:
        """Every origin, classification and tag the index holds: the values filters can take."""
        if not self.exists():
            return {"origins": [], "classifications": [], "tags": []}
        vocab = self._vocab
        return {key: sorted(v for v in vocab[name] if v)
                for key, name in (("origins", "origins"), ("classifications", "classes"), ("tags", "tags"))}

    def __len__(self) -> int:
        return len(self._columns["ids"])

    def filter_rows(self, filters: Filters) -> np.ndarray | None:
        """The rows (ascending) that pass every filter; None when nothing is filtered."""
        keep = self._keep(filters)
        return None if keep is None else np.flatnonzero(keep)

    def _keep(self, filters: Filters) -> np.ndarray | None:
        """True for rows that pass every filter (the ones rag.index.store.where_clause gives Chroma);
        None when nothing is filtered. The last answer is kept: a hybrid search asks for the same
        filters twice (dense rows, BM25 scores), and at 3M rows each pass over the columns costs
        milliseconds."""
        if not filters:
            return None
        last = self._last_keep
        if last is not None and last[0] == filters:
            return last[1]
        keep = self._compute_keep(filters)
        self._last_keep = (filters, keep)
        return keep

    def _compute_keep(self, filters: Filters) -> np.ndarray:
        cols, vocab = self._columns, self._vocab
        keep = np.ones(len(self), dtype=bool)
        if filters.cable_id:
            keep[:] = False
            keep[self.cable_rows(filters.cable_id)] = True
        for value, names, codes in ((filters.origin, "origins", "origin_codes"),
                                    (filters.classification, "classes", "class_codes")):
            if value:
                code = vocab[names].index(value) if value in vocab[names] else -1
                keep &= cols[codes] == code
        if filters.tag:
            tagged = np.zeros(len(self), dtype=bool)
            if filters.tag in vocab["tags"]:
                i = vocab["tags"].index(filters.tag)
                tagged[cols["tag_rows"][cols["tag_indptr"][i] : cols["tag_indptr"][i + 1]]] = True
            keep &= tagged
        if filters.day_from:
            keep &= cols["date_int"] >= filters.day_from
        if filters.day_to:
            keep &= cols["date_int"] <= filters.day_to
        return keep

    @cached_property
    def _vectors(self) -> np.ndarray | None:
        dim = self._vocab.get("vector_dim") if self.exists() else 0
        if not dim or not (self.path / VECTORS).exists():
            return None
        return np.memmap(self.path / VECTORS, dtype=np.float32, mode="r").reshape(-1, dim)

    def has_vectors(self) -> bool:
        """Whether this index holds the vectors (indexes built before they were added do not)."""
        return self._vectors is not None

    @cached_property
    def _sorted_ids(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.load(self.path / "ids_sorted.npy", mmap_mode="r"),
                np.load(self.path / "ids_order.npy", mmap_mode="r"))

    def rows_of(self, ids: list[str]) -> np.ndarray:
        """The row of each chunk id; -1 for an id this index does not hold."""
        ids_sorted, order = self._sorted_ids
        if not len(ids) or not len(ids_sorted):
            return np.full(len(ids), -1, dtype=np.int64)
        wanted = np.char.encode(np.asarray(ids, dtype=str), "utf-8")
        at = np.minimum(np.searchsorted(ids_sorted, wanted), len(ids_sorted) - 1)
        return np.where(ids_sorted[at] == wanted, order[at], -1).astype(np.int64)

    def cable_rows(self, cable_id: str) -> np.ndarray:
        """The rows of one cable's chunks (ids `<cable id>:…`)."""
        ids_sorted, order = self._sorted_ids
        bounds = np.char.encode(np.array([f"{cable_id}:", f"{cable_id};"]), "utf-8")  # ';' follows ':'
        lo, hi = np.searchsorted(ids_sorted, bounds)
        return np.sort(order[lo:hi]).astype(np.int64)

    def chunk_of_each(self, cable_ids: list[str]) -> dict[str, str]:
        """One chunk id of each of these cables that the index holds (every chunk carries its
        cable's subject and date)."""
        ids = self._columns["ids"]
        found = {}
        for cable_id in dict.fromkeys(cable_ids):
            rows = self.cable_rows(cable_id)
            if len(rows):
                found[cable_id] = str(ids[rows[0]])
        return found

    def references(self, cable_id: str) -> list[str]:
        """The cables this cable's REF lines name, in their order, whether the index holds them
        or not; [] also for a sidecar built before references were stored."""
        return self._edges("ref_from", "ref_to", cable_id)

    def referenced_by(self, cable_id: str) -> list[str]:
        """The cables of the index whose REF lines name this cable, in id order."""
        return self._edges("ref_cited", "ref_citing", cable_id)

    def _edges(self, key_column: str, value_column: str, cable_id: str) -> list[str]:
        cols = self._columns if self.exists() else {}
        if key_column not in cols:
            return []
        keys, key = cols[key_column], cable_id.encode("utf-8")
        lo, hi = np.searchsorted(keys, key, side="left"), np.searchsorted(keys, key, side="right")
        return [value.decode("utf-8") for value in cols[value_column][lo:hi]]

    def ids_of_cables(self, cable_ids: list[str]) -> list[str]:
        """The chunk ids of these cables, cable by cable, each cable's in row order."""
        ids = self._columns["ids"]
        return [str(ids[row]) for cable_id in cable_ids for row in self.cable_rows(cable_id)]

    def nearest(self, vector: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the `k` rows among `rows` nearest to `vector`: exact, in blocks
        so a large set never materialises at once."""
        if k <= 0 or not len(rows):
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = np.concatenate([self._vectors[rows[i : i + _BLOCK]] @ query for i in range(0, len(rows), _BLOCK)])
        top = np.argpartition(-scores, k - 1)[:k] if len(rows) > k else np.arange(len(rows))
        top = top[np.lexsort((rows[top], -scores[top]))]
        ids = self._columns["ids"]
        return [(str(ids[r]), float(scores[i])) for r, i in zip(rows[top], top)]

    def scores_of(self, query: str, ids: list[str]) -> np.ndarray:
        """The BM25 score of each chunk id for `query` (0 for an id not held or not matched)."""
        rows, scores = self.bm25.scores(query)
        at = self.rows_of(ids)
        if not len(rows):
            return np.zeros(len(ids))
        pos = np.minimum(np.searchsorted(rows, at), len(rows) - 1)
        return np.where((at >= 0) & (rows[pos] == at), scores[pos], 0.0)

    @cached_property
    def last_date(self) -> int:
        """The latest cable date the index holds, as YYYYMMDD (0 when none is known)."""
        dates = self._columns["date_int"] if self.exists() else np.zeros(0)
        return int(dates.max()) if len(dates) else 0

    def search(self, query: str, k: int, filters: Filters = Filters()) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the best `k` rows with a positive score."""
        if not len(self) or k <= 0:
            return []
        rows, scores = self.bm25.scores(query)
        keep = self._keep(filters)
        if keep is not None and len(rows):
            scores = np.where(keep[rows], scores, 0.0)
        keep = scores > 0
        rows, scores = rows[keep], scores[keep]
        if len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[top], scores[top]
        order = np.lexsort((rows, -scores))
        ids = self._columns["ids"]
        return [(str(ids[r]), float(s)) for r, s in zip(rows[order], scores[order])]
