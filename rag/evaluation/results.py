"""One case's result in one configuration: what `rag eval` keeps of an answer, and its JSON."""

from __future__ import annotations

from dataclasses import dataclass

from rag.citation import Citation
from rag.evaluation.metrics import CaseScore, Paragraph, facts_found
from rag.evaluation.suite import Case


@dataclass
class CaseResult:
    case: Case
    config: str
    answer: object  # rag.answer.pipeline.Answer
    score: CaseScore

    def to_json(self, gold_texts: dict[Paragraph, str]) -> dict:
        """Everything needed to debug one case of one configuration."""
        a, case = self.answer, self.case
        retrieved = {(h.cable_id, h.paragraph) for h in a.hits}
        return {
            "id": case.id, "kind": case.kind, "line": case.line, "config": self.config,
            "question": case.question, "standalone_question": a.standalone,
            "history": list(case.history), "filters": case.filters.to_json(),
            "answer": a.text, "one_line": a.short_answer, "refused": a.refused, "backend": a.backend, "reference_answer": case.answer,
            "citations": [
                {"cable_id": c.citation.cable_id, "paragraph": c.citation.paragraph, "supported": c.supported,
                 "score": round(c.score, 4), "gold": key(c.citation) in case.gold,
                 "retrieved": key(c.citation) in retrieved, **({"replaced": c.replaced} if c.replaced else {})}
                for c in a.citations
            ],
            "unsupported": a.unsupported,
            "retrieved": [
                {"rank": rank, "cable_id": h.cable_id, "paragraph": h.paragraph, "chunk_id": h.chunk_id,
                 "score": round(h.score, 5), "source": h.source, "gold": (h.cable_id, h.paragraph) in case.gold}
                for rank, h in enumerate(a.hits, 1)
            ],
            "gold": [{"cable_id": c, "paragraph": p, "text": gold_texts.get((c, p))} for c, p in case.citations],
            "facts": [{"spellings": list(f), "found": found}
                      for f, found in zip(case.facts, facts_found(answer_text(a.text), case.facts))],
            "metrics": self.score.to_json(),
            "timings_ms": {k: round(v, 1) for k, v in a.timings_ms.items()},
        }


def key(citation: Citation) -> Paragraph:
    return (citation.cable_id, citation.paragraph)


def answer_text(text: str) -> str:
    """The answer without its citation tags: a fact like "20" must not match a cable id."""
    return Citation.PATTERN.sub("", text)
