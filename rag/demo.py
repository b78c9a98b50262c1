"""The bundled demo corpus: 300 real cables inside the package, so a fresh install works offline."""

from __future__ import annotations

import sys
from pathlib import Path

from rag.settings import Settings, get_settings
from rag.store import Store

DEMO_DIR = Path(__file__).parent / "demo" / "cables"


def ensure_index(settings: Settings | None = None, progress: bool = True) -> bool:
    """Build the demo index where `settings` points when no index is there. True if it built."""
    settings = get_settings(settings)
    if Store.exists(settings):
        return False
    from rag.ingest import ingest

    print(
        f"No index at {settings.chroma_url or settings.index_dir}: building the demo index from "
        f"{len(list(DEMO_DIR.glob('*.txt')))} bundled cables (once; a few minutes).",
        file=sys.stderr,
    )
    ingest([DEMO_DIR], settings, progress=progress)
    return True
