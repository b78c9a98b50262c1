"""Validation of user input that reaches the index: filters and cable ids (CLI, API, UI)."""

from __future__ import annotations

from datetime import date

from rag.errors import RagError
from rag.types import is_cable_id

FILTER_KEYS = ("origin", "date_from", "date_to", "classification", "tag")
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


def validate_filters(filters: dict | None) -> dict:
    """Only known keys, strings, ISO dates; empty values dropped."""
    out = {}
    for key, value in (filters or {}).items():
        if value in (None, ""):
            continue
        if key not in FILTER_KEYS:
            raise RagError(f"unknown filter {key!r}: use {', '.join(FILTER_KEYS)}")
        if not isinstance(value, str) or len(value) > 200:
            raise RagError(f"filter {key} must be a short string")
        if key in ("date_from", "date_to"):
            try:
                date.fromisoformat(value)
            except ValueError:
                raise RagError(f"filter {key} must be a date YYYY-MM-DD, not {value!r}") from None
        out[key] = value
    if out.get("date_from") and out.get("date_to") and out["date_from"] > out["date_to"]:
        raise RagError("date_from is after date_to")
    return out
