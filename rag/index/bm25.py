"""BM25: the tokenizer, the score matrix and its streaming build.

Names, numbers and cable ids that the embedder blurs are matched exactly here. The matrix is one
part of the sidecar (rag.index.rows), whose rows it shares: row i of the matrix is row i of the ids,
the filter columns and the vectors.

Built to hold the full release (~3 million chunks) on a laptop:
- the build streams: each page of the store is tokenized to integer ids against one growing
  vocabulary and reduced to (row, token, tf) arrays spilled to disk, so no list of Python
  strings per token is ever held for the whole corpus (bm25s.index on lists of strings needs
  ~5 KB per chunk, ~14 GB at 3M); a second pass scores them into memory-mapped arrays (peak
  ~0.9 KB per chunk, most of it file pages the kernel can drop);
- the score matrix is written in bm25s's on-disk format (bm25s.BM25.load reads it) and opened
  memory-mapped, so a query touches only the pages of the postings it needs;
- a query sums its tokens' postings with one np.bincount and ranks only the rows that scored.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.spelling import variants

_WORD = re.compile(r"[A-Za-z]+")
# bm25s's defaults (Lucene variant), which the previous builds used.
K1, B = 1.5, 0.75


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


class Builder:
    """The streaming build of the score matrix. Pass 1 (`add`, page by page) tokenizes to integer
    ids against one growing vocabulary and spills each page's (row, token, tf) triples to disk;
    pass 2 (`write`), once document frequencies and the mean length are known, scores them."""

    def __init__(self, spill: Path):
        self.spill = spill
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)
        self.len_parts: list[np.ndarray] = []
        self.pieces: list[Path] = []

    def add(self, documents: list[str], metadatas: list[dict], first_row: int) -> None:
        """Pass 1 for one page of chunks, whose rows start at `first_row`."""
        import bm25s

        vocab = self.vocab
        texts = [lexical_text(d, m) for d, m in zip(documents, metadatas)]
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
        piece = self.spill / f"{len(self.pieces):06d}.npz"
        np.savez(piece, rows=(pairs // width + first_row).astype(np.int32), toks=toks,
                 tf=np.minimum(counts, 65535).astype(np.uint16))
        self.pieces.append(piece)
        grown = np.zeros(len(vocab), dtype=np.int64)
        grown[: len(self.df)] = self.df
        self.df = grown + np.bincount(toks, minlength=len(vocab))
        self.len_parts.append(lens.astype(np.int32))

    def write(self, folder: Path, n: int) -> None:
        """Pass 2: the BM25 score matrix of the `n` rows added, in bm25s's on-disk format (CSC,
        one column per token, rows ascending), written through memory maps into `folder`;
        bm25s.BM25.load(mmap=True) reads it."""
        import bm25s

        vocab, lengths = self.vocab, np.concatenate(self.len_parts)
        vocab[""] = len(vocab)  # bm25s's empty token: an empty column
        df = np.concatenate([self.df, [0]])
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = (K1 * ((1 - B) + B * lengths / max(float(lengths.mean()), 1e-9))).astype(np.float32)
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        nnz = int(indptr[-1])
        data = np.lib.format.open_memmap(folder / "data.csc.index.npy", mode="w+", dtype=np.float32, shape=(nnz,))
        indices = np.lib.format.open_memmap(folder / "indices.csc.index.npy", mode="w+", dtype=np.int32, shape=(nnz,))
        cursor = indptr[:-1].copy()
        for piece in self.pieces:
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
        np.save(folder / "indptr.csc.index.npy", indptr)
        (folder / "vocab.index.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        ref = bm25s.BM25(k1=K1, b=B)
        params = dict(k1=ref.k1, b=ref.b, delta=ref.delta, method=ref.method, idf_method=ref.idf_method,
                      dtype=ref.dtype, int_dtype=ref.int_dtype, num_docs=n, version=bm25s.__version__, backend=ref.backend)
        (folder / "params.index.json").write_text(json.dumps(params, indent=4))


class BM25:
    """The score matrix of a sidecar, memory-mapped: one column of postings per stemmed token."""

    def __init__(self, path: Path, rows: int):
        import bm25s

        self.matrix = bm25s.BM25.load(str(path), mmap=True)
        self.rows = rows  # how many rows the sidecar holds

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, BM25 scores) of every row that shares a token with the query."""
        matrix = self.matrix
        token_ids = matrix.get_tokens_ids(self.query_tokens(query))
        if not token_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        data, indices, indptr = matrix.scores["data"], matrix.scores["indices"], matrix.scores["indptr"]
        spans = [(int(indptr[t]), int(indptr[t + 1])) for t in token_ids]  # a repeated token counts twice, as in bm25s
        rows = np.concatenate([indices[a:b] for a, b in spans])
        weights = np.concatenate([data[a:b] for a, b in spans])
        if len(rows) > self.rows // 16:
            dense = np.bincount(rows, weights=weights, minlength=self.rows)
            hit = np.flatnonzero(dense)
            return hit, dense[hit]
        hit, inverse = np.unique(rows, return_inverse=True)
        return hit, np.bincount(inverse, weights=weights, minlength=len(hit))

    def query_tokens(self, query: str) -> list[str]:
        """The query's stemmed tokens, each word the index lacks replaced by its other spellings
        that the index holds ("favour" → "favor")."""
        tokens = tokenize([query])[0]
        vocab = self.matrix.vocab_dict
        missing = {t for t in tokens if t not in vocab}
        if not missing:
            return tokens
        for word in _WORD.findall(query):
            forms = variants(word)
            if forms and stemmer().stemWord(word.lower()) in missing:
                tokens += [t for t in tokenize(sorted(forms))[0] if t in vocab]
        return tokens

    def document_frequency(self, terms: list[str]) -> np.ndarray:
        """How many chunks hold each stemmed term (0 for a term the index has never seen)."""
        matrix = self.matrix
        indptr = matrix.scores["indptr"]
        return np.array([int(indptr[t + 1] - indptr[t]) if (t := matrix.vocab_dict.get(term)) is not None else 0
                         for term in terms], dtype=np.int64)

    def idf(self, terms: list[str]) -> np.ndarray:
        """BM25's idf of each stemmed term (a term the index lacks gets the idf of a term seen
        once: rarer than anything it holds)."""
        df = np.maximum(self.document_frequency(terms), 1).astype(np.float64)
        return np.log(1 + (self.rows - df + 0.5) / (df + 0.5))
