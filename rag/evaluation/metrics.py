"""Evaluation metrics: pure functions over plain values, so each can be checked by hand.

A paragraph is a `(cable_id, paragraph)` tuple. A case's gold set holds the paragraphs that
answer it; retrieving or citing any one of them counts. Metrics with no case to average over
are `None` (JSON null), never 0: "no unanswerable case in this suite" is not "all failed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

T = TypeVar("T", bound=Hashable)
Paragraph = tuple[str, int]

UNANSWERABLE = "unanswerable"
MULTI = "multi"
STAGES = ("retrieve", "rank", "answer", "verify", "total")
KS = (1, 5, 10)


def dedupe(items: Iterable[T]) -> list[T]:
    """Items in order, repeats dropped: parts of a split paragraph are one paragraph to a reader."""
    return list(dict.fromkeys(items))


def first_gold_rank(ranked: Sequence[Paragraph], gold: Iterable[Paragraph]) -> int | None:
    """1-based rank of the first gold paragraph in the deduplicated list; None if absent."""
    gold = set(gold)
    return next((i for i, p in enumerate(dedupe(ranked), 1) if p in gold), None)


def hit_at_k(ranked: Sequence[Paragraph], gold: Iterable[Paragraph], k: int) -> bool:
    rank = first_gold_rank(ranked, gold)
    return rank is not None and rank <= k


def reciprocal_rank(ranked: Sequence[Paragraph], gold: Iterable[Paragraph], k: int = 10) -> float:
    rank = first_gold_rank(ranked, gold)
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def all_cables_found(ranked: Sequence[Paragraph], gold: Iterable[Paragraph], k: int = 10) -> bool:
    """Whether every gold cable has a paragraph in the top k: a multi-cable answer needs them all."""
    found = {cable for cable, _ in dedupe(ranked)[:k]}
    return {cable for cable, _ in gold} <= found


def facts_found(text: str, facts: Sequence[Sequence[str]]) -> list[bool]:
    """For each fact, whether the text contains one of its spellings (case-insensitive substring)."""
    lowered = text.lower()
    return [any(s.lower() in lowered for s in spellings) for spellings in facts]


def fact_recall(text: str, facts: Sequence[Sequence[str]]) -> float | None:
    return share(facts_found(text, facts))


def cited_gold(cited: Iterable[Paragraph], gold: Iterable[Paragraph]) -> int:
    """How many distinct shown citations are gold paragraphs."""
    gold = set(gold)
    return sum(1 for c in dedupe(cited) if c in gold)


def citation_precision(cited: Iterable[Paragraph], gold: Iterable[Paragraph]) -> float | None:
    cited = dedupe(cited)
    return ratio(cited_gold(cited, gold), len(cited))


def unretrieved(cited: Iterable[Paragraph], retrieved: Iterable[Paragraph]) -> int:
    """Shown citations naming no retrieved paragraph: the reader could not check them."""
    retrieved = set(retrieved)
    return sum(1 for c in dedupe(cited) if c not in retrieved)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return ratio(sum(map(bool, flags)), len(flags))


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return ratio(sum(values), len(values))


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolating linearly between ranks as numpy does by default."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def group_by(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    """Items grouped by key, groups in order of first appearance."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


@dataclass
class CaseScore:
    """What one case scored; `summarize` pools these. Ranks are over deduplicated paragraphs."""

    kind: str
    gold_rank: int | None
    has_gold: bool
    all_cables: bool | None
    facts_total: int
    facts_found: int
    cited: int
    cited_gold: int
    cited_unretrieved: int
    refused: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    one_line: bool = False
    one_line_right: bool = False

    @property
    def answerable(self) -> bool:
        return self.kind != UNANSWERABLE

    def hit(self, k: int) -> bool:
        return self.gold_rank is not None and self.gold_rank <= k

    @property
    def rr(self) -> float:
        return 1.0 / self.gold_rank if self.hit(10) else 0.0

    @property
    def quality(self) -> float:
        """One number in [0, 1] to rank cases worst first: the mean of what applies to the case."""
        if not self.answerable:
            return float(self.refused)
        parts = [0.0 if self.refused else 1.0, float(self.cited_gold > 0)]
        if self.has_gold:
            parts.append(self.rr)
        if self.facts_total:
            parts.append(self.facts_found / self.facts_total)
        return sum(parts) / len(parts)

    def to_json(self) -> dict:
        return {
            "gold_rank": self.gold_rank, **{f"hit@{k}": self.hit(k) for k in KS}, "rr@10": round(self.rr, 4),
            "all_cables": self.all_cables, "facts_found": self.facts_found, "facts_total": self.facts_total,
            "cited": self.cited, "cited_gold": self.cited_gold, "cited_unretrieved": self.cited_unretrieved,
            "refused": self.refused, "one_line": self.one_line, "one_line_right": self.one_line_right,
            "quality": round(self.quality, 4),
        }


def score_case(kind: str, ranked: Sequence[Paragraph], gold: Iterable[Paragraph], text: str,
               facts: Sequence[Sequence[str]], cited: Sequence[Paragraph], refused: bool,
               timings_ms: dict[str, float] | None = None, one_line: str = "") -> CaseScore:
    """Scores one answered case: `ranked` is what was retrieved in order, `cited` what was shown,
    `one_line` the bold one-line answer shown above it ("" when none was shown)."""
    gold = set(gold)
    found = facts_found(text, facts)
    return CaseScore(
        kind=kind,
        gold_rank=first_gold_rank(ranked, gold),
        has_gold=bool(gold),
        all_cables=all_cables_found(ranked, gold) if kind == MULTI and gold else None,
        facts_total=len(found),
        facts_found=sum(found),
        cited=len(dedupe(cited)),
        cited_gold=cited_gold(cited, gold),
        cited_unretrieved=unretrieved(cited, ranked),
        refused=refused,
        timings_ms=dict(timings_ms or {}),
        one_line=bool(one_line) and not refused,
        one_line_right=bool(one_line) and not refused and any(facts_found(one_line, facts)),
    )


def summarize(scores: Sequence[CaseScore]) -> dict:
    """Pooled metrics of a set of cases, under the report's fixed keys.

    Retrieval metrics average over cases with gold paragraphs; fact recall pools facts, and
    citation precision pools shown citations, over answerable cases.
    """
    ranked = [s for s in scores if s.has_gold]
    answerable = [s for s in scores if s.answerable]
    unanswerable = [s for s in scores if not s.answerable]
    multi = [s for s in scores if s.all_cables is not None]
    shown = [s for s in answerable if s.one_line]
    return {
        "n": len(scores),
        "retrieval": {
            **{f"hit@{k}": share(s.hit(k) for s in ranked) for k in KS},
            "mrr@10": mean(s.rr for s in ranked),
            "multi_all_cables": share(s.all_cables for s in multi),
        },
        "answer": {
            "fact_recall": ratio(sum(s.facts_found for s in answerable), sum(s.facts_total for s in answerable)),
            "citation_precision": ratio(sum(s.cited_gold for s in answerable), sum(s.cited for s in answerable)),
            "citation_recall": share(s.cited_gold > 0 for s in answerable),
            "refusal_accuracy": share(s.refused for s in unanswerable),
            "false_refusal_rate": share(s.refused for s in answerable),
            "unretrieved_citations": sum(s.cited_unretrieved for s in scores),
            "one_line_shown": share(s.one_line for s in answerable),
            "one_line_right": share(s.one_line_right for s in shown),
        },
        "latency_ms": {
            stage: {"median": percentile(times, 50), "p95": percentile(times, 95)}
            for stage in STAGES
            for times in [[s.timings_ms[stage] for s in scores if stage in s.timings_ms]]
        },
    }


def summarize_by_kind(scores: Sequence[CaseScore]) -> dict[str, dict]:
    return {kind: summarize(group) for kind, group in group_by(scores, lambda s: s.kind).items()}
