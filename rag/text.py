"""Small text helpers shared by chunking, answering and verification."""

from __future__ import annotations

import re

# A sentence ends at . ! ? followed by space and a capital, digit or opening quote; "U.S." and
# "Lt. General" still split occasionally, which costs little: pieces are re-joined when short.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+|\d[\d,.]*\d|\d")
_NUMBER = re.compile(r"\d[\d,.]*\d|\d")
_NAME = re.compile(r"\b[A-Z][a-zA-Z'-]+(?:\s+[A-Z][a-zA-Z'-]+)*")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own said same say says she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    according did embassy cable cables us u.s. what which who whose how many much""".split()
)


# A period after these (or after an initial, "H. Clinton") does not end a sentence.
_ABBREVIATION = re.compile(
    r"(?:\b(?:Dr|Mr|Mrs|Ms|Messrs|Gen|Lt|Col|Maj|Capt|Cpt|Sgt|Adm|Cmdr|Brig|Gov|Sen|Rep|Amb|Pres|Prof|"
    r"St|Mt|No|Nos|Jr|Sr|Inc|Ltd|Corp|Co|Dept|Vol|approx|vs|etc|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|"
    r"Oct|Nov|Dec)|\b[A-Z]|\bU\.S|\bU\.N|\bU\.K)\.$"
)


def split_sentences(text: str, min_chars: int = 25) -> list[str]:
    """Sentences of `text`; fragments shorter than `min_chars` are joined to their neighbour."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if out and (len(out[-1]) < min_chars or len(piece) < min_chars or _ABBREVIATION.search(out[-1])):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning (no stopwords), crudely stemmed by trimming an 's'."""
    words = set()
    for w in _WORD.findall(text):
        w = w.lower().strip("'")
        if w in STOPWORDS or len(w) < 2:
            continue
        words.add(w[:-1] if w.endswith("s") and len(w) > 3 and not w[0].isdigit() else w)
    return words


def numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def names(text: str) -> set[str]:
    """Capitalised words (not at a sentence start) — the names a claim stands on."""
    found = set()
    for m in _NAME.finditer(text):
        start = m.start()
        before = text[:start].rstrip()
        if not before or before[-1] in ".!?[(\"":
            words = m.group(0).split()[1:]
        else:
            words = m.group(0).split()
        found.update(w.lower() for w in words if w.lower() not in STOPWORDS and len(w) > 1)
    return found


_MARKINGS = re.compile(
    r"\((?:U|C|S|SBU|TS|S/NF|C/NF|S//NF|C//NF|S/REL[^)]*|FOUO|U//FOUO|NOFORN)\)\s*"
    r"|\b(?:BEGIN |END )?SUMMARY(?: AND COMMENT)?\s*[:.]\s*|\bEND (?:NOTE|COMMENT)\s*\.\s*"
)


def strip_markings(text: str) -> str:
    """The sentence without classification markings ("(SBU)") and telegram framing ("END SUMMARY.")."""
    return " ".join(_MARKINGS.sub(" ", text).split())
