"""Citation verification, for every backend: no answer shows a citation the reader can't check.

Each sentence's tags are parsed. A tag naming no retrieved paragraph is never shown: it is
replaced by the retrieved paragraph that best supports the sentence, or dropped. Each cited
sentence is scored against its paragraph (embedding similarity plus overlap of names and
numbers) and marked supported or weak; a sentence nothing supports is flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rag.citation import Citation
from rag.index.embed import Encoder
from rag.text import content_words, names, numbers, split_sentences
from rag.types import Hit

REFUSAL = "The cables in this index do not answer that question."
# Phrases an LLM uses when it declines; any of them turns the answer into the refusal.
_DECLINES = ("do not answer", "don't answer", "does not answer", "cannot answer", "can't answer",
             "not contain", "no information", "do not contain", "don't contain", "not mentioned",
             "do not say", "does not say", "not enough information")

SUPPORTED = 0.55
WEAK = 0.35


@dataclass
class CheckedCitation:
    citation: Citation
    sentence: str
    score: float
    supported: bool
    replaced: str = ""  # the tag the model wrote, when it named no retrieved paragraph

    @property
    def status(self) -> str:
        return "supported" if self.supported else "weak"


@dataclass
class Verified:
    text: str
    citations: list[CheckedCitation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    refused: bool = False
    dropped: list[str] = field(default_factory=list)

    @property
    def cited(self) -> list[Citation]:
        return list(dict.fromkeys(c.citation for c in self.citations))


def is_refusal(text: str) -> bool:
    lowered = " ".join(text.lower().split())
    return not lowered or REFUSAL.lower() in lowered or (
        any(p in lowered for p in _DECLINES) and not Citation.find_all(text)
    )


def overlap(sentence: str, paragraph: str) -> float:
    """Share of the sentence's names, numbers and content words that the paragraph contains.
    Names and numbers weigh double: they are what a wrong citation gets wrong."""
    keys, words = _sentence_terms(sentence)
    if not keys and not words:
        return 0.0
    para_lower, para_words = _paragraph_terms(paragraph)
    found = sum(2 for k in keys if k in para_lower) + sum(1 for w in words if w in para_words)
    return found / (2 * len(keys) + len(words))


# A sentence is scored against every candidate paragraph, and a paragraph against every claim
# that cites its cable (`rag check`: some 20 each): their words are read once, not each time.
@lru_cache(maxsize=4096)
def _sentence_terms(sentence: str) -> tuple[frozenset[str], frozenset[str]]:
    keys = names(sentence) | numbers(sentence)
    return frozenset(keys), frozenset(content_words(sentence) - keys)


@lru_cache(maxsize=4096)
def _paragraph_terms(paragraph: str) -> tuple[str, frozenset[str]]:
    return paragraph.lower(), frozenset(content_words(paragraph))


@dataclass
class Claim:
    """A stretch of answer text and the tags written after it (none for an untagged stretch)."""

    text: str
    tags: list[Citation]
    tail: str = ""  # punctuation that followed the tags ("… [ID ¶N].")


_LEADING_PUNCT = re.compile(r"^[\s.,;:!?]+")


def split_claims(answer: str) -> list[Claim]:
    """Cut the answer after each group of tags: the text before a group is what it cites.
    Text after the last group, or an answer with no tags, is split into sentences, each an
    untagged claim for the verifier to attribute or flag."""
    claims: list[Claim] = []
    pos = 0
    matches = Citation.find_all(answer)
    i = 0
    while i < len(matches):
        group = [matches[i]]
        while i + 1 < len(matches) and not answer[group[-1][0].end() : matches[i + 1][0].start()].strip(" ,;"):
            i += 1
            group.append(matches[i])
        text = _LEADING_PUNCT.sub("", answer[pos : group[0][0].start()]).strip()
        end = group[-1][0].end()
        tail = re.match(r"[.,;:!?]*", answer[end:]).group(0)
        claims.append(Claim(text, [c for _, c in group], tail))
        pos = end + len(tail)
        i += 1
    rest = answer[pos:].strip()
    claims.extend(Claim(sentence, []) for sentence in split_sentences(rest, min_chars=0) if re.search(r"\w", sentence))
    return claims


class Verifier:
    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def support(self, claims: list[str], hits: list[Hit], claim_vectors: np.ndarray | None = None) -> np.ndarray:
        """support[i, j]: how well paragraph j backs claim i, in [0, 1]. `claim_vectors` are the
        claims' embeddings when the caller has them (rag.check.checker encodes every claim in one call)."""
        if not claims or not hits:
            return np.zeros((len(claims), len(hits)))
        missing = [h.text for h in hits if h.vector is None]
        if claim_vectors is None:
            vectors = self.encoder.encode_documents(claims + missing)
            claim_vecs, fresh = vectors[: len(claims)], iter(vectors[len(claims):])
        else:
            claim_vecs, fresh = claim_vectors, iter(self.encoder.encode_documents(missing) if missing else [])
        para_vecs = np.stack([h.vector if h.vector is not None else next(fresh) for h in hits])
        sims = claim_vecs @ para_vecs.T
        lex = np.array([[overlap(c, h.text) for h in hits] for c in claims])
        return 0.5 * np.clip(sims, 0, 1) + 0.5 * lex

    def check(self, claim: Claim, row: np.ndarray, hits: list[Hit], by_citation: dict, out: Verified) -> list[CheckedCitation]:
        """The citations shown for one claim: its tags that name retrieved paragraphs, tags that
        don't replaced by the best-supporting retrieved paragraph, or one found for an untagged claim."""
        best = int(np.argmax(row)) if len(row) else None
        kept: list[CheckedCitation] = []
        for tag in claim.tags:
            j = by_citation.get(tag)
            if j is not None:
                kept.append(CheckedCitation(tag, claim.text, float(row[j]), bool(row[j] >= SUPPORTED)))
            elif best is not None and row[best] >= WEAK:
                kept.append(CheckedCitation(hits[best].citation, claim.text, float(row[best]),
                                            bool(row[best] >= SUPPORTED), replaced=tag.tag))
            else:
                out.dropped.append(tag.tag)
        if not claim.tags and best is not None and row[best] >= SUPPORTED:
            kept.append(CheckedCitation(hits[best].citation, claim.text, float(row[best]), True))
        return list({c.citation: c for c in kept}.values())

    def verify(self, answer: str, hits: list[Hit]) -> Verified:
        if is_refusal(answer):
            return Verified(REFUSAL, refused=True)
        # One shown citation per paragraph: parts of a split paragraph cite the same ¶.
        by_citation: dict[Citation, int] = {}
        for j, hit in enumerate(hits):
            by_citation.setdefault(hit.citation, j)
        claims = [c for c in split_claims(answer) if c.text]
        support = self.support([c.text for c in claims], hits)
        out = Verified("")
        rendered = []
        for claim, row in zip(claims, support):
            kept = self.check(claim, row, hits, by_citation, out)
            if not any(c.supported for c in kept):
                out.unsupported.append(claim.text)
            out.citations.extend(kept)
            rendered.append(" ".join([claim.text] + [c.citation.tag for c in kept]) + claim.tail)
        out.text = " ".join(rendered)
        if not out.text.strip():
            return Verified(REFUSAL, refused=True, dropped=out.dropped)
        return out
