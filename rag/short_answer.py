"""The answer in a few words, taken from the verified answer's first claim: the name with its
title for "who", the figure with its unit for "how many", the date for "when", the place for
"where", the reason for "why", the sentence for "what sentence". Empty when the claim holds nothing of the kind asked for; the
quoted sentences then stand on their own.

Of several spans of the right kind, the one nearest the question's own words wins: in "Kang
Sokhorn, who is in charge of the police response to trafficking", the name sits beside
"police" and "trafficking".
"""

from __future__ import annotations

import re

from rag.aliases import words_of
from rag.question import YEAR, Question, figures
from rag.types import Citation

_NUMBER = re.compile(
    r"(?:(?:US|USD|U\.S\.)?\s?\$|EUR|€|£|¥)?\s?\b\d[\d,.]*\d?\b(?:-[a-z]+)*(?:\s?(?:percent|per cent|%))?"
    r"(?:\s(?:million|billion|trillion|thousand|hundred))?(?:\s(?!and\b|or\b|the\b|of\b|in\b|to\b|by\b|for\b|at\b)[a-z][a-z-]+)?")
_DATE = re.compile(
    r"\b(?:(?:\d{1,2}\s)?(?:January|February|March|April|May|June|July|August|September|October|November|December)"
    r"(?:\s\d{1,2})?(?:,?\s(?:19|20)\d\d)?|(?:19|20)\d\d)\b")
_TITLE_WORDS = (r"(?:(?:Deputy|Vice|Acting|Former|former|Senior|Lieutenant|Lt\.|Major|Brigadier|Prime|First|Foreign|Finance|Defense|Interior|Justice|Health)\s)*"
                r"(?:Minister|President|Ambassador|General|Gen\.|Director|Chief|Secretary|Governor|Mayor|Chairman|"
                r"Commissioner|Colonel|Col\.|Mr\.|Mrs\.|Ms\.|Dr\.|King|Queen|Prince|Senator|Judge|Prosecutor|"
                r"Advisor|Adviser|Speaker|Sheikh|Emir|Commander|Admiral|Consul|Premier)")
_TITLE_TOKENS = frozenset(w.lower() for w in re.findall(r"[A-Za-z]+\.?", _TITLE_WORDS)) | {"commissioner", "general"}
_PERSON = re.compile(rf"\b(?:{_TITLE_WORDS}(?:\s(?:of|for)\s[A-Z][\w-]+(?:\s[A-Z][\w-]+)*)?\s)?"
                     r"[A-Z][a-z'-]+(?:\s(?:al-|bin\s|de\s|van\s|von\s|el-)?[A-Z][\w'-]+){1,3}\b")
_PLACE = re.compile(r"\b(?:in|at|from|to|near|into|outside|of)\s(?:the\s)?([A-Z][a-z]+(?:\s[A-Z][a-z]+){0,2})")
_REASON = re.compile(r"\b(?:because|due to|as a result of|since|in order to|owing to|citing|cited|on the grounds that|"
                     r"in protest (?:at|against|of)|in response to)\b[^.;]{3,160}", re.I)
_SENTENCE = re.compile(r"\bsentenc\w*\s(?:\w+\s){0,3}?to\s[^.;]{3,80}?(?=[.;,]|$)|\b(?:life imprisonment|death (?:penalty|"
                       r"sentence))\b|\b\S+[- ]years? (?:in prison|in jail|of imprisonment)|\bacquitted\b[^.;,]{0,60}", re.I)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
# Capitalised words that name organisations and offices, not people.
_ORGANISATION = re.compile(r"\b(?:Ministry|Police|National|Office|Council|Committee|Party|Court|Assembly|Embassy|"
                           r"Department|Government|Agency|Bank|Commission|Union|Republic|Kingdom|Army|Forces|"
                           r"University|Company|Corporation|Group|Association|Federation|Front|Movement|Action|Plan|"
                           r"Program|Programme|Project|Fund|Organization|Organisation|Authority|Service|Center|Centre)\b")
_GENERIC = frozenset("the this that these those in on at of embassy post department mission government summary "
                     "comment note end begin".split())


def _anchors(question: Question, text: str) -> list[int]:
    """Character offsets of the text's words that the question also uses."""
    wanted = words_of(question.text)
    return [m.start() for m in _WORD.finditer(text) if len(m.group(0)) > 3 and not words_of(m.group(0)).isdisjoint(wanted)
            and m.group(0).lower() not in _GENERIC]


def _nearest(spans: list[tuple[int, int, str, int]], anchors: list[int]) -> str:
    """The span of the best tier (0 first) nearest a question word."""
    if not spans:
        return ""
    tier = min(s[3] for s in spans)
    spans = [s for s in spans if s[3] == tier]
    if not anchors:
        return spans[0][2]
    return min(spans, key=lambda s: (min(min(abs(a - s[0]), abs(a - s[1])) for a in anchors), s[0]))[2]


def _new(span: str, question: Question) -> bool:
    """A span that says something the question does not already say."""
    return not words_of(span) <= words_of(question.text)


def short_answer(question: Question, answer: str) -> str:
    claim = Citation.PATTERN.split(answer, maxsplit=1)[0] if Citation.PATTERN.search(answer) else answer
    claim = " ".join(claim.split())
    anchors = _anchors(question, claim)
    # (start, end, text, tier): a lower tier is preferred whatever its distance.
    spans: list[tuple[int, int, str, int]] = []
    if question.wants == "number":
        for m in _NUMBER.finditer(claim):
            value = m.group(0).strip()
            digits = figures(value) | set(YEAR.findall(value))
            if digits and not digits <= (question.figures | question.years) and not YEAR.fullmatch(value):
                spans.append((m.start(), m.end(), value, 0))
    elif question.wants == "date":
        spans = [(m.start(), m.end(), m.group(0), 0 if not YEAR.fullmatch(m.group(0)) else 1)
                 for m in _DATE.finditer(claim) if _new(m.group(0), question)]
    elif question.wants == "person":
        for m in _PERSON.finditer(claim):
            name = m.group(0)
            if not _new(name, question):
                continue
            bare = [w for w in name.split() if w[0].isupper() and w.lower() not in _TITLE_TOKENS]
            if not bare:
                continue
            titled = re.match(_TITLE_WORDS, name) is not None
            organisation = _ORGANISATION.search(name) is not None and not titled
            spans.append((m.start(), m.end(), name, 0 if titled else 2 if organisation else 1))
    elif question.wants == "place":
        spans = [(m.start(1), m.end(1), m.group(1), 0) for m in _PLACE.finditer(claim) if _new(m.group(1), question)]
    elif question.wants == "sentence":
        spans = [(m.start(), m.end(), m.group(0).strip(" ,"), 0) for m in _SENTENCE.finditer(claim)]
    elif question.wants == "reason":
        spans = [(m.start(), m.end(), m.group(0).strip(" ,"), 0) for m in _REASON.finditer(claim)]
    return _nearest(spans, anchors)
