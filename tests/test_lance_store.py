"""The lance store (`--store lance`) for real: LanceDB in a tmp folder, a few demo cables embedded
by the fake encoder, checked against the Chroma store and its sidecar built from the same cables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import FAKE_ENCODER

from rag.answer.retrieve import open_retriever
from rag.cli import main
from rag.errors import IndexMismatch, NoIndex, RagError
from rag.filters import Filters
from rag.index.bm25 import tokenize
from rag.index.demo import DEMO_DIR
from rag.index.index import Index, index_for
from rag.index.ingest import ingest
from rag.index.lance_held import HeldRows
from rag.index.lance_ingest import ingest_lance
from rag.index.lance_store import LanceStore
from rag.settings import Settings

pytest.importorskip("lancedb")

FIRST = ["09PHNOMPENH637", "08PHNOMPENH694", "08PHNOMPENH679", "03ANKARA4230", "04BRASILIA2129"]
# 08PHNOMPENH706's REF line names 08PHNOMPENH694.
LATER = ["08PHNOMPENH706", "03THEHAGUE3067"]
QUESTION = "Who leads Cambodia's police TIP response?"


def lance_settings(folder) -> Settings:
    return Settings(store="lance", lance_uri=str(folder), encoder=FAKE_ENCODER, index_dir=folder.parent / "unused")


def copy_cables(folder, cable_ids):
    folder.mkdir(exist_ok=True)
    for cable_id in cable_ids:
        shutil.copy(DEMO_DIR / f"{cable_id}.txt", folder / f"{cable_id}.txt")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The FIRST cables in a lance store and, for comparison, in a Chroma index."""
    root = tmp_path_factory.mktemp("lance")
    cables = copy_cables(root / "cables", FIRST)
    settings = lance_settings(root / "db")
    report = ingest_lance([cables], settings, progress=False)
    assert report.ok and report.embedded == report.chunks > 0
    chroma = Settings(index_dir=root / "chroma", encoder=FAKE_ENCODER)
    ingest([cables], chroma, progress=False)
    return settings, chroma


def test_dense_bm25_and_hybrid_find_the_paragraph(built):
    settings, _ = built
    for mode in ("dense", "bm25", "hybrid"):
        hits = open_retriever(settings, mode).search(QUESTION, 5)
        assert hits and hits[0].citation.tag == "[09PHNOMPENH637 ¶1]", mode
        assert hits[0].metadata["origin"] == "Embassy Phnom Penh" and hits[0].text
        assert {h.source for h in hits} == {mode}


def test_bm25_matches_stems_and_scores_like_the_sidecar(built):
    settings, chroma = built
    lexical = index_for(settings).reader().lexical
    found = lexical.search("trafficked policemen", 10)
    assert found and all(score > 0 for _, score in found)
    assert "09PHNOMPENH637:1" in [cid for cid, _ in found]
    scores = lexical.scores_of("trafficked policemen", ["09PHNOMPENH637:1", "03ANKARA4230:1", "no such:1"])
    assert scores[0] > 0 and scores[2] == 0
    # A spelling no chunk holds finds the one they hold, as in the sidecar.
    assert [cid for cid, _ in lexical.search("defence", 5)] == [cid for cid, _ in lexical.search("defense", 5)] != []
    sidecar = Index(chroma).reader().lexical
    terms = tokenize(["trafficking police embassy Sokhorn zzzunknown"])[0]
    assert lexical.bm25.document_frequency(terms).tolist() == sidecar.bm25.document_frequency(terms).tolist()
    assert np.allclose(lexical.bm25.idf(terms), sidecar.bm25.idf(terms))
    assert len(lexical) == len(sidecar) and lexical.last_date == sidecar.last_date
    assert lexical.vocabulary() == sidecar.vocabulary()


@pytest.mark.parametrize("filters", [
    Filters(origin="Embassy Ankara"), Filters(tag="KTIP"), Filters(classification="SECRET"),
    Filters.parse({"date_from": "2008-01-01", "date_to": "2008-12-31"}),
    Filters(origin="Embassy Phnom Penh", tag="KTIP"), Filters(origin="Embassy O'Nowhere"),
])
def test_filters_are_where_clauses_on_every_mode(built, filters):
    settings, _ = built
    retriever = open_retriever(settings, "hybrid")
    for hits in (retriever.dense(QUESTION, 10, filters), retriever.bm25(QUESTION, 10, filters),
                 retriever.search(QUESTION, 10, filters)):
        for hit in hits:
            meta = hit.metadata
            assert not filters.origin or meta["origin"] == filters.origin
            assert not filters.tag or filters.tag in meta["tags"]
            assert not filters.classification or meta["classification"] == filters.classification
            assert not filters.day_from or filters.day_from <= meta["date_int"] <= filters.day_to
    assert bool(retriever.dense(QUESTION, 10, filters)) == (filters.origin != "Embassy O'Nowhere")


@pytest.mark.parametrize("days", [
    ("2008-08-16", "2009-08-28"), ("2008-08-01", "2008-08-31"), ("2003-01-01", "2009-12-31"),
    ("2008-08-15", "2008-08-15"), ("2008-07-31", "2009-09-01"), ("2007-01-01", "2008-08-18"),
    ("1966-01-01", "9999-12-31"),
])
def test_a_date_range_as_months_passes_the_rows_its_days_pass(built, days):
    from rag.index.lance_db import where_clause

    store = LanceStore(built[0], model_id=None, dimension=None)
    filters = Filters.parse({"origin": "Embassy Phnom Penh", "date_from": days[0], "date_to": days[1]})
    assert store.months

    def passing(where):
        return sorted(r["id"] for r in store.table.search().where(where).select(["id"]).to_arrow().to_pylist())

    by_days = passing(where_clause(filters))
    assert by_days == passing(where_clause(filters, months=True))
    assert by_days == passing(store.where(filters))


def test_a_table_written_before_the_month_column_filters_by_days_until_it_gains_it(tmp_path):
    settings = lance_settings(tmp_path / "db")
    ingest_lance([copy_cables(tmp_path / "cables", FIRST)], settings, progress=False)
    store = LanceStore(settings, model_id=None, dimension=None)
    store.table.drop_columns(["month"])
    filters = Filters.parse({"date_from": "2008-08-16", "date_to": "2009-12-31"})
    old = LanceStore(settings, model_id=None, dimension=None)
    assert not old.months and "month" not in old.where(filters)
    vector = np.ones(old.metadata["embed_dim"], dtype=np.float32)
    found = {h.cable_id for h in old.query(vector, 50, filters)}
    assert found == {"09PHNOMPENH637", "08PHNOMPENH694"}
    old.optimize()
    new = LanceStore(settings, model_id=None, dimension=None)
    assert new.months and "month IN" in new.where(filters)
    assert {h.cable_id for h in new.query(vector, 50, filters)} == found
    assert any(i.columns == ["month"] for i in new.table.list_indices())


def test_the_cable_view_is_the_chroma_one(built):
    settings, chroma = built
    lance, sidecar = index_for(settings), Index(chroma)
    for cable_id in ("09PHNOMPENH637", "08PHNOMPENH694"):
        assert lance.cable(cable_id) == sidecar.cable(cable_id)
    assert lance.cable("09PHNOMPENH999") is None
    stats, chroma_stats = lance.stats(), sidecar.stats()
    assert {k: stats[k] for k in ("chunks", "cables", "paragraphs", "date_from", "date_to", "origins")} == \
        {k: chroma_stats[k] for k in ("chunks", "cables", "paragraphs", "date_from", "date_to", "origins")}


def test_sentence_vectors_are_kept_from_ingest(built):
    settings, _ = built
    parts = index_for(settings).reader()
    hit = open_retriever(settings).search(QUESTION, 1)[0]
    from rag.index.sentences import candidate_sentences

    sentences = [s for _, s in candidate_sentences(hit.text)]
    vectors = parts.sentences.get(sentences, "tests/fake-words")
    assert vectors is not None and vectors.shape == (len(sentences), 384)
    assert parts.sentences.get(sentences, "another/model") is None


def test_an_index_on_the_chroma_store_moves_to_the_lance_store_without_encoding(built, tmp_path, monkeypatch):
    _, chroma = built
    from fakes import FakeEncoder

    encoded = []
    original = FakeEncoder.encode_documents

    def counting(self, texts, progress=None):
        encoded.extend(texts)
        return original(self, texts, progress)

    monkeypatch.setattr(FakeEncoder, "encode_documents", counting)
    settings = lance_settings(tmp_path / "db")
    cables = copy_cables(tmp_path / "cables", FIRST)
    report = ingest_lance([cables], settings, progress=False, vectors_from=chroma.index_dir)
    assert report.ok and report.chunks > 0 and encoded == []
    moved = LanceStore(settings, model_id=None, dimension=None).get(["09PHNOMPENH637:1"])[0]
    assert np.array_equal(moved.vector, Index(chroma).store().get(["09PHNOMPENH637:1"])[0].vector)
    assert open_retriever(settings).search(QUESTION, 1)[0].citation.tag == "[09PHNOMPENH637 ¶1]"
    # A cable the Chroma index lacks is encoded, and only its paragraphs and sentences.
    encoded.clear()
    copy_cables(cables, LATER[:1])
    ingest_lance([cables], settings, progress=False, vectors_from=chroma.index_dir)
    reused, encoded[:] = list(encoded), []
    ingest_lance([copy_cables(tmp_path / "later", LATER[:1])], lance_settings(tmp_path / "fresh"), progress=False)
    assert reused and sorted(reused) == sorted(encoded)
    with pytest.raises(RagError, match="no index there"):
        ingest_lance([cables], settings, progress=False, vectors_from=tmp_path / "nothing")


def test_reingest_embeds_nothing_and_writes_no_version(tmp_path):
    settings = lance_settings(tmp_path / "db")
    cables = copy_cables(tmp_path / "cables", FIRST[:2])
    ingest_lance([cables], settings, progress=False)
    version = LanceStore(settings, model_id=None, dimension=None).version
    again = ingest_lance([cables], settings, progress=False)
    assert again.embedded == again.relabelled == again.deleted == 0 and again.chunks > 0
    assert LanceStore(settings, model_id=None, dimension=None).version == version


def test_added_cables_are_appended_searched_and_seen_by_readers_that_move_on(tmp_path):
    settings = lance_settings(tmp_path / "db")
    ingest_lance([copy_cables(tmp_path / "first", FIRST)], settings, progress=False)
    readers = [open_retriever(settings, "hybrid"), open_retriever(settings, "bm25")]
    before = readers[0].store.count()
    question = "Cambodia 08PHNOMPENH706"

    report = ingest_lance([copy_cables(tmp_path / "later", LATER)], settings, progress=False)
    assert report.embedded == report.chunks > 0
    for reader in readers:  # each answers from the version it opened
        assert reader.parts.cable("08PHNOMPENH706") is None
        assert all(h.cable_id != "08PHNOMPENH706" for h in reader.search(question, 10))
    moved = [reader.newer() for reader in readers]
    for reader in moved:
        assert reader is not None and reader.newer() is None
        assert reader.store.count() > before
        assert reader.search(question, 3)[0].cable_id == "08PHNOMPENH706"
        assert reader.parts.cable("08PHNOMPENH694")["referenced_by"][0]["id"] == "08PHNOMPENH706"
    # The counts the ranker reads follow the new rows: equal to a sidecar built from all the cables.
    chroma = Settings(index_dir=tmp_path / "chroma", encoder=FAKE_ENCODER)
    ingest([tmp_path / "first", tmp_path / "later"], chroma, progress=False)
    terms = sorted({t for doc in tokenize([h.text for h in moved[0].search(question, 10)]) for t in doc})
    sidecar = Index(chroma).reader().lexical
    assert moved[0].lexical.bm25.document_frequency(terms).tolist() == sidecar.bm25.document_frequency(terms).tolist()


def test_a_changed_cable_replaces_its_rows_and_their_counts(tmp_path):
    settings = lance_settings(tmp_path / "db")
    cables = copy_cables(tmp_path / "cables", FIRST[:1])
    ingest_lance([cables], settings, progress=False)
    path = cables / f"{FIRST[0]}.txt"
    path.write_text(path.read_text().replace("Kang Sokhorn", "Zyxwort Sokhorn"))
    report = ingest_lance([cables], settings, progress=False)
    assert report.embedded >= 1
    lexical = index_for(settings).reader().lexical
    assert lexical.search("Zyxwort", 5)[0][0].startswith(FIRST[0])
    chroma = Settings(index_dir=tmp_path / "chroma", encoder=FAKE_ENCODER)
    ingest([cables], chroma, progress=False)
    terms = ["kang", "zyxwort", "sokhorn"]
    assert lexical.bm25.document_frequency(terms).tolist() == Index(chroma).reader().lexical.bm25.document_frequency(terms).tolist()
    assert lexical.bm25.document_frequency(["zyxwort"])[0] > 0


def test_another_encoder_is_refused(built):
    settings, _ = built
    with pytest.raises(IndexMismatch):
        LanceStore(settings, model_id="other/model", dimension=384)


def test_no_database_or_no_uri_is_one_line(tmp_path):
    with pytest.raises(NoIndex, match="rag ingest PATH --store lance"):
        index_for(lance_settings(tmp_path / "empty")).ensure()
    assert not (tmp_path / "empty").exists()  # a read leaves no folder behind
    with pytest.raises(RagError, match="--lance-uri"):
        index_for(Settings(store="lance")).ensure()


def test_the_cli_ingests_and_answers_with_a_citation(tmp_path, capsys, fake_encoder):
    cables = copy_cables(tmp_path / "cables", FIRST[:2])
    where = ["--store", "lance", "--lance-uri", str(tmp_path / "db")]
    assert main(["ingest", str(cables), "--quiet", *where]) == 0
    capsys.readouterr()
    assert main(["ask", QUESTION, *where, "--origin", "Embassy Phnom Penh"]) == 0
    assert "[09PHNOMPENH637 ¶1]" in capsys.readouterr().out
    assert main(["show", "09PHNOMPENH637:1", *where]) == 0
    assert "TIP ACTION PLAN" in capsys.readouterr().out
    assert main(["stats", *where]) == 0
    assert "lance" in capsys.readouterr().out
    assert main(["ask", QUESTION, "--store", "lance"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_a_server_answers_from_one_version_and_moves_to_the_next(tmp_path):
    pytest.importorskip("anyio")
    from rag.serve.service import Service

    settings = lance_settings(tmp_path / "db")
    ingest_lance([copy_cables(tmp_path / "first", FIRST)], settings, progress=False)
    service = Service(settings)
    service.load()
    served = service.generation
    assert service.health()["status"] == "ok" and service.stats["store"] == "lance"
    assert service.ask(QUESTION).citations
    assert "Embassy Phnom Penh" in service.choices["origins"]

    ingest_lance([copy_cables(tmp_path / "later", LATER)], settings, progress=False)
    health = service.health()
    assert health["status"] == "stale" and health["store_generation"] > served
    deadline = time.monotonic() + 30
    while service.generation == served and time.monotonic() < deadline:
        service.ask(QUESTION)  # each answer looks for a newer version first
        time.sleep(0.1)
    assert service.generation == health["store_generation"]
    assert service.cable("08PHNOMPENH706")["id"] == "08PHNOMPENH706"
    assert service.health()["status"] == "ok"


def test_a_question_naming_a_cable_the_store_lacks_is_refused(built):
    from rag.answer.pipeline import Pipeline

    pipeline = Pipeline(built[0])
    answer = pipeline.ask("What does 09PHNOMPENH999 say about the police?")
    assert answer.refused and "09PHNOMPENH999 is not in this index" in answer.refusal_reason
    assert not pipeline.ask("What does 09PHNOMPENH637 say about the police?").refused


def test_past_the_threshold_dense_search_goes_through_an_hnsw_index(tmp_path, monkeypatch):
    from rag.index import lance_db, lance_store

    settings = lance_settings(tmp_path / "db")
    ingest_lance([copy_cables(tmp_path / "first", FIRST)], settings, progress=False)
    exact = open_retriever(settings, "dense").search(QUESTION, 10)
    for module in (lance_db, lance_store):
        monkeypatch.setattr(module, "VECTOR_INDEX_ROWS", 50)
    ingest_lance([copy_cables(tmp_path / "later", LATER)], settings, progress=False)
    store = LanceStore(settings, model_id=None, dimension=None)
    assert [i.index_type for i in store.table.list_indices() if i.columns == ["vector"]] == ["IvfHnswSq"]
    found = open_retriever(settings, "dense").search(QUESTION, 10)
    assert found[0].chunk_id == exact[0].chunk_id
    assert all(h.metadata["origin"] == "Embassy Ankara"
               for h in open_retriever(settings, "dense").search(QUESTION, 5, Filters(origin="Embassy Ankara")))
    # However many rows a filter passes (searched exactly, through the index under the filter, or
    # as unfiltered neighbours filtered after), the nearest that pass come first.
    vector = open_retriever(settings, "dense").encoder.encode_query(QUESTION)
    for filters, where in [(Filters(origin="Embassy Ankara"), "origin = 'Embassy Ankara'"),
                           (Filters.parse({"date_from": "2003-01-01"}), "date_int >= 20030101")]:
        stored = store.table.search().where(where).select(["id", "vector"]).to_arrow().to_pylist()
        cosine = {row["id"]: float(np.dot(row["vector"], vector) / np.linalg.norm(row["vector"]) / np.linalg.norm(vector))
                  for row in stored}
        nearest = sorted(cosine, key=cosine.get, reverse=True)[:5]
        assert [h.chunk_id for h in store.query(vector, 5, filters)] == nearest
        # Searched exactly from vectors held in memory, once a filter's first search has read them.
        monkeypatch.setattr(lance_store, "HELD_MIN_ROWS", 1)
        held = LanceStore(settings, model_id=None, dimension=None)
        for _ in range(2):
            found = held.query(vector, 5, filters)
            assert [h.chunk_id for h in found] == nearest
            assert [h.score for h in found] == pytest.approx([cosine[c] for c in nearest], abs=1e-5)
            assert found[0].text and found[0].metadata["cable_id"] == found[0].cable_id
        assert where in held._held._held
        # Past the memory they may take, the filter searched least recently goes.
        small = HeldRows(held.table, budget=1)
        for passing in (where, "origin = 'Embassy Phnom Penh'"):
            assert small.nearest(passing, vector, 5)
        assert list(small._held) == ["origin = 'Embassy Phnom Penh'"]
        for exact_rows, broad_share in [(0, 0.0), (0, 2.0)]:
            monkeypatch.setattr(lance_store, "EXACT_ROWS", exact_rows)
            monkeypatch.setattr(lance_store, "EXACT_SHARE", 0.0)
            monkeypatch.setattr(lance_store, "BROAD_SHARE", broad_share)
            found = LanceStore(settings, model_id=None, dimension=None).query(vector, 5, filters)
            assert found[0].chunk_id == nearest[0] and set(h.chunk_id for h in found) <= set(cosine)
        monkeypatch.undo()
        for module in (lance_db, lance_store):
            monkeypatch.setattr(module, "VECTOR_INDEX_ROWS", 50)


def test_ingest_merges_the_fragments_it_wrote_before_indexing_them(tmp_path):
    settings = lance_settings(tmp_path / "db").with_(ingest_batch=1)
    ingest_lance([copy_cables(tmp_path / "first", FIRST)], settings, progress=False)
    table = LanceStore(settings, model_id=None, dimension=None).table
    # One fragment, every index over it: a later compaction has no index to remap.
    assert len(table.to_lance().get_fragments()) == 1
    assert all(not table.index_stats(i.name).num_unindexed_rows for i in table.list_indices())


@pytest.mark.slow
def test_readers_see_what_another_process_ingested_once_they_move_on(tmp_path):
    settings = lance_settings(tmp_path / "db")
    ingest_lance([copy_cables(tmp_path / "first", FIRST)], settings, progress=False)
    readers = [index_for(settings).reader() for _ in range(2)]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "RAG_ENCODER": FAKE_ENCODER}
    subprocess.run([sys.executable, str(root / "tests" / "fakes.py"), "ingest", str(copy_cables(tmp_path / "later", LATER)),
                    "--quiet", "--store", "lance", "--lance-uri", str(tmp_path / "db")], env=env, check=True,
                   capture_output=True)
    for parts in readers:
        assert parts.cable("08PHNOMPENH706") is None
        moved = parts.newer()
        assert moved.cable("08PHNOMPENH706")["id"] == "08PHNOMPENH706" and moved.newer() is None
