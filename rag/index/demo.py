"""The bundled demo corpus: 300 real cables inside the package, so a fresh install works offline."""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path

from rag.errors import NoIndex
from rag.index.store import Store
from rag.settings import Settings, get_settings

DEMO_DIR = Path(__file__).parents[1] / "demo" / "cables"
# Only here is a missing index replaced by the demo: anywhere else it is a typo or a path the
# user meant to fill with their own cables, and answering from the demo would mislead.
DEFAULT_INDEX = Path("index")


# Left in ./index while the demo is built: a first run killed half-way (the paragraphs stored,
# the sidecar not built) is finished by the next command, not stopped by it as out of step.
BUILDING = ".demo-building"
# Held while the demo is built: a second command meanwhile waits for the first, then finds it built.
LOCK = ".demo-lock"


def ensure_index(settings: Settings | None = None, progress: bool = True) -> bool:
    """Build the demo index at the default location when no index is there, or finish one that
    an interrupted run began. True if it built."""
    settings = get_settings(settings)
    if settings.chroma_url or Path(settings.index_dir).resolve() != DEFAULT_INDEX.resolve():
        if Store.exists(settings):
            return False
        where = settings.chroma_url or settings.index_dir
        raise NoIndex(f"no index at {where}: build it with 'rag ingest PATH --index {where}' "
                      "(the demo corpus is built only at the default ./index)")
    index = Path(settings.index_dir)
    if Store.exists(settings) and not (index / BUILDING).exists():
        return False
    index.mkdir(parents=True, exist_ok=True)
    with open(index / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = index / BUILDING
        if Store.exists(settings) and (not marker.exists() or _in_step(settings)):
            # Built meanwhile, or finished since by `rag ingest` (which may have added the
            # user's own cables: the demo is not added to them).
            marker.unlink(missing_ok=True)
            return False
        from rag.index.ingest import ingest

        doing = "finishing the demo index a killed run began" if marker.exists() else "building the demo index"
        print(f"No index at {index}: {doing} from {len(list(DEMO_DIR.glob('*.txt')))} bundled cables "
              "(once; a few minutes).", file=sys.stderr)
        marker.touch()
        ingest([DEMO_DIR], settings, progress=progress)
        marker.unlink()
    return True


def _in_step(settings: Settings) -> bool:
    from rag.index.rows import RowIndex

    return RowIndex.at(settings).generation_on_disk() == Store.generation_at(settings)


def require_index(settings: Settings | None = None) -> None:
    """NoIndex, in one line, when no index is where the demo is never built (away from ./index,
    or a Chroma server); at ./index a missing index is left for `ensure_index` to build."""
    settings = get_settings(settings)
    if settings.chroma_url or Path(settings.index_dir).resolve() != DEFAULT_INDEX.resolve():
        ensure_index(settings)
