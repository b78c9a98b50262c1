"""Validation of user input that reaches the index: questions and cable ids (CLI, API, UI); filters
are validated by `rag.filters.Filters.parse`."""

from __future__ import annotations

import re

from rag.citation import is_cable_id
from rag.errors import RagError

# Longer than any real question; a pasted document is not one.
MAX_QUESTION = 2000
# Lone surrogates: bytes that are not UTF-8 in a command-line argument (Python decodes them to
# U+DC80-U+DCFF) or "\ud800"-style escapes in JSON. No encoder can take them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_question(question: str) -> str:
    """The question stripped, with bytes that are not UTF-8 replaced by U+FFFD, or a one-line
    error for an empty, over-long or wordless one (every face: CLI, API, /v1, UI, MCP)."""
    question = _SURROGATE.sub("\ufffd", question or "").strip()
    if not question:
        raise RagError("the question is empty")
    if len(question) > MAX_QUESTION:
        raise RagError(f"the question is longer than {MAX_QUESTION} characters")
    if not any(c.isalnum() for c in question):
        raise RagError("the question has no words to search for")
    return question


def validate_cable_id(value: str) -> str:
    cable_id = (value or "").strip().upper()
    if len(cable_id) > 40 or not is_cable_id(cable_id):
        raise RagError(f"not a cable id: {value!r} (expected e.g. 09PHNOMPENH637)")
    return cable_id

