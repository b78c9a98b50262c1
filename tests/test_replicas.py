"""Replicas: two `rag serve` processes over one store while a third process ingests into it, as
separate machines would run them, on each store. Every question is answered whole (a 200, never a
500), from one generation of the index that the answer reports; each server's generations only
move forward; and within RAG_REFRESH seconds of the ingest's end (and the time to open the new
generation) both answer from it, the new cable included. One ingest at a time, on each store."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import fakes
from fakes import FAKE_ENCODER

from rag.index.demo import DEMO_DIR
from rag.index.ingest import ingest
from rag.index.store import Store
from rag.settings import Settings

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
       "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "RAG_ENCODER": FAKE_ENCODER}
FIRST = ["09PHNOMPENH637", "09BANGKOK385", "03ANKARA4230"]
NEW = "08SANJOSE519"
QUESTION = "When does child labor in Costa Rica peak, according to UNICEF?"
REFRESH = 2.0
# Beyond RAG_REFRESH: opening the new generation, and one answer, on two busy cores.
SLACK = 5.0


def cables(folder: Path, cable_ids: list[str]) -> Path:
    folder.mkdir(parents=True)
    for cable_id in cable_ids:
        (folder / f"{cable_id}.txt").write_bytes((DEMO_DIR / f"{cable_id}.txt").read_bytes())
    return folder


@contextmanager
def rag_serve(args: list[str], log: Path) -> Iterator[str]:
    """`rag serve ARGS` (the fake encoder) in a process of its own: its base URL, once started."""
    with fakes.serving([*args, "--refresh", str(REFRESH)], log, ENV) as (_, port):
        yield f"http://127.0.0.1:{port}"


def wait_until_up(url: str, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "rag serve did not start: " + log.read_text(errors="replace")[-2000:]
        time.sleep(0.3)


@dataclass
class Asked:
    at: float  # when the question was sent (monotonic)
    status: int
    generation: int | None = None
    cites_new: bool = False


@dataclass
class Health:
    status: int
    generation: int
    store_generation: int


def watch(url: str, asked: list[Asked], healths: list[Health], stop: threading.Event) -> None:
    """Ask the question and read /api/health without pause until `stop`."""
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            at = time.monotonic()
            response = client.post("/api/ask", json={"question": QUESTION})
            body = response.json() if response.status_code == 200 else {}
            asked.append(Asked(at, response.status_code, body.get("generation"),
                               NEW in {c["cable_id"] for c in body.get("citations", [])}))
            health = client.get("/api/health")
            state = health.json()
            healths.append(Health(health.status_code, state["generation"], state["store_generation"]))


def serve_while_writing(servers: list[list[str]], writer: list[str], tmp_path: Path,
                        ) -> tuple[float, list[list[Asked]], list[list[Health]], list[str]]:
    """Start a `rag serve` per ARGS of `servers`, ask each without pause, run the `writer` ingest
    in a process of its own, and go on asking REFRESH + SLACK seconds past its end. When the
    ingest ended, and what each server answered and said of its health; then their URLs."""
    asked: list[list[Asked]] = [[] for _ in servers]
    healths: list[list[Health]] = [[] for _ in servers]
    stop = threading.Event()
    with ExitStack() as stack:
        logs = [tmp_path / f"serve-{n}.log" for n in range(len(servers))]
        urls = [stack.enter_context(rag_serve(args, log)) for args, log in zip(servers, logs)]
        for url, log in zip(urls, logs):
            wait_until_up(url, log)
        watchers = [threading.Thread(target=watch, args=(url, a, h, stop)) for url, a, h in zip(urls, asked, healths)]
        for thread in watchers:
            thread.start()
        try:
            time.sleep(1)  # answered before the ingest too
            done = subprocess.run([sys.executable, fakes.__file__, "ingest", *writer, "--quiet"], env=ENV,
                                  capture_output=True, text=True, timeout=120)
            ended = time.monotonic()
            assert done.returncode == 0, done.stdout + done.stderr
            time.sleep(REFRESH + SLACK + 1)
        finally:
            stop.set()
            for thread in watchers:
                thread.join(120)
        for log in logs:
            assert "internal error" not in log.read_text(errors="replace")
        health = [httpx.get(f"{url}/api/health", timeout=30).json() for url in urls]
    return ended, asked, healths, health


def assert_replicas_moved_on(ended: float, asked: list[list[Asked]], final: int) -> None:
    for answers in asked:
        assert answers and all(a.status == 200 for a in answers), [a for a in answers if a.status != 200][:3]
        generations = [a.generation for a in answers]
        assert None not in generations and generations == sorted(generations)  # one each, never back
        assert not answers[0].cites_new and answers[0].generation < final
        late = [a for a in answers if a.at >= ended + REFRESH + SLACK]
        assert late and all(a.generation == final and a.cites_new for a in late), late[:3]
        first = next(a for a in answers if a.generation == final)
        assert first.at < ended + REFRESH + SLACK


@pytest.mark.slow
def test_two_servers_over_one_lance_folder_move_to_what_a_writer_ingests(tmp_path):
    pytest.importorskip("lancedb")
    from rag.index.lance_ingest import ingest_lance
    from rag.index.lance_store import LanceStore

    db = tmp_path / "db"
    settings = Settings(store="lance", lance_uri=str(db), encoder=FAKE_ENCODER)
    assert ingest_lance([cables(tmp_path / "first", FIRST)], settings, progress=False).ok
    where = ["--store", "lance", "--lance-uri", str(db)]
    ended, asked, healths, health = serve_while_writing(
        [where, where], [str(cables(tmp_path / "new", [NEW])), *where], tmp_path)
    final = LanceStore(settings, model_id=None, dimension=None).generation
    assert_replicas_moved_on(ended, asked, final)
    for state, seen in zip(health, healths):
        assert (state["status"], state["generation"], state["refresh_s"]) == ("ok", final, REFRESH)
        # While a newer version was committed and not yet served, health said so: a 503 with both.
        assert all((h.status == 200) == (h.generation == h.store_generation) for h in seen)


@pytest.mark.slow
def test_two_replicas_over_one_chroma_server_move_to_what_a_writer_ingests(tmp_path, chroma_server, fake_encoder):
    """Each replica has its own --index for its sidecar, as separate machines do; the writer too."""
    writer = ["--index", str(tmp_path / "writer"), "--chroma-url", chroma_server]
    assert ingest([cables(tmp_path / "first", FIRST)], Settings(index_dir=tmp_path / "writer",
                                                               chroma_url=chroma_server), progress=False).ok
    replicas = [["--index", str(tmp_path / f"replica-{n}"), "--chroma-url", chroma_server] for n in (1, 2)]
    ended, asked, healths, health = serve_while_writing(
        replicas, [str(cables(tmp_path / "new", [NEW])), *writer], tmp_path)
    final = Store.generation_at(Settings(index_dir=tmp_path / "writer", chroma_url=chroma_server))
    assert_replicas_moved_on(ended, asked, final)
    for state, seen in zip(health, healths):
        assert (state["status"], state["generation"], state["refresh_s"]) == ("ok", final, REFRESH)
        assert all((h.status == 200) == (h.generation == h.store_generation) for h in seen)
        # Each replica was behind the store for a while (its sidecar is built after the ingest's
        # writes), and said so with a 503 naming both generations.
        assert any(h.status == 503 and h.store_generation > h.generation for h in seen)


def test_one_ingest_at_a_time_into_a_lance_store_in_a_folder_or_at_a_uri(tmp_path, capsys, fake_encoder):
    """A folder: the flock of DIR/ingest.lock, its holder named by pid. A URI, with no lock file
    (file:// here stands for s3://): the claim in the database's `writer` table, its holder named,
    taken over once it has run out, and removed when the ingest ends."""
    pytest.importorskip("lancedb")
    from rag.cli import main
    from rag.index.lance_ingest import ingest_lance
    from rag.index.lance_store import LanceStore
    from rag.index.lance_writer import LanceClaims
    from rag.index.lease import UNTIL_KEY, WRITER_KEY
    from rag.index.writer import IndexBusy, writing

    first, new = cables(tmp_path / "first", FIRST[:1]), cables(tmp_path / "new", [NEW])
    folder = tmp_path / "db"
    assert main(["ingest", str(first), "--store", "lance", "--lance-uri", str(folder), "--quiet"]) == 0
    with writing(folder):  # held as another ingest holds it (an flock conflicts within a process too)
        assert main(["ingest", str(new), "--store", "lance", "--lance-uri", str(folder), "--quiet"]) == 1
    assert capsys.readouterr().err.strip() == (f"rag: error: another ingest is writing to {folder} (pid {os.getpid()}): "
                                              "wait for it to finish, then run this one again")

    settings = Settings(store="lance", lance_uri=f"file://{tmp_path / 'remote'}")
    assert ingest_lance([first], settings, progress=False).ok
    claims = LanceClaims(settings)
    assert claims.committed_metadata() == {}  # released once the ingest ended
    served = LanceStore(settings, model_id=None, dimension=None).generation
    claims.change_collection_metadata(lambda m: {WRITER_KEY: "other-host pid 7", UNTIL_KEY: time.time() + 60})
    with pytest.raises(IndexBusy, match=r"^another ingest is writing to the store at file://\S+ \(other-host pid 7, "
                                        r"its claim runs to .* UTC unless renewed\): wait"):
        ingest_lance([new], settings, progress=False)
    assert LanceStore(settings, model_id=None, dimension=None).generation == served  # nothing written
    claims.change_collection_metadata(lambda m: {**m, UNTIL_KEY: time.time() - 1})  # it died
    assert ingest_lance([new], settings, progress=False).embedded > 0
    assert claims.committed_metadata() == {}
    assert LanceStore(settings, model_id=None, dimension=None).generation > served
