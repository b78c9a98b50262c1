"""Shared pieces of the reader (cross-encoder) experiment for issue 20: paths, the cable corpus
as the reader sees it, and the text a paragraph is scored as.

Everything the experiment writes goes under ~/.cache/cablerag/reader/ (XDG_CACHE_HOME honoured).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "evals" / "dev.jsonl"
CABLES = Path(os.environ.get("READER_CABLES", ROOT.parent / "shared" / "cables"))
if not CABLES.exists():
    CABLES = Path("/work/shared/cables")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cablerag" / "reader"
MAX_LENGTH = 256

# The classification marking a paragraph opens with: (C), (SBU), (S//NF) ...
MARKING = re.compile(r"^\s*\((?:[A-Z]{1,4}(?:/+[A-Z]{1,6})*|u|c|s|sbu)\)\s*", re.I)


def offline() -> None:
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(name, value)


def dev_cases() -> list[dict]:
    return [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]


def dev_cables() -> set[str]:
    """Every cable a dev case cites: none of them may feed training."""
    return {cid for case in dev_cases() for cid, _ in case.get("citations", [])}


def strip_marking(text: str) -> str:
    return MARKING.sub("", text, count=1).strip()


def passage(subject: str, heading: str, text: str) -> str:
    """What the reader reads for one paragraph: the cable's subject, the paragraph's heading and
    its text (training and evaluation alike)."""
    head = " - ".join(x for x in (subject.strip(), heading.strip()) if x)
    body = strip_marking(text)
    return f"{head}: {body}" if head else body


@lru_cache(maxsize=None)
def _read(cable_id: str):
    from rag.cables import read_cable_file

    return read_cable_file(CABLES / f"{cable_id}.txt")


def paragraph_passage(cable_id: str, number: int, fallback: str = "") -> str:
    """The passage for paragraph `number` of cable `cable_id`, from the cable file (as training
    saw it); `fallback` text when the cable or paragraph is not found."""
    try:
        cable = _read(cable_id)
    except Exception:  # noqa: BLE001 - a cable outside the shared corpus
        return fallback
    p = cable.paragraph(number)
    if p is None:
        return fallback
    return passage(cable.subject, p.heading, p.text)
