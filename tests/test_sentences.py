"""The sentence vectors kept from ingest (rag.index.sentences): what ingest stores, that answers read them
and stay the same, and that a build resumes and re-encodes only what changed."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest

import rag.index.sentences
from rag.answer.backends import ExtractiveAnswerer
from rag.answer.pipeline import Pipeline
from rag.answer.retrieve import open_retriever
from rag.cables import read_cable_file
from rag.index.demo import DEMO_DIR
from rag.index.embed import get_encoder
from rag.index.ingest import ingest
from rag.index.sentences import SentenceVectors, candidate_sentences
from rag.index.stats import sentence_vectors_state
from rag.index.store import Store
from rag.settings import Settings

QUESTIONS = ["Who leads Cambodia's police TIP response?", "Where was Viktor Bout arrested?",
             "When does child labor in Costa Rica peak, according to UNICEF?",
             "What became of the nuclear fuel rods stolen from the Kinshasa research reactor?",
             "What is Stung Treng province's border with Laos?"]
# What is kept, read and rebuilt is tested with the fake encoder (tests/fakes.py): no model to run.
pytestmark = pytest.mark.usefixtures("fake_encoder")

CABLES = ["09PHNOMPENH637", "09BANGKOK385", "08SANJOSE519", "06KINSHASA1410"]


@pytest.fixture(scope="module")
def encoder(fake_demo):
    return get_encoder(fake_demo.encoder, fake_demo.embed_batch_size, fake_demo.device, queries=True)


def paragraphs(cable_ids: list[str]) -> list[str]:
    return [p.text for cable_id in cable_ids for p in read_cable_file(DEMO_DIR / f"{cable_id}.txt").paragraphs]


def test_ingest_keeps_the_vectors_of_every_paragraphs_sentences(fake_demo, encoder):
    kept = SentenceVectors.at(fake_demo.index_dir).load()
    store = Store(fake_demo, model_id=encoder.model_id, dimension=encoder.dimension, create=False)
    texts = list(dict.fromkeys(t for page in store.iter_all(include=("documents",)) for t in page["documents"]))
    with_sentences = [t for t in texts if candidate_sentences(t)]
    assert kept.generation() == store.generation
    assert len(kept) == len({tuple(s for _, s in candidate_sentences(t)) for t in with_sentences})
    for text in with_sentences[::60]:
        sentences = [s for _, s in candidate_sentences(text)]
        vectors = kept.get(sentences, encoder.model_id)
        # float16 keeps ~3 significant digits of each unit vector's components.
        assert np.abs(vectors - encoder.encode_documents(sentences)).max() < 2e-3
        assert not vectors.flags.writeable


def test_answers_read_the_kept_vectors_and_equal_those_encoded_when_asked(fake_demo):
    pipeline = Pipeline(fake_demo)
    answerer = pipeline.answerer
    assert isinstance(answerer, ExtractiveAnswerer) and len(answerer.stored)
    answerer.encoded.cache_clear()
    kept = [pipeline.ask(q).text for q in QUESTIONS]
    assert answerer.encoded.cache_info().misses == 0
    answerer.stored = None
    encoded = [pipeline.ask(q).text for q in QUESTIONS]
    assert answerer.encoded.cache_info().misses > 0
    assert kept == encoded


def test_a_paragraph_the_store_lacks_or_another_models_vectors_are_a_miss(fake_demo, encoder):
    kept = SentenceVectors.at(fake_demo.index_dir).load()
    sentences = [s for _, s in candidate_sentences(paragraphs(["09PHNOMPENH637"])[0])]
    assert kept.get(sentences, encoder.model_id) is not None
    assert kept.get(sentences[:-1], encoder.model_id) is None
    assert kept.get(sentences + ["The ambassador replied that he would see."], encoder.model_id) is None
    assert kept.get(sentences, "another/model") is None
    assert SentenceVectors.at(fake_demo.index_dir / "nothing-here").load().get(sentences, encoder.model_id) is None


class Counting:
    """An encoder's encode_documents that counts the sentences it is given, and can be made to
    fail after some calls (a killed build)."""

    def __init__(self, encoder, fail_after: int | None = None):
        self.encoder, self.fail_after, self.calls, self.sentences = encoder, fail_after, 0, 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls == self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.sentences += len(texts)
        return self.encoder.encode_documents(texts)


def build(store: SentenceVectors, texts: list[str], encode, generation: int = 1) -> SentenceVectors:
    return store.build(texts, encode, "m", 384, generation)


def test_a_killed_build_leaves_no_store_and_the_next_encodes_only_the_rest(tmp_path, encoder, monkeypatch):
    monkeypatch.setattr(rag.index.sentences, "PART", 40)
    texts = paragraphs(CABLES)
    total = sum(len(candidate_sentences(t)) for t in texts)
    store = SentenceVectors(tmp_path / "sentences")
    killed = Counting(encoder, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        build(store, texts, killed)
    assert not store.path.exists() and not len(store.load())

    parts = store.path.with_name("sentences.tmp") / "parts"
    assert sorted(p.name for p in parts.iterdir()) == ["part-000000", "part-000001"]
    # A part killed while being written: half a folder, or a whole one whose files disagree.
    (parts / "part-000002.partial").mkdir()
    shutil.copytree(parts / "part-000001", parts / "part-000002")
    with open(parts / "part-000002" / "vectors.f16", "r+b") as f:
        f.truncate(100)

    resumed = Counting(encoder)
    built = build(store, texts, resumed)
    assert resumed.sentences == total - killed.sentences > 0
    assert not store.path.with_name("sentences.tmp").exists()
    whole = build(SentenceVectors(tmp_path / "whole"), texts, Counting(encoder))
    for text in texts:
        sentences = [s for _, s in candidate_sentences(text)]
        if sentences:
            assert np.array_equal(built.get(sentences, "m"), whole.get(sentences, "m"))


def test_a_rebuild_encodes_only_new_paragraphs_and_drops_those_gone(tmp_path, encoder):
    first, second = paragraphs(CABLES[:2]), paragraphs(CABLES[2:])
    store = SentenceVectors(tmp_path / "sentences")
    build(store, first, Counting(encoder))
    again = Counting(encoder)
    built = build(store, first[1:] + second, again, generation=2)
    assert again.sentences == sum(len(candidate_sentences(t)) for t in second)
    assert built.generation() == 2
    gone = [s for _, s in candidate_sentences(first[0])]
    assert built.get(gone, "m") is None
    assert built.get([s for _, s in candidate_sentences(second[0])], "m") is not None


def test_an_index_without_sentence_vectors_answers_and_ingest_adds_them(demo_cables, tmp_path):
    cables = demo_cables(CABLES)
    settings = Settings(index_dir=tmp_path / "index", sentence_vectors=False)
    first_ingest = ingest([cables], settings, progress=False)
    assert first_ingest.ok and first_ingest.sentences == 0 and "sentences" not in first_ingest.summary()
    assert not SentenceVectors.at(settings.index_dir).exists()
    first = Pipeline(settings)
    assert sentence_vectors_state(SentenceVectors.at(settings.index_dir), first.retriever.store.generation).startswith("none")
    without = first.ask(QUESTIONS[0])
    assert "Kang Sokhorn" in without.text

    report = ingest([cables], settings.with_(sentence_vectors=True), progress=False)
    assert report.embedded == 0
    kept = SentenceVectors.at(settings.index_dir).load()
    assert len(kept) and report.sentences == kept.meta["sentences"]
    assert f"{report.sentences:,} sentences encoded for answers" in report.summary()
    pipeline = Pipeline(settings)
    generation = pipeline.retriever.store.generation
    assert sentence_vectors_state(kept, generation) == f"ok ({kept.meta['sentences']:,} sentences)"
    assert pipeline.ask(QUESTIONS[0]).text == without.text
    assert pipeline.answerer.encoded.cache_info().misses == 0


def test_a_build_killed_while_swapping_keeps_the_previous_vectors(tmp_path, encoder):
    texts = paragraphs(CABLES[:2])
    store = SentenceVectors(tmp_path / "sentences")
    build(store, texts, Counting(encoder))
    os.replace(store.path, store.path.with_name("sentences.old"))  # killed between the two renames
    again = Counting(encoder)
    assert len(build(store, texts, again, generation=2)) and again.sentences == 0


def fake_encode(texts: list[str]) -> np.ndarray:
    return np.array([[len(t) % 7 + i for i in range(384)] for t in texts], dtype=np.float32)


def test_a_key_ending_in_nul_reads_back_and_is_known_to_the_next_build(tmp_path):
    def digest(text: str) -> bytes:
        sentences = [s for _, s in candidate_sentences(text)]
        return hashlib.blake2b("\x1f".join(sentences).encode("utf-8"), digest_size=16).digest()

    text = next(t for t in (f"The embassy counted {i} arrests in the province that year." for i in range(20_000))
                if digest(t).endswith(b"\0"))
    store = SentenceVectors(tmp_path / "sentences")
    built = store.build([text, "Another paragraph, of one sentence only."], fake_encode, "m", 384, 1)
    assert built.get([text], "m") is not None
    again = Counting(None)
    again.encoder = type("Fake", (), {"encode_documents": staticmethod(fake_encode)})()
    store.build([text], again, "m", 384, 2)
    assert again.sentences == 0


def test_a_server_reads_sentence_vectors_swapped_in_after_its_sidecar(demo_cables, tmp_path):
    cables = demo_cables(CABLES[:2])
    settings = Settings(index_dir=tmp_path / "index", sentence_vectors=False)
    assert ingest([cables], settings, progress=False).ok
    retriever = open_retriever(settings)
    assert retriever.newer() is None and not len(retriever.sentences)
    ingest([cables], settings.with_(sentence_vectors=True), progress=False)
    moved = retriever.newer()
    assert moved is not None and moved.lexical is retriever.lexical and len(moved.sentences)
    assert moved.newer() is None


@pytest.mark.parametrize("store", ["chroma", "lance"])
def test_on_a_gpu_ingest_encodes_the_sentences_with_its_own_encoder(tmp_path, monkeypatch, store):
    """`--device cuda` (or `auto` where torch sees a GPU): the sentence phase runs on ingest's own
    encoder, there on the GPU, not on a second copy of the model or the ONNX graph on the CPU;
    on the CPU it runs on the answers' encoder. No GPU here: torch is told it sees one."""
    import torch

    from fakes import FakeEncoder

    from rag.index.embed import MINILM, MINILM_INT8, Encoder
    from rag.index.lance_ingest import ingest_lance

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Encoder(MINILM, device="auto").on_gpu and Encoder(MINILM, device="cuda").on_gpu
    assert not Encoder(MINILM, device="cpu").on_gpu and not Encoder(MINILM_INT8, device="cuda").on_gpu

    encoded: list[tuple[bool, int]] = []  # (by an encoder for queries, texts) of every call
    original = FakeEncoder.encode_documents

    def spy(self, texts, progress=None):
        encoded.append((self.queries, len(texts)))
        return original(self, texts, progress)

    monkeypatch.setattr(FakeEncoder, "encode_documents", spy)
    cables = tmp_path / "cables"
    cables.mkdir()
    shutil.copy(DEMO_DIR / f"{CABLES[0]}.txt", cables)
    for device in ("cuda", "cpu"):
        settings = Settings(index_dir=tmp_path / device, store=store, lance_uri=str(tmp_path / f"{device}.lance"),
                            device=device)
        encoded.clear()
        report = (ingest_lance if store == "lance" else ingest)([cables], settings, progress=False)
        assert report.ok and report.sentences > 0
        by_queries = sum(n for queries, n in encoded if queries)
        assert by_queries == (0 if device == "cuda" else report.sentences), (device, encoded)
