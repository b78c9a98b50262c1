"""The answer in a few words, shown in bold above the quoted sentences, or nothing.

A wrong first line is worse than none: it is what gets copied into a notebook. So the one-line
answer is a typed span (a person with the title the cable gives, an organisation, a figure
with its unit, a date, a place, a reason, a court's sentence) cut from the verified answer's
claims by rules that never cross a clause ("18 that"), never keep a title without its name,
never take a month for a person; each span is scored by a logistic model fitted on dev
(`evals/fit_one_line.py`: does the span hold a gold fact?) over what says it is the answer:
its kind against the kind asked for, its distance to the question's words, its claim's
support and rank, rivals beside it, and how many of the top paragraphs repeat it. The best
span is shown only when its score clears the threshold chosen on dev for precision; below it
the answer begins with the stating sentence itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from rag.answer.aliases import words_of
from rag.answer.posts import is_place
from rag.answer.question import MONTHS, YEAR, Question, figures, wants_of
from rag.answer.rank import LinearModel
from rag.citation import CABLE_ID, Citation
from rag.index.bm25 import tokenize
from rag.text import STOPWORDS, sentence_bounds
from rag.types import Hit

KINDS = ("person", "organisation", "number", "date", "place", "reason", "sentence")

# The noun after "which"/"what" says what kind of thing is asked for where no wh-word does
# ("Which German automaker's boss …", "At which Astana nightclub …", "What was the poverty
# rate …"). These widen only the one-line answer's kind; ranking keeps question.wants.
# Up to four words between: never a verb or a preposition ("In which French bank did the governor …"
# asks for a bank), never a possessive ("Which German automaker's boss …" asks for the automaker).
_AUXILIARY = r"(?:did|does|do|was|were|is|are|has|had|have|will|would|could|can)\b"
_BETWEEN = (rf"(?!{_AUXILIARY}|(?:on|in|at|of|to|for|with|by|from|that|who)\b)(?![\w-]+'s\b)[\w'-]+\s+")
_WHICH = rf"\b(?:which|what)\s+(?:{_BETWEEN}){{0,4}}?"
_FIRST_WH = re.compile(r"\b(?:who|whom|whose|what|which|where|when|why|how)\b", re.I)
# Where a question's first wh-phrase ends and a clause of its own begins ("… killed when a bomb …").
_LATER_CLAUSE = re.compile(r"\b(?:when|where|who|whom|whose|which|why|while)\b", re.I)
_WH_KINDS = {"who": "person", "whom": "person", "whose": "person", "where": "place", "when": "date", "why": "reason"}
_ORGANISATION_ASKED = re.compile(
    _WHICH + r"(?:company|companies|firms?|part(?:y|ies)|ministry|ministries|organi[sz]ations?|groups?|agency|"
    r"agencies|banks?|newspapers?|paper|body|institution|operators?|carriers?|union|militia|faction|movement|court|"
    r"office|department|network|channel|station|university|contractor|supplier|airlines?|corporation|government|"
    r"clubs?|teams?|automakers?|carmakers?|makers?|manufacturers?|brands?|order|broadcasters?|magazines?|websites?|"
    r"outlets?|producers?|studios?|charity|charities|ngos?|cartels?|gangs?|sects?)\b", re.I)
_PERSON_ASKED = re.compile(
    _WHICH + r"(?:head of state|presidents?|lawyers?|envoys?|cricketers?|players?|eyewitness(?:es)?|witness(?:es)?|"
    r"journalists?|businessm[ae]n|tycoons?|judges?|spokes(?:man|woman|person)|kings?|princes?|governors?|mayors?|"
    r"commanders?|chiefs?|boss(?:es)?|senators?|prosecutors?|activists?|clerics?|editors?|owners?|founders?|"
    r"directors?|chairm[ae]n|secretar(?:y|ies)|relatives?|sons?|daughters?|brothers?|wife|husband|deputy|deputies|"
    r"opponents?|dissidents?|suspects?|defendants?|detainees?|victims?|authors?|singers?|actors?|politicians?|"
    r"officials?|ministers?|leaders?|diplomats?|officers?|members?)\b"
    r"|\bwhat (?:\w+ )?name\b|\bwhat (?:was|is) the name of the (?:\w+ )?(?:man|woman|person|official)\b", re.I)
_PLACE_ASKED = re.compile(
    _WHICH + r"(?:countries|cities|provinces|regions|towns|villages|states|islands|ports|hotels?|nightclubs?|"
    r"restaurants?|airports?|prisons?|hospitals?|bases?|camps?|mosques?|stadiums?|venues?|buildings?|"
    r"neighbo(?:u)?rhoods?|streets?|borders?|border crossings?|crossings?|capitals?|districts?)\b", re.I)
_NUMBER_ASKED = re.compile(
    r"\bwhat (?:was|is|were|are) the (?:[\w'-]+\s+){0,5}?(?:rate|value|number|amount|total|price|cost|share|"
    r"percentage|capacity|quota|commission|budget|population|toll|salary|fine|figure|size|level|turnout|deficit|"
    r"debt|revenue|production|output|growth|inflation)\b"
    r"|\bwhat (?:[\w'-]+\s+){0,2}?(?:commission|quota|fee|bribe|ransom|fine|salary|budget|turnout|capacity)\b",
    re.I)

_MONTH = "|".join(MONTHS)
_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_SCALE = r"(?:\s(?:million|billion|trillion|thousand|hundred|mn|bn))"
# Words that open a clause or tie one: never the unit of a figure ("18 that", "800 have").
_NOT_UNITS = frozenset(
    """a an and or but nor the that this these those which who whom whose what when where while whether
    if as at by for from in into of off on onto out over to under up upon with within without per than then
    there here is are was were be been being has have had having do does did will would shall should can
    could may might must also only just not no more less most least about around nearly almost some each
    other such so it its he she they them their his her we our you i me one after before since until during
    between among against across through because though although unless said says say told reported noted
    added stated separate known worth total additional new different further full overall estimated
    approximately roughly confirmed registered official unofficial respectively""".split())
# A unit or a scale written onto a figure ("71.4kg", "100K").
_ON = "(?:kg|km|mw|kw|gw|ha|bn|mn|[kKmM])"
_NUMBER = re.compile(
    r"(?<![\w(,./-])(?:(?:US|USD|U\.S\.)\s?\$|\$|(?:USD|EUR|GBP)\s?|€|£|¥)?\d[\d,]*(?:\.\d+)?"
    # a range ("200-250,000 people") is one figure; a unit written on ("71.4kg") stays on it
    rf"(?:[-–]\d[\d,]*(?:\.\d+)?)?(?:(?<=\d){_ON}\b|(?![\w(]))"
    rf"(?:-[a-z]+)?(?:\s?(?:percent|per cent|%))?{_SCALE}?(?:\s(?:dollars|euros|pounds|USD|EUR))?"
    r"(?:\s[A-Z]{2,6}(?=\s[a-z]))?(?:\s(?P<unit>[a-z][a-z-]+))?")
_SPELLED_DIGITS = "two|three|four|five|six|seven|eight|nine"
# "How long …" asks for a duration or a length: a figure of time or distance ("three weeks",
# "10-year", "160-mile"), never "20%".
_LONG_ASKED = re.compile(r"\bhow long\b", re.IGNORECASE)
_LONG_UNIT = re.compile(r"\b(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?|miles?|kilomet(?:er|re)s?|"
                        r"km|met(?:er|re)s?|feet|foot|yards?)\b", re.IGNORECASE)
_WRITTEN_ON = re.compile(rf"(?<=\d){_ON}\b")
# A count written in words ("fourteen women", "four days"): only with what it counts.
_SPELLED = re.compile(
    rf"(?<![\w-])(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:-(?:one|{_SPELLED_DIGITS}))?|"
    rf"{_SPELLED_DIGITS}|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|"
    r"(?:a |one |two |several )?(?:hundred|dozen))\s(?P<unit>[a-z][a-z-]+)", re.I)
# What stands between a figure and its conversion into another currency or unit.
_CONVERSION = re.compile(r"\d[\w,.%$]*(?:\s[A-Za-z]{1,12}){0,3}\s?\((?P<marker>about|approximately|approx\.|roughly|"
                         r"some|around|nearly|almost|or|equivalent to|equal to|i\.e\.)?\s?(?P<currency>US\$|\$|€|£)?$",
                         re.I)
# Where a figure is a reference, not a quantity: "para 6", "REF B 45", "¶3", "No. 12".
_REFERENCE_BEFORE = re.compile(r"(?:\bparas?|\bparagraphs?|¶|\bREF|\bNo\.|\bnumber|\bsection|\bArticle|\bresolution"
                               r"|\bUNSCR?|\bRoom|\bline|\bpage|\btel)\s?\(?[A-Z]?\s?$", re.I)
_DATE = re.compile(
    rf"\b(?:(?:\d{{1,2}}\s)?(?:{_MONTH})(?:\s\d{{1,2}}(?!\d))?(?:,?\s(?:19|20)\d\d)?|(?:mid-|early |late )?(?:19|20)\d\d)\b")
_TITLE = (r"(?:(?:Deputy|Vice|Acting|Former|former|Senior|Lieutenant|Lt\.|Major|Brigadier|Prime|First|Foreign|Finance|"
          r"Defense|Defence|Interior|Justice|Health|Special|Assistant|Under|Permanent|Executive|Managing|Chief|General|"
          r"Attorney|Police|Army|Supreme|Opposition|Party|Presidential)\s)*"
          r"(?:Minister|President|Ambassador|General|Gen\.|Director|Chief|Secretary|Governor|Mayor|Chairman|Chairwoman|"
          r"Commissioner|Colonel|Col\.|Mr\.|Mrs\.|Ms\.|Dr\.|King|Queen|Prince|Senator|Sen\.|Judge|Prosecutor|Advisor|"
          r"Adviser|Speaker|Sheikh|Emir|Commander|Admiral|Consul|Premier|Captain|Capt\.|Major|Maj\.|Deputy|MP|"
          r"Representative|Rep\.|Justice|Chancellor|Counselor|Counsellor|Spokesman|Spokesperson|Inspector|Sergeant)")
# A run of capitalised words, with the particles names and organisations carry inside.
# Up to two particles between ("Miguel de la Madrid"), or one written onto the word ("Saif al-Islam").
_RUN = re.compile(r"(?<![\w'-])[A-Z][\w'.&-]*(?:\s(?:(?:al-|bin|ibn|abu|de|da|del|la|los|dos|van|von|der|den|el-|le|"
                  r"of|for|and|on)\s){0,2}[A-Z][\w'.&-]*|\s(?:al|el)-[A-Z][\w'.&-]*)*")
_NAME_WORD = re.compile(r"(?:al-|el-)?[A-Z][a-z'’]+(?:-[A-Z][a-z'’]+)*|[A-Z]\.|[A-Z][a-z]?[A-Z][a-z]+")
# Endings of common nouns, never of a name ("Civil Society Activity").
_NOT_NAME_ENDING = re.compile(r"(?:ity|tion|ment|ness|ism|ship|ics)$")
# First words of place names, never of a person's ("San Nicolas", "Puerto Cortes", "Castello Sforzesco").
_PLACE_OPENERS = frozenset("San Santa Santo Saint St. Fort Port Puerto Ciudad Mount Lake Cape Castello Castle Palazzo "
                           "Palace Piazza Plaza".split())
# Words of an office named after a title ("Minister of Foreign Affairs").
_OFFICE_WORDS = frozenset("""Affairs Immigration Communications Communication Information State Trade Economy Commerce
    Industry Culture Tourism Agriculture Labor Labour Transport Transportation Education Planning Development Security
    Home Internal Public Works Mines Youth Sports Women Social Welfare Water Environment Telecommunications Energy Oil
    Religious Endowments Awqaf Legal Economic Political Consular Foreign Finance Defense Defence Interior Justice
    Health Aviation""".split())
# After a role in a question's later clause: it acts there ("when the US ambassador called on him").
_ACTS = r"(?=\s+(?:[a-z]+ed|said|says|told|met|was|is|had|has|did|came|went|spoke|saw|gave|took|made|to)\b|\s*[,.?;]|$)"
_PARTICLES = frozenset("al- bin ibn abu de da del la los dos van von der den el- le".split())
_CONNECTORS = frozenset("of for and on".split())
_TITLE_WORDS = frozenset(w.lower().rstrip(".") for w in re.findall(r"[A-Za-z]+\.?", _TITLE))
# Capitalised words that never name a person: months, days, sentence openers, offices.
_NOT_NAMES = frozenset(w.lower() for w in (
    *MONTHS, *_DAYS.split("|"), "The", "This", "That", "These", "Those", "In", "On", "At", "For", "From", "By", "With",
    "After", "Before", "During", "According", "Although", "While", "When", "Since", "Under", "As", "If", "But",
    "And", "Also", "Embassy", "Post", "Mission", "Government", "Ministry", "Summary", "Comment", "End", "Note",
    "Begin", "Septel", "Reftel", "Poloff", "Econoff", "Pol", "Econ", "Emboffs", "Emboff", "Charge", "Ref",
    "Department", "Washington", "He", "She", "They", "We", "It", "His", "Her", "Their", "Our", "Its", "Please",
    "Action", "Request", "Background", "Subject", "Classified", "Reason", "Reasons"))
_ORGANISATION_WORDS = re.compile(
    r"\b(?:Ministry|Police|National|Office|Council|Committee|Party|Court|Assembly|Embassy|Department|Government|"
    r"Agency|Bank|Commission|Union|Republic|Kingdom|Army|Forces|University|Company|Corporation|Corp\.|Inc\.|Ltd\.?|"
    r"Group|Association|Federation|Front|Movement|Program|Programme|Project|Fund|Organi[sz]ation|Authority|"
    r"Service|Center|Centre|Institute|Foundation|Telecom|Airlines?|Petroleum|Oil|Gas|Energy|Holdings?|Trust|"
    r"League|Alliance|Coalition|Brigades?|Battalion|Unit|Bureau|Directorate|Parliament|Senate|Cabinet|Tribunal|"
    r"Network|Media|Press|Times|News|Post|Radio|Television|TV|Club|Church|Mosque|Cartel|Militia|Squad|Team|Guard|"
    r"Force)\b")
# Upper-case words of the telegram's framing, never an answer.
_MARKINGS = frozenset("""SUBJECT SBU NOFORN CONFIDENTIAL SECRET UNCLAS UNCLASSIFIED REF REFS TAGS FOUO END BEGIN
    SUMMARY COMMENT NOTE AND THE OF USG US USA GOV EO E.O. ACTION INFO PARA PARAS SIPDIS NF MRN REASON USD EUR GBP
    GMT AM PM""".split())
MONTH_WORD = re.compile(rf"(?:{_MONTH}|{_DAYS})")
_PLACE = re.compile(r"\b(?:in|at|from|to|near|into|outside(?: of)?|inside|across|via)\s(?:the\s)?"
                    rf"(?P<place>(?!(?:{_MONTH}|{_DAYS})\b)[A-Z][a-z]+"
                    rf"(?:[\s-](?:al-|el-)?(?!(?:{_MONTH}|{_DAYS})\b)[A-Z][a-z]+){{0,2}})")
_REASON = re.compile(r"\b(?:because(?: of)?|due to|as a result of|since|in order to|owing to|citing|cited|"
                     r"on the grounds that|in protest (?:at|against|of)|in response to|for fear of|so that)\b[^.;]{3,160}",
                     re.I)
_SENTENCE = re.compile(r"\bsentenc\w*\s(?:\w+\s){0,3}?to\s[^.;]{3,80}?(?=[.;,]|$)|\b(?:life imprisonment|death (?:penalty|"
                       r"sentence))\b|\b\S+[- ]years? (?:in prison|in jail|of imprisonment)|\bacquitted\b[^.;,]{0,60}",
                       re.I)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_GENERIC = frozenset("the this that these those embassy post department mission government summary comment note "
                     "end begin said told".split())

# The features of a span, in the order the fitted model reads them.
FEATURES = ("kind_agrees", "tier", "distance", "claim", "claim_cover", "rivals", "repeated", "support", "words",
            "titled", "unit", "first_claim_share", "unit_agrees", "sentence_cover", "sentence_rivals", "said", "cited_rank", "margin",
            *(f"kind_{k}" for k in KINDS))


@dataclass(frozen=True)
class Span:
    """A candidate one-line answer: its words, its kind, the claim it was cut from."""

    text: str
    kind: str
    tier: int  # 0 the best-shaped of its kind (a titled name, a figure with a unit), higher worse
    claim: int  # which claim of the answer, 0 first
    start: int
    end: int


@dataclass(frozen=True)
class OneLine:
    """The best span of an answer: shown as the one-line answer only when `shown` (its score
    clears the threshold); its claim is quoted first either way when it is of the kind asked."""

    text: str
    kind: str
    claim: int
    score: float
    shown: bool
    asked: bool  # of the kind the question asks for
    start: int = 0  # where the span begins in its claim's text (claims_of)


def _clauses(question: Question) -> tuple[str, str]:
    """The question's first wh-phrase, to where a clause of its own begins, and the rest:
    ("Who was Morocco's new Minister of Communications", "when the US ambassador called on him")."""
    text = question.text
    first = _FIRST_WH.search(text)
    start = first.start() if first else 0
    later = _LATER_CLAUSE.search(text, start + 1)
    return (text[start:later.start()], text[later.start():]) if later else (text[start:], "")


def asked_kind(question: Question) -> str:
    """The kind of answer the question asks for: "" when it asks for none a span can hold.
    The question's first wh-phrase decides ("Who was minister when the ambassador called?"
    asks for a person, "Which mob boss was killed when a bomb exploded?" a person too, "What
    product were they developing when …" nothing a span holds), though question.wants, read
    for ranking, finds the "when"."""
    text = question.text
    first = _FIRST_WH.search(text)
    if first and first.group(0).lower() in _WH_KINDS:
        return _WH_KINDS[first.group(0).lower()]
    # "How did Qadhafi receive Putin when …" asks for a manner, which no span holds.
    if first and first.group(0).lower() == "how":
        return question.wants if question.wants in ("number", "sentence") else ""
    clause, _ = _clauses(question)
    wants = wants_of(clause)
    if wants in ("", "person") and _ORGANISATION_ASKED.search(clause) and not _PERSON_ASKED.search(clause):
        return "organisation"
    if wants:
        return wants
    for kind, pattern in (("person", _PERSON_ASKED), ("place", _PLACE_ASKED), ("number", _NUMBER_ASKED)):
        if pattern.search(clause):
            return kind
    return ""


def claims_of(answer: str) -> list[tuple[str, list[Citation]]]:
    """The answer's claims, each the text before a run of citation tags, with those tags."""
    out: list[tuple[str, list[Citation]]] = []
    last = 0
    for m in Citation.PATTERN.finditer(answer):
        piece = " ".join(answer[last:m.start()].split())
        cited = Citation(m.group(1).upper(), int(m.group(2)))
        if len(piece) > 2 or not out:
            out.append((piece, [cited]))
        else:
            out[-1][1].append(cited)
        last = m.end()
    tail = " ".join(answer[last:].split())
    if len(tail) > 2 and not out:
        out.append((tail, []))
    return out


def _asked_words(question: Question) -> set[str]:
    return {w.lower() for w in _WORD.findall(question.text)}


def _new(span: str, question: Question) -> bool:
    """A span that says something the question does not already say: a word of its own
    ("of" and "the" say nothing), and not the initials of the question's words ("QA" for
    "quality assurance")."""
    said = words_of(question.text)
    own = {w for w in words_of(span) if " " not in w and w not in STOPWORDS} - said
    if not own:
        return False
    if span.isupper() and 1 < len(span) < 7:
        initials = "".join(w[0] for w in _WORD.findall(question.text) if w.lower() not in STOPWORDS).upper()
        return span not in initials
    return True


def _numbers(claim: str, question: Question) -> list[tuple[int, int, str, int]]:
    out = []
    long = _LONG_ASKED.search(question.text) is not None
    for m in _NUMBER.finditer(claim):
        value, unit = m.group(0), m.group("unit")
        if unit and unit.lower() in _NOT_UNITS:
            value = value[: m.start("unit") - m.start()].rstrip()
            unit = None
        digits = figures(_WRITTEN_ON.sub(" ", value))
        if not digits or YEAR.fullmatch(value.strip()) or digits <= question.figures:
            continue
        before = claim[max(0, m.start() - 24):m.start()]
        if _REFERENCE_BEFORE.search(before) or CABLE_ID.search(claim[max(0, m.start() - 12):m.end() + 2]):
            continue
        # A day of a month ("March 3", "3 March") is a date, not a figure.
        if re.search(rf"(?:{_MONTH})\s(?:\d{{1,2}}\s?(?:and|to|-|–)\s?)?$", before) \
                or re.match(rf"\s(?:{_MONTH})\b", claim[m.end():]):
            continue
        # "18.3 billion CFA (about $36 million)": the figure the cable reports, not its conversion.
        conversion = _CONVERSION.search(claim[max(0, m.start() - 40):m.start()])
        if conversion and (conversion.group("marker") or conversion.group("currency") or not value[0].isdigit()):
            continue
        if long and not _LONG_UNIT.search(value):
            continue
        shaped = unit or not value[0].isdigit() or not value.rstrip()[-1].isdigit()
        out.append((m.start(), m.start() + len(value), value, 0 if shaped else 1))
    for m in _SPELLED.finditer(claim):
        if m.group("unit").lower() not in _NOT_UNITS and _new(m.group(0), question) \
                and not (long and not _LONG_UNIT.search(m.group(0))):
            out.append((m.start(), m.end(), m.group(0), 0))
    return out


def _segments(claim: str) -> list[tuple[int, list[str]]]:
    """Runs of capitalised words cut at words that never belong to a name (months, openers):
    (offset of the first word, the words)."""
    out = []
    for m in _RUN.finditer(claim):
        offset, words = m.start(), []
        run = m.group(0).split(" ")
        for k, w in enumerate(run):
            # "Minister of Transportation and Aviation Ibrahim Sesay": an "and" between two offices
            # joins them into one title; elsewhere it parts two names.
            if w == "and" and "of" in words and words[-1] in _OFFICE_WORDS and k + 1 < len(run) \
                    and run[k + 1] in _OFFICE_WORDS:
                words.append(w)
            elif w.lower().rstrip(".,") in _NOT_NAMES:
                if words:
                    out.append((offset, words))
                offset, words = offset + sum(len(x) + 1 for x in words) + len(w) + 1, []
            else:
                words.append(w)
        if words:
            out.append((offset, words))
    return out


def _is_title(word: str) -> bool:
    word = word.lower().rstrip(".,")
    return word in _TITLE_WORDS or (word.endswith("s") and word[:-1] in _TITLE_WORDS)


def _persons(claim: str, question: Question) -> list[tuple[int, int, str, int]]:
    asked_lower = _asked_words(question)
    asked, rest = _clauses(question)
    out = []
    for offset, words in _segments(claim):
        # "Tachira Governor Diosdado Cabello", "Egyptian Foreign Minister Aboul Gheit": the words
        # before a title say whose it is; the person starts at the title.
        lead = next((j for j, w in enumerate(words[:-1]) if _is_title(w)), 0)
        offset += sum(len(w) + 1 for w in words[:lead])
        words = words[lead:]
        i = 0
        while i < len(words) and _is_title(words[i]):
            i += 1
        head = words[i - 1] if i else ""
        # "Minister of Immigration Shane Gibson", "Minister of Foreign Affairs Miguel Moratinos": the
        # office is part of the title (_segments has cut the run at "for", "and" and "on" already).
        if i and i + 2 < len(words) and words[i].lower() == "of":
            i += 2
            while i < len(words) - 1 and (_is_title(words[i]) or words[i] in _OFFICE_WORDS
                                          or _ORGANISATION_WORDS.fullmatch(words[i])
                                          or (words[i] == "and" and words[i + 1] in _OFFICE_WORDS)):
                i += 1
        if any(w.lower() in _CONNECTORS for w in words[i:]):
            continue
        # An initial keeps its point ("George W. Bush"); a name's last word loses the sentence's.
        title, name = words[:i], [w.rstrip(",") if re.fullmatch(r"[A-Z]\.,?", w) else w.rstrip(".,")
                                  for w in words[i:]]
        # A role the question's later clause gives ("when the US ambassador called") is someone the
        # question already has, not the one it asks for.
        if head and re.search(rf"\b(?:the|his|her|its|their|[\w-]+['’]s)\s+(?:[\w.'-]+\s+){{0,2}}?"
                              rf"{re.escape(head.rstrip('.'))}s?{_ACTS}", rest, re.I):
            continue
        # A surname the cable writes in capitals ("Abu Dujan AL AFGANI") ends the name there.
        upper = next((j for j, w in enumerate(name) if w.isupper() and len(w.rstrip(".")) > 1), len(name))
        name = name[:upper]
        # "President Vicente Fox's visit" names Vicente Fox; "Rossing's Final Product Recovery" no one.
        if any(re.search(r"['’]s$", w) for w in name[:-1]):
            continue
        if name and re.search(r"['’]s$", name[-1]):
            name[-1] = name[-1][:-2]
        # Never a title without its name, never a lone word nobody titled.
        if not name or (len(name) == 1 and not title) or len(name) > 4 or any(_is_title(w) for w in name):
            continue
        if not all(_NAME_WORD.fullmatch(w) or w.lower() in _PARTICLES for w in name) \
                or any(len(w) >= 8 and _NOT_NAME_ENDING.search(w) for w in name):
            continue
        # Untitled, "United States", "San Nicolas" and "Russian Soyuz" are no one; "Senator Jordan" is someone.
        if not title and (is_place(" ".join(name)) or any(is_place(w) for w in name) or name[0] in _PLACE_OPENERS):
            continue
        # A word the question itself writes in lower case is a verb or a noun there, not a name
        # ("Who ran that training?" is never answered "Yha Ran").
        if any(w.lower() in asked_lower for w in name):
            continue
        text = " ".join(title + name)
        # The office in a title may be a ministry's ("Minister of Government and Police"); the name may not.
        if _ORGANISATION_WORDS.search(" ".join(name)) or not _new(" ".join(name), question):
            continue
        out.append((offset, offset + len(text), text, 0 if title and len(name) > 1 else 1 if title or len(name) > 1 else 2))
    return out


def _organisations(claim: str, question: Question, bare: bool) -> list[tuple[int, int, str, int]]:
    """Organisations named by an organisation word or an acronym; with `bare`, any other
    capitalised name inside the sentence too (a "which company" question's "Gazprom")."""
    out = []
    for m in _RUN.finditer(claim):
        for start, words in _split_at_and(m.start(), m.group(0).rstrip(".,").split(" ")):
            out += _organisation(start, words, question, bare)
    return out


def _split_at_and(start: int, words: list[str]) -> list[tuple[int, list[str]]]:
    out, current = [], []
    for w in words:
        if w == "and":
            out.append((start, current))
            start += sum(len(x) + 1 for x in current) + len(w) + 1
            current = []
        else:
            current.append(w)
    return out + [(start, current)]


def _organisation(start: int, words: list[str], question: Question, bare: bool) -> list[tuple[int, int, str, int]]:
    while words and (words[0].lower() in _CONNECTORS or (words[0].lower() in _NOT_NAMES
                                                          and not _ORGANISATION_WORDS.fullmatch(words[0]))):
        start += len(words[0]) + 1
        words = words[1:]
    while words and words[-1].lower() in _CONNECTORS | _PARTICLES:
        words = words[:-1]
    text = " ".join(words)
    if not text or text.upper() in _MARKINGS or not _new(text, question):
        return []
    named = _ORGANISATION_WORDS.search(text) is not None
    acronym = len(words) == 1 and text.isupper() and len(text) > 1
    # A capitalised word that opens the sentence is any word; inside it, a name.
    if not (named or acronym) and (not bare or start == 0 or any(_is_title(w) or MONTH_WORD.fullmatch(w)
                                                                  for w in words)):
        return []
    return [(start, start + len(text), text, 0 if named else 1 if acronym else 2)]


def _typed(pattern: re.Pattern, claim: str, question: Question, group: int | str = 0) -> list[tuple[int, int, str, int]]:
    return [(m.start(group), m.end(group), m.group(group).strip(" ,"), 0) for m in pattern.finditer(claim)
            if _new(m.group(group), question)]


def spans_of(claim: str, kind: str, question: Question) -> list[tuple[int, int, str, int]]:
    """(start, end, text, tier) of every span of `kind` in the claim."""
    if kind == "number":
        return _numbers(claim, question)
    if kind == "date":
        return [(a, b, t, 0 if not YEAR.fullmatch(t) else 1) for a, b, t, _ in _typed(_DATE, claim, question)]
    if kind == "person":
        return _persons(claim, question)
    if kind == "organisation":
        return _organisations(claim, question, bare=asked_kind(question) == "organisation")
    if kind == "place":
        return _typed(_PLACE, claim, question, "place")
    if kind == "reason":
        return _typed(_REASON, claim, question)
    if kind == "sentence":
        return _typed(_SENTENCE, claim, question)
    return []


# A "who" question is often answered by an organisation, a "which organisation" one by a person.
_ALSO = {"person": ("organisation",), "organisation": ("person",)}


def candidate_spans(question: Question, claims: list[str]) -> list[Span]:
    """Spans of the kind asked for (and of its near kind) in the answer's claims."""
    kind = asked_kind(question)
    if kind not in KINDS:
        return []
    out = []
    for i, claim in enumerate(claims):
        for k in (kind, *_ALSO.get(kind, ())):
            out += [Span(text, k, tier, i, a, b) for a, b, text, tier in spans_of(claim, k, question)]
    return out


# What a "how many" question counts: the words after it up to its verb ("By how many votes did …").
_COUNTED = re.compile(rf"\bhow (?:many|much)\s+((?:(?!{_AUXILIARY})[\w'-]+\s+){{1,5}})", re.I)
_SCALE_WORDS = frozenset("million billion trillion thousand hundred mn bn percent cent dollars euros pounds".split())


# "How much did they embezzle?" names no unit but asks for an amount (money, a weight, a
# share), never a count of things: "six states" does not answer it.
_AMOUNT_ASKED = re.compile(rf"\bhow much\s+{_AUXILIARY}", re.I)
_MEASURES = frozenset("""francs yen yuan renminbi rubles roubles rupees dinars dirhams riyals rials shillings pesos
    reais lira liras lari manat tenge dram leva lei kuna kroner kronor hryvnia baht ringgit dong rand naira cedis
    kwacha riel grams kilograms kilos tons tonnes barrels liters litres gallons meters metres kilometers kilometres
    hectares acres megawatts kilowatts gigawatts points""".split())


def _counted(question: Question) -> set[str] | None:
    """The stems of what a "how many" question counts; empty when it counts nothing; None when
    it asks "how much" of nothing named (an amount)."""
    counted = _COUNTED.search(question.text)
    if counted:
        return set(tokenize([counted.group(1)])[0])
    return None if _AMOUNT_ASKED.search(question.text) else set()


def _unit_agrees(counted: set[str] | None, span: Span) -> float:
    """+1 when a figure's unit is what the question counts (`_counted`), -1 when it counts
    something else ("23,200 residents" for "by how many votes") or counts things where an
    amount is asked, 0 when either is unsaid."""
    unit = span.text.split()[-1] if span.kind == "number" and " " in span.text else ""
    if not re.fullmatch(r"[a-z][a-z-]+", unit) or unit in _SCALE_WORDS:
        return 0.0
    if counted is None:
        return 0.0 if unit in _MEASURES else -1.0
    if not counted:
        return 0.0
    return 1.0 if set(tokenize([unit])[0]) & counted else -1.0


def _said(span: Span, wanted: set[str]) -> float:
    """The share of a span's own words the question already says: "Mustafa Kemal Ataturk" for a
    question on Ataturk's daughter is someone the question has (though "Rahul Gandhi" may be
    the answer to one on Sonia Gandhi's children)."""
    own = {w for w in words_of(span.text) if " " not in w and w not in STOPWORDS}
    return len(own & wanted) / len(own) if own else 0.0


def _anchors(question: Question, text: str) -> list[int]:
    """Character offsets of the text's words that the question also uses."""
    wanted = words_of(question.text)
    return [m.start() for m in _WORD.finditer(text) if len(m.group(0)) > 3 and m.group(0).lower() not in _GENERIC
            and not words_of(m.group(0)).isdisjoint(wanted)]


def standing(claimed: list[tuple[str, list[Citation]]], hits: list[Hit]) -> tuple[list[int], float]:
    """Where each claim's best cited paragraph ranks among `hits` (len(hits) when none is there),
    and by how much the ranker put its first paragraph above its second: an answer quoted from a
    paragraph the ranker was sure of is more often the asked thing."""
    rank = {}
    for i, hit in enumerate(hits):
        rank.setdefault(hit.citation, i)
    ranks = [min((rank.get(t, len(hits)) for t in tags), default=len(hits)) for _, tags in claimed]
    margin = hits[0].score - hits[1].score if len(hits) > 1 else 0.0
    return ranks, margin


def features(question: Question, spans: list[Span], claims: list[str], supports: list[float],
             paragraphs: list[str], ranks: list[int] | None = None, margin: float = 0.0) -> np.ndarray:
    """One row of FEATURES per span. `supports`: the verifier's score of each claim;
    `paragraphs`: the text of the top retrieved paragraphs; `ranks` and `margin`: `standing`."""
    ranks = ranks or [len(paragraphs)] * len(claims)
    kind = asked_kind(question)
    wanted = words_of(question.text)
    anchors = [_anchors(question, c) for c in claims]
    cover = [len(words_of(c) & wanted) / max(1, len(wanted)) for c in claims]
    lowered = [p.lower() for p in paragraphs]
    first_claim = sum(s.claim == 0 for s in spans) / max(1, len(spans))
    counted = _counted(question)
    # A claim can be a whole paragraph: what the question says must be near the span in its
    # own sentence, not anywhere in the claim ("Present at the meeting was General X, who is in
    # charge of the police response" after a sentence on the visit).
    bounds = [sentence_bounds(c, min_chars=0) for c in claims]
    sentence_of = [next(((a, b) for a, b in bounds[s.claim] if a <= s.start < b), (0, len(claims[s.claim])))
                   for s in spans]
    sentence_cover = {(s.claim, at): len(words_of(claims[s.claim][at[0]:at[1]]) & wanted) / max(1, len(wanted))
                      for s, at in zip(spans, sentence_of)}
    rows = []
    for s, at in zip(spans, sentence_of):
        near = anchors[s.claim]
        distance = min(min(abs(a - s.start), abs(a - s.end)) for a in near) if near else 400
        rivals = sum(1 for o in spans if o.claim == s.claim and o.kind == s.kind and o.text != s.text)
        repeated = sum(s.text.lower() in p for p in lowered)
        sentence_rivals = sum(1 for o, o_at in zip(spans, sentence_of) if o.claim == s.claim and o_at == at
                              and o.kind == s.kind and o.text != s.text)
        rows.append([
            float(s.kind == kind), float(s.tier), math.log1p(distance), float(s.claim), cover[s.claim],
            math.log1p(rivals), float(repeated), supports[s.claim] if s.claim < len(supports) else 0.0,
            math.log1p(len(s.text.split())), float(re.match(_TITLE, s.text) is not None),
            float(s.kind == "number" and s.tier == 0), first_claim, _unit_agrees(counted, s),
            sentence_cover[s.claim, at], math.log1p(sentence_rivals), _said(s, wanted), math.log1p(ranks[s.claim]),
            margin,
            *(float(s.kind == k) for k in KINDS),
        ])
    return np.array(rows, dtype=np.float64).reshape(len(spans), len(FEATURES))


class ShortAnswer:
    """Picks the one-line answer with the fitted model (rag/models/one_line.json); without a
    model, none is shown."""

    def __init__(self, model: LinearModel | None):
        if model is not None and tuple(model.features) != FEATURES:
            raise ValueError("rag/models/one_line.json was fitted on other features: run evals/fit_one_line.py")
        self.model = model

    def scored(self, question: Question, answer: str, support: dict[Citation, float],
               hits: list[Hit]) -> list[tuple[Span, float]]:
        """Every candidate span with its model score, best first. `support`: the verifier's
        score of each cited paragraph; `hits`: the top retrieved paragraphs, as ranked."""
        claimed = claims_of(answer)
        claims = [c for c, _ in claimed]
        supports = [max((support.get(t, 0.0) for t in tags), default=0.0) for _, tags in claimed]
        spans = candidate_spans(question, claims)
        if self.model is None or not spans:
            return []
        ranks, margin = standing(claimed, hits)
        scores = self.model.score(features(question, spans, claims, supports, [h.text for h in hits], ranks, margin))
        return sorted(zip(spans, map(float, scores)), key=lambda x: (-x[1], x[0].claim, x[0].start))

    def best(self, question: Question, answer: str, support: dict[Citation, float],
             hits: list[Hit]) -> OneLine | None:
        """The best span, or None when the answer has none (or there is no model)."""
        scored = self.scored(question, answer, support, hits)
        if not scored:
            return None
        span, score = scored[0]
        return OneLine(span.text, span.kind, span.claim, score, score >= self.model.threshold,
                       span.kind == asked_kind(question), span.start)


def lead_with(answer: str, claim: int, start: int = 0) -> str:
    """The answer with the claim that holds the one-line answer moved first (with its tags), and
    in that claim the sentence holding offset `start` of its text (claims_of) first: a claim
    quoting several sentences of one paragraph states the asked thing in its first."""
    pieces, last = [], 0
    for m in re.finditer(rf"(?:\s*{Citation.PATTERN.pattern})+", answer):
        pieces.append(answer[last:m.end()])
        last = m.end()
    if last < len(answer):
        pieces.append(answer[last:])
    pieces = [p for p in pieces if p.strip()]
    if claim >= len(pieces):
        return answer
    piece = pieces[claim]
    tags = Citation.PATTERN.search(piece)
    text, tail = (piece[:tags.start()], piece[tags.start():]) if tags else (piece, "")
    text = " ".join(text.split())
    bounds = sentence_bounds(text)
    holding = next((i for i, (a, b) in enumerate(bounds) if a <= start < b), 0)
    if holding:
        order = [bounds[holding], *bounds[:holding], *bounds[holding + 1:]]
        pieces[claim] = " ".join(text[a:b] for a, b in order) + " " + tail.strip()
    elif claim == 0:
        return answer
    moved = [pieces[claim], *pieces[:claim], *pieces[claim + 1:]]
    return " ".join(p.strip() for p in moved)
