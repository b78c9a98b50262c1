"""Retrieval: dense (Chroma), lexical (BM25) and hybrid (reciprocal rank fusion), with filters.

A cable id in the question pulls that cable's paragraphs in. An optional cross-encoder,
given as a local model path, reranks the fused list.

The BM25 sidecar's rows name chunks by id, so it is opened only when it was built from the
store's current generation (rag.index.store), and loaded whole: see `open_retriever` and `Retriever.newer`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

# RRF constant from Cormack et al. (2009); 60 is the value they found robust.
from rag.citation import CABLE_ID
from rag.errors import RagError
from rag.filters import Filters
from rag.index.embed import Encoder, get_encoder
from rag.index.index import Parts, index_for
from rag.index.rows import RowIndex
from rag.index.sentences import SentenceVectors
from rag.index.store import Store
from rag.settings import RETRIEVALS, Settings, get_settings
from rag.types import Hit

RRF_K = 60
# Each side contributes this many candidates to the fusion, so a paragraph ranked low by one
# retriever but high by the other still surfaces.
FUSION_DEPTH = 50
# A filtered dense search scores every row that passes exactly up to this many rows (~50 ms at
# 384 dims); a broader filter passes most of Chroma's unfiltered neighbours, so those are
# fetched, OVERSAMPLE times as many as the filter's share of rows predicts are needed, and checked.
EXACT_ROWS = 100_000
OVERSAMPLE = 3
# A hybrid search runs its BM25 side here while the question is encoded and searched densely:
# the encoder (ONNX), LanceDB and the sidecar's scoring release the GIL, so the two overlap.
_LEXICAL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bm25")


def rrf_ids(rankings: list[list[str]], weights: list[float] | None = None, k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of rankings of chunk ids: (id, Σ weight / (k + rank)), best first."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def rrf(rankings: list[list[Hit]], weights: list[float] | None = None, k: int = RRF_K) -> list[Hit]:
    """Reciprocal rank fusion of hits (`rrf_ids`), each hit as the first ranking to hold it has it."""
    first: dict[str, Hit] = {}
    for hit in (h for ranking in rankings for h in ranking):
        first.setdefault(hit.chunk_id, hit)
    fused = rrf_ids([[h.chunk_id for h in ranking] for ranking in rankings], weights, k)
    return [replace(first[c], score=score, source="hybrid") for c, score in fused]


@dataclass
class Retriever:
    """Searches one index; `search` is the API."""

    store: Store
    lexical: RowIndex
    encoder: Encoder
    mode: str = "hybrid"
    reranker_path: str = ""
    dense_weight: float = 1.0
    # The vectors of each paragraph's sentences, kept from ingest for the extractive answer.
    sentences: SentenceVectors | None = None
    # What store, lexical and sentences make together: Parts, or the lance store's LanceParts.
    parts_type: type = Parts

    def __post_init__(self):
        if self.mode not in RETRIEVALS:
            raise RagError(f"unknown retrieval mode {self.mode!r}: choose one of {', '.join(RETRIEVALS)}")

    @cached_property
    def reranker(self):
        if not self.reranker_path:
            return None
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.reranker_path, device="cpu")

    def dense(self, question: str, k: int, filters: Filters = Filters(), vector=None) -> list[Hit]:
        vector = self.encoder.encode_query(question) if vector is None else vector
        rows = self.lexical.filter_rows(filters) if filters and self.lexical.has_vectors() else None
        if rows is None:
            return self.store.query(vector, k, filters)
        return self._dense_within(vector, k, rows)

    def _dense_within(self, vector, k: int, rows) -> list[Hit]:
        """Dense search restricted to `rows` of the lexical index (see rag.index.rows on why not
        Chroma's `where`)."""
        ranked = None
        if len(rows) > EXACT_ROWS:
            n = min(len(self.lexical), -(-k * len(self.lexical) * OVERSAMPLE // len(rows)))
            candidates = self.store.nearest_ids(vector, n)
            at = self.lexical.rows_of([cid for cid, _ in candidates])
            pos = np.minimum(np.searchsorted(rows, at), len(rows) - 1)  # rows ascend: a binary search each
            passed = rows[pos] == at
            if passed.sum() >= k or n == len(self.lexical):
                ranked = [c for c, ok in zip(candidates, passed) if ok][:k]
        if ranked is None:
            ranked = self.lexical.nearest(vector, rows, k)
        return self._hits(ranked, "dense")

    def _hits(self, ranked: list[tuple[str, float]], source: str) -> list[Hit]:
        hits = self.store.get([cid for cid, _ in ranked])
        score = dict(ranked)
        for hit in hits:
            hit.score, hit.source = score[hit.chunk_id], source
        return hits

    def bm25(self, question: str, k: int, filters: Filters = Filters()) -> list[Hit]:
        if not self.lexical.exists():
            raise RagError(f"no BM25 index at {self.lexical.path}: run 'rag ingest' again to build it")
        return self._hits(self.lexical.search(question, k, filters), "bm25")

    def named_cables(self, cable_ids: list[str], k: int, vector) -> list[Hit]:
        """Paragraphs of the cables a question names by id, best match to the question first."""
        hits: list[Hit] = []
        for cable_id in dict.fromkeys(cable_ids):
            if self.lexical.has_vectors():
                hits.extend(self._hits(self.lexical.nearest(vector, self.lexical.cable_rows(cable_id), k), "id"))
            else:
                hits.extend(replace(h, source="id") for h in self.store.query(vector, k, Filters(cable_id=cable_id)))
        return sorted(hits, key=lambda h: -h.score)

    @property
    def parts(self) -> Parts:
        """The parts of the index this retriever searches (its cable view and stats)."""
        return self.parts_type(self.store, self.lexical, self.sentences)

    def newer(self) -> Retriever | None:
        """A retriever over the parts of the index's current generation (`Parts.newer`); None
        while this one is current or the next is not built yet. A retriever never changes its
        parts: searches running on this one finish on them, whoever moves on."""
        parts = self.parts.newer()
        if parts is None:
            return None
        moved = replace(self, store=parts.store, lexical=parts.lexical, sentences=parts.sentences)
        if "reranker" in self.__dict__:  # the loaded cross-encoder moves along, not loaded again
            moved.__dict__["reranker"] = self.reranker
        return moved

    def search(self, question: str, k: int = 10, filters: Filters = Filters(), vector=None) -> list[Hit]:
        """The `k` best paragraphs; `vector` is the question's embedding when the caller has it."""
        depth = max(k, FUSION_DEPTH) if (self.mode == "hybrid" or self.reranker) else k
        named_ids = CABLE_ID.findall(question.upper())
        lexical = _LEXICAL.submit(self.bm25, question, depth, filters) if self.mode == "hybrid" else None
        if vector is None and (self.mode != "bm25" or named_ids):
            vector = self.encoder.encode_query(question)
        if self.mode == "dense":
            hits = self.dense(question, depth, filters, vector)
        elif self.mode == "bm25":
            hits = self.bm25(question, depth, filters)
        else:
            hits = rrf([self.dense(question, depth, filters, vector), lexical.result()], weights=[self.dense_weight, 1.0])
        named = self.named_cables(named_ids, k, vector) if named_ids else []
        if named:
            hits = rrf([named, hits], weights=[2.0, 1.0])
        if self.reranker is not None and hits:
            scores = self.reranker.predict([(question, h.text) for h in hits[:FUSION_DEPTH]])
            hits = [replace(h, score=float(s)) for h, s in zip(hits, scores)]
            hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def search_many(self, questions: list[str], k: int, vectors: np.ndarray) -> list[list[Hit]]:
        """`search` for each question with its vector, unfiltered: the same hits, but ranked by id
        and read from the store in one call for all of them, not two per question (`rag check`
        searches for hundreds of claims). A question naming a cable, or a reranker, takes `search`."""
        if self.mode != "dense" and not self.lexical.exists():
            raise RagError(f"no BM25 index at {self.lexical.path}: run 'rag ingest' again to build it")
        depth = max(k, FUSION_DEPTH) if self.mode == "hybrid" else k
        ranked: list[list[tuple[str, float]] | None] = []
        for question, vector in zip(questions, vectors):
            if self.reranker_path or CABLE_ID.search(question.upper()):
                ranked.append(None)
                continue
            dense = self.store.nearest_ids(vector, depth) if self.mode != "bm25" else []
            lexical = self.lexical.search(question, depth) if self.mode != "dense" else []
            if self.mode == "hybrid":
                ranked.append(rrf_ids([[c for c, _ in dense], [c for c, _ in lexical]], [self.dense_weight, 1.0])[:k])
            else:
                ranked.append((dense or lexical)[:k])
        source = "hybrid" if self.mode == "hybrid" else self.mode
        stored = {h.chunk_id: h for h in self.store.get(list(dict.fromkeys(c for r in ranked if r for c, _ in r)))}
        return [self.search(q, k, vector=v) if r is None else
                [replace(stored[c], score=score, source=source) for c, score in r if c in stored]
                for q, v, r in zip(questions, vectors, ranked)]


def open_retriever(settings: Settings | None = None, mode: str | None = None) -> Retriever:
    """The retriever of the index of `settings`; StaleIndex when its sidecar is out of step."""
    settings = get_settings(settings)
    encoder = get_encoder(settings.encoder, settings.embed_batch_size, settings.device, queries=True)
    store = index_for(settings).store(encoder.model_id, encoder.dimension)
    return retriever_over(store, encoder, settings, mode)


def retriever_over(store: Store, encoder: Encoder, settings: Settings, mode: str | None = None) -> Retriever:
    """A retriever over `store` and its sidecar, loaded whole; StaleIndex when out of step."""
    parts = index_for(settings).open(store)
    return Retriever(store, parts.lexical, encoder, mode or settings.retrieval, settings.reranker, settings.dense_weight,
                     parts.sentences, type(parts))
