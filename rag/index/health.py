"""Whether the files of an index are what they claim to be, checked before anything opens them.

Every open of an embedded store runs `check_store_files` (cheap: the SQLite header against the
file's size, and the HNSW segments, rag.index.hnsw_files), so a truncated or overwritten file is one
line naming it and the command that rebuilds it, never a traceback from Chroma or a segfault in
its hnswlib. `rag stats --verify` runs rag.index.stats.verify: the same checks, SQLite's own `quick_check`
(which reads every page, so it is kept off the answer path), the BM25 sidecar and the store of
sentence vectors.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from rag.errors import DamagedIndex, NoIndex
from rag.index import hnsw_files
from rag.index.layout import CHROMA, chroma_dir
from rag.settings import Settings, get_settings

SQLITE = "chroma.sqlite3"
_SQLITE_MAGIC = b"SQLite format 3\x00"
# A writer (an ingest) may be between two of the files it updates together; files that change
# between two checks this far apart are a write in progress, not damage.
SETTLE_S = 0.3
SETTLE_TRIES = 5


def require_directory(index_dir: Path) -> None:
    """NoIndex in one line when `--index` names something that is not a directory."""
    if index_dir.exists() and not index_dir.is_dir():
        raise NoIndex(f"--index {index_dir} is a file, not an index directory: give the directory the index is "
                      "(or is to be) built in")


def rebuild_hint(index_dir: Path) -> str:
    """The repair of a damaged store: every paragraph is embedded again."""
    return f"run 'rag ingest --rebuild CABLES --index {index_dir}' with its cables to build it again"


def refresh_hint(index_dir: Path) -> str:
    """The repair of a damaged sidecar or store of sentence vectors: both are made from the store."""
    return (f"run 'rag ingest CABLES --index {index_dir}' with any of its cables to make it again from the "
            "store (nothing is embedded again)")


def damaged(index_dir: Path, problem: str, hint: str) -> DamagedIndex:
    return DamagedIndex(f"the index at {index_dir} is damaged: {problem}: {hint}")


def sqlite_problem(path: Path) -> str | None:
    """Why the SQLite file cannot be whole, from its header alone, or None."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{CHROMA}/{SQLITE} cannot be read ({exc.strerror})"
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        return f"{CHROMA}/{SQLITE} is not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"{CHROMA}/{SQLITE} is not an SQLite database"
    pages, change_counter, valid_for = (int.from_bytes(header[a : a + 4], "big") for a in (28, 24, 92))
    # The page count in the header is current only when it was written with the change counter.
    if pages and valid_for == change_counter and size < pages * page_size:
        return f"{CHROMA}/{SQLITE} is truncated ({size:,} of {pages * page_size:,} bytes)"
    if size % page_size:
        return f"{CHROMA}/{SQLITE} is truncated ({size:,} bytes, not a whole number of {page_size}-byte pages)"
    return None


def sqlite_quick_check(path: Path) -> str | None:
    """SQLite's `PRAGMA quick_check` over every page, read-only; None when it says ok."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return f"{CHROMA}/{SQLITE}: {exc}"
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else f"{CHROMA}/{SQLITE}: {found[0]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")


def _store_problems(folder: Path) -> list[str]:
    found = [p] if (p := sqlite_problem(folder / SQLITE)) else []
    for segment in hnsw_files.segments(folder):
        found.extend(f"{CHROMA}/{problem}" for problem in hnsw_files.problems(segment))
    return found


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted((str(p), s.st_size, s.st_mtime_ns) for p in folder.rglob("*") if p.is_file() and (s := p.stat())))


# Signatures of store files found sound by this process: a command opens its store several times,
# and at millions of chunks the HNSW check reads gigabytes.
_sound: set[tuple[tuple[str, int, int], ...]] = set()


def check_store_files(settings: Settings | None = None) -> None:
    """DamagedIndex, naming the first damaged file, unless the embedded store's files are sound
    (nothing to check for a Chroma server, or where no store is yet)."""
    settings = get_settings(settings)
    if settings.chroma_url:
        return
    require_directory(settings.index_dir)
    store_dir = chroma_dir(settings.index_dir)
    for _ in range(SETTLE_TRIES):
        signature = _signature(store_dir)
        if signature in _sound:
            return
        found = _store_problems(store_dir)
        if not found:
            if _signature(store_dir) == signature:
                _sound.add(signature)
            return
        time.sleep(SETTLE_S)
        if _signature(store_dir) == signature:  # damaged, and no writer is changing it
            break
    raise damaged(settings.index_dir, found[0], rebuild_hint(settings.index_dir))
