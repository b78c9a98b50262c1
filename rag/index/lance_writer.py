"""One ingest at a time into a lance store.

Lance commits each write whole (optimistic concurrency: a conflicting commit is retried or
refused, never interleaved), so two ingests cannot damage a table; but each ingest reads the
term counts, adds its chunks' and writes them back (rag.index.lance_terms), and two at once would
each write over the other's. So an ingest holds the store's writer lock first. In a local folder
it is the flock of rag.index.writer (`DIR/ingest.lock`, released by the kernel when its holder
dies). Object storage has no lock file: there the ingest claims the store as machines sharing a
Chroma server do (rag.index.lease), its claim kept in the database's `writer` table, whose every
write is one commit that replaces the claim whole.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rag.index.lance_db import WRITER, connect, create_table, open_table, writer_schema
from rag.index.lease import writer_lease
from rag.index.writer import writing
from rag.settings import Settings


class LanceClaims:
    """The `writer` table of a lance store, as rag.index.lease reads and replaces a claim."""

    def __init__(self, settings: Settings):
        self.location = settings.lance_uri
        self.db = connect(settings, create=True)
        # The lease renews its claim from a thread: read, change and write must not interleave.
        self._lock = threading.Lock()

    def _table(self):
        return open_table(self.db, WRITER) or create_table(self.db, WRITER, writer_schema())

    def committed_metadata(self) -> dict:
        rows = self._table().to_arrow()
        return dict(zip(rows["key"].to_pylist(), rows["value"].to_pylist()))

    def change_collection_metadata(self, change: Callable[[dict], dict]) -> None:
        import pyarrow as pa

        with self._lock:
            table = self._table()
            claim = change(self.committed_metadata())
            rows = pa.table({"key": list(claim), "value": [str(v) for v in claim.values()]}, schema=table.schema)
            (table.merge_insert("key").when_matched_update_all().when_not_matched_insert_all()
             .when_not_matched_by_source_delete().execute(rows))


@contextmanager
def lance_writing(settings: Settings) -> Iterator[None]:
    """Hold the lance store's writer lock (a folder) or claim (a URI) while the block runs;
    IndexBusy, in one line naming the other ingest, while another holds it."""
    uri = settings.lance_uri.strip()
    if not uri:
        connect(settings)  # says, in one line, that --lance-uri is needed
    if "://" in uri:
        with writer_lease(LanceClaims(settings)):
            yield
    else:
        with writing(Path(uri).expanduser()):
            yield
