"""Citations and claims in a text, as people write them: the first half of `rag check`.

A draft, notes, or another tool's answer cites cables in many forms: `[09PHNOMPENH637 ¶6]`,
`09PHNOMPENH637 ¶¶4-6`, `(09PHNOMPENH637 para 6)`, `09PHNOMPENH637:6`, a bare cable id, a
WikiLeaks link. `find_citations` finds them all with their offsets; `split_text` cuts the text into
claims: sentences, where a citation covers the sentence it ends, or every sentence since the
previous citation when it closes a paragraph. Headings, questions and fragments are not claims.
Everything here reads the text in linear time (a 10 MB file of one long word included).
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, field

from rag.citation import Mention, find_citations
from rag.text import content_words, split_sentences

# A sentence with fewer content words than this is not a claim ("See below.", "Sources:").
MIN_CLAIM_WORDS = 2


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
