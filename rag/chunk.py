"""Paragraphs → chunks: one chunk per paragraph, split only where the encoder's window demands.

What is embedded carries the cable's context (subject, origin, date, section heading); what is
shown to users is the paragraph's own text. Every word of every paragraph is embedded: a long
paragraph becomes parts that keep the cable id and paragraph number.
"""

from __future__ import annotations

from typing import Callable, Iterable

from rag.text import split_sentences
from rag.types import Cable, Chunk, Paragraph

TokenCounter = Callable[[list[str]], list[int]]


def context_line(cable: Cable, paragraph: Paragraph) -> str:
    parts = [cable.subject.strip() or "(no subject)", f"{cable.origin}, {cable.date_iso}".strip(", ")]
    if paragraph.heading:
        parts.append(paragraph.heading)
    return " | ".join(parts)


def chunk_metadata(cable: Cable, paragraph: Paragraph, part: int, parts: int) -> dict:
    """Chroma metadata: scalar values (and the tag and reference lists) that filters and the UI
    need. `refs` (the cables its REF lines name) is cable-level, like the tags, and stored on
    every chunk so that any chunk read back describes its cable; the sidecar turns it into the
    reference lookups of the cable view (rag.index.rows)."""
    meta = {
        "cable_id": cable.id,
        "paragraph": paragraph.number,
        "occurrence": paragraph.occurrence,
        "numbered": paragraph.numbered,
        "part": part,
        "parts": parts,
        "date": cable.date_iso,
        "date_int": cable.date_int,
        "origin": cable.origin,
        "classification": cable.classification,
        "subject": cable.subject,
        "heading": paragraph.heading,
    }
    # Chroma refuses an empty list: a cable without tags or references has no such key.
    if cable.tags:
        meta["tags"] = list(cable.tags)
    if cable.refs:
        meta["refs"] = list(cable.refs)
    return meta


def _split_words(text: str, budget: int, count: TokenCounter) -> list[str]:
    """Greedy split of one over-long sentence at word boundaries."""
    pieces, current = [], []
    for word in text.split():
        trial = " ".join(current + [word])
        if current and count([trial])[0] > budget:
            pieces.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def split_text(text: str, budget: int, count: TokenCounter) -> list[str]:
    """Split `text` at sentence ends into pieces of at most `budget` word pieces each."""
    sentences = split_sentences(text, min_chars=0)
    lengths = count(sentences)
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for sentence, length in zip(sentences, lengths):
        if length > budget:
            if current:
                pieces.append(" ".join(current))
                current, used = [], 0
            pieces.extend(_split_words(sentence, budget, count))
            continue
        # +1: joining two sentences rarely merges word pieces, but a space can start a new one.
        if current and used + length + 1 > budget:
            pieces.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += length + 1
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_cable(cable: Cable, count: TokenCounter, max_tokens: int) -> list[Chunk]:
    """All chunks of a cable. `count` gives word-piece counts; `max_tokens` is the window."""
    if not cable.paragraphs:
        return []
    contexts = [context_line(cable, p) for p in cable.paragraphs]
    full = [f"{c}\n{p.text}" for c, p in zip(contexts, cable.paragraphs)]
    lengths = count(full)
    chunks: list[Chunk] = []
    for paragraph, context, text, length in zip(cable.paragraphs, contexts, full, lengths):
        if length <= max_tokens:
            meta = chunk_metadata(cable, paragraph, 0, 1)
            chunks.append(Chunk(paragraph, paragraph.text, text, 0, 1, meta))
            continue
        budget = max(32, max_tokens - count([context])[0] - 1)
        pieces = split_text(paragraph.text, budget, count)
        for i, piece in enumerate(pieces):
            meta = chunk_metadata(cable, paragraph, i, len(pieces))
            chunks.append(Chunk(paragraph, piece, f"{context}\n{piece}", i, len(pieces), meta))
    return chunks


def chunk_cables(cables: Iterable[Cable], count: TokenCounter, max_tokens: int) -> list[Chunk]:
    return [c for cable in cables for c in chunk_cable(cable, count, max_tokens)]
