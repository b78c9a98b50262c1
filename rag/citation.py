"""One pointer to a paragraph, `Citation`, and the one grammar for every way people write it.

`[09PHNOMPENH637 ¶6]` in an answer, `09PHNOMPENH637 ¶¶4-6` or a WikiLeaks link in a draft that
`rag check` reads, `09PHNOMPENH637:6` typed into `rag show` or the cable box of the chat page, a
question that names `09PHNOMPENH637 para 6`: all are read here, so every face accepts the same
forms. This module depends on nothing else of rag's but its errors, so the data model
(rag.types), the checker and every face can take it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rag.errors import RagError

# A cable id: two-digit year, the post, the serial number ("09PHNOMPENH637"). A few ids in the
# release carry digits inside ("09SECTION01OF03SANJOSE525").
CABLE_ID_PATTERN = r"\d{2}[A-Z][A-Z0-9-]*\d"
CABLE_ID = re.compile(rf"\b({CABLE_ID_PATTERN})\b")
# A range wider than this ("¶¶1-500") is read as its two ends, not expanded.
MAX_RANGE = 30


def is_cable_id(text: str) -> bool:
    return re.fullmatch(CABLE_ID_PATTERN, text) is not None


def validate_cable_id(value: str) -> str:
    cable_id = (value or "").strip().upper()
    if len(cable_id) > 40 or not is_cable_id(cable_id):
        raise RagError(f"not a cable id: {value!r} (expected e.g. 09PHNOMPENH637)")
    return cable_id


@dataclass(frozen=True)
class Citation:
    """A pointer to one paragraph as a reader of the cable sees it, `[09PHNOMPENH637 ¶6]`, or to
    the whole cable (`paragraph` None) where a text cites only the cable."""

    cable_id: str
    paragraph: int | None = None

    TEMPLATE = "[{cable_id} ¶{paragraph}]"
    # Accepts what LLMs write back: "[09PHNOMPENH637 ¶6]", "[09PHNOMPENH637 ¶ 6]",
    # "[09PHNOMPENH637, para 6]", "[09PHNOMPENH637 6]".
    PATTERN = re.compile(
        rf"\[\s*({CABLE_ID_PATTERN})\s*[,:]?\s*(?:¶|para(?:graph)?\.?|p\.)?\s*(\d{{1,3}})\s*\]",
        re.IGNORECASE,
    )
    # One reference typed on its own, matched on the upper-cased text: "09PHNOMPENH637",
    # "09PHNOMPENH637 ¶6", "09PHNOMPENH637:6", "09PHNOMPENH637 para 6", "09PHNOMPENH637, para. 6",
    # "09PHNOMPENH637 6", "[09PHNOMPENH637 ¶6]".
    ONE = re.compile(rf"({CABLE_ID_PATTERN})(?:\s*[,:]?\s*(?:¶|PARA(?:GRAPH)?\.?|P\.)?\s*(\d{{1,4}}))?")

    @property
    def tag(self) -> str:
        if self.paragraph is None:
            return f"[{self.cable_id}]"
        return self.TEMPLATE.format(cable_id=self.cable_id, paragraph=self.paragraph)

    def __str__(self) -> str:
        return self.cable_id + (f" ¶{self.paragraph}" if self.paragraph is not None else "")

    @classmethod
    def find_all(cls, text: str) -> list[tuple[re.Match, "Citation"]]:
        """The bracketed citations of an answer, `[ID ¶N]` as LLMs write them back."""
        return [(m, cls(m.group(1).upper(), int(m.group(2)))) for m in cls.PATTERN.finditer(text)]

    @classmethod
    def parse(cls, value: str) -> "Citation":
        """A cable id with an optional paragraph, in the forms people write; RagError otherwise."""
        text = (value or "").strip()
        if len(text) > 1 and text[0] in "[(" and text[-1] in "])":
            text = text[1:-1].strip()
        m = cls.ONE.fullmatch(text.upper()) if len(text) <= 60 else None
        if m is None:
            head = re.split(r"[\s,:¶]", text, maxsplit=1)[0]
            cable_id = validate_cable_id(head)  # "not a cable id: …" unless the id itself is fine
            raise RagError(f"not a cable or paragraph reference: {value!r} "
                           f"(expected e.g. {cable_id}, '{cable_id} ¶6' or {cable_id}:6)")
        return cls(validate_cable_id(m.group(1)), int(m.group(2)) if m.group(2) else None)


def number_ranges(numbers: list[int]) -> str:
    """"¶1–¶7", or "¶1–¶5, ¶7" when a number is missing."""
    spans: list[list[int]] = []
    for n in sorted(set(numbers)):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"¶{a}" if a == b else f"¶{a}–¶{b}" for a, b in spans)


# ── Citations in running text ──────────────────────────────────────────────────────────────────
# The forms `Citation.parse` reads, found in running text: the cable id in capitals, the paragraph marker in any case. In prose a number counts as a paragraph only after
# a marker (¶, para, paragraph, p.); inside brackets "[09PHNOMPENH637 6]" it counts without one.
# At least three letters of post after the year: "24X7" is not a cable.
_ID = rf"(?<![\w-])(?=\d{{2}}[A-Z]{{3}})(?P<id>{CABLE_ID_PATTERN})(?![\w-])"
_RANGE = r"\d{1,4}(?:\s*[-–—]\s*\d{1,4})?(?!\d)"
_PARAGRAPHS = (
    rf"(?:¶¶|(?i:paras|paragraphs)\.?|(?i:pp)\.)\s*{_RANGE}(?:\s*(?:,|&|(?i:and))\s*(?:¶\s*)?{_RANGE}(?!\w))*"
    rf"|(?:¶|(?i:para(?:graph)?)\.?|(?i:p)\.)\s*{_RANGE}"
)
_REFERENCE = re.compile(rf"{_ID}(?P<tail>\s*,?\s*(?:{_PARAGRAPHS})|:\d{{1,4}}(?!\d))?")
_BRACKETED_REFERENCE = rf"{_ID}(?P<tail>\s*,?\s*(?:{_PARAGRAPHS})|:\d{{1,4}}(?!\d)|\s*,?\s*\d{{1,4}}(?!\w))?"
# A bracket or parenthesis that holds nothing but references: the whole group is the citation.
_GROUP_BODY = re.compile(
    rf"\s*(?i:see\s+(?:also\s+)?|cf\.\s*)?{_BRACKETED_REFERENCE}(?:\s*(?:[;,]|(?i:and))\s*{_BRACKETED_REFERENCE})*\s*"
    .replace("(?P<id>", "(?:").replace("(?P<tail>", "(?:")
)
_GROUP = re.compile(r"\[([^\[\]\n]{1,300})\]|\(([^()\n]{1,300})\)")
_INSIDE_GROUP = re.compile(_BRACKETED_REFERENCE)
# WikiLeaks cable pages, …/cable/2009/08/09PHNOMPENH637.html and …/plusd/cables/09PHNOMPENH637_a.html,
# found by their path; the link reaches back from it to where its word starts (LINK_REACH at most,
# so that a long run of text without spaces is never scanned more than once).
_LINK_PATH = re.compile(
    rf"/(?:cable/\d{{4}}/\d{{2}}/(?P<cable>{CABLE_ID_PATTERN})|plusd/cables/(?P<plusd>{CABLE_ID_PATTERN})(?:_\w+)?)"
    r"\.html?(?:#[\w-]*)?"
)
_LINK_START = re.compile(r"[^\s<>()\[\]\"']*$")
LINK_REACH = 200


@dataclass(frozen=True)
class Mention:
    """A citation as the text writes it: where, and what it names (a range expanded into its
    paragraphs; a cable-level citation names the cable with paragraph None)."""

    start: int
    end: int
    citations: tuple[Citation, ...]


def _paragraphs(tail: str | None) -> list[int | None]:
    if not tail:
        return [None]
    numbers: list[int] = []
    for first, last in re.findall(r"(\d+)(?:\s*[-–—]\s*(\d+))?", tail):
        a, b = int(first), int(last or first)
        numbers += range(a, b + 1) if 0 <= b - a <= MAX_RANGE else [a, b]
    return list(dict.fromkeys(numbers))


def _citations(matches) -> tuple[Citation, ...]:
    refs = [Citation(m.group("id"), n) for m in matches for n in _paragraphs(m.group("tail"))]
    return tuple(dict.fromkeys(refs))


def find_citations(text: str) -> list[Mention]:
    """Every citation of `text`, in order: links, bracketed or parenthesised groups of
    references (the brackets are part of the citation), then references in running text."""
    mentions: list[Mention] = []
    taken = np.zeros(len(text) + 1, dtype=bool)

    def add(start: int, end: int, citations: tuple[Citation, ...]) -> None:
        if citations and not taken[start:end].any():
            mentions.append(Mention(start, end, citations))
            taken[start:end] = True

    after_link = 0
    for m in _LINK_PATH.finditer(text):
        start = _LINK_START.search(text, max(m.start() - LINK_REACH, after_link), m.start()).start()
        add(start, m.end(), (Citation(m.group("cable") or m.group("plusd")),))
        after_link = m.end()
    for m in _GROUP.finditer(text):
        body = m.group(1) if m.group(1) is not None else m.group(2)
        if _GROUP_BODY.fullmatch(body):
            add(m.start(), m.end(), _citations(_INSIDE_GROUP.finditer(body)))
    for m in _REFERENCE.finditer(text):
        add(m.start(), m.end(), _citations([m]))
    return sorted(mentions, key=lambda m: m.start)
