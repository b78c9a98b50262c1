"""`rag show`: one cable as a reader sees it, or one paragraph of it with its neighbours.

The cable comes through the same lookup as the cable view (`rag.index.cable.cable_view`), on
a retriever whose encoder is never loaded: showing a cable reads stored text only, so it takes
about a second, not the several an encoder or an LLM would add. The store is opened with the
model its collection records, so a cable shows whichever encoder built the index.

After the metadata come the cable's references both ways: the cables its REF lines name (with
their subject when the index holds them) and the cables of the index whose REF lines name it.
Ingest stores them and the sidecar indexes them (rag.index.rows), so this is two lookups, not a scan.
"""

from __future__ import annotations

import textwrap

from rag.citation import Citation, number_ranges
from rag.errors import CableNotFound, ParagraphNotFound
from rag.settings import Settings

WIDTH = 100
# Paragraph text is indented past its "¶N" label.
INDENT = 6

def reference_line(cable: dict) -> str:
    """One cable of a reference list on one line: its id, then its date and subject when the
    index holds it, cut to fit past the label."""
    if not cable.get("in_index", True):
        return f"{cable['id']}  (not in this index)"
    line = "  ".join(v for v in (cable["id"], cable["date"], " ".join(cable["subject"].split())) if v)
    room = WIDTH - 16
    return line if len(line) <= room else line[: room - 1].rstrip() + "…"


def show(reference: str, settings: Settings | None = None) -> dict:
    """The cable of `reference` as the cable view's JSON; for a paragraph reference, only that
    paragraph and the one before and after, with `focus` set to its number."""
    from rag.index.index import index_for

    ref = Citation.parse(reference)
    cable = index_for(settings).cable(ref.cable_id)
    if cable is None:
        raise CableNotFound(f"cable {ref.cable_id} is not in this index")
    paragraphs = cable["paragraphs"]
    if ref.paragraph is None:
        return {**cable, "focus": None}
    at = [i for i, p in enumerate(paragraphs) if p["paragraph"] == ref.paragraph]
    if not at:
        raise ParagraphNotFound(f"cable {ref.cable_id} has no ¶{ref.paragraph}; it has "
                                f"{number_ranges([p['paragraph'] for p in paragraphs])}")
    # A number printed twice shows both paragraphs, and what lies between them.
    start = max(at[0] - 1, 0)
    shown = paragraphs[start : at[-1] + 2]
    # The heading the first shown paragraph sits under, when the cable prints it further up.
    section = next((p["heading"] for p in reversed(paragraphs[: start + 1]) if p["heading"]), "")
    if section and not shown[0]["heading"]:
        shown = [{**shown[0], "section": section}, *shown[1:]]
    return {**cable, "paragraphs": shown, "focus": ref.paragraph}


def format_text(cable: dict) -> str:
    """The cable for a terminal: metadata, references both ways, then each paragraph under its
    heading and number."""
    lines = [cable["id"]]
    for label, value in (("Subject", cable["subject"]), ("Date", cable["date"]), ("Origin", cable["origin"]),
                         ("Classification", cable["classification"]), ("Tags", ", ".join(cable["tags"]))):
        lines.append(textwrap.fill(value or "—", WIDTH, initial_indent=f"{label + ':':<16}",
                                   subsequent_indent=" " * 16))
    references = [reference_line(r) for r in cable["references"]]
    referenced_by = [reference_line(r) for r in cable["referenced_by"]]
    for label, entries in (("References", references), ("Referenced by", referenced_by)):
        for i, entry in enumerate(entries or ["—"]):
            lines.append(f"{label + ':' if i == 0 else '':<16}{entry}")
    focus = cable.get("focus")
    for p in cable["paragraphs"]:
        lines.append("")
        if p.get("section"):
            lines.append(f"({p['section']})")
        if p["heading"]:
            lines.append(p["heading"])
        label = f"{'▸' if focus is not None and p['paragraph'] == focus else ''}¶{p['paragraph']}"
        # Lines break at spaces only: a hyphenated word or a long id or link stays whole.
        lines.append(textwrap.fill(p["text"], WIDTH, initial_indent=f"{label:<{INDENT}}",
                                   subsequent_indent=" " * INDENT, break_on_hyphens=False,
                                   break_long_words=False))
    return "\n".join(lines)
