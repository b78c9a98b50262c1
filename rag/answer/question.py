"""What a question asks for, read once and passed to ranking, the evidence check and the answer.

Nothing here is learned: it is the question's own words (stemmed as BM25 stems them), its
years, figures, proper names and cable ids, and the kind of answer its wh-word asks for.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rag.citation import CABLE_ID, find_citations
from rag.index.bm25 import tokenize
from rag.text import STOPWORDS, key_names

YEAR = re.compile(r"\b(19[5-9]\d|20[0-3]\d)\b")
# A month of a year a question asks about: "March 2010", "the end of 2010", "mid-2010".
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH_OF_YEAR = re.compile(rf"\b({'|'.join(MONTHS)}|end of|late|mid-?)\s*(?:of\s+)?(19[5-9]\d|20[0-3]\d)\b", re.I)
_MONTH_NUMBER = {m.lower(): i for i, m in enumerate(MONTHS, 1)}
_FIGURE = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
# The answer a wh-phrase asks for. Order matters: a court's sentence before "how many" ("how many
# years in prison"), "how many" before "how", "what year" before "what".
_WANTS = (
    ("sentence", re.compile(r"\bwhat (?:\w+ )?(?:sentences?|penalty|punishment)\b|\bwhat (?:was|were) the (?:\w+ )?"
                            r"(?:verdicts?|sentences?)\b|\bsentenced to\b|\bhow (?:many years|long) (?:in|of|behind) "
                            r"(?:prison|jail|bars)\b", re.I)),
    ("number", re.compile(r"\bhow (?:many|much|large|big|long|far|old|high|often)\b|\bwhat (?:percent(?:age)?|share|"
                          r"number|amount|proportion|fraction|sum|price|figure|total|value|rate|vote|margin|size)\b"
                          r"|\bby (?:what|how much)\b|\bat what (?:cost|price|rate)\b", re.I)),
    ("date", re.compile(r"\bwhen\b|\bwhat (?:year|date|day|month|time)\b|\bon what (?:date|day)\b|"
                        r"\bin (?:what|which) (?:year|month)\b", re.I)),
    ("person", re.compile(r"\bwho(?:m|se)?\b|\bwhich\s+(?:[\w'-]+\s+){0,3}?(?:official|minister|person|man|woman|leader|ambassador|"
                          r"general|officer|politician|candidate|member|executive|diplomat)\b", re.I)),
    ("place", re.compile(r"\bwhere\b|\b(?:what|which)\s+(?:[\w'-]+\s+){0,2}?(?:country|city|province|region|town|village|state|"
                         r"division|district|port|island|capital|site|location)\b", re.I)),
    ("reason", re.compile(r"\bwhy\b|\bfor what reason\b|\bwhat (?:led|caused|prompted|motivated)\b", re.I)),
)

# Words saying a question asks what was planned or expected, not what happened: a year after
# the cables end is then no reason to refuse.
_PROSPECTIVE = re.compile(r"\b(?:forecast|expect|project|plan|predict|target|estimat|schedul|intend|will|would|"
                          r"could|should|hope|aim|propos|envisag|anticipat|outlook)\w*", re.I)


# Stems of the words that frame a question rather than name its subject (bm25s's English stop
# list keeps them).
_FRAME = frozenset("who whom whose what when where whi how mani much which did doe do accord say said report "
                   "cabl embassi describ tell mention".split())


def stems(text: str) -> list[str]:
    """The text's tokens as BM25 indexes them."""
    return tokenize([text])[0]


def figures(text: str) -> set[str]:
    """Numbers in the text, years excluded, without thousands separators."""
    out = set()
    for m in _FIGURE.finditer(text):
        value = m.group(0).replace(",", "").rstrip(".")
        if not YEAR.fullmatch(value):
            out.add(value)
    return out


def months_of(text: str) -> frozenset[tuple[int, str]]:
    """The months the text names with their year, as (YYYYMM, the words): "the end of 2010" →
    (201012, "end of 2010")."""
    out = set()
    for m in _MONTH_OF_YEAR.finditer(text):
        word = m.group(1).lower().rstrip("-")
        month = _MONTH_NUMBER.get(word) or {"end of": 12, "late": 12, "mid": 6}[word]
        out.add((int(m.group(2)) * 100 + month, m.group(0)))
    return frozenset(out)


# Where a question in several parts may start its next one: ", and which …", ", and by what
# vote …", "; how …", ", how many …" (after a bare comma only "how"/"what": ", which …" and
# ", when …" mostly open a relative clause).
_WH = r"(?:who|whom|whose|what|which|where|when|why|how)\b"
_NEXT_PART = re.compile(rf"(?:,?\s+and|;)\s+(?={_WH}|(?:did|does|do)\s|(?:at|on|by|in|for|from|to|with|under)\s+"
                        rf"(?:\w+\s+)?(?:what|which|whom|how)\b)|,\s+(?=(?:how|what)\b)", re.I)
_ASKS = re.compile(rf"\b{_WH}|^\W*(?:did|does|do)\b", re.I)
_CAPITALISED_WORD = re.compile(r"(?<!^)\b[A-Z][\w'.-]*\w")


def _asks(piece: str) -> bool:
    return bool(_ASKS.search(piece)) and len(piece.split()) >= 3


def parts(text: str) -> list[str]:
    """A question in several parts as one question per part, each later part carrying the
    first part's capitalised words so it can be searched on its own ("…, and what was the
    verdict in July 2008?" → "What was the verdict in July 2008? (Bahrain's)"). A piece that
    asks nothing ("In January 2010, what …", "Where and when …") stays with its neighbour;
    a question in one part is returned as it is."""
    cuts, start = [], 0
    for m in _NEXT_PART.finditer(text):
        if _asks(text[start:m.start()]):
            cuts.append((m.start(), m.end()))
            start = m.end()
    if cuts and not _asks(text[cuts[-1][1]:]):
        cuts.pop()
    if not cuts:
        return [text]
    bounds = [0] + [x for cut in cuts for x in cut] + [len(text)]
    pieces = [text[a:b].strip(" ,;?") for a, b in zip(bounds[::2], bounds[1::2])]
    names = [w for w in _CAPITALISED_WORD.findall(pieces[0]) if w not in MONTHS]
    context = f" ({' '.join(dict.fromkeys(names))})" if names else ""
    return [f"{pieces[0]}?"] + [f"{p[0].upper()}{p[1:]}?{context}" for p in pieces[1:]]


def wants_of(text: str) -> str:
    for kind, pattern in _WANTS:
        if pattern.search(text):
            return kind
    return ""


@dataclass(frozen=True)
class Question:
    text: str
    terms: tuple[str, ...]
    years: frozenset[str]
    months: frozenset[tuple[int, str]]  # (YYYYMM, words) of "March 2010", "the end of 2010"
    figures: frozenset[str]
    names: frozenset[str]
    cable_ids: tuple[str, ...]
    wants: str
    prospective: bool
    # (cable id, paragraph) of each paragraph the question names: ranked first (rag.answer.rank).
    paragraphs: tuple[tuple[str, int], ...] = ()


def fold(text: str) -> str:
    """The text without accents ("García" → "Garcia"): the cables are ASCII, questions need not be."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _without(text: str, mentions) -> str:
    """`text` with each citation's stretch blanked."""
    for m in reversed(mentions):
        text = text[: m.start] + " " + text[m.end :]
    return text


def analyse(text: str, context: str = "") -> Question:
    """The question read for ranking and evidence. `context` is the stand-alone form of a
    follow-up (the question with the earlier turns' names and cable ids): its cable ids count,
    its words do not, so "Where was he born?" is ranked by "born", within the cable talked about."""
    text = fold(text)
    # A paragraph the question names ("09PHNOMPENH637 ¶6", "… para 6", "…:6") says where to
    # look: neither a figure nor a word to find.
    mentions = find_citations(text)
    named = [(c.cable_id, c.paragraph) for m in mentions for c in m.citations if c.paragraph is not None]
    without_ids = CABLE_ID.sub(" ", _without(text, mentions))
    return Question(
        text=text,
        terms=tuple(t for t in dict.fromkeys(stems(without_ids)) if t not in _FRAME and t not in STOPWORDS),
        years=frozenset(YEAR.findall(without_ids)),
        months=months_of(without_ids),
        figures=frozenset(figures(YEAR.sub(" ", without_ids))),
        names=frozenset(key_names(without_ids)),
        cable_ids=tuple(dict.fromkeys(CABLE_ID.findall(f"{text} {context}".upper()))),
        wants=wants_of(text),
        prospective=bool(_PROSPECTIVE.search(text)),
        paragraphs=tuple(dict.fromkeys(named)),
    )
