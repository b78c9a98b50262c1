"""Whether the ranked paragraphs answer the question at all, and if not, why not.

Refusal is by evidence, not vocabulary. Five checks say why in words a user can act on:
- the filters matched no paragraph (with the nearest values that exist);
- the question names a cable the index does not hold;
- the question asks what happened in a year (or a month: "March 2010", "the end of 2010")
  after the last cable in the index;
- the question asks for a court's sentence or verdict and none of the closest paragraphs
  reports one (the trial is in the cables, its outcome came later);
- the question uses a name no paragraph in the whole index holds, in any spelling ("Doraleh"),
  or two ordinary words none holds ("ibuprofen rebates"); one ordinary word is never enough,
  since the cables often say it otherwise ("blocks" for "acreage"), and in an index too small
  for an ordinary word's absence to mean anything only names count. A word merely absent from
  the top paragraphs is no reason: questions add context the answering paragraph need not repeat.
Otherwise a logistic regression over what the top paragraphs hold (the ranker's best score,
how much of the question's rarer vocabulary the best paragraph and sentence cover, whether the
question's names, years and the kind of answer asked for are there) decides; it is fitted on the
dev suite with cross-validation (evals/fit_models.py) and its threshold set so that few
answerable questions are refused. Its reason names what the paragraphs lack.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

from rag.answer.aliases import mentioned, spellings
from rag.answer.question import YEAR, Question, stems
from rag.answer.rank import FEATURES, PENALTY, Candidate, LinearModel
from rag.citation import CABLE_ID
from rag.filters import Filters

SIGNALS = ("top_score", "top_cover", "top_sentence_cover", "names", "rarest_missing", "years", "answer_type",
           "score_gap")
# How many of the ranked paragraphs the question's names, terms and years may be found in.
DEPTH = 5
_COL = {name: j for j, name in enumerate(FEATURES)}
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")
# Below this many chunks an ordinary word ("leads") may be missing from a perfectly good index.
WORDS_NEED_CHUNKS = 1000
# "the Kashgai (Qashqai)": a word given with an alternative spelling may be spelled either way
# in the cables, so neither is held against the question.
_WITH_ALTERNATIVE = re.compile(r"\S+\s*\([^)]*\)")


def _mentioned_in(top: list[Candidate]) -> set[str]:
    return set().union(*(c.words for c in top))


def _years_in(top: list[Candidate]) -> set[str]:
    """Years the paragraphs print, and the years of their cables."""
    return set().union(*({*YEAR.findall(c.hit.text), str(c.hit.metadata.get("date", ""))[:4]} for c in top))


@dataclass(frozen=True)
class Verdict:
    answerable: bool
    reason: str = ""


def signals(question: Question, ranked: list[Candidate], idf) -> np.ndarray:
    """One row of SIGNALS for the question, from its ranked candidates."""
    if not ranked:
        return np.array([-10.0, 0, 0, 0, 1, -1, 0, 0], dtype=np.float64)
    top = ranked[:DEPTH]
    words = _mentioned_in(top)
    names = [mentioned(n, words) for n in question.names]
    terms = list(question.terms)
    weights = idf(terms) if terms else np.zeros(0)
    rare = float(weights.max()) if len(weights) else 1.0
    missing = [w for t, w in zip(terms, weights) if t not in words]
    years = 0.0
    if question.years:
        years = 1.0 if question.years <= _years_in(top[:3]) else -1.0
    first = ranked[0]
    second = ranked[1].hit.score if len(ranked) > 1 else first.hit.score - 1
    return np.array([
        first.hit.score,
        first.features[_COL["cover_context"]],
        first.features[_COL["sentence_cover"]],
        float(np.mean(names)) if names else 1.0,
        (max(missing) / rare) if missing else 0.0,
        years,
        max(c.features[_COL["answer_type"]] for c in ranked[:3]),
        first.hit.score - second,
    ], dtype=np.float64)


def after_the_cables(question: Question, last_date: int) -> str:
    """The year (or month) a question asks about, when it is after the last cable and the
    question asks what happened (not what was planned or expected)."""
    if not last_date or question.prospective:
        return ""
    later = sorted(y for y in question.years if int(y) > last_date // 10000)
    if later:
        return later[0]
    months = sorted(m for m in question.months if m[0] > last_date // 100)
    return months[0][1] if months else ""


def lacks_sentence(question: Question, texts: list[str]) -> bool:
    """Whether a question asking for a court's sentence or verdict finds none in `texts` (the
    closest paragraphs): the trial is in the cables, its outcome came later."""
    return question.wants == "sentence" and not any(PENALTY.search(t) for t in texts)


def unknown_words(question: Question, document_frequency, names_only: bool = False) -> list[str]:
    """The question's words (or only its names) that no chunk of the index holds in any
    spelling (stems, aliases)."""
    text = CABLE_ID.sub(" ", _WITH_ALTERNATIVE.sub(" ", question.text))
    out = []
    for word in dict.fromkeys(_WORD.findall(text)):
        if names_only and word.lower() not in question.names:
            continue
        forms = sorted({s for spelling in spellings(word) for s in stems(spelling)})
        if forms and not document_frequency(forms).any():
            out.append(word)
    return out


def absent_words(question: Question, document_frequency, chunks: int) -> list[str]:
    """What makes the question unanswerable by vocabulary alone: a name no chunk holds, or at
    least two ordinary words none does. One ordinary word is never enough: the cables say
    "blocks" where a question says "acreage", and on a small index any word may be missing."""
    names = unknown_words(question, document_frequency, names_only=True)
    if names or chunks < WORDS_NEED_CHUNKS:
        return names
    words = unknown_words(question, document_frequency)
    return words if len(words) >= 2 else []


def filter_reason(filters: Filters, vocabulary: dict[str, list[str]]) -> str:
    """Why filters that match no paragraph match none: a value the index lacks, with the
    nearest that exist; else the combination."""
    for key, plural in (("origin", "origins"), ("classification", "classifications"), ("tag", "tags")):
        value = getattr(filters, key)
        known = vocabulary.get(plural, [])
        if value and value not in known:
            close = [v for v in known if value.lower() in v.lower()] or difflib.get_close_matches(value, known, n=3)
            hint = f"; did you mean {', '.join(repr(v) for v in close[:3])}?" if close else ""
            return f"no cable in the index has {key} {value!r}{hint}"
    return "no paragraph in the index matches these filters together"


def explain(question: Question, ranked: list[Candidate], idf) -> str:
    """What the best paragraphs lack, in a user's words."""
    if not ranked:
        return "nothing in the index matched the question"
    top = ranked[:DEPTH]
    words = _mentioned_in(top)
    missing_names = sorted(n for n in question.names if not mentioned(n, words))
    if missing_names:
        return f"no paragraph found mentions {', '.join(missing_names)}"
    if question.years:
        found = _years_in(top[:3])
        if not question.years <= found:
            return (f"the closest paragraphs speak of {', '.join(sorted(y for y in found if y) or ['other dates'])}, "
                    f"not {', '.join(sorted(question.years))}")
    terms = list(question.terms)
    if terms:
        weights = idf(terms)
        absent = [t for t, w in sorted(zip(terms, weights), key=lambda p: -p[1]) if t not in words]
        if absent:
            return f"the closest paragraphs never mention {', '.join(repr(t) for t in absent[:2])}"
    wanted = {"number": "figure", "date": "date", "person": "person", "place": "place", "reason": "reason",
              "sentence": "sentence or verdict"}
    best = ranked[0].hit.citation
    if question.wants:
        return f"the closest paragraph ({best}) does not give the {wanted[question.wants]} asked for"
    return f"the closest paragraph ({best}) is about the topic but does not answer the question"


class EvidenceCheck:
    def __init__(self, model: LinearModel | None):
        if model is not None and tuple(model.features) != SIGNALS:
            raise ValueError("rag/models/evidence.json was fitted on other signals: run evals/fit_models.py")
        self.model = model

    def rule(self, question: Question, ranked: list[Candidate], lexical) -> Verdict | None:
        """The verdict of the stated checks, or None when they leave it to the model.
        `lexical` is the index's rag.index.rows.RowIndex (idfs, document frequencies, dates)."""
        if not ranked:
            return Verdict(False, "nothing in the index matched the question")
        last_date = lexical.last_date
        later = after_the_cables(question, last_date)
        if later:
            end = f"{last_date // 10000}-{last_date // 100 % 100:02d}"
            return Verdict(False, f"the question asks about {later}; the cables in this index end in {end}")
        unknown = absent_words(question, lexical.bm25.document_frequency, len(lexical))
        if unknown:
            return Verdict(False, f"no paragraph in the index mentions {', '.join(repr(w) for w in unknown)}")
        if lacks_sentence(question, [c.hit.text for c in ranked[:3]]):
            return Verdict(False, "none of the closest paragraphs reports a sentence or verdict")
        named = [c for c in ranked if c.hit.cable_id in question.cable_ids]
        if question.cable_ids and named and any(c.features[_COL["cover"]] > 0 for c in named):
            return Verdict(True)
        return None

    def judge(self, question: Question, ranked: list[Candidate], lexical) -> Verdict:
        ruled = self.rule(question, ranked, lexical)
        if ruled is not None:
            return ruled
        if self.model is None:
            return Verdict(True)
        score = float(self.model.score(signals(question, ranked, lexical.bm25.idf))[0])
        if score >= self.model.threshold:
            return Verdict(True)
        return Verdict(False, explain(question, ranked, lexical.bm25.idf))
