"""JSON shapes that more than one face publishes, built in one place each: the checked
citations of an answer, as `/v1` (OpenAI-compatible) and the MCP `ask` tool return them."""

from __future__ import annotations

from rag.answer.pipeline import Answer, paragraph_json


def citations_json(answer: Answer) -> list[dict]:
    """Each checked citation with its tag and the whole paragraph it points at."""
    paragraphs = {hit.citation: paragraph_json(hit) for hit in answer.paragraphs}
    return [{"tag": c.citation.tag, **paragraphs.get(c.citation, {"cable_id": c.citation.cable_id,
                                                                   "paragraph": c.citation.paragraph}),
             "status": c.status, "score": round(c.score, 4), "sentence": c.sentence}
            for c in answer.citations]
