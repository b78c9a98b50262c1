"""Follow-up questions → stand-alone questions, before retrieval.

With an LLM, llama-index's condense-question prompt rewrites the question from the history.
Without one, the previous turns' names and cable ids are carried into a question that reads
as a follow-up, so "Where was he born?" after a turn about Zhadobin in 07MINSK620 retrieves
from that cable, while a new, self-contained question is left alone.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from annotated_types import MaxLen

# pydantic validates a TypedDict from typing_extensions on Python < 3.12 (the APIs' history).
from typing_extensions import TypedDict

from rag.citation import CABLE_ID
from rag.errors import RagError
from rag.text import names

# Words that point back at an earlier turn; a question without them, and long enough to
# stand alone, starts a new topic.
_ANAPHORA = re.compile(
    r"\b(he|she|it|they|him|her|his|hers|its|their|them|this|that|these|those|there|then|"
    r"the same|the newer|the older|the latter|the former|the cable|the embassy|the official)\b|^\s*(and|also|what about|how about)\b",
    re.IGNORECASE,
)

# A turn's text, as the APIs accept it (pydantic reads the bound when a request is validated).
MAX_TURN = 20_000


class Turn(TypedDict):
    """One earlier turn of a conversation: what the pipeline reads and every API accepts."""

    role: Literal["user", "assistant"]
    content: Annotated[str, MaxLen(MAX_TURN)]


def carried_context(history: list[Turn]) -> str:
    """Names and cable ids of the last exchange, most recent first, without repeats."""
    recent = [t.get("content", "") for t in history[-2:]][::-1]
    ids = list(dict.fromkeys(i for text in recent for i in CABLE_ID.findall(text)))
    words = list(dict.fromkeys(n for text in recent for n in sorted(names(text))))
    return " ".join(ids + words)


def is_follow_up(question: str) -> bool:
    return bool(_ANAPHORA.search(question)) or len(question.split()) <= 4


def condense(question: str, history: list[Turn] | None, llm=None) -> str:
    if not history:
        return question
    if llm is None:
        if not is_follow_up(question):
            return question
        return f"{question} {carried_context(history)}".strip()
    from llama_index.core.chat_engine.condense_question import DEFAULT_PROMPT
    from llama_index.core.llms import ChatMessage

    transcript = "\n".join(str(ChatMessage(role=t["role"], content=t["content"])) for t in history)
    try:
        rewritten = llm.predict(DEFAULT_PROMPT, question=question, chat_history=transcript).strip()
    except Exception as exc:  # network and server errors reach the user as one line
        raise RagError(f"the LLM failed while condensing the follow-up: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    # Keep the cable ids the history named: a small model drops them, and they steer retrieval.
    ids = [i for i in dict.fromkeys(CABLE_ID.findall(transcript)) if i not in rewritten]
    return " ".join([rewritten or question] + ids)
