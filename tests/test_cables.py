"""The cable parser against the real cables in ../shared (those tests skip when it is absent),
plus bad input and the cables.csv format built in tmp_path."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from rag.cables import MAX_FILE_BYTES, CableError, iter_csv_cables, parse_cable, read_cable_file
from rag.types import Cable

# Cables whose printed numbers (see `printed_numbers`) are not exactly the parsed ones, and why.
# Each is genuinely ambiguous or a defect of the source file; the test fails if one of them
# starts to match, so that this list stays true.
KNOWN_MISMATCHES = {
    # The file holds another cable's text glued after this one; those numbers are not this
    # cable's (the parser cuts the text at the other cable's database row or routing block).
    "07BERN881": "07TBILISI2290 glued on",
    "08MOSCOW1519": "08MOSCOW2237 glued on",
    "09BERLIN992": "a STATE cable glued on",
    "09BERN279": "09COTONOU278 glued on",
    "09CAIRO1962": "09CAIRO1960 glued on; this cable's own text is header only",
    "09CAIRO211": "09CAIRO210 glued on; this cable's own paragraphs are not numbered",
    "73TEHRAN2077": "06THEHAGUE131 glued after a header-only excerpt",
    "90KHARTOUM10657": "08MONTEVIDEO404 glued after a header-only excerpt",
    # A quoted document, list or questionnaire with its own numbering inside a paragraph.
    "05THEHAGUE484": "quoted parts-control plan, items 1-6, inside ¶4",
    "08MADRID707": "quoted list of 21 measures inside ¶3",
    "08STATE79112": "the talking points restart the numbering",
    "09STATE80163": "numbered collection requirements inside a paragraph",
    "10CAIRO209": "report sections each restart at ¶1; ¶13 repeats in three sections",
    "10REYKJAVIK31": "quoted action plan, items 1-9, inside a paragraph",
    "10SANAA295": "questionnaire item numbers (¶33) inside the answers",
    # Defects of the text itself.
    "04BRASILIA1291": "re-flow split ¶10 into '1' at the end of a heading and '¶0.'",
    "08BUENOSAIRES858": "run-on text: ¶12 follows a heading glued to its dashes, ¶4-¶11 are lost",
    "08RIODEJANEIRO171": "the author printed ¶4, ¶6, ¶5: the out-of-order ¶6 stays inside ¶4",
    "09CHISINAU945": "the site put a pilcrow on a wrapped phone number ('12-\\n¶72.')",
    "09LIMA1191": "the excerpt ends at '¶1. ...' with no text",
}

_MARKING = r"\((?:U|C|S|TS|SBU|LOU|FOUO)(?:\s*//?\s*[A-Za-z][A-Za-z ,]*)?\)"
_PILCROW = re.compile(rf"(?m)^[ \t]*¶(\d{{1,2}})\.[ \t]+(?P<mk>{_MARKING})?")
_MARKED = re.compile(
    rf"(?m)(?:(?:^|\s)(\d{{1,2}})\.[ \t]?|^[ \t]*(\d{{1,2}})[ \t]{{1,2}})(?i:{_MARKING})"
)
_ANY_NUMBER = re.compile(r"(?m)(?:^|\s)¶?(\d{1,3})(?:[ \t]?\.|[ \t]+\()")


def printed_numbers(raw: str) -> tuple[set[int], set[int]]:
    """An independent, simple scan of the paragraph numbers a cable prints.

    Returns:
        (sure, possible): `sure` holds `¶N.` markers that start a paragraph (after a blank line or
        a finished sentence, or followed by a marking such as (C); the site also put pilcrows on
        wrapped dates, "on April\\n¶24.") and numbers followed by a marking (`3.(C)`); `possible`
        holds every number printed as `N.` after whitespace.
    """
    # Without trailing spaces and the backslashes MySQL dumps leave at line ends.
    text = "\n".join(line.rstrip(" \t\\") for line in raw.split("\n"))
    sure = set()
    for m in _PILCROW.finditer(text):
        before = text[max(0, m.start() - 500): m.start()].rstrip()
        previous = before[before.rfind("\n") + 1:]  # the last line with text
        if m.group("mk") or not previous or previous.endswith((".", "!", "?", ":", ";", '"', ")", "-")):
            sure.add(int(m.group(1)))
    sure |= {int(a or b) for a, b in _MARKED.findall(text)}
    return sure, sure | {int(n) for n in _ANY_NUMBER.findall(text)}


class Corpus(dict):
    """Every cable of ../shared/cables, id -> (raw text, parsed cable), parsed once."""

    seconds: float = 0.0
    errors: dict[str, str]


@pytest.fixture(scope="session")
def corpus(shared_dir: Path) -> Corpus:
    parsed, parsed.errors = Corpus(), {}
    start = time.perf_counter()
    for path in sorted((shared_dir / "cables").glob("*.txt")):
        try:
            parsed[path.stem] = (path.read_text(encoding="utf-8"), read_cable_file(path))
        except Exception as e:  # noqa: BLE001 - the test reports every failure
            parsed.errors[path.stem] = repr(e)
    parsed.seconds = time.perf_counter() - start
    return parsed


@pytest.fixture(scope="session")
def cable(shared_dir: Path):
    return lambda cable_id: read_cable_file(shared_dir / "cables" / f"{cable_id}.txt")


def numbers(cable: Cable) -> list[int]:
    return [p.number for p in cable.paragraphs]


@pytest.mark.slow
def test_all_cables_parse_fast(corpus):
    assert not corpus.errors
    assert len(corpus) == 6835
    assert sum(len(cable.paragraphs) for _, cable in corpus.values()) > 50_000
    assert corpus.seconds < 60, f"reading and parsing took {corpus.seconds:.0f} s"


@pytest.mark.slow
def test_printed_numbers_are_the_parsed_numbers(corpus):
    checked, failures = 0, {}
    for cable_id, (raw, cable) in corpus.items():
        sure, possible = printed_numbers(raw)
        if not sure:
            continue
        checked += 1
        parsed = {p.number for p in cable.paragraphs if p.numbered}
        if not sure <= parsed <= possible:
            failures[cable_id] = (sorted(sure - parsed), sorted(parsed - possible))
    assert checked > 6000
    unexplained = {k: v for k, v in failures.items() if k not in KNOWN_MISMATCHES}
    assert not unexplained, f"{len(unexplained)} cables: {unexplained}"
    assert sorted(KNOWN_MISMATCHES) == sorted(failures), "KNOWN_MISMATCHES is out of date"


def test_gold_citations_exist_and_hold_the_facts(shared_dir: Path, cable):
    cases = [json.loads(line) for line in (shared_dir / "evals" / "dev.jsonl").open()]
    assert len(cases) == 180
    problems = []
    for case in cases:
        texts = []
        for cable_id, number in case["citations"]:
            paragraph = cable(cable_id).paragraph(number)
            if paragraph is None:
                problems.append(f"{case['id']}: {cable_id} ¶{number} not found")
            else:
                texts.append(f"{paragraph.heading} {paragraph.text}".lower())
        if case["citations"]:
            union = " ".join(texts)
            for spellings in case["facts"]:
                if not any(s.lower() in union for s in spellings):
                    problems.append(f"{case['id']}: none of {spellings} in the gold paragraphs")
    assert not problems


def test_seed_cable(cable):
    c = cable("09PHNOMPENH637")
    assert numbers(c) == [1, 2, 3, 4, 5, 6, 7]
    assert all(p.numbered and p.occurrence == 0 for p in c.paragraphs)
    p6 = c.paragraph(6).text
    assert p6.startswith("(SBU) The Deputy Commissioner General of the National")
    assert p6.endswith("investigation stage at the courts.")
    assert "coordinating rescue operations with the National Anti-Human Trafficking police" in p6
    assert "00000637" not in p6 and "002 OF 002" not in p6
    assert c.paragraph(2).heading == "Ministry of Justice"
    assert "Ministry of Justice" not in c.paragraph(1).text[-40:]
    assert c.paragraph(1).text.endswith("END SUMMARY.")
    assert c.paragraph(4).heading == "Ministry of Interior"
    assert c.paragraph(7).heading == "COMMENT"
    assert c.paragraph(7).text.endswith("Ministry of Social Affairs.")  # signature RODLEY dropped
    assert "¶" not in " ".join(p.text for p in c.paragraphs)


def test_seed_cable_metadata(cable):
    c = cable("09PHNOMPENH637")
    assert (c.id, c.date_iso) == ("09PHNOMPENH637", "2009-08-28")
    assert c.subject == "CAMBODIA: TIP ACTION PLAN DELIVERED"
    assert (c.classification, c.origin) == ("UNCLASSIFIED//FOR OFFICIAL USE ONLY", "Embassy Phnom Penh")
    assert c.tags == ["PGOV", "PHUM", "PREL", "KTIP", "KWMN", "CB"]
    assert c.refs == ["09STATE87525"]
    assert "TAGS: PGOV PHUM PREL KTIP KWMN CB" in c.header
    assert "REF: STATE 87525" in c.header
    assert "VZCZC" not in c.header and "RUEHPF" not in c.header


def test_repeated_number_keeps_both_paragraphs(cable):
    c = cable("06PHNOMPENH983")
    elevens = [p for p in c.paragraphs if p.number == 11]
    assert [p.occurrence for p in elevens] == [0, 1]
    assert [p.key for p in elevens] == ["06PHNOMPENH983:11", "06PHNOMPENH983:11r1"]
    assert elevens[0].text.startswith("(U) Provincial Anti-Drug Police officers")
    assert elevens[1].text.startswith("(C) Nov Sophal, a municipal police officer")
    assert elevens[1].heading == "Police Officer Arrested on Drug Charges"


def test_cable_without_numbers_gives_blocks(cable):
    c = cable("03THEHAGUE1910")
    assert len(c.paragraphs) > 5
    assert numbers(c) == list(range(1, len(c.paragraphs) + 1))
    assert not any(p.numbered for p in c.paragraphs)
    assert c.paragraphs[0].text.startswith("As requested reftel")
    assert "SUBJECT" not in c.paragraphs[0].text


def test_run_on_cable_without_numbers_starts_after_the_header(cable):
    c = cable("09MANAMA617")  # "REF: STATE 108570 (SBU) DCM informed ... attend. ERELI"
    assert [(p.number, p.numbered) for p in c.paragraphs] == [(1, False)]
    assert c.paragraphs[0].text.startswith("(SBU) DCM informed MFA Bilateral Affairs Director")
    assert not c.paragraphs[0].text.endswith("ERELI")
    assert c.refs == ["09STATE108570"]


def test_blocks_fold_fragments_and_take_headings():
    text = _cable_text(
        "09TEST1",
        "SUBJECT: A TEST\n\nREF: STATE 1\n\nJuly 30\n\n"
        "1045 Arrive at the airport and drive to the embassy for briefings.\n\n"
        "Second Day\n----------\n\nAnother block of text, long enough to stand on its own.\n\nSMITH\n",
    )
    c = parse_cable(text)
    assert [(p.number, p.numbered, p.heading) for p in c.paragraphs] == [
        (1, False, ""),
        (2, False, "Second Day"),
    ]
    assert c.paragraphs[0].text.startswith("July 30 1045 Arrive")
    assert c.paragraphs[1].text.endswith("on its own.")


def test_plain_and_marking_first_numbers(cable):
    c = cable("03THEHAGUE1865")  # "(C) 1. In a visit", "(C)4. In separate", partial extract
    assert numbers(c) == list(range(1, 12))
    assert all(p.occurrence == 0 for p in c.paragraphs)  # the text given twice counts once
    assert c.paragraph(1).text.startswith("(C) In a visit to The Hague")
    assert c.paragraph(4).text.startswith("(C) In separate meetings")
    assert c.paragraph(2).heading == "Transatlantic Relations and Iraq"
    c = cable("07MANAMA1051")  # "1.(C) Bahrain's government"
    assert c.paragraph(1).text.startswith("(C) Bahrain's government")


def test_partial_extract_is_not_duplicated(cable):
    c = cable("06LIMA4516")  # excerpt "¶1. (SBU) Ayacucho's economy turns on narcotr..." + full copy
    assert len(numbers(c)) == len(set(numbers(c)))
    assert c.paragraph(1).text.startswith("(SBU) Ayacucho's economy turns on narcotrafficking")


def test_ref_letters_are_not_paragraphs(cable):
    c = cable("05BRASILIA1578")  # REF: A. PORT AU PRINCE 1543 AND 1497 / ¶B. BRASILIA 1479 / ¶C.
    assert numbers(c) == list(range(1, 9))
    assert c.refs == ["05PORTAUPRINCE1543", "05PORTAUPRINCE1497", "05BRASILIA1479", "05STATE104247"]
    assert c.paragraph(1).text.startswith("(C) Summary.")


def test_sub_items_and_wrapped_dates_stay_inside_paragraphs(cable):
    c = cable("08MADRID707")  # a quoted list ¶1-¶21 inside ¶3
    assert numbers(c) == list(range(1, 9))
    assert "21. Reduce administrative burdens for businesses." in c.paragraph(3).text
    c = cable("06MADRID2335")  # "on September\n¶15. Charge told Torrente"
    assert numbers(c) == [1, 2, 3, 4]
    assert "on September 15. Charge told Torrente" in c.paragraph(1).text


def test_inline_heading_in_reflowed_text(cable):
    c = cable("08CAIRO2257")  # "... END SUMMARY. INVESTING IN NATURAL GAS INFRASTRUCTURE -----"
    assert c.paragraph(1).text.endswith("END SUMMARY.")
    assert c.paragraph(2).heading == "INVESTING IN NATURAL GAS INFRASTRUCTURE"
    assert c.paragraph(2).text.startswith("(SBU) Ismail Karara")


def test_inline_section_break_is_removed(cable):
    c = cable("05NEWDELHI9761")  # "...get locked into NEW DELHI 00009761  002 OF 002 the strategic"
    text = " ".join(p.text for p in c.paragraphs)
    assert "00009761" not in text and "002 OF 002" not in text
    assert "unwise for India to get locked into the strategic interests of the US" in c.paragraph(4).text


def test_page_lines_are_removed(cable):
    c = cable("00HARARE5461")  # "THEY REALIZE  CONFIDENTIAL\nPAGE 03 HARARE 05461 01 OF 02 271458Z THAT"
    assert numbers(c) == list(range(1, 11))
    assert "AT THE SAME TIME, THEY REALIZE THAT THE MDC IS GAINING STRENGTH" in c.paragraph(2).text
    c = cable("90CAPETOWN97")  # "AND THE\nCONFIDENTIAL\n\nPAGE 02  CAPE T  00097 ...\n\nRELEASE OF"
    assert "AND THE RELEASE OF SEVERAL POLITICAL PRISONERS" in c.paragraph(2).text
    for p in c.paragraphs:
        assert "PAGE 0" not in p.text and "182017Z" not in p.text
        assert "AMEMBASSY" not in p.text  # the next section's routing lines


def test_subject_from_wrapped_subject_line():
    text = _cable_text(
        "09TEST2",
        "SUBJECT: CAMBODIA: A SUBJECT THAT WRAPS\nONTO A SECOND LINE\n\n"
        "¶1. (SBU) First paragraph text.\n\n¶2. (SBU) Second paragraph text.\n",
        subject="",
    )
    c = parse_cable(text)
    assert c.subject == "CAMBODIA: A SUBJECT THAT WRAPS ONTO A SECOND LINE"
    assert numbers(c) == [1, 2]


def test_refs_resolve_post_and_year():
    text = _cable_text(
        "09TEST3",
        "TAGS: PGOV PREL\nSUBJECT: REFS\n\nREF: A. 08 PHNOM PENH 123 B. STATE 87525\n"
        "     ¶C. (SBU) EMAIL OF MAY 5\n\n¶1. (U) Text of the first paragraph.\n\n¶2. (U) More.\n",
    )
    c = parse_cable(text)
    assert c.refs == ["08PHNOMPENH123", "09STATE87525"]
    assert c.tags == ["PGOV", "PREL"]
    assert numbers(c) == [1, 2]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(CableError, match="empty file") as err:
        read_cable_file(path)
    assert err.value.source == str(path)


def test_binary_file(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(CableError, match="binary file"):
        read_cable_file(path)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(_cable_text("09TEST4", "¶1. (U) Caf\xe9.\n").encode("latin-1"))
    with pytest.raises(CableError, match="not UTF-8"):
        read_cable_file(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "truncated.txt"
    path.write_text(_cable_text("09TEST3", ""))  # the five metadata lines only
    with pytest.raises(CableError, match="truncated: no body after the header"):
        read_cable_file(path)


@pytest.mark.parametrize(
    ("line", "value", "reason"),
    [(0, "not an id", "line 1 is not a cable id"), (2, "28/08/2009", "line 3 is not a date")],
)
def test_malformed_metadata(tmp_path, line, value, reason):
    lines = _cable_text("09TEST5", "¶1. (U) Text.\n").split("\n")
    lines[line] = value
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(CableError, match=reason):
        read_cable_file(path)


def test_file_too_large(tmp_path):
    path = tmp_path / "large.txt"
    path.write_text(_cable_text("09TEST6", "¶1. (U) " + "x" * (MAX_FILE_BYTES + 1)))
    with pytest.raises(CableError, match=r"file too large \(5\.0 MB > 5 MB\)"):
        read_cable_file(path)


# --------------------------------------------------------------------------------------------
# cables.csv
# --------------------------------------------------------------------------------------------

CSV_SAMPLE = ["09PHNOMPENH637", "06PHNOMPENH983", "05NEWDELHI9761", "00HARARE5461", "03THEHAGUE1865"]


def _mysql(value: str) -> str:
    """A quoted field with MySQL escapes, as the release's cables.csv writes them."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\n", "\\n")
    return f'"{escaped}"'


def _csv_row(number: int, path: Path) -> str:
    """The file's cable as a cables.csv row: the routing block goes to `header`, the rest to
    `content` (the split the release uses)."""
    raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    body = lines[5:]
    split = next((i for i, line in enumerate(body) if re.match(r"UNCLAS|C O N F|S E C R", line)), 0)
    cable = parse_cable(raw)
    fields = [
        str(number),
        cable.date.strftime("%Y-%m-%d 06:47"),
        cable.id,
        cable.origin,
        cable.classification,
        ",".join(cable.refs),
        "\n".join(body[:split]),
        "\n".join(body[split:]),
    ]
    return ",".join(_mysql(f) for f in fields) + "\n"


def test_csv_gives_the_same_paragraphs_as_the_files(tmp_path, shared_dir: Path):
    paths = [shared_dir / "cables" / f"{cable_id}.txt" for cable_id in CSV_SAMPLE]
    csv_path = tmp_path / "cables.csv"
    header = "id,date,refid,origin,classification,references,header,content\n"
    csv_path.write_text(header + "".join(_csv_row(n, p) for n, p in enumerate(paths, 1)))
    from_csv = list(iter_csv_cables(csv_path))
    assert [c.id for c in from_csv] == CSV_SAMPLE
    for path, csv_cable in zip(paths, from_csv):
        file_cable = read_cable_file(path)
        assert csv_cable.paragraphs == file_cable.paragraphs, path.stem
        assert (csv_cable.date, csv_cable.origin, csv_cable.classification) == (
            file_cable.date, file_cable.origin, file_cable.classification
        )
        assert csv_cable.tags == file_cable.tags
        assert set(file_cable.refs) <= set(csv_cable.refs)
    assert from_csv[0].subject == "CAMBODIA: TIP ACTION PLAN DELIVERED"  # from the SUBJECT line


def test_csv_bad_rows_are_reported_and_skipped(tmp_path):
    rows = [
        ["1", "2009-08-28 06:47", "09TEST7", "Embassy X", "UNCLASSIFIED", "",
         "VZCZC", "SUBJECT: ONE\n\n1. (U) It said \"yes\" and 'no' \\ maybe.\n\n2. (U) Two."],
        ["2", "2009-08-28 06:47", "09TEST8", "Embassy X", "UNCLASSIFIED", "", "VZCZC"],
        ["3", "2009-08-28", "09TEST9", "Embassy X", "UNCLASSIFIED", "09STATE1|09STATE2", "",
         "1. (U) Three."],
        ["4", "yesterday", "09TEST10", "Embassy X", "UNCLASSIFIED", "", "", "1. (U) Four."],
    ]
    path = tmp_path / "cables.csv"
    path.write_text("".join(",".join(_mysql(f) for f in row) + "\n" for row in rows))
    items = list(iter_csv_cables(path))
    assert [type(item).__name__ for item in items] == ["Cable", "CableError", "Cable", "CableError"]
    first, missing, third, bad_date = items
    assert first.paragraph(1).text == "(U) It said \"yes\" and 'no' \\ maybe."
    assert first.subject == "ONE"
    assert str(missing) == "CSV row 2: missing field 'content'"
    assert missing.source == str(path)
    assert third.refs == ["09STATE1", "09STATE2"] and third.date_iso == "2009-08-28"
    assert str(bad_date) == "CSV row 4: bad date 'yesterday'"


def test_csv_row_cut_short_costs_only_itself(tmp_path):
    """A row whose quoted field never closes would swallow every row after it."""
    rows = [",".join(_mysql(f) for f in ["1", "2009-08-28 06:47", f"09TEST{n}", "Embassy X", "UNCLASSIFIED", "",
                                         "VZCZC", f"SUBJECT: S{n}\n\n1. (U) Row {n}.\n\n2. (U) Two."]) + "\n"
            for n in (1, 2, 3, 4)]
    rows[1] = rows[1][: rows[1].index("1. (U)")] + "\n"  # cut inside `content`: its quote never closes
    path = tmp_path / "cables.csv"
    path.write_text("id,date,refid,origin,classification,references,header,content\n" + "".join(rows))
    items = list(iter_csv_cables(path))
    assert [getattr(item, "id", str(item)) for item in items] == [
        "09TEST1", "CSV row 3: a quoted field is never closed (the row is cut short)", "09TEST3", "09TEST4"]
    assert items[2].paragraph(1).text == "(U) Row 3."
    # A cable quoting a CSV row of itself inside its content is one row, not two.
    quoting = ",".join(_mysql(f) for f in ["5", "2009-08-28", "09TEST5", "Embassy X", "UNCLASSIFIED", "", "",
                                           "1. (U) Five.\n12,2009-08-28,09TEST5,\"x\n\n2. (U) Six."]) + "\n"
    path.write_text(quoting + rows[3])
    assert [c.id for c in iter_csv_cables(path)] == ["09TEST5", "09TEST4"]


def _cable_text(cable_id: str, body: str, subject: str = "A SUBJECT") -> str:
    return f"{cable_id}\n{subject}\nFri Aug 28 00:00:00 +0200 2009\nUNCLASSIFIED\nEmbassy Test\n{body}"
