"""Shared fixtures: the real data beside the checkout, and one demo index per test session."""

import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

import fakes
from rag.index.demo import DEMO_DIR
from rag.index.ingest import ingest
from rag.settings import Settings

fakes.register()

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RAG = Path(__file__).resolve().parents[1] / "rag"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "cables").is_dir():
        pytest.skip("../shared is not beside the checkout")
    return SHARED


# What decides what a test index holds: the code that builds indexes, and the demo cables. The
# cached test indexes are keyed by it.
INDEX_CODE = ("cables.py", "chunk.py", "types.py", "index/embed.py", "index/store.py", "index/bm25.py", "index/rows.py",
              "index/ingest.py", "index/sentences.py", "index/onnx.py", "index/layout.py")


def index_code_key(*more: Path) -> str:
    digest = hashlib.sha1()
    for path in [*(RAG / name for name in INDEX_CODE), *sorted(DEMO_DIR.glob("*.txt")), *more]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


# An older code version's test index is removed once no run has used it for this long: a test
# run still going on the previous version keeps its index.
STALE_AFTER_S = 6 * 3600
# Written once an index is wholly built: a run killed while building leaves none, and the next ingests the rest.
COMPLETE = ".complete"


def cached_demo_index(request, name: str, about: str, index: Path | None = None, keyed_by: tuple[Path, ...] = (),
                      **settings) -> Settings:
    """The bundled demo corpus, indexed once per version of what decides its contents, under
    ~/.cache. Building holds a lock, so test runs started side by side never ingest into one
    directory at once; indexes of older versions go once unused."""
    cache = Path.home() / ".cache" / "cablerag"
    cache.mkdir(parents=True, exist_ok=True)
    index = index or cache / f"{name}-{index_code_key(*keyed_by)}"
    settings = Settings(index_dir=index, **settings)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for old in cache.glob(f"{name}-*"):
            used = old / ".last-used"
            if old != index and (not used.exists() or time.time() - used.stat().st_mtime > STALE_AFTER_S):
                shutil.rmtree(old, ignore_errors=True)
        if not (index / COMPLETE).exists():
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"building the {name.replace('-', ' ')} at {index} ({about}, once)")
            report = ingest([DEMO_DIR], settings, progress=False)
            assert report.ok, [str(s) for s in report.skipped]
            (index / COMPLETE).touch()
        (index / ".last-used").touch()
    return settings


@pytest.fixture(scope="session")
def demo_settings(request) -> Settings:
    """The demo index, built by the real encoder: for tests of how well questions are answered."""
    override = os.environ.get("RAG_TEST_DEMO_INDEX")
    return cached_demo_index(request, "test-demo-index", "about 2.5 minutes", override and Path(override))


@pytest.fixture(scope="session")
def fake_demo(request) -> Settings:
    """The demo corpus indexed by the fake encoder (tests/fakes.py): the same cables, chunks and
    sidecar as the demo index, built in seconds with no model, for tests of what is built around
    retrieval (the faces, the check, damage and repair) rather than of how well it ranks."""
    return cached_demo_index(request, "test-fake-demo-index", "about 10 seconds", keyed_by=(Path(fakes.__file__),),
                             encoder=fakes.FAKE_ENCODER)


@pytest.fixture
def fake_encoder(monkeypatch) -> str:
    """Every Settings the test makes, and the CLI it runs in process or through tests/fakes.py,
    chooses the fake encoder (a test names the real one where it is what is tested)."""
    monkeypatch.setenv("RAG_ENCODER", fakes.FAKE_ENCODER)
    return fakes.FAKE_ENCODER


@pytest.fixture(scope="module")
def server(fake_demo):
    """The app (UI, JSON API, /v1) on a free loopback port over the demo index, one per module."""
    from rag.serve.web import BackgroundServer  # gradio: only for the modules that serve

    running = BackgroundServer(fake_demo)
    yield running
    running.stop()


@pytest.fixture
def chroma_server(tmp_path) -> Iterator[str]:
    """`chroma run` on a free loopback port, with its data in the test's folder: its URL."""
    import socket
    import subprocess

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chroma = shutil.which("chroma") or pytest.skip("the chroma CLI is not on PATH")
    with (tmp_path / "chroma.log").open("wb") as log:
        server = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(f"{url}/api/v2/heartbeat", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def demo_cables(tmp_path):
    """Makes a directory holding the named demo cables: a small corpus of real cables to ingest."""
    def make(cable_ids, name: str = "cables") -> Path:
        src = tmp_path / name
        src.mkdir()
        for cable_id in cable_ids:
            shutil.copy(DEMO_DIR / f"{cable_id}.txt", src / f"{cable_id}.txt")
        return src

    return make
