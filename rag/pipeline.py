"""The pipeline a question runs through: condense → retrieve → answer → verify.

`Pipeline.ask` is the API behind `rag ask`, `rag eval`, the JSON API and the chat app: one
code path, so what the evaluation measures is what users get.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Iterator

from rag.answer import get_answerer
from rag.chat import condense
from rag.cite import REFUSAL, CheckedCitation, Verifier, missing_names
from rag.retrieve import Retriever, open_retriever
from rag.settings import Settings, get_settings
from rag.types import Hit


@dataclass
class Answer:
    question: str
    standalone: str
    text: str
    refused: bool
    backend: str
    citations: list[CheckedCitation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    paragraphs: list[Hit] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    refusal_reason: str = ""
    raw: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "standalone_question": self.standalone,
            "answer": self.text,
            "refused": self.refused,
            "backend": self.backend,
            "citations": [
                {"cable_id": c.citation.cable_id, "paragraph": c.citation.paragraph, "supported": c.supported,
                 "score": round(c.score, 4), "sentence": c.sentence, **({"replaced": c.replaced} if c.replaced else {})}
                for c in self.citations
            ],
            "paragraphs": [paragraph_json(h) for h in self.paragraphs],
            "retrieved": [{**paragraph_json(h), "score": round(h.score, 5), "source": h.source} for h in self.hits],
            "unsupported": self.unsupported,
            "refusal_reason": self.refusal_reason,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


def paragraph_json(hit: Hit) -> dict:
    m = hit.metadata
    return {
        "cable_id": hit.cable_id, "paragraph": hit.paragraph, "subject": m.get("subject", ""),
        "date": m.get("date", ""), "origin": m.get("origin", ""), "classification": m.get("classification", ""),
        "heading": m.get("heading", ""), "text": hit.text,
    }


class Pipeline:
    def __init__(self, settings: Settings | None = None, retriever: Retriever | None = None):
        self.settings = get_settings(settings)
        self.retriever = retriever or open_retriever(self.settings)
        self.answerer = get_answerer(self.settings, self.retriever.encoder)
        self.verifier = Verifier(self.retriever.encoder)

    @property
    def llm(self):
        return getattr(self.answerer, "llm", None)

    def whole_paragraphs(self, hits: list[Hit]) -> list[Hit]:
        """The full text of each cited paragraph, re-joining parts of a split paragraph."""
        out = []
        for hit in hits:
            parts = int(hit.metadata.get("parts", 1))
            if parts > 1:
                stem = hit.chunk_id.rsplit(":", 1)[0]
                pieces = self.retriever.store.get([f"{stem}:{i}" for i in range(parts)])
                hit = replace(hit, text=" ".join(p.text for p in pieces))
            out.append(hit)
        return out

    def stream(self, question: str, history: list[dict] | None = None, filters: dict | None = None) -> Iterator[str | Answer]:
        """Yields the answer's text as it is produced, then the verified `Answer`."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = condense(question, history, self.llm)
        t1 = time.perf_counter()
        timings["condense"] = (t1 - t0) * 1000
        hits = self.retriever.search(standalone, self.settings.top_k, filters)
        t2 = time.perf_counter()
        timings["retrieve"] = (t2 - t1) * 1000
        # The evidence gate, before any backend runs: every name the question asks about must
        # appear in the top paragraphs, or the cables at hand are about something else.
        missing = missing_names(standalone, hits)
        reason = f"no retrieved paragraph mentions {', '.join(missing)}" if missing else ""
        pieces = [REFUSAL] if missing else []
        if not missing:
            for piece in self.answerer.stream(question if not history else standalone, hits):
                pieces.append(piece)
                yield piece
        raw = "".join(pieces)
        t3 = time.perf_counter()
        timings["answer"] = (t3 - t2) * 1000
        verified = self.verifier.verify(raw, hits)
        t4 = time.perf_counter()
        timings["verify"] = (t4 - t3) * 1000
        timings["total"] = (t4 - t0) * 1000
        cited = {c.citation for c in verified.citations}
        seen, paragraphs = set(), []
        for hit in hits:
            if hit.citation in cited and hit.citation not in seen:
                seen.add(hit.citation)
                paragraphs.append(hit)
        yield Answer(
            question=question, standalone=standalone, text=verified.text, refused=verified.refused,
            backend=self.answerer.name, citations=verified.citations, hits=hits,
            paragraphs=self.whole_paragraphs(paragraphs), unsupported=verified.unsupported,
            refusal_reason=reason if verified.refused else "", raw=raw,
            timings_ms=timings,
        )

    def ask(self, question: str, history: list[dict] | None = None, filters: dict | None = None) -> Answer:
        *_, answer = self.stream(question, history, filters)
        return answer
