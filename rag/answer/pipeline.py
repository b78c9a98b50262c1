"""The pipeline a question runs through: condense → retrieve → rank → check evidence → answer → verify.

`Pipeline.ask` is the API behind `rag ask`, `rag eval`, the JSON API and the chat app: one
code path, so what the evaluation measures is what users get.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

from rag.answer.backends import Answerer, ExtractiveAnswerer, get_answerer
from rag.answer.chat import condense
from rag.answer.evidence import EvidenceCheck, Verdict, filter_reason
from rag.answer.question import Question, analyse, parts
from rag.answer.rank import Candidate, Ranker, candidates, load_model
from rag.answer.retrieve import Retriever, open_retriever
from rag.answer.short_answer import ShortAnswer, lead_with
from rag.check.cite import REFUSAL, CheckedCitation, Verifier
from rag.filters import Filters
from rag.settings import Settings, get_settings
from rag.types import Hit

# Candidates the second ranking stage reorders: deep enough to hold the answering paragraph
# when fusion ranks it low, shallow enough to stay within the latency budget.
CANDIDATES = 40


@dataclass
class Answer:
    question: str
    standalone: str
    text: str
    refused: bool
    backend: str
    short_answer: str = ""
    citations: list[CheckedCitation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    paragraphs: list[Hit] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    refusal_reason: str = ""
    raw: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The generation of the index it was answered from, where a server answers across several.
    generation: int | None = None

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "standalone_question": self.standalone,
            "answer": self.text,
            "short_answer": self.short_answer,
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
            **({"generation": self.generation} if self.generation is not None else {}),
        }


def paragraph_json(hit: Hit) -> dict:
    m = hit.metadata
    return {
        "cable_id": hit.cable_id, "paragraph": hit.paragraph, "subject": m.get("subject", ""),
        "date": m.get("date", ""), "origin": m.get("origin", ""), "classification": m.get("classification", ""),
        "heading": m.get("heading", ""), "text": hit.text,
    }


class Pipeline:
    def __init__(self, settings: Settings | None = None, retriever: Retriever | None = None,
                 ranker: Ranker | None = None, evidence: EvidenceCheck | None = None, answerer: Answerer | None = None):
        self.settings = get_settings(settings)
        self.retriever = retriever or open_retriever(self.settings)
        self.answerer = answerer or get_answerer(self.settings, self.retriever.encoder, self.retriever.sentences)
        self.verifier = Verifier(self.retriever.encoder)
        self.ranker = ranker or Ranker(load_model("ranker.json") if self.settings.rank else None)
        # The evidence model reads the ranker's scores: without the ranker only the stated checks run.
        self.evidence = evidence or EvidenceCheck(load_model("evidence.json") if self.settings.rank else None)
        self.short = ShortAnswer(load_model("one_line.json") if self.settings.one_line else None)

    def over(self, retriever: Retriever) -> Pipeline:
        """This pipeline over another retriever (a newer generation of the index), sharing the
        backend, the verifier and the models instead of building them again."""
        moved = copy.copy(self)
        moved.retriever = retriever
        if isinstance(self.answerer, ExtractiveAnswerer):
            moved.answerer = self.answerer.over(retriever.sentences)
        return moved

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

    def candidates(self, question: str, standalone: str, filters: Filters) -> tuple[Question, list[Candidate]]:
        """Retrieval's candidates for the stand-alone question, each with its ranking features
        (from the user's own words), in retrieval order."""
        vector = self.retriever.encoder.encode_query(standalone)
        hits = self.retriever.search(standalone, max(CANDIDATES, self.settings.top_k), filters, vector=vector)
        asked = analyse(question, context=standalone) if standalone != question else analyse(question)
        return asked, candidates(asked, hits, vector, self.retriever.lexical)

    def part_hits(self, piece: str, filters: Filters) -> list[Hit]:
        """The best paragraphs for one part of a question in several parts, searched on its own:
        one search for the whole question finds one part's paragraph and rarely the other's,
        which is often in another cable."""
        _, found = self.candidates(piece, piece, filters)
        return [c.hit for c in self.ranker.rank(found)[: self.settings.top_k]]

    def judge(self, question: Question, ranked: list[Candidate], filters: Filters) -> Verdict:
        if not self.settings.refuse:
            return Verdict(True)
        lexical = self.retriever.lexical
        if filters and not ranked and lexical.exists():
            return Verdict(False, filter_reason(filters, lexical.vocabulary()))
        if question.cable_ids and lexical.exists():
            absent = [c for c in question.cable_ids if not len(lexical.cable_rows(c))]
            if absent:
                return Verdict(False, f"cable {absent[0]} is not in this index")
        return self.evidence.judge(question, ranked, lexical)

    def stream(self, question: str, history: list[dict] | None = None,
               filters: Filters = Filters()) -> Iterator[str | Answer]:
        """Yields the answer's text as it is produced, then the verified `Answer`."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = condense(question, history, self.llm)
        t1 = time.perf_counter()
        timings["condense"] = (t1 - t0) * 1000
        asked, found = self.candidates(question, standalone, filters)
        t2 = time.perf_counter()
        timings["retrieve"] = (t2 - t1) * 1000
        ranked = self.ranker.rank(found, asked)
        hits = [c.hit for c in ranked[: self.settings.top_k]]
        # The evidence check, before any backend runs: a question the paragraphs do not answer
        # is refused with its reason, whatever a backend would have made of them.
        verdict = self.judge(asked, ranked, filters)
        t3 = time.perf_counter()
        timings["rank"] = (t3 - t2) * 1000
        pieces = [] if verdict.answerable else [REFUSAL]
        split = parts(question) if verdict.answerable and not history and self.answerer.answers_parts else []
        if len(split) > 1:
            # The first part is answered from the whole question's paragraphs, the others from their own.
            answered = [(split[0], hits)] + [(piece, self.part_hits(piece, filters)) for piece in split[1:]]
            for hit in (h for _, part in answered[1:] for h in part):
                if all(hit.chunk_id != h.chunk_id for h in hits):
                    hits.append(hit)
            for piece in self.answerer.stream_parts(answered):
                pieces.append(piece)
                yield piece
        elif verdict.answerable:
            asked_as = standalone if history and self.answerer.wants_standalone else question
            for piece in self.answerer.stream(asked_as, hits):
                pieces.append(piece)
                yield piece
        raw = "".join(pieces)
        t4 = time.perf_counter()
        timings["answer"] = (t4 - t3) * 1000
        verified = self.verifier.verify(raw, hits)
        one_line = None if verified.refused else self.short.best(
            asked, verified.text, {c.citation: c.score for c in verified.citations}, hits)
        if one_line and (one_line.shown or (one_line.asked and len(split) <= 1)):
            # Below the threshold no span is shown, but the claim holding the best span of the
            # kind asked still states the asked thing: it is quoted first (save in an answer in
            # parts, which keeps the question's order).
            verified = replace(verified, text=lead_with(verified.text, one_line.claim, one_line.start))
        t5 = time.perf_counter()
        timings["verify"] = (t5 - t4) * 1000
        timings["total"] = (t5 - t0) * 1000
        cited = {c.citation for c in verified.citations}
        seen, paragraphs = set(), []
        for hit in hits:
            if hit.citation in cited and hit.citation not in seen:
                seen.add(hit.citation)
                paragraphs.append(hit)
        reason = verdict.reason or ("the best paragraphs did not support an answer" if verified.refused else "")
        yield Answer(
            question=question, standalone=standalone, text=verified.text, refused=verified.refused,
            backend=self.answerer.name, short_answer=one_line.text if one_line and one_line.shown else "",
            citations=verified.citations, hits=hits, paragraphs=self.whole_paragraphs(paragraphs),
            unsupported=verified.unsupported, refusal_reason=reason if verified.refused else "", raw=raw,
            timings_ms=timings,
        )

    def ask(self, question: str, history: list[dict] | None = None, filters: Filters = Filters()) -> Answer:
        *_, answer = self.stream(question, history, filters)
        return answer
