"""One writer at a time on a shared Chroma server: a lease in the collection's metadata (and,
by the same steps, on a lance store in object storage: rag.index.lance_writer).

On one machine `rag ingest` holds the index folder's flock (rag.index.writer); machines that
share a Chroma server (`--chroma-url`) have no common file to lock, and two ingests into one
collection would each advance its generation and write over the other's. So an ingest there
first claims the collection: it writes who it is and until when into the collection's metadata,
waits a moment, and reads it back; a claim someone else wrote meanwhile wins, and this ingest
stops, as it does when a claim that has not run out is there. The claim is renewed from a thread
while the ingest runs and removed when it ends; one left by an ingest that died runs out after
`TTL` seconds and is taken over. Chroma writes metadata whole (no compare-and-swap): the read-back
is what makes two claims at once end with one writer.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator, Protocol

from rag.index.writer import IndexBusy

WRITER_KEY, UNTIL_KEY = "writer", "writer_until"
# Seconds a claim holds without renewal; renewed every third of it.
TTL = 60.0
# Seconds between writing a claim and reading it back: longer than a metadata write takes.
SETTLE = 0.5


class Claims(Protocol):
    """Where a store keeps its writer's claim: read whole as committed now, and replaced whole
    (rag.index.store.Store: the collection's metadata)."""

    location: str

    def committed_metadata(self) -> dict: ...

    def change_collection_metadata(self, change: Callable[[dict], dict]) -> None: ...


def me() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _busy(store: Claims, meta: dict) -> IndexBusy:
    until = datetime.fromtimestamp(float(meta[UNTIL_KEY]), timezone.utc).strftime("%H:%M:%S UTC")
    return IndexBusy(f"another ingest is writing to the store at {store.location} ({meta[WRITER_KEY]}, its claim "
                     f"runs to {until} unless renewed): wait for it to finish, then run this one again")


@contextmanager
def writer_lease(store: Claims, ttl: float = TTL, settle: float = SETTLE) -> Iterator[None]:
    """Hold the store's writer claim while the block runs; IndexBusy, naming the holder, while
    another ingest holds one that has not run out."""
    who = me()

    def claim(meta: dict) -> dict:
        if meta.get(WRITER_KEY) not in (None, who) and float(meta.get(UNTIL_KEY, 0)) > time.time():
            raise _busy(store, meta)
        return {**meta, WRITER_KEY: who, UNTIL_KEY: time.time() + ttl}

    store.change_collection_metadata(claim)
    time.sleep(settle)
    meta = store.committed_metadata()
    if meta.get(WRITER_KEY) != who:
        raise _busy(store, meta)

    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            store.change_collection_metadata(lambda m: {**m, UNTIL_KEY: time.time() + ttl} if m.get(WRITER_KEY) == who else m)

    renewing = threading.Thread(target=renew, name="writer-lease", daemon=True)
    renewing.start()
    try:
        yield
    finally:
        stop.set()
        renewing.join()
        store.change_collection_metadata(lambda m: {k: v for k, v in m.items() if k not in (WRITER_KEY, UNTIL_KEY)}
                              if m.get(WRITER_KEY) == who else m)
