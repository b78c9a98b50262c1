"""A cable as a reader sees it, read back from the index: its paragraphs in reading order (the
parts of a split paragraph re-joined), its metadata, and its references both ways. The chat
page's cable panel, `rag show`, the JSON API and the MCP `get_cable` tool all show this view.
"""

from __future__ import annotations

from typing import Sequence

from rag.index.rows import RowIndex
from rag.index.store import Store
from rag.types import Hit


def cable_chunks(store: Store, lexical: RowIndex, cable_id: str) -> list[Hit]:
    """All chunks of one cable in reading order, found by id through the sidecar's row index
    (Chroma's `where` scans every metadata row)."""
    hits = store.get(lexical.ids_of_cables([cable_id]))
    return sorted(hits, key=lambda h: (h.paragraph, h.metadata.get("occurrence", 0), h.metadata.get("part", 0)))


def cable_view(store: Store, lexical: RowIndex, cable_id: str) -> dict | None:
    """The cable view's JSON (`cable_json`) of a cable and its references both ways; None when
    the index does not hold it."""
    hits = cable_chunks(store, lexical, cable_id)
    return cable_json(cable_id, hits, **cable_references(store, lexical, cable_id)) if hits else None


def cable_references(store: Store, lexical: RowIndex, cable_id: str) -> dict[str, list[dict]]:
    """What the cable's REF lines name and which cables of the index name it, looked up in the
    sidecar's reference lists (rag.index.rows), with the subject and date of each cable the index
    holds, read from one of its chunks.

    Returns:
        `references`: [{"id", "in_index", and "subject", "date" when in the index}] in REF-line
        order; `referenced_by`: [{"id", "subject", "date"}], oldest first. Both are empty for an
        index ingested before references were stored, until `rag ingest` rewrites its metadata.
    """
    cited, citing = lexical.references(cable_id), lexical.referenced_by(cable_id)
    held = lexical.chunk_of_each(cited + citing)
    stored = store.chunk_metadata(list(held.values()))
    about = {cable: stored.get(chunk_id, {}) for cable, chunk_id in held.items()}

    def described(cable: str) -> dict:
        return {"subject": about[cable].get("subject", ""), "date": about[cable].get("date", "")}

    references = [{"id": c, "in_index": c in about, **(described(c) if c in about else {})} for c in cited]
    referenced_by = sorted(({"id": c, **described(c)} for c in citing), key=lambda c: (c["date"], c["id"]))
    return {"references": references, "referenced_by": referenced_by}


def cable_json(cable_id: str, hits: list[Hit], references: Sequence[dict] = (),
               referenced_by: Sequence[dict] = ()) -> dict:
    """A cable from its stored chunks (in reading order), parts of a split paragraph re-joined,
    with its references both ways as `cable_references` gives them."""
    paragraphs: list[dict] = []
    last_key = None
    for hit in hits:
        key = (hit.paragraph, hit.metadata.get("occurrence", 0))
        if key == last_key:
            paragraphs[-1]["text"] += " " + hit.text
            continue
        last_key = key
        paragraphs.append({"paragraph": hit.paragraph, "heading": hit.metadata.get("heading", ""), "text": hit.text})
    meta = hits[0].metadata
    return {
        "id": cable_id, "subject": meta.get("subject", ""), "date": meta.get("date", ""),
        "origin": meta.get("origin", ""), "classification": meta.get("classification", ""),
        "tags": list(meta.get("tags") or []), "references": list(references),
        "referenced_by": list(referenced_by), "paragraphs": paragraphs,
    }
