"""Names the cables spell more than one way: a question says "Britain", the cable "U.K.".

`mentioned(name, words)` is the one test every evidence check uses: whole words (so "Iran" is
not found in "Tirana"), a name's stem (so "arrests" matches "arrest"), and the alias groups
below (countries with their demonyms and the cables' abbreviations). Matching is on
lower-cased tokens as `words_of` makes them, dots dropped so "U.K." is "uk".
"""

from __future__ import annotations

import re
from functools import lru_cache

from rag.index.bm25 import stemmer
from rag.spelling import variants

# One group a line: every spelling in a group names the same thing. Demonyms are here because
# a question's "Chinese financing" is answered by a cable's "China"; capitals are not, since
# a question about Vientiane is not answered by a cable that only says "Laos".
_GROUPS = """
uk britain british england english united-kingdom great-britain brits
us usa america american americans united-states usg
dprk north-korea north-korean
rok south-korea south-korean
prc china chinese
roc taiwan taiwanese
burma burmese myanmar
russia russian russians
iran iranian iranians persian
iraq iraqi iraqis
israel israeli israelis
palestine palestinian palestinians pa plo
syria syrian
lebanon lebanese
egypt egyptian
libya libyan
saudi saudi-arabia saudis ksa
uae emirates emirati
afghanistan afghan afghans
pakistan pakistani gop
india indian indians goi
japan japanese goj
france french gof
germany german germans frg
italy italian italians
spain spanish
turkey turkish turks
greece greek
cambodia cambodian cambodians khmer rgc
laos lao laotian
vietnam vietnamese
thailand thai rtg
indonesia indonesian
philippines philippine filipino
mexico mexican mexicans
cuba cuban cubans
venezuela venezuelan
colombia colombian
brazil brazilian
argentina argentine argentinian
peru peruvian
canada canadian canadians
australia australian australians
iceland icelandic icelanders
sweden swedish swedes
norway norwegian
denmark danish
finland finnish
netherlands dutch holland
belgium belgian
ukraine ukrainian
belarus belarusian
kazakhstan kazakh kazakhstani
uzbekistan uzbek
georgia georgian
azerbaijan azeri azerbaijani
armenia armenian
nigeria nigerian
kenya kenyan
ethiopia ethiopian
somalia somali
sudan sudanese
zimbabwe zimbabwean
south-africa south-african
yemen yemeni
albania albanian albanians
algeria algerian algerians
angola angolan
austria austrian austrians
bahamas bahamian
bahrain bahraini bahrainis
bangladesh bangladeshi bangladeshis
barbados barbadian
bolivia bolivian
bosnia bosnian bosnia-and-herzegovina
botswana motswana batswana
bulgaria bulgarian bulgarians
burundi burundian
cameroon cameroonian
chile chilean chileans
congo congolese drc
costa-rica costa-rican
croatia croatian croatians
cyprus cypriot cypriots
czech-republic czech czechs
dominican-republic dominican
ecuador ecuadorian ecuadorean
el-salvador salvadoran salvadorean
eritrea eritrean
estonia estonian
gabon gabonese
ghana ghanaian
guatemala guatemalan
guinea guinean
haiti haitian haitians
honduras honduran
hungary hungarian hungarians
ireland irish
jamaica jamaican
jordan jordanian jordanians
kosovo kosovar kosovars kosovo-albanian
kuwait kuwaiti kuwaitis
kyrgyzstan kyrgyz
latvia latvian
liberia liberian
lithuania lithuanian
macedonia macedonian
madagascar malagasy
malawi malawian
malaysia malaysian malaysians
mali malian
malta maltese
mauritania mauritanian
moldova moldovan
mongolia mongolian
montenegro montenegrin
morocco moroccan moroccans
mozambique mozambican
namibia namibian
nepal nepali nepalese
new-zealand new-zealander
nicaragua nicaraguan
niger nigerien
oman omani
panama panamanian
paraguay paraguayan
poland polish poles
portugal portuguese
qatar qatari qataris
romania romanian romanians
rwanda rwandan
senegal senegalese
serbia serbian serbs
sierra-leone sierra-leonean
slovakia slovak slovakian
slovenia slovenian slovene
sri-lanka sri-lankan
suriname surinamese surinam
switzerland swiss
tajikistan tajik
tanzania tanzanian
trinidad trinidadian trinidad-and-tobago
tunisia tunisian tunisians
turkmenistan turkmen
uganda ugandan
uruguay uruguayan
vatican holy-see
zambia zambian
un united-nations unsc
eu european-union
nato alliance
ngo ngos non-governmental
tip trafficking-in-persons human-trafficking
rangoon yangon
kyiv kiev
qadhafi gaddafi qaddafi gadhafi
almaty alma-ata
mumbai bombay
beijing peking
"""

_DOTS = re.compile(r"(?<=\b[A-Za-z])\.(?=[A-Za-z]\b)|(?<=\b[A-Za-z]\.[A-Za-z])\.")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@lru_cache(maxsize=1)
def _groups() -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for line in _GROUPS.strip().splitlines():
        group = frozenset(w.replace("-", " ") for w in line.split())
        for spelling in group:
            out[spelling] = out.get(spelling, frozenset()) | group
    return out


def words_of(text: str) -> set[str]:
    """Lower-cased word tokens and their stems; "U.K." becomes "uk", adjacent pairs are joined
    so two-word aliases ("south korea") can match."""
    tokens = _TOKEN.findall(_DOTS.sub("", text).lower().replace("'s ", " "))
    stems = stemmer().stemWords(tokens)
    pairs = [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    return set(tokens) | set(stems) | set(pairs)


def spellings(name: str) -> frozenset[str]:
    """The name, its stem, its aliases and its British or American spelling, lower-cased."""
    name = _DOTS.sub("", name).lower().strip()
    forms = {name, *variants(name)}
    return _groups().get(name, frozenset()) | forms | {stemmer().stemWord(f) for f in forms}


def aliases_of(name: str) -> frozenset[str]:
    """The spellings of the lower-cased name's alias group (empty when it has none)."""
    return _groups().get(name, frozenset())


def mentioned(name: str, words: set[str]) -> bool:
    """Whether a text whose `words_of` is `words` names `name` in any of its spellings."""
    return not spellings(name).isdisjoint(words)
