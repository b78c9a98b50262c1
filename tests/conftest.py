"""Shared fixtures: the real data beside the checkout, and one demo index per test session."""

import os
from pathlib import Path

import pytest

from rag.demo import DEMO_DIR
from rag.ingest import ingest
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "cables").is_dir():
        pytest.skip("../shared is not beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def demo_settings() -> Settings:
    """The bundled demo corpus, indexed once. The index is kept between runs (ingest re-embeds
    only what changed, so a stale cache is brought up to date, not trusted blindly)."""
    index = Path(os.environ.get("RAG_TEST_DEMO_INDEX", Path.home() / ".cache" / "cablerag" / "test-demo-index"))
    settings = Settings(index_dir=index)
    report = ingest([DEMO_DIR], settings, progress=False)
    assert report.ok, [str(s) for s in report.skipped]
    return settings
