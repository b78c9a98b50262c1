"""The country a cable was sent from, read off its origin: "Embassy Madrid" reports on Spain.

A question that states a country ("What did Spain's operators agree?") is about the cables of
that country's posts, even where a paragraph never writes the country's name (the cable's
subject and text say "the GOS", "Telefonica", "Madrid"). The ranker and the evidence check
read a cable's country as one of the words it mentions, so a paragraph from Embassy London
does not pass for Spain's because it shares the question's other names.

One post a line, `City: country`; the country is spelled as rag.answer.aliases groups it, so
its demonyms match too. Posts of several countries (USUN, USNATO, Geneva) report on a body,
and are spelled as that body. Consulate Jerusalem is left out: it reports on more than one
people.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rag.answer.aliases import aliases_of

_POSTS = """
Abidjan: cote d'ivoire
Abu Dhabi: uae
Abuja: nigeria
Accra: ghana
Adana: turkey
Addis Ababa: ethiopia
Algiers: algeria
Almaty: kazakhstan
Amman: jordan
Amsterdam: netherlands
Ankara: turkey
Antananarivo: madagascar
Apia: samoa
Ashgabat: turkmenistan
Asmara: eritrea
Astana: kazakhstan
Asuncion: paraguay
Athens: greece
Baghdad: iraq
Baku: azerbaijan
Bamako: mali
Bandar Seri Begawan: brunei
Bangkok: thailand
Bangui: central african republic
Banjul: gambia
Barcelona: spain
Basrah: iraq
Beijing: china
Beirut: lebanon
Belfast: uk
Belgrade: serbia
Belmopan: belize
Berlin: germany
Bern: switzerland
Bishkek: kyrgyzstan
Bogota: colombia
Brasilia: brazil
Bratislava: slovakia
Brazzaville: congo
Bridgetown: barbados
Brussels: belgium
Bucharest: romania
Budapest: hungary
Buenos Aires: argentina
Bujumbura: burundi
Cairo: egypt
Calgary: canada
Canberra: australia
Cape Town: south africa
Caracas: venezuela
Casablanca: morocco
Chengdu: china
Chennai: india
Chiang Mai: thailand
Chisinau: moldova
Ciudad Juarez: mexico
Colombo: sri lanka
Conakry: guinea
Copenhagen: denmark
Cotonou: benin
Curacao: netherlands
Dakar: senegal
Damascus: syria
Dar Es Salaam: tanzania
Dhahran: saudi
Dhaka: bangladesh
Dili: timor
Djibouti: djibouti
Doha: qatar
Dubai: uae
Dublin: ireland
Durban: south africa
Dushanbe: tajikistan
Erbil: iraq
Frankfurt: germany
Freetown: sierra leone
Fukuoka: japan
Gaborone: botswana
Georgetown: guyana
Guadalajara: mexico
Guangzhou: china
Guatemala: guatemala
Halifax: canada
Hamburg: germany
Hamilton: bermuda
Hanoi: vietnam
Harare: zimbabwe
Havana: cuba
Helsinki: finland
Hermosillo: mexico
Ho Chi Minh City: vietnam
Hong Kong: china
Islamabad: pakistan
Istanbul: turkey
Jakarta: indonesia
Jeddah: saudi
Johannesburg: south africa
Kabul: afghanistan
Kaduna: nigeria
Kampala: uganda
Karachi: pakistan
Kathmandu: nepal
Khartoum: sudan
Kigali: rwanda
Kingston: jamaica
Kinshasa: congo
Kirkuk: iraq
Kolkata: india
Koror: palau
Krakow: poland
Kuala Lumpur: malaysia
Kuwait: kuwait
Kyiv: ukraine
La Paz: bolivia
Lagos: nigeria
Lahore: pakistan
Leipzig: germany
Libreville: gabon
Lilongwe: malawi
Lima: peru
Lisbon: portugal
Ljubljana: slovenia
Lome: togo
London: uk
Luanda: angola
Lusaka: zambia
Luxembourg: luxembourg
Madrid: spain
Majuro: marshall islands
Malabo: equatorial guinea
Managua: nicaragua
Manama: bahrain
Manila: philippines
Maputo: mozambique
Marseille: france
Maseru: lesotho
Matamoros: mexico
Mbabane: swaziland
Melbourne: australia
Merida: mexico
Mexico: mexico
Milan: italy
Minsk: belarus
Monrovia: liberia
Monterrey: mexico
Montevideo: uruguay
Montreal: canada
Moscow: russia
Mosul: iraq
Mumbai: india
Munich: germany
Muscat: oman
N'Djamena: chad
Naha: japan
Nairobi: kenya
Naples: italy
Nassau: bahamas
New Delhi: india
Niamey: niger
Nicosia: cyprus
Nogales: mexico
Nouakchott: mauritania
Nuevo Laredo: mexico
Osaka Kobe: japan
Oslo: norway
Ottawa: canada
Ouagadougou: burkina faso
Panama: panama
Paramaribo: suriname
Paris: france
Perth: australia
Peshawar: pakistan
Phnom Penh: cambodia
Podgorica: montenegro
Port Au Prince: haiti
Port Louis: mauritius
Port Moresby: papua new guinea
Port Of Spain: trinidad
Prague: czech republic
Praia: cape verde
Pretoria: south africa
Pristina: kosovo
Quebec: canada
Quito: ecuador
Rabat: morocco
Rangoon: burma
Recife: brazil
Reykjavik: iceland
Riga: latvia
Rio De Janeiro: brazil
Riyadh: saudi
Rome: italy
San Jose: costa rica
San Salvador: el salvador
Sanaa: yemen
Santiago: chile
Santo Domingo: dominican republic
Sao Paulo: brazil
Sapporo: japan
Sarajevo: bosnia
Seoul: south korea
Shanghai: china
Shenyang: china
Singapore: singapore
Skopje: macedonia
Sofia: bulgaria
St Petersburg: russia
Stockholm: sweden
Strasbourg: france
Surabaya: indonesia
Suva: fiji
Sydney: australia
Taipei: taiwan
Tallinn: estonia
Tashkent: uzbekistan
Tbilisi: georgia
Tegucigalpa: honduras
Tehran: iran
Tel Aviv: israel
The Hague: netherlands
Tijuana: mexico
Tirana: albania
Tokyo: japan
Toronto: canada
Tripoli: libya
Tunis: tunisia
Ulaanbaatar: mongolia
Valletta: malta
Vancouver: canada
Vatican: vatican
Vienna: austria
Vientiane: laos
Vilnius: lithuania
Vladivostok: russia
Warsaw: poland
Wellington: new zealand
Windhoek: namibia
Yaounde: cameroon
Yekaterinburg: russia
Yerevan: armenia
Zagreb: croatia
"""

# Posts named for what they are, not for a city.
_NAMED_POSTS = """
USUN New York: un
US Mission Geneva: un
UNVIE: un
USNATO: nato
USEU Brussels: eu
Iran RPO Dubai: iran
US Interests Section Havana: cuba
American Institute Taiwan, Taipei: taiwan
REO Basrah: iraq
"""

# What goes before a post's city in an origin: "Embassy Madrid", "Consulate Barcelona".
_KIND = re.compile(r"^(?:Embassy|Consulate General|Consulate|US Mission|Mission|US Office|Branch Office|American "
                   r"Embassy|American Consulate|US Consulate)\s+", re.I)


def _rows(table: str) -> dict[str, str]:
    rows = (line.rsplit(":", 1) for line in table.strip().splitlines())
    return {post.strip().lower(): country.strip() for post, country in rows}


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    return {**_rows(_POSTS), **_rows(_NAMED_POSTS)}


def country_of(origin: str) -> str:
    """The country (or body) a cable's origin reports on, "" for a post not in the table."""
    origin = " ".join(origin.split())
    table = _table()
    return table.get(origin.lower()) or table.get(_KIND.sub("", origin).lower(), "")


# Posts at a body of many countries: a question naming the UN or the EU is no constraint on place.
_BODIES = frozenset({"un", "eu", "nato"})
# Post cities that are as often a person or a place elsewhere: not read as naming a country.
_AMBIGUOUS = frozenset({"hamilton", "kingston", "georgetown", "perth", "halifax", "merida", "naples", "sydney",
                        "san jose", "santiago", "quebec", "nogales", "calgary", "vancouver", "toronto"})
# Spellings of a country that more often mean something else in a question ("polish its image",
# "English-language press", "the Persian Gulf").
_NOT_COUNTRIES = frozenset({"english", "polish", "poles", "persian", "pa", "gop", "goi", "goj", "gof", "rgc", "rtg",
                            "usg"})
# Names of events and bodies that carry a place's name and are no constraint on it.
_NOT_PLACES = re.compile(r"\b(?:paris club|doha round|minsk group|vienna convention|geneva conventions?|"
                         r"northern ireland|persian gulf|london club|kyoto protocol|rome statute|oslo accords?|"
                         r"madrid conference|lisbon treaty|treaty of lisbon|hague convention)\b", re.I)


@lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    """Each spelling that names a post's country (its alias group too) or city → the country."""
    countries = sorted(set(_table().values()) - _BODIES)
    out = {city: country for city, country in _rows(_POSTS).items() if city not in _AMBIGUOUS}
    for country in countries:
        out.update((s, country) for s in (*(aliases_of(country)), country) if s not in _NOT_COUNTRIES)
    return out


@lru_cache(maxsize=1)
def _country_pattern() -> re.Pattern:
    # The longest spelling first, so "Papua New Guinea" and "Port of Spain" are not "Guinea" and "Spain".
    names = sorted(_countries(), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w-])", re.I)


def countries_named(text: str) -> frozenset[str]:
    """The countries a text names, in any spelling ("Spanish", "U.K.") or by a city with a US post
    ("Embassy Sofia's cables"); not in the name of an event or a body ("the Paris Club")."""
    text = _NOT_PLACES.sub(" ", re.sub(r"(?<=\b[A-Za-z])\.", "", text))
    return frozenset(_countries()[m.group(0).lower()] for m in _country_pattern().finditer(text))


def post_agrees(origin: str, named: frozenset[str]) -> float:
    """+1 when a cable's post is in a country the question names, -1 when the question names
    countries and the post is in another, 0 when it names none or the post is not known."""
    country = country_of(origin)
    if not named or not country or country in _BODIES:
        return 0.0
    return 1.0 if country in named else -1.0


def is_place(text: str) -> bool:
    """Whether the text is the name of a country ("United States") or of a city with a US post."""
    text = " ".join(text.lower().split())
    return text in _countries() or text in aliases_of("united states")
