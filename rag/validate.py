"""Validation of user input that reaches the index: questions and cable ids (CLI, API, UI); filters
are validated by `rag.filters.Filters.parse`."""

from __future__ import annotations

from rag.errors import RagError
from rag.types import is_cable_id

# Longer than any real question; a pasted document is not one.
MAX_QUESTION = 2000


def check_question(question: str) -> str:
    """The question stripped, or a one-line error for an empty or over-long one (CLI, API, UI)."""
    question = (question or "").strip()
    if not question:
        raise RagError("the question is empty")
    if len(question) > MAX_QUESTION:
        raise RagError(f"the question is longer than {MAX_QUESTION} characters")
    return question


def validate_cable_id(value: str) -> str:
    cable_id = (value or "").strip().upper()
    if len(cable_id) > 40 or not is_cable_id(cable_id):
        raise RagError(f"not a cable id: {value!r} (expected e.g. 09PHNOMPENH637)")
    return cable_id

