"""The data model, defined once: a cable, its paragraphs, the chunks we embed, citations, hits.

Everything downstream (store, retrieval, answering, verification, evaluation, the app) passes
these objects around instead of re-deriving ids, tags or metadata.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from rag.citation import Citation


def yyyymmdd(day: date) -> int:
    """A date as the integer YYYYMMDD: how the index stores dates (`date_int`), since Chroma can
    range-filter only numbers ($gte/$lte), and how date filters compare with them."""
    return day.year * 10_000 + day.month * 100 + day.day


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of a cable, numbered as the cable prints it.

    `number` is the printed number (`¶6.` or `6. (C)`). Cables that print no numbers are split
    into blocks numbered 1..n in order, with `numbered=False`. A number a cable prints twice
    gives two paragraphs; the second has `occurrence=1` so its id stays unique.
    """

    cable_id: str
    number: int
    text: str
    heading: str = ""
    numbered: bool = True
    occurrence: int = 0

    @property
    def citation(self) -> Citation:
        return Citation(self.cable_id, self.number)

    @property
    def key(self) -> str:
        """Unique id of the paragraph within the index: `<cable id>:<number>[r<occurrence>]`."""
        suffix = f"r{self.occurrence}" if self.occurrence else ""
        return f"{self.cable_id}:{self.number}{suffix}"


@dataclass
class Cable:
    """A parsed cable: metadata from its header, and its paragraphs in order."""

    id: str
    subject: str
    date: date | None
    classification: str
    origin: str
    tags: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    paragraphs: list[Paragraph] = field(default_factory=list)
    header: str = ""

    @property
    def date_iso(self) -> str:
        return self.date.isoformat() if self.date else ""

    @property
    def date_int(self) -> int:
        """The date as YYYYMMDD (0 when unknown), so Chroma can range-filter it."""
        return yyyymmdd(self.date) if self.date else 0

    def paragraph(self, number: int) -> Paragraph | None:
        return next((p for p in self.paragraphs if p.number == number), None)


@dataclass(frozen=True)
class Chunk:
    """What goes into the index: one paragraph, or one part of a paragraph too long to embed whole.

    `text` is what users see; `embed_text` carries the cable's context (subject, origin, date,
    heading) so that a paragraph saying "he" still retrieves for the right question.
    """

    paragraph: Paragraph
    text: str
    embed_text: str
    part: int = 0
    parts: int = 1
    metadata: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def id(self) -> str:
        return self.paragraph.key + (f":{self.part}" if self.parts > 1 else "")

    @property
    def cable_id(self) -> str:
        return self.paragraph.cable_id

    @property
    def citation(self) -> Citation:
        return self.paragraph.citation

    @property
    def content_hash(self) -> str:
        return hashlib.sha1(self.embed_text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Hit:
    """A retrieved chunk with its score and where it came from (dense, bm25, hybrid, id)."""

    chunk_id: str
    cable_id: str
    paragraph: int
    text: str
    metadata: dict
    score: float
    source: str = ""
    # The stored embedding, when the store returned it: verification compares claims with it
    # instead of re-encoding the paragraph.
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def citation(self) -> Citation:
        return Citation(self.cable_id, self.paragraph)
