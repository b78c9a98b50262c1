"""The BM25 index, persisted beside the Chroma index and rebuilt from it after ingest.

Names, numbers and cable ids that the embedder blurs are matched exactly here. Filter columns
(origin, classification, date, tags) are kept as numpy arrays so a filtered search masks the
scores instead of filtering a top-k after the fact.

Built to hold the full release (~3 million chunks) on a laptop:
- the build streams: each page of the store is tokenized to integer ids against one growing
  vocabulary and reduced to (row, token, tf) arrays spilled to disk, so no list of Python
  strings per token is ever held for the whole corpus (bm25s.index on lists of strings needs
  ~5 KB per chunk, ~14 GB at 3M); a second pass scores them into memory-mapped arrays (peak
  ~0.9 KB per chunk, most of it file pages the kernel can drop);
- the score matrix is written in bm25s's on-disk format (bm25s.BM25.load reads it) and opened
  memory-mapped; the chunk ids are a memory-mapped .npy too, so a query touches only the pages
  of the postings and rows it needs;
- a query sums its tokens' postings with one np.bincount and ranks only the rows that scored.

It also keeps, in the same row order, a memory-mapped copy of the vectors and the chunk ids
sorted, because Chroma's filtered search does not hold at scale: its `where` is evaluated in
SQLite over every matching metadata row (a date range over 73k chunks: 155 ms, and linear in
the corpus), and a small allowed set makes its HNSW walk most of the graph (one embassy, 55
chunks: 50 ms). With the filter columns here, a filtered dense search is an exact dot product
over the rows that pass (`nearest`), or, for a broad filter, Chroma's unfiltered top-n checked
against the filter by row (`rows_of`).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from rag.errors import StaleIndex
from rag.filters import Filters
from rag.settings import Settings, get_settings

DIRNAME = "bm25"
VECTORS = "vectors.f32"
# The store generation the sidecar was built from (rag.store): written last, so a sidecar that has
# it is complete.
GENERATION = "generation"
# Beside the sidecar, left by ingests from before generations: the store changed after the build.
LEGACY_STALE = "bm25.stale"
# Opening a sidecar that a rebuild swaps out meanwhile is retried this many times.
LOAD_TRIES = 3
# bm25s's defaults (Lucene variant), which the previous builds used.
K1, B = 1.5, 0.75
# Rows per block of an exact search: 32k × 384 floats is 48 MiB.
_BLOCK = 32_768


@lru_cache(maxsize=1)
def stemmer():
    """The English Snowball stemmer BM25 indexes with (one per process)."""
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    """Each text's tokens as BM25 indexes them: bm25s's English stop words, Snowball stems.
    One call for many texts: bm25s's per-call overhead dominates for short ones."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), return_ids=False, show_progress=False)


def lexical_text(document: str, meta: dict) -> str:
    """What BM25 sees: the paragraph plus the words a reader uses to find it (id, subject, heading)."""
    return " ".join([meta.get("cable_id", ""), meta.get("subject", ""), meta.get("heading", ""), document])


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


def _write_scores(tmp: Path, pieces: list[Path], vocab: dict[str, int], df: np.ndarray, lengths: np.ndarray,
                  n: int) -> None:
    """Pass 2 of the build: the BM25 score matrix in bm25s's on-disk format (CSC, one column per
    token, rows ascending), written through memory maps; bm25s.BM25.load(mmap=True) reads it."""
    import bm25s

    vocab[""] = len(vocab)  # bm25s's empty token: an empty column
    df = np.concatenate([df, [0]])
    idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (K1 * ((1 - B) + B * lengths / max(float(lengths.mean()), 1e-9))).astype(np.float32)
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    nnz = int(indptr[-1])
    data = np.lib.format.open_memmap(tmp / "data.csc.index.npy", mode="w+", dtype=np.float32, shape=(nnz,))
    indices = np.lib.format.open_memmap(tmp / "indices.csc.index.npy", mode="w+", dtype=np.int32, shape=(nnz,))
    cursor = indptr[:-1].copy()
    for piece in pieces:
        with np.load(piece) as z:
            rows, toks, tf = z["rows"], z["toks"], z["tf"].astype(np.float32)
        score = idf[toks] * tf / (norm[rows] + tf)
        order = np.argsort(toks, kind="stable")  # rows stay ascending within a token
        toks, rows, score = toks[order], rows[order], score[order]
        starts = np.flatnonzero(np.r_[True, toks[1:] != toks[:-1]])
        runs = np.diff(np.r_[starts, len(toks)])
        pos = cursor[toks] + (np.arange(len(toks)) - np.repeat(starts, runs))
        indices[pos] = rows
        data[pos] = score
        cursor[toks[starts]] += runs
    data.flush()
    indices.flush()
    del data, indices
    np.save(tmp / "indptr.csc.index.npy", indptr)
    (tmp / "vocab.index.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    ref = bm25s.BM25(k1=K1, b=B)
    params = dict(k1=ref.k1, b=ref.b, delta=ref.delta, method=ref.method, idf_method=ref.idf_method,
                  dtype=ref.dtype, int_dtype=ref.int_dtype, num_docs=n, version=bm25s.__version__, backend=ref.backend)
    (tmp / "params.index.json").write_text(json.dumps(params, indent=4))


class LexicalIndex:
    """BM25 over every chunk, with the chunk ids and filter columns in the same row order."""

    def __init__(self, path: Path):
        self.path = path
        self._last_keep: tuple[Filters, np.ndarray] | None = None
        # The generation of the files this object has opened (see `load`).
        self.generation: int | None = None

    @classmethod
    def at(cls, settings: Settings | None = None) -> "LexicalIndex":
        return cls(get_settings(settings).index_dir / DIRNAME)

    def exists(self) -> bool:
        return (self.path / "columns.npz").exists()

    def generation_on_disk(self) -> int | None:
        """The generation of the sidecar now on disk: None when there is none, or when it predates
        generations and the legacy marker says the store changed after it was built; 0 for a
        sidecar from before generations that is in step (as is its store, at generation 0)."""
        try:
            return int((self.path / GENERATION).read_text())
        except FileNotFoundError:
            if not self.exists() or (self.path.parent / LEGACY_STALE).exists():
                return None
            return 0

    def load(self) -> "LexicalIndex":
        """Open every file of the sidecar now, not on first use: a rebuild that swaps the
        directory later then cannot pair this generation's ids with the next one's rows (the
        memory maps keep the files they opened after the swap removes them). A load that
        straddles a swap is retried."""
        for _ in range(LOAD_TRIES):
            before = self.generation_on_disk()
            if before is None and not self.exists():
                return self
            try:
                self._open_files()
            except FileNotFoundError:
                if self.generation_on_disk() == before:
                    raise
            else:
                if self.generation_on_disk() == before:
                    self.generation = before
                    return self
            self._forget_files()
        raise StaleIndex(f"the BM25 sidecar at {self.path} kept changing while it was opened: "
                         "wait for the running 'rag ingest' to finish, then try again")

    @classmethod
    def build(cls, path: Path, pages, generation: int, progress=None) -> "LexicalIndex":
        """Build from `pages` of Chroma `get` results, read from the store at `generation`, and
        write atomically (a temp dir renamed into place, its generation file written last), so an
        interrupted build never leaves a half-written index.

        Scores equal bm25s's (BM25 Lucene variant, k1=1.5, b=0.75, English stop words, Snowball
        stemmer). Two passes, so memory stays about one page plus ~110 bytes per chunk (ids,
        lengths, filter columns) and the vocabulary: pass 1 tokenizes each page to integer ids
        against one growing vocabulary and spills its (row, token, tf) triples to disk; pass 2,
        once document frequencies and the mean length are known, scores each page's triples and
        scatters them into the memory-mapped CSC arrays. Pages that carry `embeddings` are
        appended, normalised, to the row-aligned vectors file as they come."""
        import bm25s

        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        spill = tmp / "spill"
        spill.mkdir(parents=True)
        vocab: dict[str, int] = {}
        df = np.zeros(0, dtype=np.int64)
        len_parts, id_parts, pieces = [], [], []
        origins, classes, tags = _Codes(), _Codes(), _Codes()
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
                texts = [lexical_text(d, m) for d, m in zip(docs, metas)]
                tok = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), return_ids=True, show_progress=False)
                local = np.empty(max(len(tok.vocab), 1), dtype=np.int64)
                for word, lid in tok.vocab.items():
                    gid = vocab.get(word)
                    if gid is None:
                        gid = vocab[word] = len(vocab)
                    local[lid] = gid
                lens = np.fromiter((len(d) for d in tok.ids), dtype=np.int64, count=len(texts))
                flat = np.fromiter(itertools.chain.from_iterable(tok.ids), dtype=np.int64, count=int(lens.sum()))
                del tok
                width = max(len(vocab), 1)
                keys = np.repeat(np.arange(len(texts), dtype=np.int64), lens) * width + local[flat]
                pairs, counts = np.unique(keys, return_counts=True)  # sorted by (row, token)
                toks = (pairs % width).astype(np.int32)
                piece = spill / f"{len(pieces):06d}.npz"
                np.savez(piece, rows=(pairs // width + n).astype(np.int32), toks=toks,
                         tf=np.minimum(counts, 65535).astype(np.uint16))
                pieces.append(piece)
                grown = np.zeros(len(vocab), dtype=np.int64)
                grown[: len(df)] = df
                df = grown + np.bincount(toks, minlength=len(vocab))
                len_parts.append(lens.astype(np.int32))
                id_parts.append(np.array(page_ids, dtype=str))
                origin_parts.append(np.fromiter((origins(m.get("origin", "") or "") for m in metas), np.int32, len(metas)))
                class_parts.append(np.fromiter((classes(m.get("classification", "") or "") for m in metas), np.int32, len(metas)))
                date_parts.append(np.fromiter((int(m.get("date_int", 0) or 0) for m in metas), np.int32, len(metas)))
                for i, m in enumerate(metas):
                    for tag in m.get("tags") or []:
                        tag_row_parts.append(n + i)
                        tag_code_parts.append(tags(tag))
                n += len(page_ids)
                if progress:
                    progress(len(page_ids))

        if not dim:
            (tmp / VECTORS).unlink()
        if n:
            _write_scores(tmp, pieces, vocab, df, np.concatenate(len_parts), n)
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

    def _open_files(self) -> None:
        for name in ("_columns", "_vocab", "_vectors", "_sorted_ids"):
            getattr(self, name)
        if len(self):  # an empty index has no score matrix
            getattr(self, "_retriever")

    def _forget_files(self) -> None:
        for name in ("_columns", "_vocab", "_vectors", "_sorted_ids", "_retriever", "last_date"):
            self.__dict__.pop(name, None)
        self._last_keep = None

    @cached_property
    def _columns(self) -> dict[str, np.ndarray]:
        """The filter columns, read into memory, and the ids, memory-mapped."""
        with np.load(self.path / "columns.npz") as npz:
            columns = {key: npz[key] for key in npz.files}
        if "ids" not in columns:  # builds before the ids moved out of columns.npz kept them there
            columns["ids"] = np.load(self.path / "ids.npy", mmap_mode="r")
        return columns

    @cached_property
    def _vocab(self) -> dict:
        return json.loads((self.path / "vocab.json").read_text())

    @cached_property
    def _retriever(self):
        import bm25s

        return bm25s.BM25.load(str(self.path), mmap=True)

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
        """True for rows that pass every filter (the ones rag.store.where_clause gives Chroma);
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

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, BM25 scores) of every row that shares a token with the query."""
        retriever = self._retriever
        token_ids = retriever.get_tokens_ids(tokenize([query])[0])
        if not token_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        data, indices, indptr = retriever.scores["data"], retriever.scores["indices"], retriever.scores["indptr"]
        spans = [(int(indptr[t]), int(indptr[t + 1])) for t in token_ids]  # a repeated token counts twice, as in bm25s
        rows = np.concatenate([indices[a:b] for a, b in spans])
        weights = np.concatenate([data[a:b] for a, b in spans])
        if len(rows) > len(self) // 16:
            dense = np.bincount(rows, weights=weights, minlength=len(self))
            hit = np.flatnonzero(dense)
            return hit, dense[hit]
        hit, inverse = np.unique(rows, return_inverse=True)
        return hit, np.bincount(inverse, weights=weights, minlength=len(hit))

    def document_frequency(self, terms: list[str]) -> np.ndarray:
        """How many chunks hold each stemmed term (0 for a term the index has never seen)."""
        retriever = self._retriever
        indptr = retriever.scores["indptr"]
        return np.array([int(indptr[t + 1] - indptr[t]) if (t := retriever.vocab_dict.get(term)) is not None else 0
                         for term in terms], dtype=np.int64)

    def idf(self, terms: list[str]) -> np.ndarray:
        """BM25's idf of each stemmed term (a term the index lacks gets the idf of a term seen
        once: rarer than anything it holds)."""
        df = np.maximum(self.document_frequency(terms), 1).astype(np.float64)
        return np.log(1 + (len(self) - df + 0.5) / (df + 0.5))

    def scores_of(self, query: str, ids: list[str]) -> np.ndarray:
        """The BM25 score of each chunk id for `query` (0 for an id not held or not matched)."""
        rows, scores = self.scores(query)
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
        rows, scores = self.scores(query)
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
