"""The index stays trustworthy: the BM25 sidecar is used only when it was built from the store's
current generation, changed metadata is written back without embedding, and lookups go by id."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fakes
from fakes import FAKE_ENCODER

import rag.index.demo
import rag.index.store
from rag.answer.pipeline import Pipeline
from rag.answer.retrieve import open_retriever
from rag.cli import main
from rag.errors import StaleIndex
from rag.filters import Filters
from rag.index.demo import BUILDING, DEMO_DIR, ensure_index
from rag.index.ingest import Ingester, IngestReport, ingest, iter_sources
from rag.index.rows import GENERATION, RowIndex
from rag.index.stats import chunk_counts
from rag.settings import Settings
from rag.types import Cable

# Generations, repair and interruption are tested over indexes the fake encoder builds (tests/fakes.py).
pytestmark = pytest.mark.usefixtures("fake_encoder")

TIP_CABLE = "09PHNOMPENH637"
TIP_TAGS = "TAGS: PGOV PHUM PREL KTIP KWMN CB"
QUESTION = "Who leads Cambodia's police TIP response?"


def copy_corpus(folder: Path) -> Path:
    """Eight real cables from the bundled demo corpus, the TIP cable among them."""
    folder.mkdir()
    for f in [DEMO_DIR / f"{TIP_CABLE}.txt", *sorted(DEMO_DIR.glob("*.txt"))[:7]]:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture
def corpus(tmp_path) -> Path:
    return copy_corpus(tmp_path / "cables")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The corpus indexed once per module; each test gets its own copy (`indexed`)."""
    root = tmp_path_factory.mktemp("integrity")
    index = root / "index"
    assert ingest([copy_corpus(root / "cables")], Settings(index_dir=index, encoder=FAKE_ENCODER), progress=False).ok
    return index


@pytest.fixture
def indexed(built, corpus, tmp_path) -> Settings:
    shutil.copytree(built, tmp_path / "index", ignore=shutil.ignore_patterns("ingest.lock"))
    return Settings(index_dir=tmp_path / "index")


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def write_without_rebuilding(corpus: Path, settings: Settings) -> None:
    """What a run killed after its writes and before its sidecar rebuild leaves behind."""
    cables = [c for c in iter_sources([corpus]) if isinstance(c, Cable)]
    Ingester(settings)._write_batch(cables, IngestReport())


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_every_write_advances_the_generation_and_the_sidecar_records_it(corpus, indexed):
    retriever = open_retriever(indexed)
    first = retriever.store.generation
    assert first > 0 and retriever.lexical.generation == first
    assert (indexed.index_dir / "bm25" / GENERATION).read_text() == str(first)

    assert ingest([corpus], indexed, progress=False).embedded == 0
    assert retriever.store.generation == first  # nothing written, nothing rebuilt

    rewrite(corpus / f"{TIP_CABLE}.txt", "Kang Sokhorn", "Kang S.")
    ingest([corpus], indexed, progress=False)
    assert retriever.store.generation > first
    assert RowIndex.at(indexed).generation_on_disk() == retriever.store.generation


def test_a_sidecar_behind_its_store_is_refused_in_one_line_and_ingest_repairs_it(corpus, indexed, capsys, tmp_path):
    rewrite(corpus / f"{TIP_CABLE}.txt", "Kang Sokhorn", "Kang S.")
    write_without_rebuilding(corpus, indexed)
    with pytest.raises(StaleIndex, match="changed after its BM25 sidecar was built"):
        open_retriever(indexed)

    suite = Path(__file__).resolve().parents[1] / "evals" / "smoke.jsonl"
    for command in (["ask", QUESTION], ["serve"], ["eval", "--questions", str(suite), "--out", str(tmp_path / "run")]):
        assert main([*command, "--index", str(indexed.index_dir)]) == 1
        err = one_line_error(capsys)
        assert err.startswith("rag: error: the index at") and f"rag ingest PATH --index {indexed.index_dir}" in err

    assert main(["ingest", str(corpus), "--index", str(indexed.index_dir), "--quiet"]) == 0
    hits = open_retriever(indexed).search("Kang S. police trafficking", 3)
    assert any("Kang S." in h.text for h in hits)


def test_a_missing_sidecar_is_refused_too(indexed):
    shutil.rmtree(indexed.index_dir / "bm25")
    with pytest.raises(StaleIndex, match="has no BM25 sidecar"):
        open_retriever(indexed)


def test_an_index_from_before_generations_is_one_line_and_ingest_brings_it_up_to_date(corpus, indexed, capsys):
    """What cablerag wrote before generations: no generation in the store, none beside the sidecar."""
    store = open_retriever(indexed).store
    store.collection.modify(metadata={k: v for k, v in store.metadata.items() if k != "generation"})
    (indexed.index_dir / "bm25" / GENERATION).unlink()

    with pytest.raises(StaleIndex, match="built by an older version of cablerag: run 'rag ingest PATH"):
        open_retriever(indexed)
    assert main(["ask", "Who leads Cambodia's police TIP response?", "--index", str(indexed.index_dir)]) == 1
    err = capsys.readouterr().err
    assert "older version of cablerag" in err and len(err.strip().splitlines()) == 1

    report = ingest([corpus], indexed, progress=False)
    assert report.embedded == 0  # the chunks are kept: only the sidecar is made again
    retriever = open_retriever(indexed)
    assert retriever.store.generation == retriever.lexical.generation


def test_changed_metadata_is_rewritten_without_embedding(corpus, indexed):
    path = corpus / f"{TIP_CABLE}.txt"
    rewrite(path, TIP_TAGS, "TAGS: PGOV KZZZ")
    rewrite(path, "UNCLASSIFIED//FOR OFFICIAL USE ONLY\n", "CONFIDENTIAL\n")
    report = ingest([corpus], indexed, progress=False)
    assert report.embedded == 0 and report.deleted == 0
    retriever = open_retriever(indexed)
    rows = retriever.lexical.cable_rows(TIP_CABLE)
    assert report.relabelled == len(rows) > 0
    for hit in retriever.parts.chunks(TIP_CABLE):
        assert hit.metadata["tags"] == ["PGOV", "KZZZ"] and hit.metadata["classification"] == "CONFIDENTIAL"
    # The sidecar rebuilt from the store filters by the new values, not the old.
    assert set(retriever.lexical.filter_rows(Filters(tag="KZZZ"))) == set(rows)
    assert not set(retriever.lexical.filter_rows(Filters(tag="KTIP"))) & set(rows)

    # Tags removed altogether: Chroma merges metadata on update, so the old list must be cleared.
    rewrite(path, "TAGS: PGOV KZZZ", "TAGS:")
    assert ingest([corpus], indexed, progress=False).relabelled == len(rows)
    assert all("tags" not in h.metadata for h in open_retriever(indexed).parts.chunks(TIP_CABLE))


def test_a_new_schema_version_rewrites_all_metadata_and_embeds_nothing(corpus, indexed, monkeypatch):
    monkeypatch.setattr(rag.index.store, "SCHEMA_VERSION", rag.index.store.SCHEMA_VERSION + 1)
    report = ingest([corpus], indexed, progress=False)
    assert report.embedded == 0 and report.relabelled == report.chunks > 0
    assert ingest([corpus], indexed, progress=False).relabelled == 0


def test_stored_chunks_are_found_by_id_through_the_row_index(corpus, indexed):
    ingester = Ingester(indexed)
    assert ingester.row_index is not None
    cable_ids = [c.id for c in iter_sources([corpus]) if isinstance(c, Cable)]
    assert ingester._stored(cable_ids) == ingester.store.chunk_metadata_of_cables(cable_ids)

    retriever = open_retriever(indexed)
    got = retriever.store.collection.get(where={"cable_id": TIP_CABLE}, include=["documents"])
    cable = retriever.parts.chunks(TIP_CABLE)
    assert sorted(h.chunk_id for h in cable) == sorted(got["ids"])
    assert [h.paragraph for h in cable] == sorted(h.paragraph for h in cable)
    assert retriever.parts.chunks("09NOWHERE1") == []


def test_a_running_retriever_keeps_its_generation_and_the_next_is_a_new_one(corpus, indexed):
    retriever = open_retriever(indexed)
    before = retriever.lexical.generation
    rewrite(corpus / f"{TIP_CABLE}.txt", "Kang Sokhorn", "Kang S.")
    write_without_rebuilding(corpus, indexed)
    assert retriever.newer() is None  # the ingest has not built the next sidecar yet
    ingest([corpus], indexed, progress=False)  # builds it, and removes the directory of the old one

    old_ids = {h.chunk_id for h in retriever.search("Kang Sokhorn police", 5)}
    assert retriever.lexical.generation == before and old_ids  # the old files, still mapped
    moved = retriever.newer()
    assert moved.lexical.generation == moved.store.generation != before
    assert retriever.lexical.generation == before  # searches running on the old one finish on it
    assert any("Kang S." in h.text for h in moved.search("Kang S. police", 5))
    assert moved.newer() is None


def test_a_server_answers_from_one_generation_and_moves_to_the_next_between_answers(corpus, indexed):
    from rag.serve.service import Service

    service = Service(indexed)
    service.load()
    assert service.ask(QUESTION).paragraphs
    before = service.default.retriever.lexical
    rewrite(corpus / f"{TIP_CABLE}.txt", "Kang Sokhorn", "Kang Sokhorn (KS)")
    write_without_rebuilding(corpus, indexed)
    service.ask(QUESTION)
    assert service.default.retriever.lexical is before  # no sidecar of the new generation yet
    ingest([corpus], indexed, progress=False)
    answer = service.ask(QUESTION)
    retriever = service.default.retriever
    assert retriever.lexical is not before and retriever.lexical.generation == retriever.store.generation
    assert any("Kang Sokhorn (KS)" in h.text for h in answer.hits)
    assert service.cable(TIP_CABLE)["paragraphs"][0]["paragraph"] == 1


def test_answers_during_a_generation_switch_each_read_one_generation(corpus, indexed, monkeypatch):
    """One answer held between retrieval and ranking while an ingest builds the next generation,
    and others asked in a loop all along: each answer reads the sidecar of one generation only,
    the held one the old generation to its end, those after the switch the new one."""
    from rag.serve.service import Service

    service = Service(indexed.with_(workers=4, queue_timeout=300.0))
    service.load()
    old = service.default.retriever.lexical.generation
    read = threading.local()  # the sidecar generations the answer in this thread has read

    def recording(method):
        def record(self, *args, **kwargs):
            if hasattr(read, "generations") and self.generation is not None:  # None: the next one, being opened
                read.generations.add(self.generation)
            return method(self, *args, **kwargs)
        return record

    for name in ("search", "scores_of", "__len__"):  # retrieval, ranking, the evidence check
        monkeypatch.setattr(RowIndex, name, recording(getattr(RowIndex, name)))

    def answer() -> frozenset:
        read.generations = set()
        try:
            service.ask(QUESTION)
            return frozenset(read.generations)
        finally:
            del read.generations

    ranker, held, release = service.default.ranker, threading.Event(), threading.Event()
    rank = ranker.rank

    def holding(found, *question):
        if threading.current_thread().name == "held":
            held.set()
            assert release.wait(120)
        return rank(found, *question)

    monkeypatch.setattr(ranker, "rank", holding)  # shared by every snapshot's pipelines
    results: dict[str, frozenset] = {}
    looped: list[frozenset] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            looped.append(answer())

    held_thread = threading.Thread(target=lambda: results.update(held=answer()), name="held")
    loopers = [threading.Thread(target=loop) for _ in range(2)]
    held_thread.start()
    try:
        assert held.wait(120)
        for thread in loopers:
            thread.start()
        rewrite(corpus / f"{TIP_CABLE}.txt", "Kang Sokhorn", "Kang Sokhorn (KS)")
        ingest([corpus], indexed, progress=False)
        new = RowIndex.at(indexed).generation_on_disk()
        deadline = time.monotonic() + 120
        while service.default.retriever.lexical.generation != new:  # the loop's answers move the service on
            assert time.monotonic() < deadline, "the service never moved to the new generation"
            time.sleep(0.05)
        assert answer() == {new}
    finally:
        release.set()
        held_thread.join(120)
        stop.set()
        for thread in loopers:
            thread.join(120)
    assert new != old and results["held"] == {old}
    assert all(len(generations) == 1 for generations in looped) and set().union(*looped) == {old, new}


def test_stats_counts_match_the_ids(indexed, capsys):
    lexical = RowIndex.at(indexed).load()
    keys = {i.rsplit(":", 1)[0] if i.count(":") > 1 else i for i in lexical._columns["ids"].tolist()}
    assert chunk_counts(lexical._sorted_ids[0]) == (len({k.split(":", 1)[0] for k in keys}), len(keys))
    assert main(["stats", "--index", str(indexed.index_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["bm25"] == "ok" and stats["top_origins"][0][0] == "Embassy Phnom Penh"


# ── kill -9 mid-ingest, through the CLI as a user runs it ───────────────────────────────────────────


def rag_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, fakes.__file__, *args], env=env, capture_output=True, text=True, timeout=600)


def kill_when_cables_done(cmd: list[str], env: dict, log: Path, done: int) -> None:
    """Run `cmd` (a `rag ingest` with its progress bar) and kill -9 it once the bar has passed
    `done` cables, i.e. once it has written into the store."""
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        counts = [int(n) for n in re.findall(r"ingest:.*?(\d+)/\d+", log.read_text(errors="replace"))]
        if counts and max(counts) >= done:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished (or stalled) before it could be killed: " + log.read_text()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def cited_paragraphs_exist(answer: dict, settings: Settings) -> None:
    """Every cited paragraph is in the store, with the text the answer shows."""
    retriever = open_retriever(settings)
    for paragraph in answer["paragraphs"]:
        chunks = [h for h in retriever.parts.chunks(paragraph["cable_id"]) if h.paragraph == paragraph["paragraph"]]
        assert chunks and " ".join(h.text for h in chunks).startswith(paragraph["text"][:200])


@pytest.mark.slow
def test_kill_9_mid_ingest_then_ask_is_refused_or_consistent_and_ingest_repairs(tmp_path):
    corpus = tmp_path / "cables"
    corpus.mkdir()
    for f in [DEMO_DIR / f"{TIP_CABLE}.txt", *sorted(DEMO_DIR.glob("*.txt"))[:31]]:
        shutil.copy(f, corpus / f.name)
    index = tmp_path / "index"
    settings = Settings(index_dir=index)
    ingest([corpus], settings, progress=False)
    # Every cable's subject changes, so every paragraph is embedded and written again.
    for f in corpus.glob("*.txt"):
        lines = f.read_text(encoding="utf-8").split("\n")
        f.write_text("\n".join([lines[0], lines[1] + " (REVISED)", *lines[2:]]), encoding="utf-8")

    env = {**os.environ, "RAG_INGEST_BATCH": "4"}
    ingest_cmd = [sys.executable, fakes.__file__, "ingest", str(corpus), "--index", str(index)]
    kill_when_cables_done(ingest_cmd, env, tmp_path / "ingest.log", done=9)

    asked = rag_cli("ask", QUESTION, "--index", str(index), "--json", env=env)
    assert "Traceback" not in asked.stderr, asked.stderr
    if asked.returncode:
        # The one line the CLI writes (the encoder's loading bar may come before it).
        errors = [line for line in asked.stderr.splitlines() if line.startswith("rag: error:")]
        assert len(errors) == 1 and errors[0].startswith("rag: error: the index at") and "rag ingest" in errors[0]
    else:
        cited_paragraphs_exist(json.loads(asked.stdout), settings)

    repaired = rag_cli("ingest", str(corpus), "--index", str(index), "--quiet", env=env)
    assert repaired.returncode == 0, repaired.stderr
    asked = rag_cli("ask", QUESTION, "--index", str(index), "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "Kang Sokhorn" in answer["answer"]
    cited_paragraphs_exist(answer, settings)
    retriever = open_retriever(settings)
    stored = retriever.store.collection.get(include=["metadatas"])
    assert set(np.asarray(retriever.lexical._columns["ids"]).tolist()) == set(stored["ids"])
    assert all(m["subject"].endswith("(REVISED)") for m in stored["metadatas"])


def test_an_unreachable_chroma_server_is_one_line_not_an_empty_index(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo would be built at ./index if the server passed for empty
    assert main(["ask", "Who leads Cambodia's police TIP response?", "--chroma-url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rag: error: cannot read the Chroma server at http://127.0.0.1:9")
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "index").exists()


def test_a_first_run_killed_while_building_the_demo_is_finished_by_the_next(tmp_path, monkeypatch, demo_cables):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rag.index.demo, "DEMO_DIR", demo_cables(["09PHNOMPENH637", "09BANGKOK385"]))
    settings = Settings(index_dir=tmp_path / "index")  # ./index, which the demo is built at

    def killed(self, progress=True):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # killed after the paragraphs are stored, before the sidecar
        patch.setattr(Ingester, "refresh_lexical", killed)
        with pytest.raises(KeyboardInterrupt):
            ensure_index(settings, progress=False)
    assert rag.index.store.Store.exists(settings) and (tmp_path / "index" / BUILDING).exists()
    with pytest.raises(StaleIndex):
        open_retriever(settings)

    assert ensure_index(settings, progress=False)
    assert not (tmp_path / "index" / BUILDING).exists()
    assert "Kang Sokhorn" in Pipeline(settings).ask("Who leads Cambodia's police TIP response?").text
    assert not ensure_index(settings, progress=False)


def test_an_interrupted_demo_finished_by_the_users_own_ingest_gets_no_demo_cables(tmp_path, monkeypatch, demo_cables):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rag.index.demo, "DEMO_DIR", demo_cables(["09PHNOMPENH637"], name="demo"))
    settings = Settings(index_dir=tmp_path / "index")  # ./index, which the demo is built at

    def killed(self, progress=True):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Ingester, "refresh_lexical", killed)
        with pytest.raises(KeyboardInterrupt):
            ensure_index(settings, progress=False)
    assert ingest([demo_cables(["09BANGKOK385"], name="mine")], settings, progress=False).ok
    assert not ensure_index(settings, progress=False)
    assert not (tmp_path / "index" / BUILDING).exists()
    assert {h.cable_id for h in open_retriever(settings).store.get(["09BANGKOK385:1", "09PHNOMPENH637:1"])} == {
        "09BANGKOK385", "09PHNOMPENH637"}
