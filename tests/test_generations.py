"""Serving across ingests and one writer per index.

A running server answers while other processes ingest into its index, whatever the ingest does
(adds, changes or removes paragraphs and cables), moves to each new generation between questions
and says in /api/health which one it serves. Two ingests into one index are refused, and the lock
of a killed one is taken over."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

import fakes
from fakes import FAKE_ENCODER

from rag.cli import main
from rag.index.demo import DEMO_DIR
from rag.index.ingest import ingest
from rag.index.layout import WRITER_LOCK as LOCK
from rag.index.rows import RowIndex
from rag.index.store import Store
from rag.index.writer import writing
from rag.settings import Settings

TIP_CABLE = "09PHNOMPENH637"
QUESTION = "Who leads Cambodia's police TIP response?"
# Answered from ¶5 of the TIP cable, the paragraph the ingests below remove, which is also the
# question's nearest paragraph by vector (so a stale HNSW index returns it).
WORKING_GROUP = "What will the inter-ministerial working group of the MOI and MOJ review in December 2009?"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
       "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "RAG_ENCODER": FAKE_ENCODER}


@pytest.fixture
def index_copy(fake_demo, fake_encoder, tmp_path) -> Settings:
    """A copy of the demo index (of the fake encoder, tests/fakes.py) that a test may ingest into."""
    index = tmp_path / "index"
    shutil.copytree(fake_demo.index_dir, index, ignore=shutil.ignore_patterns(".last-used", ".complete", LOCK))
    return Settings(index_dir=index)


def without_paragraph(cable_id: str, n: int, folder: Path) -> Path:
    """A copy of a demo cable with its paragraph ¶n deleted, in `folder`."""
    text = (DEMO_DIR / f"{cable_id}.txt").read_text(encoding="utf-8")
    cut = re.sub(rf"¶{n}\.\s.*?(?=¶{n + 1}\.)", "", text, count=1, flags=re.S)
    assert cut != text
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cable_id}.txt"
    path.write_text(cut, encoding="utf-8")
    return path


def generation(settings: Settings) -> int:
    return Store.generation_at(settings)


# ── a store opened before another writer changed the index ──────────────────────────────────────────


def test_a_chunk_deleted_by_another_writer_is_skipped_by_a_store_opened_before(index_copy):
    """Chroma's HNSW index of a store opened earlier still finds the deleted chunk, whose metadata
    is gone: the search drops it instead of failing on it (the TypeError behind the 500s)."""
    reader = Store(index_copy, model_id=None, dimension=None, create=False)
    chunk = f"{TIP_CABLE}:5"
    vector = np.asarray(reader.collection.get(ids=[chunk], include=["embeddings"])["embeddings"][0])
    assert reader.query(vector, 3)[0].chunk_id == chunk
    Store(index_copy, model_id=None, dimension=None, create=False).delete([chunk])
    hits = reader.query(vector, 3)
    assert hits and chunk not in [h.chunk_id for h in hits]
    assert chunk not in [h.chunk_id for h in reader.view().query(vector, 3)]


# ── a server and an ingest, two processes ───────────────────────────────────────────────────────────


@contextmanager
def rag_serve(settings: Settings, log: Path) -> Iterator[httpx.Client]:
    """`rag serve` over the index of `settings`, in a process of its own, until it answers."""
    with fakes.serving(["--index", str(settings.index_dir)], log, ENV) as (proc, port):
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "rag serve did not start: " + log.read_text(errors="replace")[-2000:]
            try:
                if client.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield client


def asked(client: httpx.Client, question: str = QUESTION) -> httpx.Response:
    return client.post("/api/ask", json={"question": question})


def served_generation(client: httpx.Client, wanted: int, timeout: float = 60) -> dict:
    """Ask until the server reports the generation `wanted` (it moves between questions)."""
    deadline = time.monotonic() + timeout
    while True:
        response = asked(client)
        assert response.status_code == 200, response.text
        health = client.get("/api/health")
        assert health.status_code == 200, health.text
        if health.json()["generation"] == wanted:
            return response.json()
        assert time.monotonic() < deadline, f"still serving {health.json()['generation']}, not {wanted}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_running_server_answers_after_another_process_removes_a_paragraph(index_copy, tmp_path):
    with rag_serve(index_copy, tmp_path / "serve.log") as client:
        before = client.get("/api/health").json()["generation"]
        assert before == generation(index_copy)
        cited = asked(client, WORKING_GROUP).json()["paragraphs"]
        assert (TIP_CABLE, 5) in [(p["cable_id"], p["paragraph"]) for p in cited]
        edited = without_paragraph(TIP_CABLE, 5, tmp_path / "edited")
        done = subprocess.run([sys.executable, fakes.__file__, "ingest", str(edited), "--index",
                               str(index_copy.index_dir), "--quiet"], env=ENV, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0 and "1 removed" in done.stdout, done.stdout + done.stderr
        after = generation(index_copy)
        assert after > before
        answered = asked(client, WORKING_GROUP)
        assert answered.status_code == 200, answered.text
        assert (TIP_CABLE, 5) not in [(p["cable_id"], p["paragraph"]) for p in answered.json()["paragraphs"]]
        answer = served_generation(client, after)
        assert "Kang Sokhorn" in answer["answer"]
        shown = client.get(f"/api/cables/{TIP_CABLE}").json()
        assert 5 not in [p["paragraph"] for p in shown["paragraphs"]] and 6 in [p["paragraph"] for p in shown["paragraphs"]]
    assert "internal error" not in (tmp_path / "serve.log").read_text(errors="replace")


def change(kind: str, round_: int, folder: Path) -> Path:
    """Cable files for one small generation of `kind`, written into a fresh `folder`."""
    folder.mkdir(parents=True)
    added = sorted(DEMO_DIR.glob("*.txt"))[round_]
    if kind == "add cable":  # a demo cable under a new id: all of it new to the index
        text = added.read_text(encoding="utf-8").replace(added.stem, f"{added.stem[:-3]}9{round_:02d}", 1)
        (folder / f"{added.stem[:-3]}9{round_:02d}.txt").write_text(text, encoding="utf-8")
    elif kind == "change paragraph":
        text = (DEMO_DIR / f"{TIP_CABLE}.txt").read_text(encoding="utf-8")
        (folder / f"{TIP_CABLE}.txt").write_text(text.replace("100 TIP arrests", f"{101 + round_} TIP arrests"),
                                                 encoding="utf-8")
    elif kind == "remove paragraph":
        without_paragraph(TIP_CABLE, 3 + round_, folder)
    else:  # remove cable: given with its header only, it holds no paragraph, so all of it goes
        lines = added.read_text(encoding="utf-8").split("\n")
        (folder / added.name).write_text("\n".join([*lines[:6], f"SUBJECT: {lines[1]}", ""]), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_many_small_generations_of_every_kind_while_asking_never_fail_a_question(index_copy, tmp_path):
    """The soak: questions asked without pause from two clients while eight ingests run one
    after another in this process (two of each kind); every answer is a 200 and the server ends
    on the last generation."""
    kinds = ["add cable", "change paragraph", "remove paragraph", "remove cable"]
    statuses: list[int] = []
    failures: list[str] = []
    stop = threading.Event()
    with rag_serve(index_copy, tmp_path / "serve.log") as client:
        def ask_loop(question: str) -> None:
            with httpx.Client(base_url=client.base_url, timeout=120) as own:
                while not stop.is_set():
                    response = asked(own, question)
                    statuses.append(response.status_code)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")

        askers = [threading.Thread(target=ask_loop, args=(q,)) for q in
                  (QUESTION, "How many TIP arrests did the police make in 2009?")]
        for thread in askers:
            thread.start()
        try:
            for round_ in range(2):
                for kind in kinds:
                    report = ingest([change(kind, round_, tmp_path / f"{kind}-{round_}")], index_copy, progress=False)
                    assert report.ok and (report.embedded or report.deleted), (kind, report.summary())
        finally:
            stop.set()
            for thread in askers:
                thread.join(300)
        last = generation(index_copy)
        assert RowIndex.at(index_copy).generation_on_disk() == last
        served_generation(client, last)
        shown = [p["paragraph"] for p in client.get(f"/api/cables/{TIP_CABLE}").json()["paragraphs"]]
        removed = sorted(DEMO_DIR.glob("*.txt"))[1].stem
        gone = client.get(f"/api/cables/{removed}").status_code
    assert not failures, failures[:5]
    assert len(statuses) > 8, statuses
    # The last generations: the TIP cable without its ¶4 (¶3, removed before, is back), and a cable gone.
    assert 4 not in shown and 3 in shown and 5 in shown
    assert gone == 404


# ── one writer per index ────────────────────────────────────────────────────────────────────────────


HOLD = ("import sys, time\nfrom rag.index.writer import writing\n"
        "with writing(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


@contextmanager
def lock_held_by_another_process(index: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(index)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_ingest_into_one_index_is_refused_in_one_line_naming_the_first(index_copy, capsys):
    before = generation(index_copy)
    edited = without_paragraph(TIP_CABLE, 5, index_copy.index_dir.parent / "edited")
    with lock_held_by_another_process(index_copy.index_dir) as holder:
        assert main(["ingest", str(edited), "--index", str(index_copy.index_dir), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"rag: error: another ingest is writing to {index_copy.index_dir} (pid {holder.pid}): "
                       "wait for it to finish, then run this one again")
    assert generation(index_copy) == before  # nothing written


def test_the_lock_of_a_killed_ingest_is_taken_over(index_copy, capsys):
    with lock_held_by_another_process(index_copy.index_dir) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (index_copy.index_dir / LOCK).read_text() == str(holder.pid)  # left behind by the kill
    edited = without_paragraph(TIP_CABLE, 5, index_copy.index_dir.parent / "edited")
    assert main(["ingest", str(edited), "--index", str(index_copy.index_dir)]) == 0
    captured = capsys.readouterr()
    assert f"(pid {holder.pid}) was killed before it finished: this one takes over" in captured.err
    assert "1 removed" in captured.out
    assert (index_copy.index_dir / LOCK).read_text() == ""  # released: the next ingest finds it free
    with writing(index_copy.index_dir) as killed:
        assert killed is None


def test_health_is_503_until_the_server_can_answer_and_names_a_generation_it_cannot_open(index_copy, monkeypatch):
    """A load balancer reads /api/health: 503 while the index is still opening; once open, 200,
    and when an ingest leaves a newer generation that fails to open, the server keeps answering
    from the one it has and health says why it did not move."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from rag.errors import DamagedIndex
    from rag.serve.api import api_router
    from rag.serve.service import Service, Snapshot

    service = Service(index_copy)
    app = FastAPI()
    app.include_router(api_router(service, None))
    client = TestClient(app)
    building = client.get("/api/health")
    assert building.status_code == 503 and building.json()["status"] == "building"
    service.load()
    assert client.get("/api/health").status_code == 200
    served = service.generation

    def damaged(self):
        raise DamagedIndex(f"the BM25 sidecar of {index_copy.index_dir} is damaged: run 'rag ingest --rebuild'")

    monkeypatch.setattr(Snapshot, "newer", damaged)
    assert service.ask("Who leads Cambodia's police TIP response?").paragraphs
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json()["generation"] == served
    assert health.json()["switch_error"].startswith("DamagedIndex: the BM25 sidecar")


def wait_for(condition, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_health_is_stale_with_both_generations_while_the_sidecar_is_behind_the_store(index_copy):
    """Stats and answers come from the sidecar: while an ingest has written to the store and not yet
    rebuilt it, the server answers whole from the generation it serves, and says so."""
    from rag.index.ingest import Ingester, IngestReport, iter_sources
    from rag.serve.service import Service
    from rag.types import Cable

    service = Service(index_copy)
    service.load()
    served = service.generation
    assert service.health()["status"] == "ok" and service.health()["store_generation"] == served

    edited = without_paragraph(TIP_CABLE, 5, index_copy.index_dir.parent / "edited")
    ingester = Ingester(index_copy)
    ingester._write_batch([c for c in iter_sources([edited]) if isinstance(c, Cable)], IngestReport())
    health = service.health()
    assert (health["status"], health["generation"], health["store_generation"]) == ("stale", served, served + 1)
    assert service.ask(QUESTION).paragraphs  # still answered, from the generation served

    ingester.refresh_lexical(progress=False)  # the ingest finishes: the server moves on by itself
    wait_for(lambda: service.health()["status"] == "ok")
    assert service.generation == served + 1 == service.health()["store_generation"]


@pytest.mark.slow
def test_replicas_over_one_chroma_server_catch_up_with_another_machines_ingest(fake_encoder, tmp_path, chroma_server,
                                                                               demo_cables):
    """Two servers over one `chroma run`, each with its own --index as two machines would have,
    and a third that ingests: a new replica starts from the store alone; after the ingest both
    say they are stale, build their sidecar from the store (embedding nothing) and answer from
    the new cable."""
    from rag.answer.retrieve import open_retriever
    from rag.errors import StaleIndex
    from rag.serve.service import Service

    costa_rica = "When does child labor in Costa Rica peak, according to UNICEF?"
    writer = Settings(index_dir=tmp_path / "writer", chroma_url=chroma_server)
    assert ingest([demo_cables([TIP_CABLE, "09BANGKOK385"], name="first")], writer, progress=False).ok
    replicas = [Service(Settings(index_dir=tmp_path / f"replica-{n}", chroma_url=chroma_server)) for n in (1, 2)]
    with pytest.raises(StaleIndex, match=r"holds no sidecar .* \(a new replica, .*'rag serve' builds it"):
        open_retriever(replicas[0].settings)  # what `rag ask` says there
    for replica in replicas:
        replica.load()
        assert replica.health()["status"] == "ok", replica.health()
        assert "08SANJOSE519" not in {c.citation.cable_id for c in replica.ask(costa_rica).citations}

    report = ingest([demo_cables(["08SANJOSE519"], name="second")], writer, progress=False)
    assert report.ok and report.embedded > 0
    for replica in replicas:
        health = replica.health()
        assert health["status"] == "stale" and health["store_generation"] > health["generation"], health
    for replica in replicas:
        wait_for(lambda: replica.health()["status"] == "ok", seconds=120)
        assert replica.generation == Store.generation_at(writer)
        assert "08SANJOSE519" in {c.citation.cable_id for c in replica.ask(costa_rica).citations}


@pytest.mark.slow
def test_one_writer_at_a_time_on_a_chroma_server_and_a_dead_writers_claim_runs_out(fake_encoder, tmp_path,
                                                                                  chroma_server, demo_cables):
    """Machines sharing a Chroma server share no lock file: the collection holds the writer's claim."""
    from rag.index.lease import UNTIL_KEY, WRITER_KEY
    from rag.index.writer import IndexBusy

    here = Settings(index_dir=tmp_path / "here", chroma_url=chroma_server)
    assert ingest([demo_cables([TIP_CABLE], name="first")], here, progress=False).ok
    store = Store(here, model_id=None, dimension=None, create=False)
    assert WRITER_KEY not in store.committed_metadata()  # released once the ingest ended
    served = store.generation

    # Another machine's ingest is running: its claim has not run out.
    store.change_collection_metadata(lambda m: {**m, WRITER_KEY: "other-host pid 7", UNTIL_KEY: time.time() + 60})
    elsewhere = Settings(index_dir=tmp_path / "elsewhere", chroma_url=chroma_server)
    with pytest.raises(IndexBusy, match=r"^another ingest is writing to the store at http://127\.0\.0\.1:\d+ "
                                        r"\(other-host pid 7, its claim runs to .* UTC unless renewed\): wait"):
        ingest([demo_cables(["09BANGKOK385"], name="second")], elsewhere, progress=False)
    assert store.generation == served  # nothing written

    # It died: once its claim has run out, the next ingest takes over.
    store.change_collection_metadata(lambda m: {**m, UNTIL_KEY: time.time() - 1})
    assert ingest([tmp_path / "second"], elsewhere, progress=False).embedded > 0
    assert WRITER_KEY not in store.committed_metadata() and store.generation > served
