"""`rag show`: a cable, or one paragraph with its neighbours, on the demo index."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import pytest

import fakes

from rag.cables import read_cable_file
from rag.citation import Citation, number_ranges
from rag.cli import main
from rag.errors import RagError
from rag.index.demo import DEMO_DIR

CABLE = "09PHNOMPENH637"


@pytest.fixture(scope="module")
def parsed():
    """The cable as the parser reads it from the demo file: what the index should give back."""
    return read_cable_file(DEMO_DIR / f"{CABLE}.txt")


def run(settings, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["show", *args, "--index", str(settings.index_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def flat(text: str) -> str:
    return " ".join(text.split())


def printed_numbers(out: str) -> list[int]:
    return [int(n) for n in re.findall(r"^▸?¶(\d+) ", out, flags=re.M)]


@pytest.mark.parametrize("value, expected", [
    (CABLE, Citation(CABLE)),
    (" 09phnompenh637 ", Citation(CABLE)),
    (f"{CABLE} ¶6", Citation(CABLE, 6)),
    (f"{CABLE}¶6", Citation(CABLE, 6)),
    (f"{CABLE}:6", Citation(CABLE, 6)),
    (f"{CABLE} para 6", Citation(CABLE, 6)),
    (f"{CABLE}, para. 6", Citation(CABLE, 6)),
    (f"{CABLE} paragraph 6", Citation(CABLE, 6)),
    (f"[{CABLE} ¶6]", Citation(CABLE, 6)),
    (f"({CABLE} para 6)", Citation(CABLE, 6)),
])
def test_reference_forms(value, expected):
    assert Citation.parse(value) == expected


@pytest.mark.parametrize("value, message", [
    ("", "not a cable id"),
    ("hello", "not a cable id"),
    ("PHNOMPENH637 ¶6", "not a cable id"),
    (f"{CABLE} ¶six", "not a cable or paragraph reference"),
    (f"{CABLE} ¶6 and ¶7", "not a cable or paragraph reference"),
    ("9" * 500, "not a"),
])
def test_bad_references_are_one_line_errors(value, message):
    with pytest.raises(RagError, match=message) as caught:
        Citation.parse(value)
    assert "\n" not in str(caught.value)


def test_number_ranges():
    assert number_ranges([3, 1, 2, 4, 5, 6, 7]) == "¶1–¶7"
    assert number_ranges([1, 2, 4, 6, 7]) == "¶1–¶2, ¶4, ¶6–¶7"


def test_whole_cable_has_metadata_then_every_paragraph_in_order(fake_demo, capsys, parsed):
    code, out, err = run(fake_demo, capsys, CABLE)
    assert code == 0 and err == ""
    head = out.split("\n\n")[0]
    assert head.splitlines()[0] == CABLE
    for value in (parsed.subject, parsed.date_iso, parsed.origin, parsed.classification, ", ".join(parsed.tags)):
        assert value in head
    assert printed_numbers(out) == [p.number for p in parsed.paragraphs] == [1, 2, 3, 4, 5, 6, 7]
    body = flat(out)
    at = -1
    for p in parsed.paragraphs:
        found = body.find(flat(p.text))
        assert found > at, f"¶{p.number}'s text is missing or out of order"
        at = found
        if p.heading:
            assert re.search(rf"^{re.escape(p.heading)}\n¶{p.number} ", out, flags=re.M)
    assert max(map(len, out.splitlines())) <= 100


@pytest.mark.parametrize("reference", [f"{CABLE} ¶6", f"{CABLE}:6", f"{CABLE} para 6"])
def test_a_paragraph_comes_with_the_one_before_and_after(fake_demo, capsys, parsed, reference):
    code, out, err = run(fake_demo, capsys, reference)
    assert code == 0 and err == ""
    assert printed_numbers(out) == [5, 6, 7]
    assert re.search(r"^▸¶6 ", out, flags=re.M) and not re.search(r"^▸¶[57] ", out, flags=re.M)
    body = flat(out)
    for p in parsed.paragraphs:
        assert (flat(p.text) in body) == (p.number in (5, 6, 7))
    assert "(Ministry of Interior)" in out  # the section ¶5 sits under, headed at ¶4
    assert "COMMENT\n¶7" in out


def test_unquoted_paragraph_and_the_first_paragraph(fake_demo, capsys):
    code, out, _ = run(fake_demo, capsys, CABLE, "¶1")
    assert code == 0 and printed_numbers(out) == [1, 2]
    code, out, _ = run(fake_demo, capsys, f"{CABLE}:7")
    assert code == 0 and printed_numbers(out) == [6, 7]


def test_json_is_the_cable_view_with_focus(fake_demo, capsys, parsed):
    code, out, _ = run(fake_demo, capsys, CABLE, "--json")
    assert code == 0
    cable = json.loads(out)
    assert cable.keys() == {"id", "subject", "date", "origin", "classification", "tags", "references",
                            "referenced_by", "paragraphs", "focus"}
    assert (cable["id"], cable["subject"], cable["date"], cable["origin"], cable["classification"], cable["tags"]) == (
        CABLE, parsed.subject, parsed.date_iso, parsed.origin, parsed.classification, parsed.tags)
    assert cable["references"] == [{"id": "09STATE87525", "in_index": False}] and cable["referenced_by"] == []
    assert cable["focus"] is None
    assert [(p["paragraph"], p["heading"], p["text"]) for p in cable["paragraphs"]] == [
        (p.number, p.heading, p.text) for p in parsed.paragraphs]

    code, out, _ = run(fake_demo, capsys, f"{CABLE}:6", "--json")
    window = json.loads(out)
    assert window["focus"] == 6 and [p["paragraph"] for p in window["paragraphs"]] == [5, 6, 7]
    assert window["paragraphs"][0]["section"] == "Ministry of Interior"


def test_references_both_ways_come_after_the_metadata(fake_demo, capsys):
    """Each reference is one line: its id, then date and subject when the index holds it. On the
    demo, 09PHNOMPENH957's REF lines name five demo cables and 09PHNOMPENH953, which the demo
    lacks; 09PHNOMPENH954 is named by four demo cables."""
    demo = {c.id: c for c in map(read_cable_file, sorted(DEMO_DIR.glob("*.txt")))}

    def listed(cable_id: str, label: str) -> list[str]:
        code, out, err = run(fake_demo, capsys, f"{cable_id} ¶2")
        assert code == 0 and err == "" and max(map(len, out.splitlines())) <= 100
        head = out.split("\n\n")[0].splitlines()
        labels = [line.split(":")[0] for line in head if not line.startswith(" ")]
        assert labels[-3:] == ["Tags", "References", "Referenced by"]  # after the metadata, before ¶
        at = next(i for i, line in enumerate(head) if line.startswith(f"{label}:"))
        lines = [head[at]] + list(itertools.takewhile(lambda line: line.startswith(" " * 16), head[at + 1 :]))
        return [line[16:] for line in lines]

    refs = listed("09PHNOMPENH957", "References")
    assert [line.split()[0] for line in refs] == demo["09PHNOMPENH957"].refs
    assert "09PHNOMPENH953  (not in this index)" in refs
    for line in refs:
        cable = demo.get(line.split()[0])
        if cable is None:
            assert line.endswith("  (not in this index)")
            continue
        subject = line.split("  ", 2)[2]
        assert line.startswith(f"{cable.id}  {cable.date_iso}  ") and flat(subject.rstrip("…")) in flat(cable.subject)
    assert sum(line.endswith("(not in this index)") for line in refs) == 1

    citing = sorted((c for c in demo.values() if "09PHNOMPENH954" in c.refs), key=lambda c: (c.date_iso, c.id))
    assert [line.split()[:2] for line in listed("09PHNOMPENH954", "Referenced by")] == [
        [c.id, c.date_iso] for c in citing] and len(citing) == 4

    code, out, _ = run(fake_demo, capsys, CABLE)
    assert "References:     09STATE87525  (not in this index)\nReferenced by:  —\n" in out


@pytest.mark.parametrize("reference, message", [
    ("09NOSUCHPOST1", "rag: error: cable 09NOSUCHPOST1 is not in this index"),
    (f"{CABLE} ¶9", f"rag: error: cable {CABLE} has no ¶9; it has ¶1–¶7"),
    (f"{CABLE}:0", f"rag: error: cable {CABLE} has no ¶0; it has ¶1–¶7"),
    ("not-an-id", "rag: error: not a cable id: 'not-an-id' (expected e.g. 09PHNOMPENH637)"),
])
def test_unknown_cable_or_paragraph_is_one_line_and_exit_1(fake_demo, capsys, reference, message):
    code, out, err = run(fake_demo, capsys, reference)
    assert code == 1 and out == ""
    assert err.splitlines() == [message]


def test_errors_reach_the_shell_without_a_traceback(fake_demo):
    done = subprocess.run([sys.executable, fakes.__file__, "show", f"{CABLE} ¶9", "--index", str(fake_demo.index_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"rag: error: cable {CABLE} has no ¶9; it has ¶1–¶7"]


def test_a_missing_index_is_one_line(tmp_path, capsys):
    code = main(["show", CABLE, "--index", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "no index at" in err


@pytest.mark.parametrize("command", [["show", CABLE], ["stats"]])
def test_output_cut_short_by_a_pipe_is_no_traceback(fake_demo, command):
    """`rag show ID | head -1`: the reader has gone before the output is written."""
    import subprocess
    import sys

    rag = subprocess.Popen([sys.executable, fakes.__file__, *command, "--index", str(fake_demo.index_dir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rag.stdout.close()
    err = rag.stderr.read().decode()
    assert rag.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipeError" not in err
