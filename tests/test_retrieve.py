"""Filtered dense search on the demo index: exact over the rows that pass, or Chroma's unfiltered
neighbours checked by row for a broad filter; the truth is every passing chunk scored in numpy."""

import numpy as np
import pytest

import rag.answer.retrieve
from rag.answer.retrieve import open_retriever
from rag.filters import Filters
from rag.index.ingest import Ingester
from rag.index.rows import RowIndex
from rag.index.store import where_clause

QUESTION = "police trafficking arrests"
FILTERS = [Filters.parse(f) for f in (
    {"origin": "Embassy Phnom Penh"},
    {"date_from": "2009-01-01", "date_to": "2009-12-31"},
    {"tag": "KTIP"},
    {"classification": "SECRET"},
    {"origin": "Embassy Phnom Penh", "date_from": "2009-06-01", "tag": "KTIP"},  # fewer than k pass
    {"date_from": "2001-01-01"},  # passes almost every chunk
)]


@pytest.fixture(scope="module")
def retriever(demo_settings):
    return open_retriever(demo_settings, "dense")


def exact_top(retriever, vector, filters, k=10):
    """The k passing chunks nearest to `vector`, by brute force over Chroma's own filter."""
    got = retriever.store.collection.get(where=where_clause(filters), include=["embeddings"])
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    sims = vectors @ vector / np.linalg.norm(vectors, axis=1) / np.linalg.norm(vector)
    return [got["ids"][i] for i in np.argsort(-sims, kind="stable")[:k]], len(got["ids"])


def test_the_index_holds_the_vectors_in_row_order(retriever):
    lexical = retriever.lexical
    assert lexical.has_vectors()
    ids = [str(i) for i in lexical._columns["ids"][[0, 7, len(lexical) - 1]]]
    rows = lexical.rows_of(ids + ["09NOWHERE1:1"])
    assert rows.tolist() == [0, 7, len(lexical) - 1, -1]
    stored = retriever.store.collection.get(ids=ids, include=["embeddings"])
    by_id = dict(zip(stored["ids"], np.asarray(stored["embeddings"])))
    for row, cid in zip(rows, ids):
        assert np.allclose(lexical._vectors[row], by_id[cid] / np.linalg.norm(by_id[cid]), atol=1e-6)


@pytest.mark.parametrize("filters", FILTERS)
def test_filtered_dense_is_the_exact_top_k(retriever, filters):
    vector = retriever.encoder.encode_query(QUESTION)
    truth, passing = exact_top(retriever, vector, filters)
    assert passing, "a filter this test relies on no longer matches the demo corpus"
    hits = retriever.dense(QUESTION, 10, filters, vector)
    assert [h.chunk_id for h in hits] == truth
    rows = retriever.lexical.filter_rows(filters)
    assert len(rows) == passing
    assert all(h.source == "dense" and h.text for h in hits)


def test_broad_filter_takes_chroma_neighbours_checked_by_row(retriever, monkeypatch):
    vector = retriever.encoder.encode_query(QUESTION)
    calls = []
    nearest_ids = retriever.store.nearest_ids
    monkeypatch.setattr(retriever.store, "nearest_ids", lambda v, n: calls.append(n) or nearest_ids(v, n))
    monkeypatch.setattr(rag.answer.retrieve, "EXACT_ROWS", 100)
    for filters in (FILTERS[5], FILTERS[1]):
        truth, _ = exact_top(retriever, vector, filters)
        assert [h.chunk_id for h in retriever.dense(QUESTION, 10, filters, vector)] == truth
    # a near-total filter needs few extra neighbours; a third of the corpus needs about 3 × 3 × k
    assert calls[0] < 40 and 60 < calls[1] < len(retriever.lexical)


def test_named_cable_is_searched_within_that_cable(retriever):
    vector = retriever.encoder.encode_query("Who leads Cambodia's police TIP response?")
    hits = retriever.named_cables(["09PHNOMPENH637"], 3, vector)
    truth, passing = exact_top(retriever, vector, Filters(cable_id="09PHNOMPENH637"), k=3)
    assert passing == 7 and [h.chunk_id for h in hits] == truth
    assert {h.source for h in hits} == {"id"} and hits[0].score >= hits[-1].score
    assert retriever.lexical.cable_rows("09PHNOMPENH63").size == 0  # a prefix of an id is not that cable


def test_an_index_built_before_the_vectors_is_brought_up_to_date(fake_demo, tmp_path):
    ingester = Ingester(fake_demo)
    old = RowIndex.build(tmp_path / "bm25", ingester.store.iter_all(), ingester.store.generation)  # no embeddings
    assert old.exists() and not old.has_vectors()
    ingester.lexical = old
    ingester.refresh_lexical(progress=False)
    assert ingester.lexical.has_vectors() and len(ingester.lexical) == ingester.store.count()
