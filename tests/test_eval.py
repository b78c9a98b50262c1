"""`rag eval` end to end on the demo index: the smoke suite, the CLI, and bad suite files."""

import json
from pathlib import Path

import pytest

from rag import cli
from rag.errors import RagError
from rag.evaluation.evaluate import evaluate
from rag.evaluation.suite import KINDS, load_suite

SMOKE = Path(__file__).resolve().parents[1] / "evals" / "smoke.jsonl"
REPORT_KEYS = {"n", "config", "retrieval", "answer", "latency_ms", "by_kind"}
RETRIEVAL_KEYS = {"hit@1", "hit@5", "hit@10", "mrr@10", "multi_all_cables"}
ANSWER_KEYS = {"fact_recall", "citation_precision", "citation_recall", "refusal_accuracy",
               "false_refusal_rate", "unretrieved_citations", "one_line_shown", "one_line_right"}
GOOD_LINE = {"id": "ok", "kind": "factoid", "question": "Who leads Cambodia's police TIP response?",
             "facts": [["Kang Sokhorn"]], "citations": [["09PHNOMPENH637", 1]]}


@pytest.fixture(scope="module")
def smoke_run(fake_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    return evaluate(SMOKE, fake_demo, out=out, progress=False)


def _write_suite(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_smoke_suite_covers_every_kind_and_is_not_dev():
    cases = load_suite(SMOKE)
    assert 6 <= len(cases) <= 10
    assert {"unanswerable", "filtered", "followup"} <= {c.kind for c in cases}
    dev = {json.loads(line)["question"] for line in (SMOKE.parent / "dev.jsonl").read_text().splitlines() if line}
    leaked = ({c.question for c in cases} & dev) - {GOOD_LINE["question"]}  # the public example may repeat
    assert not leaked


def test_smoke_run_writes_every_report(smoke_run):
    out, reports = smoke_run
    for name in ("report.json", "report.md", "cases.jsonl", "report.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "report.json").read_text()) == reports
    n = len(load_suite(SMOKE))
    assert len((out / "cases.jsonl").read_text().splitlines()) == n * len(reports)
    assert "## Worst cases" in (out / "report.md").read_text()


def test_smoke_report_has_the_fixed_keys(smoke_run):
    _, reports = smoke_run
    assert len(reports) == 1
    report = reports[0]
    assert set(report) == REPORT_KEYS
    assert set(report["retrieval"]) == RETRIEVAL_KEYS
    assert set(report["answer"]) == ANSWER_KEYS
    assert set(report["latency_ms"]) == {"retrieve", "rank", "answer", "verify", "total"}
    assert report["n"] == len(load_suite(SMOKE))
    assert set(report["by_kind"]) <= set(KINDS)
    assert sum(k["n"] for k in report["by_kind"].values()) == report["n"]


def test_smoke_run_shows_no_unretrieved_citation(smoke_run):
    _, reports = smoke_run
    assert reports[0]["answer"]["unretrieved_citations"] == 0
    # The public example is the one case every configuration must get right: its gold
    # paragraph first, and cited.
    out, _ = smoke_run
    example = json.loads((out / "cases.jsonl").read_text().splitlines()[0])
    assert example["question"] == "Who leads Cambodia's police TIP response?"
    assert example["retrieved"][0]["gold"] and any(c["gold"] for c in example["citations"])


def test_smoke_cases_are_debuggable(smoke_run):
    out, _ = smoke_run
    first = json.loads((out / "cases.jsonl").read_text().splitlines()[0])
    for key in ("id", "kind", "question", "standalone_question", "config", "answer", "refused", "citations",
                "retrieved", "gold", "metrics", "timings_ms"):
        assert key in first, key
    assert first["gold"][0]["text"]  # the gold paragraph's text, looked up in the index
    assert first["retrieved"][0]["rank"] == 1


def test_cli_compares_configurations(fake_demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAG_ENCODER", fake_demo.encoder)
    out = tmp_path / "cli"
    argv = ["eval", "--questions", str(SMOKE), "--index", str(fake_demo.index_dir), "--out", str(out),
            "--retrieval", "dense", "bm25", "--limit", "2"]
    assert cli.main(argv) == 0
    reports = json.loads((out / "report.json").read_text())
    assert [r["config"]["name"] for r in reports] == ["dense+extractive", "bm25+extractive"]
    assert all(r["n"] == 2 for r in reports)
    printed = capsys.readouterr().out
    assert "dense+extractive" in printed and "hit@1" in printed


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"id": "x", "kind": "factoid",', "invalid JSON"),
        ({**GOOD_LINE, "id": "x", "kind": "trivia"}, "unknown kind 'trivia'"),
        ({"id": "x", "kind": "factoid", "question": "q"}, "missing field(s) facts, citations"),
        ({**GOOD_LINE, "id": "x", "citations": [["09PHNOMPENH637", "1"]]}, "citations must be"),
        ({**GOOD_LINE, "id": "x", "kind": "unanswerable"}, "an unanswerable case has no citations"),
        ({**GOOD_LINE, "id": "x", "kind": "followup"}, "a followup case needs a history"),
        ({**GOOD_LINE, "id": "x", "filters": {"date_from": "2009-13-01"}}, "filter date_from must be a date"),
        ({**GOOD_LINE}, "duplicate id 'ok' (first on line 1)"),
    ],
)
def test_bad_suite_line_is_named(tmp_path, bad_line, message):
    path = _write_suite(tmp_path / "bad.jsonl", [GOOD_LINE, "", bad_line])
    with pytest.raises(RagError) as exc:
        load_suite(path)
    assert f"line 3: {message}" in str(exc.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write_suite(tmp_path / "bad.jsonl", ["not json", GOOD_LINE, {**GOOD_LINE, "id": "y", "kind": "?"}])
    with pytest.raises(RagError) as exc:
        load_suite(path)
    assert "line 1: invalid JSON" in str(exc.value) and "line 3: unknown kind" in str(exc.value)


def test_empty_suite_is_refused(tmp_path):
    with pytest.raises(RagError, match="no cases"):
        load_suite(_write_suite(tmp_path / "empty.jsonl", [""]))


def test_cable_missing_from_index_is_named_before_running(fake_demo, tmp_path):
    path = _write_suite(tmp_path / "missing.jsonl",
                        [GOOD_LINE, {**GOOD_LINE, "id": "gone", "citations": [["99NOWHERE123", 4]]}])
    with pytest.raises(RagError) as exc:
        evaluate(path, fake_demo, out=tmp_path / "run", progress=False)
    assert "line 2: cable(s) not in the index: 99NOWHERE123" in str(exc.value)
    assert not (tmp_path / "run").exists()


def test_cli_prints_suite_problems_without_traceback(tmp_path, capsys):
    path = _write_suite(tmp_path / "bad.jsonl", [GOOD_LINE, {**GOOD_LINE, "id": "x", "kind": "trivia"}])
    assert cli.main(["eval", "--questions", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "line 2: unknown kind 'trivia'" in err and "Traceback" not in err
