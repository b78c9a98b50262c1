"""Suite files for `rag eval`: one JSON case per line, every problem reported at once by line,
and the gold cables looked up in the index before any case runs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.errors import RagError
from rag.evaluation.metrics import Paragraph
from rag.filters import Filters

KINDS = ("factoid", "numeric", "multi", "unanswerable", "filtered", "followup")
REQUIRED = ("id", "kind", "question", "facts", "citations")
ROLES = ("user", "assistant")


class SuiteError(RagError):
    """A suite file that cannot be run; the message lists every problem by line."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))


@dataclass
class Case:
    """One line of a suite file."""

    id: str
    kind: str
    question: str
    line: int
    facts: tuple[tuple[str, ...], ...] = ()
    citations: tuple[Paragraph, ...] = ()
    filters: Filters = Filters()
    history: tuple[dict, ...] = ()
    answer: str = ""
    notes: str = ""

    @property
    def gold(self) -> set[Paragraph]:
        return set(self.citations)



def _problems_of(obj) -> list[str]:
    """What is wrong with one parsed line, as messages without the line number."""
    if not isinstance(obj, dict):
        return ["expected a JSON object"]
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        return [f"missing field(s) {', '.join(missing)}"]
    problems = []
    if not isinstance(obj["id"], str) or not obj["id"].strip():
        problems.append("id must be a non-empty string")
    if obj["kind"] not in KINDS:
        problems.append(f"unknown kind {obj['kind']!r} (expected one of {', '.join(KINDS)})")
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        problems.append("question must be a non-empty string")
    facts = obj["facts"]
    if not isinstance(facts, list) or not all(
        isinstance(f, list) and f and all(isinstance(s, str) and s.strip() for s in f) for f in facts
    ):
        problems.append('facts must be a list of lists of spellings, e.g. [["Kang Sokhorn"]]')
    cites = obj["citations"]
    if not isinstance(cites, list) or not all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and type(c[1]) is int for c in cites
    ):
        problems.append('citations must be a list of [cable id, paragraph number], e.g. [["09PHNOMPENH637", 1]]')
    elif obj["kind"] == "unanswerable" and (cites or facts):
        problems.append("an unanswerable case has no citations and no facts")
    elif obj["kind"] in KINDS and obj["kind"] != "unanswerable" and not cites:
        problems.append(f"a {obj['kind']} case needs at least one gold citation")
    problems += _filter_problems(obj)
    problems += _history_problems(obj)
    return problems


def _filter_problems(obj: dict) -> list[str]:
    filters = obj.get("filters") or {}
    if not isinstance(filters, dict):
        return ["filters must be an object"]
    try:
        valid = Filters.parse(filters)
    except RagError as exc:
        return [str(exc)]
    return ["a filtered case needs filters"] if obj["kind"] == "filtered" and not valid else []


def _history_problems(obj: dict) -> list[str]:
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str) for t in history
    ):
        return ['history must be a list of {"role": "user"|"assistant", "content": "..."}']
    return ["a followup case needs a history"] if obj["kind"] == "followup" and not history else []


def _case(obj: dict, line: int) -> Case:
    return Case(
        id=obj["id"], kind=obj["kind"], question=obj["question"], line=line,
        facts=tuple(tuple(f) for f in obj["facts"]),
        citations=tuple((c.upper(), p) for c, p in obj["citations"]),
        filters=Filters.parse(obj.get("filters")), history=tuple(obj.get("history") or ()),
        answer=obj.get("answer", ""), notes=obj.get("notes", ""),
    )


def load_suite(path: Path | str) -> list[Case]:
    """The cases of a JSONL suite file; every problem in it is reported at once, by line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"cannot read suite {path}: {exc}") from None
    cases, problems, first_line = [], [], {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        found = _problems_of(obj)
        if not found and obj["id"] in first_line:
            found = [f"duplicate id {obj['id']!r} (first on line {first_line[obj['id']]})"]
        if found:
            problems += [f"line {number}: {p}" for p in found]
            continue
        first_line[obj["id"]] = number
        cases.append(_case(obj, number))
    if not problems and not cases:
        problems.append("no cases")
    if problems:
        raise SuiteError(path, problems)
    return cases


def check_index(cases: Sequence[Case], store, path: Path | str) -> dict[Paragraph, str]:
    """Gold paragraph texts; raises SuiteError naming the lines whose cables the index lacks.

    A gold paragraph missing from a cable that is there is only warned about: it points at the
    cable parser, and the case still scores on its other gold paragraphs.
    """
    texts = store.paragraph_texts([cable for case in cases for cable, _ in case.citations])
    cables = {cable for cable, _ in texts}
    problems = []
    for case in cases:
        missing = sorted({c for c, _ in case.citations} - cables)
        if missing:
            problems.append(f"line {case.line}: cable(s) not in the index: {', '.join(missing)}")
        for cable, number in case.citations:
            if cable in cables and (cable, number) not in texts:
                print(f"rag eval: warning: line {case.line}: {cable} ¶{number} is not a paragraph in the index",
                      file=sys.stderr)
    if problems:
        raise SuiteError(path, problems)
    return texts
