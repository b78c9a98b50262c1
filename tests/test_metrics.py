"""The metric functions on hand-made cases whose answers are worked out by hand."""

import pytest

from rag.evaluation.metrics import (all_cables_found, citation_precision, cited_gold, dedupe, fact_recall, facts_found,
                                    first_gold_rank, group_by, hit_at_k, percentile, reciprocal_rank, score_case,
                                    summarize, summarize_by_kind, unretrieved)

A1, A2, A3 = ("07A", 1), ("07A", 2), ("07A", 3)
B1, B2 = ("08B", 1), ("08B", 2)
C1 = ("09C", 1)


def test_dedupe_keeps_first_occurrence_order():
    assert dedupe([A1, A2, A1, B1, A2]) == [A1, A2, B1]


def test_first_gold_rank_counts_split_parts_once():
    # A1 appears twice (two parts of one paragraph): B1 is the 3rd paragraph, not the 4th.
    assert first_gold_rank([A1, A1, A2, B1], {B1}) == 3
    assert first_gold_rank([A1, A2], {B1}) is None
    assert first_gold_rank([A1, A2], set()) is None
    assert first_gold_rank([], {A1}) is None


@pytest.mark.parametrize("k, expected", [(1, False), (2, False), (3, True), (10, True)])
def test_hit_at_k(k, expected):
    assert hit_at_k([A1, A1, A2, B1], {B1, C1}, k) is expected


def test_hit_at_k_empty_gold_never_hits():
    assert hit_at_k([A1, A2], [], 10) is False


def test_reciprocal_rank():
    assert reciprocal_rank([A1, B1], {A1}) == 1.0
    assert reciprocal_rank([A1, A1, B1], {B1}) == 0.5
    assert reciprocal_rank([A2, A3, B1, B2], {B2, A3}) == 0.5
    assert reciprocal_rank([A1, B1], {C1}) == 0.0
    assert reciprocal_rank([A1, B1], set()) == 0.0


def test_reciprocal_rank_ignores_gold_beyond_k():
    ranked = [("X", i) for i in range(1, 11)] + [A1]
    assert reciprocal_rank(ranked, {A1}, k=10) == 0.0
    assert reciprocal_rank(ranked, {A1}, k=11) == pytest.approx(1 / 11)


def test_all_cables_found():
    assert all_cables_found([A1, C1, B2], {A2, B1})  # any paragraph of each gold cable counts
    assert not all_cables_found([A1, C1], {A2, B1})
    assert not all_cables_found([C1] * 3 + [("X", i) for i in range(10)] + [B1], {B1}, k=10)
    assert all_cables_found([], set())


def test_facts_found_any_spelling_case_insensitive_substring():
    text = "Lt. Gen. KANG SOKHORN said 20 insurgents died."
    assert facts_found(text, [["Kang Sokhorn"], ["twenty", "20"], ["Nazir"]]) == [True, True, False]


def test_fact_recall():
    assert fact_recall("Botwe, then Sarpong", [["Botwe"], ["Sarpong"]]) == 1.0
    assert fact_recall("only Botwe", [["Botwe"], ["Sarpong"]]) == 0.5
    assert fact_recall("", [["Botwe"]]) == 0.0
    assert fact_recall("anything", []) is None  # no facts: nothing to recall


def test_citation_precision_and_gold_count():
    gold = {A1, B1}
    assert cited_gold([A1, A2, B1, A1], gold) == 2  # A1 cited twice counts once
    assert citation_precision([A1, A2, B1, A1], gold) == pytest.approx(2 / 3)
    assert citation_precision([A2], gold) == 0.0
    assert citation_precision([], gold) is None  # no citations shown
    assert citation_precision([A1], set()) == 0.0


def test_unretrieved_counts_distinct_citations_outside_the_hits():
    assert unretrieved([A1, C1, C1], [A1, A2, B1]) == 1
    assert unretrieved([], [A1]) == 0


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([5.0], 50, 5.0),
        ([5.0], 95, 5.0),
        ([1, 2, 3, 4], 50, 2.5),
        ([4, 1, 3, 2], 0, 1),
        ([4, 1, 3, 2], 100, 4),
        ([10, 20, 30, 40, 50], 95, 48.0),  # position 3.8: 40 + 0.8 * 10
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile_matches_linear_interpolation(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def test_group_by_keeps_first_appearance_order():
    groups = group_by(["b1", "a1", "b2", "c1", "a2"], lambda s: s[0])
    assert list(groups) == ["b", "a", "c"]
    assert groups["b"] == ["b1", "b2"]


def test_score_case():
    score = score_case(
        "multi", ranked=[C1, A2, A2, B1], gold={A1, A2, B2}, text="Botwe and Sarpong [07A ¶2]",
        facts=[["Botwe"], ["Sarpong"], ["Accra"]], cited=[A2, C1, ("ZZ", 9)], refused=False,
        timings_ms={"total": 12.0},
    )
    assert score.gold_rank == 2 and score.hit(1) is False and score.hit(5) is True
    assert score.rr == 0.5
    assert score.all_cables is True  # 07A and 08B both retrieved
    assert (score.facts_found, score.facts_total) == (2, 3)
    assert (score.cited, score.cited_gold, score.cited_unretrieved) == (3, 1, 1)
    assert score.to_json()["hit@5"] is True


def test_score_case_all_cables_only_for_multi():
    assert score_case("factoid", [A1], {A1}, "", [], [], False).all_cables is None


def _scores():
    return [
        # factoid: gold at rank 1, fact found, 2 citations of which 1 gold
        score_case("factoid", [A1, B1], {A1}, "Kang", [["Kang"]], [A1, B1], False,
                   {"retrieve": 10, "answer": 1, "verify": 2, "total": 13}),
        # factoid: gold at rank 3 (after dedupe), fact missed, no citation shown
        score_case("factoid", [B1, B1, C1, A2], {A2}, "no idea", [["Sarpong"]], [], False,
                   {"retrieve": 30, "answer": 1, "verify": 2, "total": 33}),
        # numeric refused wrongly: gold not retrieved
        score_case("numeric", [C1], {B2}, "refused", [["20"], ["30"]], [], True,
                   {"retrieve": 20, "answer": 1, "verify": 2, "total": 23}),
        # unanswerable, rightly refused
        score_case("unanswerable", [A1, B1], set(), "refused", [], [], True,
                   {"retrieve": 40, "answer": 1, "verify": 2, "total": 43}),
        # unanswerable, answered anyway with a citation
        score_case("unanswerable", [A1], set(), "an answer", [], [A1], False,
                   {"retrieve": 50, "answer": 1, "verify": 2, "total": 53}),
    ]


def test_summarize_pools_over_the_right_cases():
    report = summarize(_scores())
    assert report["n"] == 5
    retrieval = report["retrieval"]
    # Over the 3 cases with gold: ranks 1, 3, none.
    assert retrieval["hit@1"] == pytest.approx(1 / 3)
    assert retrieval["hit@5"] == pytest.approx(2 / 3)
    assert retrieval["hit@10"] == pytest.approx(2 / 3)
    assert retrieval["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert retrieval["multi_all_cables"] is None  # no multi case
    answer = report["answer"]
    assert answer["fact_recall"] == pytest.approx(1 / 4)  # 1 of 1 + 0 of 1 + 0 of 2 facts
    assert answer["citation_precision"] == 0.5  # 1 gold of 2 shown (answerable cases only)
    assert answer["citation_recall"] == pytest.approx(1 / 3)
    assert answer["refusal_accuracy"] == 0.5
    assert answer["false_refusal_rate"] == pytest.approx(1 / 3)
    assert answer["unretrieved_citations"] == 0
    latency = report["latency_ms"]
    assert set(latency) == {"retrieve", "rank", "answer", "verify", "total"}
    assert latency["retrieve"]["median"] == 30
    assert latency["retrieve"]["p95"] == pytest.approx(48.0)


def test_summarize_by_kind():
    by_kind = summarize_by_kind(_scores())
    assert list(by_kind) == ["factoid", "numeric", "unanswerable"]
    assert by_kind["factoid"]["n"] == 2
    assert by_kind["factoid"]["retrieval"]["hit@1"] == 0.5
    assert by_kind["numeric"]["answer"]["false_refusal_rate"] == 1.0
    assert by_kind["numeric"]["answer"]["citation_precision"] is None  # nothing shown
    assert by_kind["unanswerable"]["answer"]["refusal_accuracy"] == 0.5
    assert by_kind["unanswerable"]["retrieval"]["hit@10"] is None  # no gold to find
    assert by_kind["unanswerable"]["answer"]["fact_recall"] is None


def test_summarize_all_refused():
    scores = [score_case(k, [A1], {A1} if k != "unanswerable" else set(), "refused", [["x"]] if k != "unanswerable" else [],
                         [], True) for k in ("factoid", "numeric", "unanswerable")]
    answer = summarize(scores)["answer"]
    assert answer["false_refusal_rate"] == 1.0
    assert answer["refusal_accuracy"] == 1.0
    assert answer["citation_recall"] == 0.0
    assert answer["citation_precision"] is None
    assert answer["fact_recall"] == 0.0


def test_summarize_empty_and_missing_timings():
    report = summarize([])
    assert report["n"] == 0
    assert report["retrieval"]["hit@1"] is None
    assert report["answer"]["unretrieved_citations"] == 0
    assert report["latency_ms"]["total"] == {"median": None, "p95": None}


def test_quality_ranks_failures_first():
    good, missed, wrong_refusal, right_refusal, wrong_answer = _scores()
    assert right_refusal.quality == 1.0 and wrong_answer.quality == 0.0
    assert wrong_refusal.quality == 0.0
    assert good.quality == 1.0
    assert 0 < missed.quality < 1
