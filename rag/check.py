"""`rag check`: a text's citations checked against the cables, claim by claim.

A draft, notes, or another tool's answer cites cables the ways people write them:
`[09PHNOMPENH637 ¶6]`, `09PHNOMPENH637 ¶¶4-6`, `(09PHNOMPENH637 para 6)`, a bare cable id, a
WikiLeaks link. The text is cut into claims: sentences, where a citation covers the sentence it
ends, or every sentence since the previous citation when it closes a paragraph. Each citation is
scored against every paragraph of its cable by the answer path's verifier (`rag.cite`: embedding
similarity plus the overlap of names, numbers and words). It is supported when its paragraph
scores SUPPORTED, or at least WEAK while it is the best there is: no other paragraph of its cable
scores higher and none that retrieval finds in the index scores SUPPORTED (a writer's paraphrase
shares fewer words than the quotes the thresholds were set on); never when the claim's figures are
missing from it but stand together in another paragraph of the cable. A cable-level citation is its
cable's best paragraph. When the cited paragraph is not the one that backs the claim, the one that
does is suggested: the best of the same cable, else the best of the index. A claim without a
citation is told what it could cite.

Every claim is encoded in one encoder call; paragraphs are compared through the vectors the store
keeps, so no paragraph is encoded again.
"""

from __future__ import annotations

import bisect
import itertools
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.cite import SUPPORTED, WEAK, Verifier, overlap
from rag.errors import RagError
from rag.retrieve import Retriever
from rag.show import Reference
from rag.text import content_words, numbers, split_sentences
from rag.types import CABLE_ID_PATTERN, Hit

# The largest file `rag check` reads.
MAX_BYTES = 10 * 1024 * 1024
# The longest text the server checks (POST /api/check, the Check tab): about 60 ms a claim on the
# full release (2 cores; retrieval for each claim a citation does not back outright), so 20,000
# characters, some 180 claims, take about 10 s.
MAX_CHECK = 20_000
# Paragraphs retrieval proposes for a claim whose citations do not hold (and for an uncited one).
CANDIDATES = 20
# A range wider than this ("¶¶1-500") is read as its two ends, not expanded.
MAX_RANGE = 30
# A sentence with fewer content words than this is not a claim ("See below.", "Sources:").
MIN_CLAIM_WORDS = 2

# Best first. A claim takes the status of its worst citation, so a claim counts as supported
# only when every citation it carries holds.
STATUSES = ("supported", "weak", "unsupported", "unknown_paragraph", "unknown_cable")
UNCITED = "uncited"


# ── Finding citations ──────────────────────────────────────────────────────────────────────────
# The forms `rag show` reads (rag.show.parse_reference), found in running text: the cable id in
# capitals, the paragraph marker in any case. In prose a number counts as a paragraph only after
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
    references: tuple[Reference, ...]


def _paragraphs(tail: str | None) -> list[int | None]:
    if not tail:
        return [None]
    numbers: list[int] = []
    for first, last in re.findall(r"(\d+)(?:\s*[-–—]\s*(\d+))?", tail):
        a, b = int(first), int(last or first)
        numbers += range(a, b + 1) if 0 <= b - a <= MAX_RANGE else [a, b]
    return list(dict.fromkeys(numbers))


def _references(matches) -> tuple[Reference, ...]:
    refs = [Reference(m.group("id"), n) for m in matches for n in _paragraphs(m.group("tail"))]
    return tuple(dict.fromkeys(refs))


def find_citations(text: str) -> list[Mention]:
    """Every citation of `text`, in order: links, bracketed or parenthesised groups of
    references (the brackets are part of the citation), then references in running text."""
    mentions: list[Mention] = []
    taken = np.zeros(len(text) + 1, dtype=bool)

    def add(start: int, end: int, references: tuple[Reference, ...]) -> None:
        if references and not taken[start:end].any():
            mentions.append(Mention(start, end, references))
            taken[start:end] = True

    after_link = 0
    for m in _LINK_PATH.finditer(text):
        start = _LINK_START.search(text, max(m.start() - LINK_REACH, after_link), m.start()).start()
        add(start, m.end(), (Reference(m.group("cable") or m.group("plusd")),))
        after_link = m.end()
    for m in _GROUP.finditer(text):
        body = m.group(1) if m.group(1) is not None else m.group(2)
        if _GROUP_BODY.fullmatch(body):
            add(m.start(), m.end(), _references(_INSIDE_GROUP.finditer(body)))
    for m in _REFERENCE.finditer(text):
        add(m.start(), m.end(), _references([m]))
    return sorted(mentions, key=lambda m: m.start)


# ── Cutting the text into claims ───────────────────────────────────────────────────────────────
_FENCE = re.compile(r"\s{0,3}(?:```|~~~)")
_RULE = re.compile(r"\s{0,3}(?:[-=*_]\s*){3,}")
_HEADING = re.compile(r"\s{0,3}#{1,6}\s")
# A line that starts a block of its own: a list item, a quote, a table row.
_ITEM = re.compile(r"\s{0,3}(?:[-*+]\s+|\d{1,3}[.)]\s+|>\s?|\|)")
_MD_LINK = re.compile(r"\[([^\[\]]*)\]\([^()]*\)")
_MD_MARKS = re.compile(r"\*\*|__|[*`]|\[\s*\]|\(\s*\)|(?<=\s)_|_(?=\s)")


@dataclass
class _Sentence:
    start: int
    end: int
    block: int
    text: str
    claim: bool
    mentions: list[Mention] = field(default_factory=list)


@dataclass
class Draft:
    """A claim before it is checked: its words (citations removed), its stretch of the text
    (citations included) and the citations that cover it."""

    text: str
    start: int
    end: int
    mentions: list[Mention]


def clean(text: str) -> str:
    """A stretch of the text as a claim to score: citations already blanked out, Markdown links
    reduced to their words, emphasis marks and empty brackets dropped, spaces collapsed."""
    text = _MD_MARKS.sub("", _MD_LINK.sub(r"\1", text))
    text = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(text.split()))
    text = re.sub(r"[,;:]+(?=[.!?]|$)", "", text)  # "…of Justice, [ID ¶2]." leaves "…of Justice."
    return re.sub(r"^[\s.,;:!?|>-]+", "", text).strip()


def _blocks(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, heading) of each block of prose: paragraphs split at blank lines, each
    heading, list item, quote and table row on its own; code fences and rules left out."""
    blocks: list[tuple[int, int, bool]] = []
    start = end = None
    fenced = False
    pos = 0

    def close() -> None:
        nonlocal start, end
        if start is not None:
            blocks.append((start, end, False))
        start = end = None

    for line in text.splitlines(keepends=True):
        at, body = pos, line.rstrip("\r\n")
        pos += len(line)
        if _FENCE.match(body):
            close()
            fenced = not fenced
            continue
        if fenced or not body.strip() or _RULE.fullmatch(body.strip()):
            close()
            continue
        if m := _HEADING.match(body):
            close()
            blocks.append((at + m.end(), at + len(body), True))
            continue
        if m := _ITEM.match(body):
            close()
            start = at + m.end()
        elif start is None:
            start = at
        end = at + len(body)
    close()
    return blocks


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Offsets of the sentences of text[start:end]: split_sentences' pieces found back in the
    text (it joins the pieces of a sentence with one space where the text may have a newline)."""
    spans, pos = [], start
    for sentence in split_sentences(text[start:end], min_chars=0):
        first = None
        for ch in sentence:
            if ch.isspace():
                continue
            while text[pos].isspace():
                pos += 1
            first = pos if first is None else first
            pos += 1
        spans.append((first, pos))
    return spans


def _is_claim(words: str, heading: bool) -> bool:
    return not heading and not words.endswith("?") and len(content_words(words)) >= MIN_CLAIM_WORDS


def split_text(text: str, mentions: list[Mention] | None = None) -> list[Draft]:
    """The claims of `text`, in order: each cited stretch and each uncited sentence that states
    something (no headings, questions or fragments of a word or two)."""
    mentions = find_citations(text) if mentions is None else mentions
    blanked = list(text)
    for m in mentions:
        blanked[m.start : m.end] = " " * (m.end - m.start)
    masked = "".join(blanked)
    sentences = []
    blocks = _blocks(text)
    for b, (start, end, heading) in enumerate(blocks):
        for s, e in _sentence_spans(masked, start, end):
            words = clean(masked[s:e])
            if words:
                sentences.append(_Sentence(s, e, b, words, _is_claim(words, heading)))
    if not sentences:
        return []
    # A citation belongs to the sentence it sits in or follows ("… 2009. [ID ¶1]"); one that
    # opens a block, to the block's first. From a fragment ("Source: ID ¶1") it moves back to the
    # claim before it in the same block.
    starts, block_starts = [s.start for s in sentences], [b[0] for b in blocks]
    for m in mentions:
        i = bisect.bisect_right(starts, m.start) - 1
        block = bisect.bisect_right(block_starts, m.start) - 1
        if i + 1 < len(sentences) and sentences[i + 1].block == block and (i < 0 or sentences[i].block != block):
            i += 1
        i = k = max(i, 0)
        while not sentences[k].claim and k > 0 and sentences[k - 1].block == sentences[i].block:
            k -= 1
        sentences[k if sentences[k].claim else i].mentions.append(m)

    drafts: list[Draft] = []

    def draft(group: list[_Sentence], cited: list[Mention]) -> None:
        start, end = min([group[0].start] + [m.start for m in cited]), max([group[-1].end] + [m.end for m in cited])
        drafts.append(Draft(clean(masked[group[0].start : group[-1].end]), start, end, cited))

    for _, in_block in itertools.groupby(sentences, key=lambda s: s.block):
        block = [s for s in in_block if s.claim or s.mentions]
        pending: list[_Sentence] = []
        for i, s in enumerate(block):
            if not s.mentions:
                pending.append(s)
                continue
            if i == len(block) - 1:  # it closes the paragraph: it covers the sentences since the last citation
                draft(pending + [s], s.mentions)
            else:
                for p in pending:
                    draft([p], [])
                draft([s], s.mentions)
            pending = []
        for p in pending:
            draft([p], [])
    return sorted(drafts, key=lambda d: d.start)


# ── Checking ───────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class Suggestion:
    """A paragraph that backs a claim, and how well."""

    cable_id: str
    paragraph: int
    score: float
    text: str = field(default="", compare=False, repr=False)  # for reports; not in the JSON

    def __str__(self) -> str:
        return f"{self.cable_id} ¶{self.paragraph}"

    def to_json(self) -> dict:
        return {"cable_id": self.cable_id, "paragraph": self.paragraph, "score": round(self.score, 4)}


@dataclass
class CitationCheck:
    """One paragraph (or cable) a claim cites: its status, score, and a better paragraph."""

    cable_id: str
    paragraph: int | None
    status: str
    score: float | None
    suggested: Suggestion | None
    mention: Mention = field(repr=False)
    text: str = field(default="", repr=False)  # the paragraph scored, for reports

    def __str__(self) -> str:
        return str(Reference(self.cable_id, self.paragraph))

    def to_json(self) -> dict:
        return {"cable_id": self.cable_id, "paragraph": self.paragraph, "status": self.status,
                "score": None if self.score is None else round(self.score, 4),
                "suggested": self.suggested.to_json() if self.suggested else None}


@dataclass
class ClaimCheck:
    text: str
    start: int
    end: int
    status: str
    citations: list[CitationCheck]
    suggested: Suggestion | None

    def to_json(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end, "status": self.status,
                "citations": [c.to_json() for c in self.citations],
                "suggested": self.suggested.to_json() if self.suggested else None}


@dataclass
class Report:
    claims: list[ClaimCheck]

    @property
    def citations(self) -> list[CitationCheck]:
        return [c for claim in self.claims for c in claim.citations]

    @property
    def ok(self) -> bool:
        """Every citation supported (a text without citations has none that fail)."""
        return all(c.status == "supported" for c in self.citations)

    @property
    def summary(self) -> dict:
        statuses = [c.status for c in self.claims]
        return {"claims": len(statuses), "cited": sum(s != UNCITED for s in statuses),
                "supported": statuses.count("supported"), "weak": statuses.count("weak"),
                "unsupported": statuses.count("unsupported"),
                "unknown": statuses.count("unknown_paragraph") + statuses.count("unknown_cable"),
                "uncited": statuses.count(UNCITED)}

    def to_json(self) -> dict:
        return {"claims": [c.to_json() for c in self.claims], "summary": self.summary}


_YEAR = re.compile(r"(?:19|20)\d\d")


@dataclass
class _Scored:
    """Support of one claim by each paragraph scored: (cable, ¶) → (score, paragraph text)."""

    claim: str
    scores: dict[tuple[str, int], float] = field(default_factory=dict)
    texts: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, hits: list[Hit], row: np.ndarray, texts: dict[tuple[str, int], str]) -> None:
        # A paragraph split into parts scores as its best part.
        for hit, score in zip(hits, row):
            key = (hit.cable_id, hit.paragraph)
            if score > self.scores.get(key, -1.0):
                self.scores[key] = float(score)
            self.texts.setdefault(key, texts.get(key, hit.text))

    def best(self, cable_id: str | None = None) -> Suggestion | None:
        keys = [k for k in self.scores if cable_id is None or k[0] == cable_id]
        if not keys:
            return None
        key = max(keys, key=lambda k: self.scores[k])
        return Suggestion(*key, self.scores[key], self.texts[key])

    def holds(self, cable_id: str, paragraph: int) -> bool:
        """Whether citing this paragraph supports the claim: it scores SUPPORTED, or at least WEAK
        while it is the best there is, the best of its cable and nothing in the index scoring
        SUPPORTED; and its figures are the claim's (`figures_elsewhere`). The thresholds are the answer path's, set where a claim quotes its paragraph;
        a writer's paraphrase shares fewer of its words, yet the right paragraph still comes out
        on top (evals/check_suite.py measures what this gains and costs)."""
        score = self.scores[(cable_id, paragraph)]
        if self.figures_elsewhere(cable_id, paragraph):
            return False
        if score >= SUPPORTED:
            return True
        return score >= WEAK and score >= self.best(cable_id).score and self.best().score < SUPPORTED

    def figures_elsewhere(self, cable_id: str, paragraph: int) -> bool:
        """Whether the claim states a number this paragraph lacks and another of its cable holds
        all the claim's numbers: the figure comes from there ("300 arrests" cited to the paragraph
        that says 100). Numbers are what a wrong citation gets wrong, and similarity barely sees them;
        years are left out, as a paragraph often leaves its year to the cable's date."""
        stated = {n for n in numbers(self.claim) if not _YEAR.fullmatch(n)}
        if not stated or stated <= numbers(self.texts[(cable_id, paragraph)]):
            return False
        return any(stated <= numbers(text) for (c, p), text in self.texts.items() if c == cable_id and p != paragraph)

    def status(self, cable_id: str, paragraph: int) -> str:
        if self.holds(cable_id, paragraph):
            return "supported"
        return "weak" if self.scores[(cable_id, paragraph)] >= WEAK else "unsupported"


class Checker:
    """Checks texts against one index: `check(text)` is the API."""

    def __init__(self, retriever: Retriever, verifier: Verifier | None = None, candidates: int = CANDIDATES):
        self.retriever = retriever
        self.verifier = verifier or Verifier(retriever.encoder)
        self.candidates = candidates

    def cables(self, cable_ids: set[str]) -> tuple[dict[str, list[Hit]], dict[tuple[str, int], str]]:
        """Every stored chunk of these cables (one read), and each paragraph's whole text."""
        by_cable: dict[str, list[Hit]] = {c: [] for c in cable_ids}
        for hit in self.retriever.store.get(self.retriever.lexical.ids_of_cables(sorted(cable_ids))):
            by_cable[hit.cable_id].append(hit)
        texts: dict[tuple[str, int], list[Hit]] = {}
        for hits in by_cable.values():
            hits.sort(key=lambda h: (h.paragraph, h.metadata.get("occurrence", 0), h.metadata.get("part", 0)))
            for hit in hits:
                texts.setdefault((hit.cable_id, hit.paragraph), []).append(hit)
        return by_cable, {k: " ".join(h.text for h in hs) for k, hs in texts.items()}

    def check(self, text: str) -> Report:
        drafts = split_text(text)
        if not drafts:
            return Report([])
        vectors = self.retriever.encoder.encode_documents([d.text for d in drafts])
        cited = {r.cable_id for d in drafts for m in d.mentions for r in m.references}
        cables, texts = self.cables(cited)
        return Report([self.check_claim(d, v, cables, texts) for d, v in zip(drafts, vectors)])

    def _score(self, draft: Draft, vector: np.ndarray, hits: list[Hit], texts: dict, into: _Scored) -> None:
        if hits:
            into.add(hits, self.verifier.support([draft.text], hits, vector[None])[0], texts)

    def check_claim(self, draft: Draft, vector: np.ndarray, cables: dict[str, list[Hit]],
                    texts: dict[tuple[str, int], str]) -> ClaimCheck:
        scored = _Scored(draft.text)
        refs = [(m, r) for m in draft.mentions for r in m.references]
        self._score(draft, vector, [h for c in dict.fromkeys(r.cable_id for _, r in refs) for h in cables[c]],
                    texts, scored)
        # Retrieval, unless each citation's paragraph backs the claim outright: weaker support
        # counts only when nothing in the index does better, and a suggestion may come from there.
        outright = [scored.scores.get((r.cable_id, r.paragraph), 0.0) if r.paragraph is not None
                    else getattr(scored.best(r.cable_id), "score", 0.0) for _, r in refs]
        if not refs or min(outright) < SUPPORTED:
            found = self.retriever.search(draft.text, self.candidates, vector=vector)
            self._score(draft, vector, [h for h in found if (h.cable_id, h.paragraph) not in scored.scores],
                        texts, scored)
        index_best = scored.best()
        if not refs:
            suggested = index_best if index_best and scored.holds(index_best.cable_id, index_best.paragraph) else None
            return ClaimCheck(draft.text, draft.start, draft.end, UNCITED, [], suggested)
        checks = [self.check_citation(m, r, scored) for m, r in refs]
        status = max((c.status for c in checks), key=STATUSES.index)
        return ClaimCheck(draft.text, draft.start, draft.end, status, checks, None)

    @staticmethod
    def check_citation(mention: Mention, ref: Reference, scored: _Scored) -> CitationCheck:
        cable_best, index_best = scored.best(ref.cable_id), scored.best()
        # A cable-level citation is its cable's best paragraph.
        cited = (ref.cable_id, ref.paragraph if ref.paragraph is not None or cable_best is None
                 else cable_best.paragraph)
        if cable_best is None:
            status, score, text = "unknown_cable", None, ""
        elif cited not in scored.scores:
            status, score, text = "unknown_paragraph", None, ""
        else:
            status, score, text = scored.status(*cited), scored.scores[cited], scored.texts[cited]
        # A suggestion would check as supported if cited: the best paragraph of the cable, else of the index.
        suggested = None
        if status != "supported" or ref.paragraph is None:
            suggested = next((s for s in (cable_best, index_best) if s and scored.holds(s.cable_id, s.paragraph)
                              and (ref.paragraph is None or (s.cable_id, s.paragraph) != cited)), None)
        return CitationCheck(ref.cable_id, ref.paragraph, status, score, suggested, mention, text)


# ── Input and output ───────────────────────────────────────────────────────────────────────────
def check_text(text: str, source: str = "the text") -> str:
    """`text` when it is something to check; a one-line RagError for an empty or binary one."""
    if "\x00" in text:
        raise RagError(f"{source} is binary, not text")
    if not text.strip():
        raise RagError(f"{source} is empty")
    return text


def read_text(path: str) -> str:
    """The text of a file, or of stdin for "-"; RagError (one line) for a missing, binary,
    empty or over-large one."""
    source = "stdin" if path == "-" else path
    try:
        if path == "-":
            if sys.stdin.isatty():
                raise RagError("no text to check: give a FILE, or pipe the text in (rag check - < draft.md)")
            data = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            file = Path(path).expanduser()
            if file.is_dir():
                raise RagError(f"{path} is a directory, not a text file")
            if file.stat().st_size > MAX_BYTES:
                raise RagError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MB")
            data = file.read_bytes()
    except OSError as exc:
        raise RagError(f"cannot read {source}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise RagError(f"{source} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RagError(f"{source} is binary, not UTF-8 text") from None
    return check_text(text, source)


SYMBOLS = {"supported": "✓", "weak": "~", "unsupported": "✗", "unknown_paragraph": "?", "unknown_cable": "?",
           UNCITED: "·"}
WIDTH = 100


def excerpt(paragraph: str, claim: str, width: int = 240) -> str:
    """The paragraph's sentence that shares most with the claim, cut to `width` characters."""
    sentences = split_sentences(paragraph, min_chars=0) or [paragraph]
    best = max(sentences, key=lambda s: overlap(claim, s))
    return best if len(best) <= width else best[: width - 1].rsplit(" ", 1)[0] + " …"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def format_report(report: Report, text: str) -> str:
    """The report for a terminal: each claim with its line, each citation's status and score,
    the sentence of the paragraph that matches best, and what to cite instead."""
    out = []
    wrap = dict(width=WIDTH, break_on_hyphens=False, break_long_words=False)
    for claim in report.claims:
        head = f"line {_line_of(text, claim.start)} [{claim.status}] "
        out.append(textwrap.fill(claim.text, initial_indent=head, subsequent_indent="    ", **wrap))
        for c in claim.citations:
            score = "" if c.score is None else f" {c.score:.2f}"
            what = {"unknown_cable": "not in this index",
                    "unknown_paragraph": "the cable prints no such paragraph"}.get(c.status, "")
            resolved = f" (best: ¶{c.suggested.paragraph})" if c.paragraph is None and c.suggested \
                and c.suggested.cable_id == c.cable_id else ""
            out.append(f"  {SYMBOLS[c.status]} {c}{resolved}: {c.status}{score}" + (f" — {what}" if what else ""))
            if c.text and c.paragraph is not None:
                out.append(textwrap.fill(f"“{excerpt(c.text, claim.text)}”", initial_indent="      ",
                                         subsequent_indent="      ", **wrap))
            if c.suggested and not resolved:
                out.append(f"    → cite {c.suggested} instead ({c.suggested.score:.2f})")
            if c.suggested:
                out.append(textwrap.fill(f"“{excerpt(c.suggested.text, claim.text)}”", initial_indent="      ",
                                         subsequent_indent="      ", **wrap))
        if claim.suggested:
            out.append(f"    → you could cite {claim.suggested} ({claim.suggested.score:.2f})")
            out.append(textwrap.fill(f"“{excerpt(claim.suggested.text, claim.text)}”", initial_indent="      ",
                                     subsequent_indent="      ", **wrap))
        out.append("")
    s = report.summary
    out.append(f"{s['claims']} claims: {s['cited']} cited ({s['supported']} supported, {s['weak']} weak, "
               f"{s['unsupported']} unsupported, {s['unknown']} unknown), {s['uncited']} uncited")
    return "\n".join(out)


def annotate(report: Report, text: str) -> str:
    """The text back with each citation followed by its status (and what to cite instead), and
    each uncited claim that could cite a paragraph followed by it."""
    notes: dict[int, list[str]] = {}
    for claim in report.claims:
        for c in claim.citations:
            note = f"{c.status}" + ("" if c.score is None else f" {c.score:.2f}")
            if c.suggested:
                note += f"; {'best' if c.paragraph is None and c.suggested.cable_id == c.cable_id else 'cite'} " \
                        f"{c.suggested}"
            label = f"¶{c.paragraph}: " if c.paragraph is not None and len(c.mention.references) > 1 else ""
            notes.setdefault(_after(text, c.mention), []).append(label + note)
        if claim.suggested:
            notes.setdefault(claim.end, []).append(f"uncited; could cite {claim.suggested}")
    out, last = [], 0
    for at in sorted(notes):
        out += [text[last:at], " *(" + "; ".join(dict.fromkeys(notes[at])) + ")*"]
        last = at
    return "".join(out + [text[last:]])


def _after(text: str, mention: Mention) -> int:
    """Where a citation's note goes: after it, or after the Markdown link whose target it is."""
    if text[mention.start - 2 : mention.start] == "](" and text[mention.end : mention.end + 1] == ")":
        return mention.end + 1
    if text[mention.start - 1 : mention.start] == "<" and text[mention.end : mention.end + 1] == ">":
        return mention.end + 1
    return mention.end
