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


def sentence_bounds(text: str, min_chars: int = 25) -> list[tuple[int, int]]:
    """(start, end) offsets in `text` of the sentences `split_sentences` would give."""
    out: list[tuple[int, int]] = []
    start = 0
    for end in [m.start() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
        piece = text[start:end].strip()
        if piece:
            a = start + len(text[start:end]) - len(text[start:end].lstrip())
            b = a + len(piece)
            last = text[out[-1][0]:out[-1][1]] if out else ""
            if out and (len(last) < min_chars or len(piece) < min_chars or _ABBREVIATION.search(last)):
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        match = _SENTENCE_END.match(text, end)
        start = match.end() if match else end
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
    r"\(\s*(?:U|C|S|SBU|TS|S/NF|C/NF|S//NF|C//NF|SBU/NF|S/REL[^)]*|FOUO|U//FOUO|NOFORN)\s*\)\s*"
    r"|\b(?i:(?:begin |end )?summary(?: and comment)?)\s*[:.]\s*|\b(?i:end (?:note|comment))\s*\.\)?\s*"
)


def strip_markings(text: str) -> str:
    """The sentence without classification markings ("(SBU)") and telegram framing ("END SUMMARY.")."""
    return " ".join(_MARKINGS.sub(" ", text).split())


# Capitalised words that name no particular thing: months, regions, demonyms of regions,
# offices. A question's other capitalised words name what the evidence must mention.
GENERIC_NAMES = frozenset(
    """january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday africa african asia asian europe european
    america americas american latin middle east eastern west western north northern south southern
    southeast central arab nordic english islamic embassy consulate ambassador minister ministry
    president government secretary general department state national party council court fouo sbu
    unclassified secret confidential noforn washington usg""".split()
)
_CAPITALISED = re.compile(r"(?<![\w'])[A-Z][A-Za-z-]+")


_PARENTHESISED = re.compile(r"\([^)]*\)")


def key_names(question: str) -> set[str]:
    """Lower-cased proper names of a question (not its first word, not generic words, not an
    alternative spelling given in parentheses: "the Kashgai (Qashqai)")."""
    found = set()
    question = _PARENTHESISED.sub(lambda m: " " * len(m.group(0)), question)
    for m in _CAPITALISED.finditer(question):
        word = m.group(0).lower()
        if m.start() == 0 or word in STOPWORDS or word in GENERIC_NAMES or len(word) < 3:
            continue
        found.add(word)
    return found


# Text that addresses a language model rather than a reader. Cables are data: such a sentence
# is never quoted as an answer nor passed to an LLM.
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,40}\b(?:instructions?|prompts?|rules|directions)\b"
    r"|\bsystem prompt\b|\byou are (?:an?|the) (?:ai|assistant|language model|chatbot)\b"
    r"|\b(?:assistant|ai|model|llm)\s*[:,]\s*(?:cite|answer|respond|say)\b",
    re.IGNORECASE,
)


def is_injection(sentence: str) -> bool:
    return bool(_INJECTION.search(sentence))


def without_injections(text: str) -> str:
    """The text with sentences that address an AI model replaced by a marker."""
    sentences = split_sentences(text, min_chars=0)
    if not any(is_injection(s) for s in sentences):
        return text
    return " ".join("[instruction-like text removed]" if is_injection(s) else s for s in sentences)
