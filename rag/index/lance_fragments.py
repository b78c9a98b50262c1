"""Lance data files written apart from their commit, for an ingest spread over workers
(rag.index.lance_workers): the one module that imports pylance, which lancedb does not expose.

Workers write fragments against the version the ingest started from; the driver makes them part
of the table with one commit. Until then they are files no version names: a run interrupted
before its commit leaves the table at its previous version, and the files are unreachable
garbage that no reader opens.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.errors import RagError
from rag.index.lance_db import among

# Ids per `IN (...)` lookup of the rows a commit replaces.
STEP = 1000


def dataset_uri(table) -> str:
    """Where the lancedb `table` keeps its Lance dataset."""
    return table.to_lance().uri


def write(uri: str, version: int, rows) -> list:
    """Write arrow `rows` as data files of the dataset at `uri` (read at `version`), uncommitted:
    their fragments' metadata, for `commit`."""
    import lance
    from lance.fragment import write_fragments

    if not len(rows):
        return []
    return write_fragments(rows, lance.dataset(uri, version=version), schema=rows.schema)


def commit(uri: str, version: int, fragments: list, removed: Sequence[str] = ()) -> bool:
    """Make `fragments` part of the dataset at `uri` and drop its rows whose id is in `removed`,
    in one commit on top of `version`; whether there was anything to commit."""
    import lance

    if not fragments and not removed:
        return False
    dataset = lance.dataset(uri, version=version)
    ids: dict[int, list[str]] = {}
    for i in range(0, len(removed), STEP):
        found = dataset.to_table(columns=["id"], filter=among("id", removed[i : i + STEP]), with_row_address=True)
        for cid, address in zip(found["id"].to_pylist(), found["_rowaddr"].to_pylist()):
            ids.setdefault(address >> 32, []).append(cid)
    updated, emptied = [], []
    for fragment_id, held in sorted(ids.items()):
        left = dataset.get_fragment(fragment_id).delete(among("id", held))
        if left is None:
            emptied.append(fragment_id)
        else:
            updated.append(left)
    # One Update both deletes the replaced rows and adds the new ones: a reader sees a changed
    # cable's old rows or its new ones, never neither.
    operation = lance.LanceOperation.Update(removed_fragment_ids=emptied, updated_fragments=updated,
                                            new_fragments=fragments)
    try:
        lance.LanceDataset.commit(uri, operation, read_version=version)
    except OSError as exc:
        raise RagError(f"cannot commit the ingest at {uri}: {exc}".splitlines()[0]) from exc
    return True
