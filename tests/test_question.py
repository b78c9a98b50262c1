"""Reading a question, matching its names and the stated refusals — on real cable text."""

import numpy as np
import pytest

from rag.answer.aliases import mentioned, words_of
from rag.answer.evidence import after_the_cables, filter_reason, lacks_sentence
from rag.answer.posts import countries_named, country_of, post_agrees
from rag.answer.question import analyse, parts
from rag.answer.rank import holds_answer_type
from rag.cables import read_cable_file
from rag.filters import Filters
from rag.index.demo import DEMO_DIR


@pytest.fixture(scope="module")
def tip_cable():
    return read_cable_file(DEMO_DIR / "09PHNOMPENH637.txt")


@pytest.mark.parametrize("question, wants", [
    ("Who leads Cambodia's police TIP response?", "person"),
    ("How many TIP arrests did police make in the first half of 2009?", "number"),
    ("By what vote did France's National Assembly adopt the law?", "number"),
    ("When was Gulnora Karimova placed under house arrest?", "date"),
    ("In which Burmese administrative division were missiles assembled?", "place"),
    ("Why did the president refuse to sign the Icesave law?", "reason"),
    ("Which Russian environment ministry official put the share at one in ten?", "person"),
    ("What did Embassy Djibouti report about Chinese financing?", ""),
])
def test_the_kind_of_answer_a_question_asks_for(question, wants):
    assert analyse(question).wants == wants


def test_a_question_is_read_into_terms_years_figures_names_and_cable_ids():
    q = analyse("What does 09PHNOMPENH637 say about the 100 arrests Cambodian police made in 2009?")
    assert q.cable_ids == ("09PHNOMPENH637",)
    assert q.years == {"2009"} and q.figures == {"100"}
    assert "arrest" in q.terms and "polic" in q.terms  # Snowball stems, as BM25 indexes them
    assert not {"what", "doe", "say"} & set(q.terms)  # the question's frame is not its subject
    assert "09phnompenh637" not in q.terms


@pytest.mark.parametrize("name, text, found", [
    ("britain", "The U.K. and Australian embassies co-hosted the seminar.", True),
    ("british", "The UK Ambassador opened it.", True),
    ("iran", "Police in Tirana made arrests.", False),  # whole words, not prefixes
    ("arrests", "The police arrest rate rose.", True),  # stems
    ("burma", "Myanmar's junta", True),
    ("chinese", "financed by China Exim Bank", True),
    ("hugo", "President Chavez spoke.", False),
])
def test_names_match_whole_words_stems_and_aliases(name, text, found):
    assert mentioned(name, words_of(text)) is found


def test_every_demo_cable_from_a_post_in_one_country_is_given_that_country():
    origins = {read_cable_file(path).origin for path in DEMO_DIR.glob("*.txt")}
    unknown = {o for o in origins if not country_of(o)}
    assert unknown <= {"Secretary of State", "Consulate Jerusalem"}, unknown
    assert country_of("Embassy Madrid") == "spain" and country_of("Consulate Barcelona") == "spain"
    assert country_of("US Interests Section Havana") == "cuba" and country_of("Embassy Mexico") == "mexico"


@pytest.mark.parametrize("question, madrid, london", [
    ("Which Spanish operators agreed to block the site?", 1.0, -1.0),  # a demonym names the country
    ("What did the U.K. Treasury say about bonuses?", -1.0, 1.0),
    ("What did Britain and Spain agree on air transport?", 1.0, 1.0),
    ("What did the UN envoy say about the talks?", 0.0, 0.0),  # a body of many countries is no place
    ("Who leads the police TIP response?", 0.0, 0.0),
    ("What did the Paris Club and the English-language press say of the Persian Gulf?", 0.0, 0.0),
    ("Who governs Papua New Guinea?", -1.0, -1.0),  # the longest name, not "Guinea"
])
def test_a_cable_is_held_to_the_country_a_question_names(question, madrid, london):
    named = countries_named(question)
    assert post_agrees("Embassy Madrid", named) == madrid
    assert post_agrees("Embassy London", named) == london
    assert post_agrees("Secretary of State", named) == 0.0  # a post of no one country


def test_answer_types_are_found_in_real_paragraphs(tip_cable):
    p1 = tip_cable.paragraph(1).text
    q_words = words_of("Who leads Cambodia's police TIP response?")
    assert holds_answer_type(analyse("Who leads Cambodia's police TIP response?"), p1, q_words)
    assert holds_answer_type(analyse("How many arrests did police make?"), p1, q_words)
    assert not holds_answer_type(analyse("How many arrests did police make?"), "Police made arrests in Phnom Penh.", q_words)


@pytest.mark.parametrize("question, refused_year", [
    ("Who won Cambodia's 2013 national election?", "2013"),
    ("What was the result of Scotland's 2014 independence referendum?", "2014"),
    ("What growth did the embassy forecast for 2011?", ""),  # asks what was expected, not what happened
    ("Who won the 2008 election?", ""),
    ("What was the result of Iceland's March 2010 referendum?", "March 2010"),  # the cables end in February
    ("How many users did the service have at the end of 2010?", "end of 2010"),
    ("What did the minister say in February 2010?", ""),
    ("Who was reported in early 2010 to have leased land?", ""),  # early 2010: the cables' last months
])
def test_a_question_about_after_the_cables_is_refused_with_the_year(question, refused_year):
    assert after_the_cables(analyse(question), 20100228) == refused_year


def test_filters_that_match_nothing_say_which_value_and_suggest_the_real_ones():
    vocabulary = {"origins": ["Embassy Phnom Penh", "Embassy Paris"], "classifications": ["SECRET"], "tags": ["KTIP"]}
    reason = filter_reason(Filters(origin="Phnom Penh"), vocabulary)
    assert reason == "no cable in the index has origin 'Phnom Penh'; did you mean 'Embassy Phnom Penh'?"
    assert filter_reason(Filters(origin="Embassy Paris", tag="KTIP"), vocabulary) == \
        "no paragraph in the index matches these filters together"


@pytest.mark.parametrize("question, expected", [
    ("What were the 15 men tried over Bahrain's December 2007 riots charged with, and what was the verdict in July 2008?",
     ["What were the 15 men tried over Bahrain's December 2007 riots charged with?",
      "What was the verdict in July 2008? (Bahrain's)"]),
    ("Where and when was arms trafficker Viktor Bout arrested, and which UAE airport had he used as a base?",
     ["Where and when was arms trafficker Viktor Bout arrested?", "Which UAE airport had he used as a base? (Viktor Bout)"]),
    ("In January 2010, what did Iceland's finance minister ask, and how did the UK respond?",
     ["In January 2010, what did Iceland's finance minister ask?", "How did the UK respond? (Iceland's)"]),
    ("Who commanded the militia, how many insurgents did it kill, and which official got credit?",
     ["Who commanded the militia?", "How many insurgents did it kill?", "Which official got credit?"]),
])
def test_a_question_in_several_parts_is_split_and_later_parts_keep_the_names(question, expected):
    assert parts(question) == expected


@pytest.mark.parametrize("question", [
    "Who leads Cambodia's police TIP response?",
    "How much did it cost to build Unit Two of the Shika plant, which a court ordered shut in 2006?",
    "How many days had the general been police chief, when he was killed in November 2009?",
    "Besides the US and Europe, where in Latin America did the fund invest?",
    "Which former Algerian president's grandson set off by boat in 2007 and was never heard from again?",
])
def test_a_question_in_one_part_is_not_split(question):
    assert parts(question) == [question]


def test_a_question_asking_for_a_sentence_needs_a_paragraph_that_reports_one():
    trial = read_cable_file(DEMO_DIR / "08MANAMA77.txt")  # the trial opens; its verdict came later
    ruling = read_cable_file(DEMO_DIR / "09PHNOMPENH10.txt")
    asked = analyse("What sentence did the court give the 15 men tried over Bahrain's December 2007 riots?")
    assert asked.wants == "sentence"
    assert analyse("How many years in prison was the former prime minister sentenced to?").wants == "sentence"
    assert lacks_sentence(asked, [p.text for p in trial.paragraphs])
    born = analyse("What sentence did Born Samnang and Sok Sam Oeun receive in 2005?")
    assert not lacks_sentence(born, [ruling.paragraph(3).text])
    assert not lacks_sentence(analyse("Who opened the trial of the December rioters?"), [p.text for p in trial.paragraphs])


def test_a_paragraph_from_another_country_than_the_question_names_is_not_first():
    from rag.answer.rank import COUNTRY_DEPTH, FEATURES, Candidate, Ranker
    from rag.types import Hit

    named = countries_named("How many websites did Spain's telecom state secretary say were pirating?")

    def candidate(cable_id: str, origin: str) -> Candidate:
        row = np.zeros(len(FEATURES))
        row[FEATURES.index("post")] = post_agrees(origin, named)
        return Candidate(Hit(f"{cable_id}:1", cable_id, 1, "", {"origin": origin}, 0.0), row, set())

    london, madrid = candidate("09LONDON2198", "Embassy London"), candidate("09MADRID982", "Embassy Madrid")
    others = [candidate(f"09REYKJAVIK{i}", "Embassy Reykjavik") for i in range(COUNTRY_DEPTH)]
    ranked = Ranker(None).rank([london, others[0], madrid, *others[1:]])
    assert [c.hit.cable_id for c in ranked[:2]] == ["09MADRID982", "09LONDON2198"]
    # beyond the depth, or with no paragraph from the named country, the order stands
    assert Ranker(None).rank([london, *others, madrid])[0] is london
    assert Ranker(None).rank([london, *others])[0] is london
