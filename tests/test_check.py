"""`rag check`: citations found in every form people write them, claims cut from the text, each
citation checked against the demo index, the CLI's outputs and exit codes, and POST /api/check."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest

from rag.answer.retrieve import open_retriever
from rag.check.checker import MAX_BYTES, MAX_CHECK, Checker
from rag.check.claims import split_text
from rag.citation import Citation, find_citations
from rag.cli import main

CABLE = "09PHNOMPENH637"
# 09PHNOMPENH637 ¶1 says so; ¶3 is about the Supreme Council of the Magistracy.
ARRESTS = "Police made 100 TIP arrests in the first six months of 2009"
# ¶2: the Secretary of State at the Ministry of Justice, Chan Sotheavy, met the Pol/Econ Chief.
CHAN = "Chan Sotheavy met the Pol/Econ Chief on August 25 to discuss the 2009 TIP Action Plan."


def refs(*paragraphs: int | None, cable: str = CABLE) -> tuple[Citation, ...]:
    return tuple(Citation(cable, p) for p in paragraphs)


@pytest.mark.parametrize("written, expected", [
    (f"[{CABLE} ¶6]", refs(6)),
    (f"{CABLE} ¶6", refs(6)),
    (f"{CABLE}¶6", refs(6)),
    (f"{CABLE} ¶¶4-6", refs(4, 5, 6)),
    (f"{CABLE} ¶¶4–6", refs(4, 5, 6)),
    (f"{CABLE} paras. 4 and 6", refs(4, 6)),
    (f"{CABLE}, para. 6", refs(6)),
    (f"({CABLE} para 6)", refs(6)),
    (f"{CABLE} paragraph 6", refs(6)),
    (f"{CABLE} PARA 6", refs(6)),
    (f"{CABLE}:6", refs(6)),
    (f"[{CABLE} 6]", refs(6)),
    (f"[{CABLE}, para 6]", refs(6)),
    (CABLE, refs(None)),
    (f"({CABLE})", refs(None)),
    (f"https://wikileaks.org/cable/2009/08/{CABLE}.html", refs(None)),
    (f"https://search.wikileaks.org/plusd/cables/{CABLE}_a.html", refs(None)),
    (f"wikileaks.org/plusd/cables/{CABLE}_a.html", refs(None)),
    (f"[{CABLE} ¶1; 08SANJOSE519 ¶6]", refs(1) + refs(6, cable="08SANJOSE519")),
    (f"(see {CABLE} ¶1, 08SANJOSE519 ¶6)", refs(1) + refs(6, cable="08SANJOSE519")),
])
def test_citation_forms(written, expected):
    text = f"Police made arrests {written}. Then more happened."
    found = find_citations(text)
    assert len(found) == 1
    assert text[found[0].start : found[0].end] == written
    assert found[0].citations == expected


@pytest.mark.parametrize("written", [f"{CABLE} ¶6", f"{CABLE}¶6", f"{CABLE}:6", f"{CABLE} para 6",
                                     f"{CABLE}, para. 6", f"{CABLE} paragraph 6", f"[{CABLE} ¶6]",
                                     f"({CABLE} para 6)", CABLE])
def test_a_reference_rag_show_reads_is_found_the_same(written):
    assert find_citations(f"As reported {written}.")[0].citations == (Citation.parse(written),)


def test_a_link_text_is_not_a_second_citation():
    text = f"[Police made arrests](https://wikileaks.org/cable/2009/08/{CABLE}.html) in 2009."
    (found,) = find_citations(text)
    assert text[found.start : found.end].startswith("https://") and found.citations == refs(None)


@pytest.mark.parametrize("text", [
    "The centre runs 24X7 and costs 12B3 a year.",  # not ids: a cable id has a post of letters
    "In 2009 6 paragraphs were written.",
    "a cable id in lower case, 09phnompenh637, is a typo, not a citation",
])
def test_what_is_not_a_citation(text):
    assert find_citations(text) == []


def test_a_number_after_a_bare_id_in_prose_is_not_a_paragraph():
    (found,) = find_citations(f"Cable {CABLE} 6 people read it.")
    assert found.citations == refs(None)


def test_a_list_of_paragraphs_stops_before_the_next_id():
    found = find_citations(f"{CABLE} ¶¶4-6 and 08SANJOSE519 ¶6.")
    assert [m.citations for m in found] == [refs(4, 5, 6), refs(6, cable="08SANJOSE519")]


@pytest.mark.parametrize("text", ["a" * 300_000, "ab." * 100_000, "09ABCD" + "E" * 300_000,
                                  f"https://wikileaks.org/cable/2009/08/{CABLE}.html" * 5_000])
def test_long_runs_without_spaces_are_read_in_linear_time(text):
    # A pattern that backtracks over such a run takes minutes here (each start rescans the run).
    started = time.perf_counter()
    found = find_citations(text)
    split_text(text, found)
    assert time.perf_counter() - started < 5
    assert len(found) == (5_000 if text.startswith("https") else 0)


def claims(text: str) -> list[tuple[str, list[str]]]:
    return [(d.text, [text[m.start : m.end] for m in d.mentions]) for d in split_text(text)]


def test_a_citation_covers_the_sentence_it_ends():
    text = f"First uncited claim about arrests here. {ARRESTS} [{CABLE} ¶1]. Kang Sokhorn leads the police."
    assert claims(text) == [
        ("First uncited claim about arrests here.", []),
        (f"{ARRESTS}.", [f"[{CABLE} ¶1]"]),
        ("Kang Sokhorn leads the police.", []),
    ]


def test_a_citation_closing_a_paragraph_covers_the_sentences_since_the_last():
    text = (f"Kang Sokhorn leads the police response [{CABLE} ¶1]. The police had a busy year. {ARRESTS}. "
            f"({CABLE} para 6)\n\nA second paragraph states another thing.")
    assert claims(text) == [
        ("Kang Sokhorn leads the police response.", [f"[{CABLE} ¶1]"]),
        (f"The police had a busy year. {ARRESTS}.", [f"({CABLE} para 6)"]),
        ("A second paragraph states another thing.", []),
    ]


def test_a_citation_opening_a_paragraph_belongs_to_its_first_sentence_one_on_its_own_to_the_last():
    text = (f"Intro line here.\n\n[{CABLE} ¶1] {ARRESTS}. More text follows.\n\nKang Sokhorn leads it.\n\n"
            f"({CABLE} para 4)\n\nThe end of the text.")
    assert claims(text) == [("Intro line here.", []), (f"{ARRESTS}.", [f"[{CABLE} ¶1]"]), ("More text follows.", []),
                            ("Kang Sokhorn leads it.", [f"({CABLE} para 4)"]), ("The end of the text.", [])]
    opening = split_text(text)[1]
    assert text[opening.start : opening.end] == f"[{CABLE} ¶1] {ARRESTS}."


def test_offsets_point_into_the_original_text():
    text = f"# Heading\n\n{ARRESTS}\n  across the\nkingdom [{CABLE} ¶1].\n\n- Chan met the chief.\n"
    (arrests, chan) = split_text(text)
    assert text[arrests.start : arrests.end] == f"{ARRESTS}\n  across the\nkingdom [{CABLE} ¶1]."
    assert arrests.text == f"{ARRESTS} across the kingdom."
    assert text[chan.start : chan.end] == "Chan met the chief." and chan.text == "Chan met the chief."


def test_headings_questions_fragments_and_code_are_not_claims():
    text = ("# Police arrests in Cambodia\n\nBackground\n\nWhat did the police do? See below.\n\n"
            "```\nprint('a long line of code that is no claim at all')\n```\n\nThe police made many arrests.")
    assert [t for t, _ in claims(text)] == ["The police made many arrests."]


def test_a_citation_after_a_fragment_belongs_to_the_claim_before():
    text = f"{ARRESTS}. Sources: [{CABLE} ¶1]"
    assert claims(text) == [(f"{ARRESTS}.", [f"[{CABLE} ¶1]"])]


# ── Checked against the demo index ─────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def checker(demo_settings) -> Checker:
    return Checker(open_retriever(demo_settings))


def only_citation(checker: Checker, text: str):
    (claim,) = checker.check(text).claims
    (citation,) = claim.citations
    return claim, citation


def test_the_paragraph_that_says_it_is_supported(checker):
    claim, c = only_citation(checker, f"{ARRESTS} [{CABLE} ¶1].")
    assert (c.cable_id, c.paragraph, c.status, c.suggested) == (CABLE, 1, "supported", None)
    assert claim.status == "supported" and c.score >= 0.55
    assert "100 TIP arrests" in c.text


def test_a_paragraph_that_does_not_say_it_is_unsupported_with_the_right_one_suggested(checker):
    _, c = only_citation(checker, f"{ARRESTS} [{CABLE} ¶3].")
    assert c.status == "unsupported" and c.score < 0.35
    # ¶1 and ¶6 both report the 100 arrests.
    assert (c.suggested.cable_id, c.suggested.paragraph) in {(CABLE, 1), (CABLE, 6)}
    assert c.suggested.score >= 0.55


def test_a_paragraph_that_only_shares_the_topic_is_weak(checker):
    # ¶2 is about the same meetings on TIP, but the 100 arrests are in ¶1 and ¶6.
    _, c = only_citation(checker, f"{ARRESTS} [{CABLE} ¶2].")
    assert c.status == "weak" and 0.35 <= c.score < 0.55
    assert c.suggested.paragraph in {1, 6}


def test_a_figure_from_another_paragraph_of_the_cable_is_weak(checker):
    # ¶1 reports 100 TIP arrests; ¶6 has the 300 TIP-related arrests. Similarity alone passes ¶1.
    claim = "Kang Sokhorn said police made 300 TIP-related arrests in the first six months of 2009"
    _, c = only_citation(checker, f"{claim} [{CABLE} ¶1].")
    assert c.status == "weak" and c.score >= 0.55
    assert (c.suggested.cable_id, c.suggested.paragraph) == (CABLE, 6)
    _, right = only_citation(checker, f"{claim} [{CABLE} ¶6].")
    assert right.status == "supported"


def test_a_paragraph_the_cable_does_not_print_is_unknown(checker):
    _, c = only_citation(checker, f"{CHAN[:-1]} ({CABLE} para 99).")
    assert (c.paragraph, c.status, c.score) == (99, "unknown_paragraph", None)
    assert (c.suggested.cable_id, c.suggested.paragraph) == (CABLE, 2)


def test_a_cable_not_in_the_index_is_unknown_and_the_index_suggests(checker):
    claim, c = only_citation(checker, f"{CHAN[:-1]} [99NOWHERE123 ¶2].")
    assert (c.cable_id, c.status, c.score) == ("99NOWHERE123", "unknown_cable", None)
    assert claim.status == "unknown_cable"
    assert (c.suggested.cable_id, c.suggested.paragraph) == (CABLE, 2)


def test_a_cable_level_citation_resolves_to_its_best_paragraph(checker):
    _, bare = only_citation(checker, f"{CHAN[:-1]} {CABLE}.")
    _, link = only_citation(checker, f"{CHAN[:-1]} https://wikileaks.org/cable/2009/08/{CABLE}.html")
    for c in (bare, link):
        assert (c.paragraph, c.status) == (None, "supported")
        assert (c.suggested.cable_id, c.suggested.paragraph) == (CABLE, 2)
        assert c.score == c.suggested.score


def test_a_range_checks_each_paragraph(checker):
    claim, = checker.check(f"{ARRESTS} ({CABLE} ¶¶5-7).").claims
    assert [c.paragraph for c in claim.citations] == [5, 6, 7]
    statuses = {c.paragraph: c.status for c in claim.citations}
    assert statuses[6] == "supported" and statuses[7] != "supported"
    assert claim.status == "unsupported" or claim.status == "weak"  # a claim is as good as its worst citation


def test_an_uncited_claim_is_told_what_it_could_cite(checker):
    (claim,) = checker.check(CHAN).claims
    assert (claim.status, claim.citations) == ("uncited", [])
    assert (claim.suggested.cable_id, claim.suggested.paragraph) == (CABLE, 2)


def test_an_uncited_claim_nothing_supports_gets_no_suggestion(checker):
    (claim,) = checker.check("The penguins of the Antarctic coast sing opera every winter solstice.").claims
    assert claim.status == "uncited" and claim.suggested is None


def test_every_claim_is_encoded_in_one_call(checker, monkeypatch):
    calls = []
    encode = checker.retriever.encoder.encode_documents
    monkeypatch.setattr(checker.retriever.encoder, "encode_documents",
                        lambda texts, *a, **k: calls.append(len(texts)) or encode(texts, *a, **k))
    report = checker.check(f"{ARRESTS} [{CABLE} ¶3].\n\n{CHAN}\n\nKang Sokhorn is a police general [{CABLE}].")
    assert len(report.claims) == 3 and calls == [3]


DRAFT = f"""# Trafficking in Cambodia

{ARRESTS} [{CABLE} ¶1]. {ARRESTS} ({CABLE}, para. 3).

{CHAN}
"""


def test_the_json_is_exactly_the_issue_s(checker):
    report = checker.check(DRAFT).to_json()
    assert set(report) == {"claims", "summary"}
    assert report["summary"] == {"claims": 3, "cited": 2, "supported": 1, "weak": 0, "unsupported": 1,
                                 "unknown": 0, "uncited": 1}
    for claim in report["claims"]:
        assert set(claim) == {"text", "start", "end", "status", "citations", "suggested"}
        assert DRAFT[claim["start"] : claim["end"]].startswith(claim["text"][:20])
        for c in claim["citations"]:
            assert set(c) == {"cable_id", "paragraph", "status", "score", "suggested"}
            assert c["suggested"] is None or set(c["suggested"]) == {"cable_id", "paragraph", "score"}
    assert json.loads(json.dumps(report)) == report


# ── The command ────────────────────────────────────────────────────────────────────────────────
def run(settings, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args, "--index", str(settings.index_dir)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def write(tmp_path):
    def write(text: str | bytes, name: str = "draft.md"):
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)
    return write


def test_exit_0_when_every_citation_is_supported(demo_settings, capsys, write):
    code, out, err = run(demo_settings, capsys, write(f"{ARRESTS} [{CABLE} ¶1].\n\n{CHAN}\n"))
    assert code == 0, err
    assert f"[supported] {ARRESTS}." in out and f"✓ {CABLE} ¶1: supported" in out
    assert "100 TIP arrests" in out  # the excerpt of the paragraph
    assert f"→ you could cite {CABLE} ¶2" in out
    assert out.rstrip().endswith("2 claims: 1 cited (1 supported, 0 weak, 0 unsupported, 0 unknown), 1 uncited")


def test_exit_1_when_a_citation_is_not_supported(demo_settings, capsys, write):
    code, out, _ = run(demo_settings, capsys, write(DRAFT))
    assert code == 1
    assert f"✗ {CABLE} ¶3: unsupported" in out and "→ cite 09PHNOMPENH637 ¶" in out


def test_json_output(demo_settings, capsys, write, checker):
    code, out, _ = run(demo_settings, capsys, write(DRAFT), "--json")
    assert code == 1 and json.loads(out) == checker.check(DRAFT).to_json()


def test_markdown_output_annotates_each_citation(demo_settings, capsys, write):
    code, out, _ = run(demo_settings, capsys, write(DRAFT), "--markdown")
    assert code == 1
    assert out.startswith("# Trafficking in Cambodia\n\n")
    assert f"[{CABLE} ¶1] *(supported " in out
    assert f"({CABLE}, para. 3) *(unsupported " in out and "; cite 09PHNOMPENH637 ¶" in out
    assert f"{CHAN} *(uncited; could cite {CABLE} ¶2)*" in out


def test_stdin(demo_settings, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(f"{ARRESTS} [{CABLE} ¶1].".encode())))
    code, out, _ = run(demo_settings, capsys, "-", "--json")
    assert code == 0 and json.loads(out)["summary"]["supported"] == 1


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    (" \n\t\n", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary"),
    (b"caf\xe9 au lait", "not UTF-8"),
])
def test_bad_input_is_one_line_and_exit_2(demo_settings, capsys, write, content, message):
    code, out, err = run(demo_settings, capsys, write(content))
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_a_file_over_the_limit_is_refused_unread(demo_settings, capsys, tmp_path):
    big = tmp_path / "big.md"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    code, _, err = run(demo_settings, capsys, str(big))
    assert code == 2 and "larger than 2 MB" in err and err.count("\n") == 1


def test_a_missing_file_or_index_is_exit_2(demo_settings, capsys, tmp_path):
    code, _, err = run(demo_settings, capsys, str(tmp_path / "nowhere.md"))
    assert code == 2 and "cannot read" in err and err.count("\n") == 1
    draft = tmp_path / "draft.md"
    draft.write_text(f"{ARRESTS} [{CABLE} ¶1].")
    code = main(["check", str(draft), "--index", str(tmp_path / "no-index")])
    assert code == 2 and "no index at" in capsys.readouterr().err


# ── The API ────────────────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def test_api_check_returns_the_cli_s_json(client, fake_demo):
    response = client.post("/api/check", json={"text": DRAFT})
    assert response.status_code == 200, response.text
    assert response.json() == Checker(open_retriever(fake_demo)).check(DRAFT).to_json()  # the server's index


@pytest.mark.parametrize("body, status", [
    ({}, 422),
    ({"text": ""}, 422),
    ({"text": "x" * (MAX_CHECK + 1)}, 422),
    ({"text": "  \n "}, 400),
    ({"text": "binary\x00data here"}, 400),
])
def test_api_check_refuses_bad_texts(client, body, status):
    response = client.post("/api/check", json=body)
    assert response.status_code == status
    assert len(response.content) < 1000
