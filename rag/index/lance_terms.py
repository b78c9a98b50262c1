"""Document frequencies of stemmed terms in the lance store's `terms` table.

The ranker and the evidence check weigh question words by idf, and call a word the index has
never seen absent (rag.answer.rank, rag.answer.evidence). LanceDB's full-text index answers
searches but not "how many chunks hold this term", so ingest keeps the count itself: every
write adds the terms of the chunks written and takes off those of the rows they replace or
delete. The terms are the sidecar's (rag.index.bm25.tokenize of `lexical_text`), so the idfs are
the ones the ranker was fitted on.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from rag.index.bm25 import tokenize
from rag.index.lance_db import among

# Terms per `IN (...)` lookup: keeps each query's SQL of moderate size.
STEP = 1000


def term_counts(texts: list[str]) -> Counter:
    """How many of `texts` hold each term."""
    counts: Counter = Counter()
    for tokens in tokenize(texts) if texts else []:
        counts.update(set(tokens))
    return counts


def document_frequency(table, terms: list[str]) -> np.ndarray:
    """How many chunks hold each term (0 for one the table lacks), read from `table` (`terms`)."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(terms))
    for i in range(0, len(unique) if table is not None else 0, STEP):
        rows = table.search().where(among("term", unique[i : i + STEP])).select(["term", "df"]).to_arrow()
        found.update(zip(rows["term"].to_pylist(), rows["df"].to_pylist()))
    return np.array([max(int(found.get(t, 0)), 0) for t in terms], dtype=np.int64)


def add_terms(table, removed: list[str], added: list[str]) -> None:
    """Count the chunks of `added` texts in and those of `removed` out."""
    delta = term_counts(added)
    delta.subtract(term_counts(removed))
    add_counts(table, delta)


def add_counts(table, delta: Counter) -> None:
    """Add `delta` (term → chunks gained, negative for chunks lost) to the counts of `table`."""
    import pyarrow as pa

    changed = [term for term, n in delta.items() if n]
    if not changed:
        return
    now = document_frequency(table, changed)
    rows = pa.table({"term": changed, "df": [int(df + delta[t]) for t, df in zip(changed, now)]},
                    schema=table.schema)
    table.merge_insert("term").when_matched_update_all().when_not_matched_insert_all().execute(rows)
