"""British and American spellings of one word: "favour" and "favor", "defence" and "defense".

The cables write American English; their readers, and the documents they quote, often do not.
A question's word is matched in every spelling (BM25's query, the evidence check's "no
paragraph mentions"), so "favour" finds what "favor" finds.
"""

from __future__ import annotations

import re
from functools import lru_cache

# (British ending, American ending, the suffixes either may carry).
_PAIRS = (
    ("our", "or", "s|ed|ing|able|ably|ite|ites|ful|less|"),
    ("is", "iz", "e|es|ed|ing|ation|ations|er|ers"),
    ("ys", "yz", "e|es|ed|ing"),
    ("tre", "ter", "s|"),
    ("ence", "ense", "s|"),
    ("ogue", "og", "s|"),
    ("amme", "am", "s|"),
    ("ll", "l", "ed|ing|er|ers"),
)
_RULES = [(re.compile(rf"^(\w*[a-z]{{2}}){src}({suffixes})$"), dst)
          for british, american, suffixes in _PAIRS
          for src, dst in ((british, american), (american, british))]


_TRIPLE = re.compile(r"(\w)\1\1")


@lru_cache(maxsize=4096)
def variants(word: str) -> frozenset[str]:
    """The word's other spellings, lower-cased; empty for most words."""
    word = word.lower()
    found = {m.expand(rf"\g<1>{dst}\g<2>") for pattern, dst in _RULES if (m := pattern.match(word))}
    return frozenset(v for v in found if not _TRIPLE.search(v)) - {word}
