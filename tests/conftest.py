"""Shared fixtures: the real data beside the checkout, and one demo index per test session."""

import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from rag.index.demo import DEMO_DIR
from rag.index.ingest import ingest
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RAG = Path(__file__).resolve().parents[1] / "rag"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "cables").is_dir():
        pytest.skip("../shared is not beside the checkout")
    return SHARED


# The modules whose code decides what an index holds: the cached test index is keyed by them.
INDEX_CODE = ("cables.py", "chunk.py", "types.py", "index/embed.py", "index/store.py", "index/bm25.py", "index/rows.py",
              "index/ingest.py", "index/sentences.py", "index/onnx.py", "index/layout.py")


def index_code_key() -> str:
    digest = hashlib.sha1()
    for name in INDEX_CODE:
        digest.update((RAG / name).read_bytes())
    return digest.hexdigest()[:12]


# An older code version's test index is removed once no run has used it for this long: a test
# run still going on the previous version keeps its index.
STALE_AFTER_S = 6 * 3600


@pytest.fixture(scope="session")
def demo_settings(request) -> Settings:
    """The bundled demo corpus, indexed once per version of the code that builds indexes: the
    cache under ~/.cache is keyed by that code. Building holds a lock, so test runs started side
    by side never ingest into one directory at once; indexes of older versions go once unused."""
    cache = Path.home() / ".cache" / "cablerag"
    cache.mkdir(parents=True, exist_ok=True)
    index = Path(os.environ.get("RAG_TEST_DEMO_INDEX", cache / f"test-demo-index-{index_code_key()}"))
    settings = Settings(index_dir=index)
    with open(cache / "test-demo-index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for old in cache.glob("test-demo-index-*"):
            used = old / ".last-used"
            if old != index and (not used.exists() or time.time() - used.stat().st_mtime > STALE_AFTER_S):
                shutil.rmtree(old, ignore_errors=True)
        if not index.exists():
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"building the demo index for the tests at {index} (about 2.5 minutes, once)")
        report = ingest([DEMO_DIR], settings, progress=False)
        assert report.ok, [str(s) for s in report.skipped]
        (index / ".last-used").touch()
    return settings


@pytest.fixture(scope="module")
def server(demo_settings):
    """The app (UI, JSON API, /v1) on a free loopback port over the demo index, one per module."""
    from rag.serve.web import BackgroundServer  # gradio: only for the modules that serve

    running = BackgroundServer(demo_settings)
    yield running
    running.stop()


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
