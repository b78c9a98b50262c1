"""British and American spellings fold, and one absent word of a question is evidence, not a gate."""

import numpy as np
import pytest

from rag.answer.evidence import WORDS_NEED_CHUNKS, absent_words
from rag.answer.pipeline import Pipeline
from rag.answer.question import analyse
from rag.index.bm25 import tokenize
from rag.spelling import variants


@pytest.mark.parametrize("word, other", [
    ("favour", "favor"), ("favor", "favour"), ("defence", "defense"), ("programmes", "programs"),
    ("organisation", "organization"), ("centre", "center"), ("catalogue", "catalog"), ("travelled", "traveled"),
])
def test_a_word_has_its_other_spelling(word, other):
    assert other in variants(word)


@pytest.mark.parametrize("word", ["four", "hour", "is", "police", "Cambodia"])
def test_most_words_have_none(word):
    assert variants(word) == frozenset()


def frequency_without(*absent: str):
    """A document frequency over a large index that holds every stem but the `absent` words'."""
    missing = {tokenize([w])[0][0] for w in absent}
    return lambda terms: np.array([0 if t in missing else 50 for t in terms])


def test_one_absent_ordinary_word_never_refuses():
    question = analyse("Which Russian firm holds acreage in the Caspian?")
    assert absent_words(question, frequency_without("acreage"), WORDS_NEED_CHUNKS * 10) == []


def test_two_absent_ordinary_words_or_an_absent_name_do():
    question = analyse("What is the recommended dose of ibuprofen for a feverish child?")
    assert absent_words(question, frequency_without("dose", "feverish"), WORDS_NEED_CHUNKS * 10)
    named = analyse("What did Gazprom say about the pipeline?")
    assert absent_words(named, frequency_without("Gazprom"), WORDS_NEED_CHUNKS * 10) == ["Gazprom"]


@pytest.fixture(scope="module")
def pipeline(demo_settings):
    return Pipeline(demo_settings)


def test_favour_finds_what_favor_finds_on_the_demo_index(pipeline):
    """06DUBLIN1020 ¶9: Labour and the Greens "favor a review" of Shannon transits."""
    american = pipeline.ask("Which parties favor a review of Irish policy on U.S. transits?")
    british = pipeline.ask("Which parties favour a review of Irish policy on U.S. transits?")
    assert not american.refused and not british.refused
    assert [h.citation for h in british.hits[:3]] == [h.citation for h in american.hits[:3]]
    assert ("06DUBLIN1020", 9) in {(c.citation.cable_id, c.citation.paragraph) for c in british.citations}
