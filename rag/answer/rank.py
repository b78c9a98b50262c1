"""The second ranking stage: does this paragraph answer the question, not "is it about the same thing".

Retrieval hands over its top candidates (fused dense + BM25). Each gets a row of signals —
how much of the question's rarer vocabulary it holds (in one sentence, in the paragraph, with
its cable's subject), its similarity to the question, whether it names the question's names,
years and figures, whether it holds the kind of thing asked for (a person for "who", a figure
for "how many", a date for "when", a reason for "why"), how many of the candidates come from
its cable, whether its cable's post is in the country the question names — and a logistic
regression fitted on the dev suite (evals/fit_models.py, cross-validated by case) weighs them.
Its coefficients live in rag/models/ranker.json. One stated rule follows the model: a paragraph
from another country than the question names is not first while one from that country is near.

The same rows feed the evidence check (rag.answer.evidence), which decides whether to answer at all.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

import numpy as np

from rag.answer.aliases import mentioned, words_of
from rag.answer.posts import countries_named, country_of, post_agrees
from rag.answer.question import YEAR, Question, figures
from rag.index.bm25 import tokenize
from rag.text import split_sentences
from rag.types import Hit

FEATURES = (
    "bm25", "dense", "dense_gap", "cover", "cover_gap", "cover_context", "sentence_cover", "sentence_cover_gap",
    "rarest_missing", "names", "years", "figures", "answer_type", "first_paragraph", "length", "cable_share",
    "named_cable", "post",
)

_COL = {name: j for j, name in enumerate(FEATURES)}

_TITLE = re.compile(
    r"\b(?:Minister|President|Ambassador|General|Director|Chief|Secretary|Governor|Mayor|Chairman|Chair|Deputy|"
    r"Commissioner|Colonel|Col|Gen|Lt|Mr|Mrs|Ms|Dr|Prime|King|Queen|Prince|Senator|Sen|Rep|Leader|Spokesman|"
    r"Spokesperson|Head|Judge|Prosecutor|Advisor|Adviser|Vice|Undersecretary|Speaker|CEO|Founder|Owner|"
    r"Editor|Bishop|Sheikh|Sheik|Emir|Commander|Admiral|Officer|Counselor|Consul|Attorney)\b\.?\s+[A-Z]")
_PERSON = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:al-|bin |de |van |von )?[A-Z][a-z'-]+){1,3}\b")
_MONTH = re.compile(r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|March|April|May|June|July|Aug(?:ust)?|Sept?(?:ember)?|"
                    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b\.?(?:\s+\d{1,2})?")
_PLACE = re.compile(r"\b(?:in|at|from|to|near|into|outside)\s+(?:the\s+)?([A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)")
_REASON = re.compile(r"\b(?:because|due to|as a result|since|in order to|reasons?|owing to|citing|cited|blamed|"
                     r"so that|concerns? (?:about|over|that)|fear(?:ed|s)? that|argued|insisted|objected|"
                     r"on the grounds|in protest|in response|led to|prompted|motivated)\b", re.I)


# A court's decision: what a question asking for a sentence or verdict needs to find.
PENALTY = re.compile(r"\bsentenced\b|\bsentences? of\b|\b(?:year|month|life|death|prison|jail)[- ]sentences?\b|"
                     r"\byears? (?:in prison|in jail|of imprisonment|imprisonment)\b|\blife (?:imprisonment|sentence|"
                     r"in prison)\b|\bdeath (?:penalty|sentence)\b|\bacquit\w*|\bconvicted\b|\bfined\b|\bjailed for\b|"
                     r"\bverdicts?\b", re.I)


def holds_answer_type(question: Question, text: str, question_words: set[str]) -> bool:
    """Whether `text` holds something of the kind the question asks for, not taken from the question."""
    if question.wants == "sentence":
        return bool(PENALTY.search(text))
    if question.wants == "number":
        return bool(figures(text) - question.figures)
    if question.wants == "date":
        return bool(_MONTH.search(text) or set(YEAR.findall(text)) - question.years)
    if question.wants == "person":
        if _TITLE.search(text):
            return True
        return any(not words_of(m.group(0)) <= question_words for m in _PERSON.finditer(text))
    if question.wants == "place":
        return any(not words_of(m.group(1)) <= question_words for m in _PLACE.finditer(text))
    if question.wants == "reason":
        return bool(_REASON.search(text))
    return False


@dataclass
class Candidate:
    """A hit with what ranking learned of it; `features` is one row, in FEATURES order."""

    hit: Hit
    features: np.ndarray
    words: set[str]  # rag.answer.aliases.words_of its text, subject, origin and origin's country: what it mentions


def _coverage(terms: list[str], weights: np.ndarray, present: set[str]) -> float:
    total = float(weights.sum())
    if not total:
        return 0.0
    return float(sum(w for t, w in zip(terms, weights) if t in present)) / total


def candidates(question: Question, hits: list[Hit], query_vector: np.ndarray, lexical) -> list[Candidate]:
    """One feature row per hit, in retrieval's order. `lexical` is the index's
    rag.index.rows.RowIndex: BM25 idfs and scores come from it.

    Retrieval's rank is not a feature: the fused rank is what this stage corrects, and with it
    the model learned to trust it (out-of-fold hit@1 0.65 with it, 0.70 without). Neither is
    the similarity of the question to each sentence: it added nothing out of fold and cost
    ~0.4 s of encoding per question on two cores."""
    if not hits:
        return []
    idf = lexical.bm25.idf
    bm25 = lexical.scores_of(question.text, [h.chunk_id for h in hits])
    bm25 = bm25 / max(float(bm25.max()), 1e-9)
    terms = list(question.terms)
    weights = idf(terms) if terms else np.zeros(0)
    rare = float(weights.max()) if len(weights) else 1.0
    question_words = words_of(question.text)
    countries = countries_named(question.text)
    sentences = [split_sentences(h.text) or [h.text] for h in hits]
    contexts = [f"{h.metadata.get('subject', '')} {h.metadata.get('heading', '')}" for h in hits]
    flat = [s for group in sentences for s in group]
    tokens = tokenize([h.text for h in hits] + contexts + flat)
    para_tokens, ctx_tokens, sent_tokens = tokens[: len(hits)], tokens[len(hits): 2 * len(hits)], tokens[2 * len(hits):]
    q = np.asarray(query_vector, dtype=np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    dense = np.array([float(h.vector @ q) / max(float(np.linalg.norm(h.vector)), 1e-12) if h.vector is not None else 0.0
                      for h in hits])
    top_cables = [h.cable_id for h in hits[:10]]
    rows, out, at = [], [], 0
    for i, hit in enumerate(hits):
        present = set(para_tokens[i])
        context = present | set(ctx_tokens[i])
        sent_covers = [_coverage(terms, weights, set(sent_tokens[at + j])) for j in range(len(sentences[i]))]
        at += len(sentences[i])
        missing = [w for t, w in zip(terms, weights) if t not in context]
        meta = hit.metadata
        origin = meta.get("origin", "")
        words = words_of(f"{hit.text} {meta.get('subject', '')} {origin} {country_of(origin)}")
        names = [mentioned(n, words) for n in question.names]
        text_years = set(YEAR.findall(hit.text)) | {str(meta.get("date", ""))[:4]}
        years = 0.0 if not question.years else (1.0 if question.years <= text_years else -1.0)
        para_figures = figures(hit.text)
        figs = 0.0 if not question.figures else (1.0 if question.figures & para_figures else -1.0)
        rows.append([
            float(bm25[i]),
            dense[i],
            0.0,  # dense_gap, below
            _coverage(terms, weights, present),
            0.0,  # cover_gap
            _coverage(terms, weights, context),
            max(sent_covers) if sent_covers else 0.0,
            0.0,  # sentence_cover_gap
            (max(missing) / rare) if missing else 0.0,
            float(np.mean(names)) if names else 1.0,
            years,
            figs,
            float(holds_answer_type(question, hit.text, question_words)),
            float(hit.paragraph == 1),
            math.log1p(len(hit.text.split())),
            top_cables.count(hit.cable_id) / len(top_cables),
            float(hit.cable_id in question.cable_ids),
            post_agrees(origin, countries),
        ])
        out.append(Candidate(hit, np.zeros(0), words))
    matrix = np.array(rows, dtype=np.float64)
    col = {name: j for j, name in enumerate(FEATURES)}
    matrix[:, col["dense_gap"]] = matrix[:, col["dense"]] - matrix[:, col["dense"]].max()
    matrix[:, col["cover_gap"]] = matrix[:, col["cover"]] - matrix[:, col["cover"]].max()
    matrix[:, col["sentence_cover_gap"]] = matrix[:, col["sentence_cover"]] - matrix[:, col["sentence_cover"]].max()
    for c, row in zip(out, matrix):
        c.features = row
    return out


@dataclass(frozen=True)
class LinearModel:
    """A fitted logistic regression: standardise, weigh, add; saved as JSON by evals/fit_models.py."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float = 0.0
    meta: dict | None = None

    def score(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(rows)
        return ((rows - self.mean) / self.scale) @ self.coef + self.intercept

    def to_json(self) -> dict:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "threshold": self.threshold,
                "meta": self.meta or {}}

    @classmethod
    def fit(cls, features: tuple[str, ...], x: np.ndarray, y: np.ndarray, c: float,
            balanced: bool = False) -> "LinearModel":
        """A logistic regression of `y` on the standardised columns of `x` (one per feature)."""
        from sklearn.linear_model import LogisticRegression  # the fitting scripts only: answers load JSON

        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        lr = LogisticRegression(C=c, class_weight="balanced" if balanced else None, max_iter=2000)
        lr.fit((x - mean) / scale, y)
        return cls(tuple(features), mean, scale, lr.coef_[0], float(lr.intercept_[0]))

    @classmethod
    def from_json(cls, data: dict) -> "LinearModel":
        return cls(tuple(data["features"]), np.array(data["mean"]), np.array(data["scale"]), np.array(data["coef"]),
                   float(data["intercept"]), float(data.get("threshold", 0.0)), data.get("meta"))


@lru_cache(maxsize=None)
def load_model(name: str) -> LinearModel:
    """A model shipped in rag/models (ranker.json, evidence.json)."""
    return LinearModel.from_json(json.loads(resources.files("rag.models").joinpath(name).read_text()))


# How far down a paragraph from the country the question names may be brought up to first.
COUNTRY_DEPTH = 5


def _own_country_first(found: list[Candidate]) -> list[Candidate]:
    """A paragraph from a post in another country than the one the question names ("Spain's
    telecom secretary" and Embassy London's report on British ISPs) is not first while one from
    that country's posts is among the top COUNTRY_DEPTH: the weighted `post` feature alone lets a
    paragraph that shares the question's other words win."""
    post = _COL["post"]
    if not found or found[0].features[post] >= 0:
        return found
    agreeing = next((i for i, c in enumerate(found[:COUNTRY_DEPTH]) if c.features[post] > 0), None)
    if agreeing is None:
        return found
    return [found[agreeing], *found[:agreeing], *found[agreeing + 1:]]


class Ranker:
    """Reorders retrieved hits by the fitted model's score (a `None` model keeps retrieval's
    order), then by the stated rules: a paragraph from the country the question names before one
    from another, a paragraph the question names by number first of all."""

    def __init__(self, model: LinearModel | None):
        if model is not None and tuple(model.features) != FEATURES:
            raise ValueError("rag/models/ranker.json was fitted on other features: run evals/fit_models.py")
        self.model = model

    def rank(self, found: list[Candidate], question: Question | None = None) -> list[Candidate]:
        """The candidates best first; a paragraph the question names by number ("ID ¶6") first of all."""
        if self.model is not None and found:
            scores = self.model.score(np.stack([c.features for c in found]))
            order = sorted(range(len(found)), key=lambda i: (-scores[i], i))
            found = [replace(found[i], hit=replace(found[i].hit, score=float(scores[i]))) for i in order]
        found = _own_country_first(found)
        if question is None or not question.paragraphs:
            return found
        named = set(question.paragraphs)
        return sorted(found, key=lambda c: (c.hit.cable_id, c.hit.paragraph) not in named)
