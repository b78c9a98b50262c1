"""`rag check`: a text's citations checked against the cables, claim by claim.

The text's citations and claims come from `rag.check.claims` (every form people write; a citation
covers the sentence it ends, or the sentences since the last when it closes a paragraph). Each
citation is
scored against every paragraph of its cable by the answer path's verifier (`rag.check.cite`: embedding
similarity plus the overlap of names, numbers and words). It is supported when its paragraph
scores SUPPORTED, or at least WEAK while it is the best there is: no other paragraph of its cable
scores higher and none that retrieval finds in the index scores SUPPORTED (a writer's paraphrase
shares fewer words than the quotes the thresholds were set on); never when the claim's figures are
missing from it but stand together in another paragraph of the cable. A cable-level citation is its
cable's best paragraph. When the cited paragraph is not the one that backs the claim, the one that
does is suggested: the best of the same cable, else the best of the index. A claim without a
citation is told what it could cite.

Claims are checked in blocks of BLOCK: each block's claims are encoded in one encoder call and
retrieved for in one batched search (`Retriever.search_many`), and its verdicts are yielded as
soon as it is done (`Checker.claims`), so a long text shows progress. Paragraphs are compared
through the vectors the store keeps, so no paragraph is encoded again.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from rag.answer.retrieve import Retriever
from rag.check.cite import SUPPORTED, WEAK, Verifier, overlap
from rag.check.claims import Draft, split_text
from rag.citation import Citation, Mention
from rag.errors import RagError
from rag.text import numbers, split_sentences
from rag.types import Hit

# The most `rag check` reads of a file, device or stdin (`--max-bytes` changes it): some 300
# pages, about three minutes of checking on 2 cores (bench/check_bench.py).
MAX_BYTES = 2 * 1024 * 1024
# The longest text the server checks (POST /api/check, the Check tab): about 60 ms a claim on the
# full release (2 cores; retrieval for each claim a citation does not back outright), so 20,000
# characters, some 180 claims, take about 10 s.
MAX_CHECK = 20_000
# Paragraphs retrieval proposes for a claim whose citations do not hold (and for an uncited one).
CANDIDATES = 20
# Claims encoded, searched and scored together: one encoder call, one read of the store and one
# batched retrieval per block rather than per claim; small enough that `rag check` shows the
# first verdicts within a second or two.
BLOCK = 64

# Best first. A claim takes the status of its worst citation, so a claim counts as supported
# only when every citation it carries holds.
STATUSES = ("supported", "weak", "unsupported", "unknown_paragraph", "unknown_cable")
UNCITED = "uncited"


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
        return str(Citation(self.cable_id, self.paragraph))

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
        return Report(list(self.claims(split_text(text))))

    def claims(self, drafts: list[Draft]) -> Iterator[ClaimCheck]:
        """The check of each claim, in order, each block of BLOCK yielded as soon as it is done
        (`rag check` prints them as they come)."""
        for start in range(0, len(drafts), BLOCK):
            yield from self._block(drafts[start : start + BLOCK])

    def _block(self, drafts: list[Draft]) -> list[ClaimCheck]:
        """Claims checked together: one encoder call, one read of their cables, one batched
        retrieval for those whose citations do not hold outright."""
        vectors = self.retriever.encoder.encode_documents([d.text for d in drafts])
        cables, texts = self.cables({r.cable_id for d in drafts for m in d.mentions for r in m.citations})
        scored = [self._score_cited(d, v, cables, texts) for d, v in zip(drafts, vectors)]
        searching = [i for i, (d, s) in enumerate(zip(drafts, scored)) if self._needs_search(d, s)]
        found = self.retriever.search_many([drafts[i].text for i in searching], self.candidates, vectors[searching])
        for i, hits in zip(searching, found):
            self._score(drafts[i], vectors[i], [h for h in hits if (h.cable_id, h.paragraph) not in scored[i].scores],
                        texts, scored[i])
        return [self._verdict(d, s) for d, s in zip(drafts, scored)]

    def _score(self, draft: Draft, vector: np.ndarray, hits: list[Hit], texts: dict, into: _Scored) -> None:
        if hits:
            into.add(hits, self.verifier.support([draft.text], hits, vector[None])[0], texts)

    def _score_cited(self, draft: Draft, vector: np.ndarray, cables: dict[str, list[Hit]],
                     texts: dict[tuple[str, int], str]) -> _Scored:
        """The claim scored against every paragraph of the cables it cites."""
        scored = _Scored(draft.text)
        cited = dict.fromkeys(r.cable_id for m in draft.mentions for r in m.citations)
        self._score(draft, vector, [h for c in cited for h in cables[c]], texts, scored)
        return scored

    @staticmethod
    def _needs_search(draft: Draft, scored: _Scored) -> bool:
        """Retrieval, unless each citation's paragraph backs the claim outright: weaker support
        counts only when nothing in the index does better, and a suggestion may come from there."""
        refs = [r for m in draft.mentions for r in m.citations]
        outright = [scored.scores.get((r.cable_id, r.paragraph), 0.0) if r.paragraph is not None
                    else getattr(scored.best(r.cable_id), "score", 0.0) for r in refs]
        return not refs or min(outright) < SUPPORTED

    def _verdict(self, draft: Draft, scored: _Scored) -> ClaimCheck:
        refs = [(m, r) for m in draft.mentions for r in m.citations]
        index_best = scored.best()
        if not refs:
            suggested = index_best if index_best and scored.holds(index_best.cable_id, index_best.paragraph) else None
            return ClaimCheck(draft.text, draft.start, draft.end, UNCITED, [], suggested)
        checks = [self.check_citation(m, r, scored) for m, r in refs]
        status = max((c.status for c in checks), key=STATUSES.index)
        return ClaimCheck(draft.text, draft.start, draft.end, status, checks, None)

    @staticmethod
    def check_citation(mention: Mention, ref: Citation, scored: _Scored) -> CitationCheck:
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


def size_words(n: int) -> str:
    """A byte count as people say it: "2 MB" when it is a whole number of MiB."""
    return f"{n // 2**20} MB" if n >= 2**20 and n % 2**20 == 0 else f"{n:,} bytes"


def read_text(path: str, max_bytes: int = MAX_BYTES) -> str:
    """The text of a file, or of stdin for "-"; RagError (one line) for a missing, binary,
    empty or over-large one. At most `max_bytes` + 1 bytes are read, whatever the file is: a
    device (/dev/zero, /dev/urandom), a pipe or a file that grows as it is read."""
    source = "stdin" if path == "-" else path
    too_large = RagError(f"{source} is larger than {size_words(max_bytes)}: check a part of it, "
                         "or raise the limit with --max-bytes")
    try:
        if path == "-":
            if sys.stdin.isatty():
                raise RagError("no text to check: give a FILE, or pipe the text in (rag check - < draft.md)")
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            file = Path(path).expanduser()
            if file.is_dir():
                raise RagError(f"{path} is a directory, not a text file")
            if file.is_file() and file.stat().st_size > max_bytes:
                raise too_large  # refused unread
            with open(file, "rb") as f:
                data = f.read(max_bytes + 1)
    except OSError as exc:
        raise RagError(f"cannot read {source}: {exc.strerror or exc}") from None
    # NUL bytes first: /dev/zero is binary before it is too large.
    if b"\x00" in data:
        raise RagError(f"{source} is binary, not text")
    if len(data) > max_bytes:
        raise too_large
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


def format_claim(claim: ClaimCheck, text: str) -> str:
    """One claim for a terminal: its line, each citation's status and score, the sentence of
    the paragraph that matches best, and what to cite instead."""
    out = []
    wrap = dict(width=WIDTH, break_on_hyphens=False, break_long_words=False)
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
    return "\n".join(out) + "\n"


def format_summary(report: Report) -> str:
    s = report.summary
    return (f"{s['claims']} claims: {s['cited']} cited ({s['supported']} supported, {s['weak']} weak, "
            f"{s['unsupported']} unsupported, {s['unknown']} unknown), {s['uncited']} uncited")


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
            label = f"¶{c.paragraph}: " if c.paragraph is not None and len(c.mention.citations) > 1 else ""
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
