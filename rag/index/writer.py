"""One writer per index: `rag ingest` holds `INDEX/ingest.lock` while it writes.

Two ingests into one index would each advance the store's generation and rebuild the sidecar
from a store the other is still changing. The lock is an flock on the file, so the kernel
releases it when its holder dies, even by kill -9; the holder's pid is written into the file
for the message a second ingest prints, and cleared when the holder finishes. A file that still
names a pid when its lock is free was left by an ingest that was killed: the next one takes it
over, and finishes that run's work (rag.index.ingest repairs whatever it left).

The file is never removed: a second ingest could have opened it, and would then hold a lock on
a file no later ingest sees.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rag.errors import RagError
from rag.index.layout import WRITER_LOCK


class IndexBusy(RagError):
    """Another ingest holds the index's writer lock."""


@contextmanager
def writing(index_dir: Path) -> Iterator[int | None]:
    """Hold the writer lock of the index at `index_dir` while the block runs.

    Yields the pid of a killed ingest whose lock this one took over, None when the last holder
    finished. Raises IndexBusy, naming the holder's pid, while another ingest holds the lock."""
    path = Path(index_dir) / WRITER_LOCK
    if path.parent.exists() and not path.parent.is_dir():
        raise RagError(f"{index_dir} is a file, not an index directory: give --index a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise RagError(f"cannot write to the index at {index_dir}: {exc.strerror or exc}") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusy(f"another ingest is writing to {index_dir} (pid {_holder(handle) or 'unknown'}): "
                            "wait for it to finish, then run this one again") from None
        try:
            killed = _holder(handle)
            _write(handle, str(os.getpid()))
            yield killed
        finally:
            _write(handle, "")
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle) -> int | None:
    """The pid the lock file names, None when it names none."""
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None


def _write(handle, text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()
