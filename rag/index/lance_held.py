"""`HeldRows`: the vectors of the rows that pass a filter, held in memory after the filter's first
search, so the searches under it that follow score them in numpy instead of reading them again.

LanceDB's exact search under a filter reads every passing vector from the table at each search:
at 3M chunks, Phnom Penh's 48k rows cost 150–164 ms a question (bench/lance_filter_bench.py).
Held, they are scored in a few ms, and only the k nearest rows are read, by row id (~25 ms for 50).
Row ids name rows in one version of the table: a store holds them for the version it reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

# Memory for the held vectors of all filters together (float32: 48k rows of 384 dims are 74 MB);
# the filter searched least recently is dropped first.
HELD_BYTES = 256 * 2**20


class HeldRows:
    """Row ids and unit vectors of the rows passing each of a few `where`s, in one table version."""

    def __init__(self, table, budget: int = HELD_BYTES):
        self.table = table
        self.budget = budget
        self._held: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def nearest(self, where: str, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row id, cosine) of the `k` rows passing `where` nearest to `vector`, best first."""
        row_ids, vectors = self._rows(where)
        if not len(row_ids):
            return []
        query = np.asarray(vector, dtype=np.float32)
        scores = vectors @ (query / (np.linalg.norm(query) or 1.0))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(row_ids[i]), float(scores[i])) for i in top]

    def _rows(self, where: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if where in self._held:
                self._held.move_to_end(where)
                return self._held[where]
        found = self.table.search().where(where).select(["vector"]).with_row_id(True).to_arrow()
        row_ids = found["_rowid"].to_numpy()
        chunks = [chunk.flatten().to_numpy() for chunk in found["vector"].chunks]
        vectors = np.concatenate(chunks).reshape(len(row_ids), -1) if chunks else np.zeros((0, 1), np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        with self._lock:
            self._held[where] = (row_ids, vectors)
            while len(self._held) > 1 and sum(v.nbytes for _, v in self._held.values()) > self.budget:
                self._held.popitem(last=False)
        return row_ids, vectors
