"""The filters of a search, defined once: what the CLI, the API, the UI and the eval suites take
from the user, validated in one place, and what the store (Chroma's `where`) and the row index
(rag.index.rows's numpy columns) apply.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from typing import Mapping

from rag.errors import RagError
from rag.types import yyyymmdd

# The filters a user can set, in the order the errors list them.
FILTER_KEYS = ("origin", "date_from", "date_to", "classification", "tag")


@dataclass(frozen=True)
class Filters:
    """Origin, classification and tag are matched exactly, the dates inclusively. `cable_id` is
    never set by a user: retrieval sets it to search one cable. False when nothing is filtered;
    hashable, so the row index can keep the rows of the last filters it computed."""

    origin: str = ""
    date_from: date | None = None
    date_to: date | None = None
    classification: str = ""
    tag: str = ""
    cable_id: str = ""

    @classmethod
    def parse(cls, values: Mapping | None) -> Filters:
        """Filters from user input (CLI args, API body, UI fields, a suite line): only known keys,
        short strings, ISO dates (YYYY-MM-DD), from not after to; empty values are dropped."""
        out: dict = {}
        for key, value in (values or {}).items():
            if value in (None, ""):
                continue
            if key not in FILTER_KEYS:
                raise RagError(f"unknown filter {key!r}: use {', '.join(FILTER_KEYS)}")
            if not isinstance(value, str) or len(value) > 200:
                raise RagError(f"filter {key} must be a short string")
            if key in ("date_from", "date_to"):
                try:
                    value = date.fromisoformat(value)
                except ValueError:
                    raise RagError(f"filter {key} must be a date YYYY-MM-DD, not {value!r}") from None
            out[key] = value
        filters = cls(**out)
        if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
            raise RagError("date_from is after date_to")
        return filters

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @property
    def day_from(self) -> int | None:
        """date_from as the YYYYMMDD integer the index stores (`date_int`); None when unset."""
        return yyyymmdd(self.date_from) if self.date_from else None

    @property
    def day_to(self) -> int | None:
        """date_to as the YYYYMMDD integer the index stores (`date_int`); None when unset."""
        return yyyymmdd(self.date_to) if self.date_to else None

    def to_json(self) -> dict:
        """The filters that are set, as the API and the suite files write them (dates YYYY-MM-DD)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {key: value.isoformat() if isinstance(value, date) else value for key, value in values if value}
