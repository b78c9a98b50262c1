"""`LanceSentences`: the sentence vectors of the lance store (rag.index.sentences' counterpart),
one row per paragraph in the `sentences` table: the digest of its candidate sentences, the model,
and their vectors as float16, flattened.

Content-addressed as the folder store is, so an entry stays right for every version that holds
the paragraph's text and needs no generation: ingest adds the paragraphs it wrote whose digest
the table lacks, and a paragraph it lacks is a miss that the answerer encodes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rag.index.lance_db import among, quote
from rag.index.sentences import candidate_sentences, key_of

# Paragraphs per lookup of which digests the table holds, and per write.
STEP = 1000


class LanceSentences:
    """The `sentences` table at the version it was opened at."""

    def __init__(self, table):
        self.table = table

    def __len__(self) -> int:
        return self.table.count_rows()

    def get(self, sentences: list[str], model_id: str) -> np.ndarray | None:
        """float32 vectors of `sentences` (one paragraph's candidates, in order), read-only; None
        when the table does not hold them or they were made by another model."""
        where = f"key = {quote(key_of(sentences).hex())} AND model = {quote(model_id)}"
        rows = self.table.search().where(where).select(["vectors"]).limit(1).to_list()
        if not rows:
            return None
        flat = np.asarray(rows[0]["vectors"], dtype=np.float32)
        if not sentences or flat.size % len(sentences):
            return None
        found = flat.reshape(len(sentences), -1)
        found.flags.writeable = False
        return found

    def lacking(self, texts: list[str], model_id: str) -> dict[str, list[str]]:
        """digest → candidate sentences of those `texts` whose sentences the table lacks."""
        todo: dict[str, list[str]] = {}
        for text in texts:
            sentences = [s for _, s in candidate_sentences(text)]
            if sentences:
                todo.setdefault(key_of(sentences).hex(), sentences)
        keys = list(todo)
        for i in range(0, len(keys), STEP):
            where = f"{among('key', keys[i : i + STEP])} AND model = {quote(model_id)}"
            for row in self.table.search().where(where).select(["key"]).to_list():
                todo.pop(row["key"], None)
        return todo

    def rows(self, vectors: dict[str, np.ndarray], model_id: str):
        """The arrow rows of each digest's sentence vectors, in the table's schema."""
        import pyarrow as pa

        return pa.Table.from_pylist(
            [{"key": key, "model": model_id, "vectors": np.asarray(found, dtype=np.float16).ravel().tolist()}
             for key, found in vectors.items()], schema=self.table.schema)

    def add(self, texts: list[str], encode: Callable[[list[str]], np.ndarray], model_id: str,
            known: Callable[[list[str]], np.ndarray | None] | None = None) -> int:
        """Encode the candidate sentences of those `texts` the table lacks and store them; how many
        sentences were encoded. `known`: one paragraph's sentence vectors from elsewhere, or None."""
        todo = self.lacking(texts, model_id)
        if not todo:
            return 0
        found = {key: known(sentences) for key, sentences in todo.items()} if known else {}
        encoding = {key: sentences for key, sentences in todo.items() if found.get(key) is None}
        found.update(encode_sentences(encoding, encode))
        self.table.add(self.rows({key: found[key] for key in todo}, model_id))
        return sum(len(sentences) for sentences in encoding.values())


def encode_sentences(todo: dict[str, list[str]], encode: Callable[[list[str]], np.ndarray]) -> dict[str, np.ndarray]:
    """digest → vectors of its sentences, encoded in one call."""
    vectors = encode([s for sentences in todo.values() for s in sentences])
    found, at = {}, 0
    for key, sentences in todo.items():
        found[key] = vectors[at : at + len(sentences)]
        at += len(sentences)
    return found
