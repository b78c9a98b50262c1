"""Bounded input: what a careful operator or an attacker types is refused in one line or read
within bounds, never a traceback, an unbounded read or a nonsense setting that runs. Each test
reproduces a failure of the issue "Never a 500, never an OOM, never a traceback"."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.answer.pipeline import Pipeline
from rag.answer.question import analyse
from rag.answer.retrieve import open_retriever
from rag.check.checker import BLOCK, MAX_BYTES, Checker, read_text
from rag.check.claims import split_text
from rag.cli import build_parser, main
from rag.errors import RagError
from rag.settings import MAX_TOP_K, Settings
from rag.validate import check_question

ROOT = Path(__file__).resolve().parents[1]
CABLE = "09PHNOMPENH637"


def rag(*args: str | bytes, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, timeout=timeout, cwd=ROOT,
                          **kwargs)


def one_line(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text and text.count("\n") == 1, text
    return text.strip()


@pytest.fixture(scope="module")
def checker(demo_settings):
    return Checker(open_retriever(demo_settings))


# ── rag check reads at most --max-bytes, of files, devices and stdin ─────────────────────────────
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_check_of_an_endless_device_ends_at_once_in_one_line(demo_settings, device):
    """They were read whole: 21-23 GB resident, then the kernel killed the process."""
    started = time.monotonic()
    done = rag("check", device, "--index", str(demo_settings.index_dir), timeout=60)
    assert done.returncode == 2 and done.stdout == b""
    assert one_line(done.stderr) == f"rag: error: {device} is binary, not text"
    assert time.monotonic() - started < 30


def test_read_text_reads_no_more_than_the_limit_of_a_device():
    with pytest.raises(RagError, match="binary"):
        read_text("/dev/zero", max_bytes=10)


def test_a_text_over_max_bytes_is_refused_from_a_file_and_from_stdin(demo_settings, tmp_path):
    draft = tmp_path / "draft.md"
    draft.write_text(f"Police made 100 TIP arrests in the first six months of 2009 [{CABLE} ¶1]. " * 40)
    index = ("--index", str(demo_settings.index_dir))
    done = rag("check", str(draft), "--max-bytes", "1000", *index)
    assert done.returncode == 2
    assert one_line(done.stderr) == (f"rag: error: {draft} is larger than 1,000 bytes: check a part of it, "
                                     "or raise the limit with --max-bytes")
    done = rag("check", "-", "--max-bytes", "1000", *index, input=draft.read_bytes())
    assert done.returncode == 2 and "stdin is larger than 1,000 bytes" in one_line(done.stderr)


def test_the_default_limit_is_2_mb_and_help_says_so():
    assert MAX_BYTES == 2 * 1024 * 1024
    check = build_parser()._subparsers._group_actions[0].choices["check"]
    assert "--max-bytes N" in check.format_help() and f"2 MB = {MAX_BYTES}" in " ".join(check.format_help().split())


@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_a_bad_max_bytes_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        main(["check", "-", "--max-bytes", value])
    assert "--max-bytes" in capsys.readouterr().err


# ── rag check streams its verdicts, block by block ─────────────────────────────────────────────
def test_verdicts_come_block_by_block_before_the_rest_is_encoded(checker, monkeypatch):
    sentences = [f"Police made {n} TIP arrests in the province of Siem Reap last year." for n in range(BLOCK + 10)]
    drafts = split_text("\n\n".join(sentences))
    assert len(drafts) == BLOCK + 10
    calls = []
    encode = checker.retriever.encoder.encode_documents
    monkeypatch.setattr(checker.retriever.encoder, "encode_documents",
                        lambda texts, *a, **k: calls.append(len(texts)) or encode(texts, *a, **k))
    stream = checker.claims(drafts)
    first = next(stream)
    assert first.text == sentences[0] and calls == [BLOCK]
    assert len([first, *stream]) == BLOCK + 10 and calls == [BLOCK, 10]


def test_search_many_finds_what_search_finds(checker):
    questions = ["Who leads Cambodia's police TIP response?", "Police made 100 TIP arrests",
                 f"{CABLE} Chan Sotheavy met the Pol/Econ Chief"]
    retriever = checker.retriever
    vectors = retriever.encoder.encode_documents(questions)
    many = retriever.search_many(questions, 20, vectors)
    for question, vector, hits in zip(questions, vectors, many):
        one = retriever.search(question, 20, vector=vector)
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in one]
        assert [round(h.score, 9) for h in hits] == [round(h.score, 9) for h in one]
        assert all(h.vector is not None and h.text for h in hits)


def test_the_plain_report_prints_each_claim_then_the_summary(demo_settings, tmp_path):
    draft = tmp_path / "draft.md"
    draft.write_text(f"Police made 100 TIP arrests in the first six months of 2009 [{CABLE} ¶1].\n\n"
                     f"Chan Sotheavy met the Pol/Econ Chief on August 25 [{CABLE} ¶3].\n")
    done = rag("check", str(draft), "--index", str(demo_settings.index_dir), text=True)
    assert done.returncode == 1 and done.stderr == ""  # no bar when stderr is not a terminal
    blocks = done.stdout.split("\n\n")
    assert blocks[0].startswith("line 1 [supported]") and blocks[1].startswith("line 3 [")
    assert blocks[-1].startswith("2 claims: 2 cited (1 supported")


# ── Questions ──────────────────────────────────────────────────────────────────────────────────
def test_a_question_with_bytes_that_are_not_utf8_is_answered_not_a_traceback(demo_settings):
    """`rag ask "$(printf 'caf\\xe9')"` crashed in rag/index/embed.py."""
    done = rag("ask", b"caf\xe9 TIP arrests", "--index", str(demo_settings.index_dir), "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["question"] == "caf\ufffd TIP arrests"


@pytest.mark.parametrize("question", ["caf\udce9", "a\ud800b"])
def test_lone_surrogates_are_replaced_in_every_face(question):
    assert "\ufffd" in check_question(question)
    check_question(question).encode("utf-8")  # what the encoder's tokenizer needs


@pytest.mark.parametrize("question", ["🙂🙂🙂", "?!?", "¶ — …"])
def test_a_question_with_no_words_is_refused_with_that_reason(question, tmp_path, capsys):
    """An emoji-only question was answered with a cited paragraph marked supported."""
    assert main(["ask", question, "--index", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err == "rag: error: the question has no words to search for\n"


def test_every_face_refuses_a_question_with_no_words(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as http:
        api = http.post("/api/ask", json={"question": "🙂🙂🙂"})
        v1 = http.post("/v1/chat/completions", json={"model": "cablerag",
                                                     "messages": [{"role": "user", "content": "🙂🙂🙂"}]})
        # JSON may escape a lone surrogate ("\udce9"); httpx would not encode it, so the body is made here.
        wrong_bytes = http.post("/api/ask", content=json.dumps({"question": "caf\udce9 TIP arrests"}),
                                headers={"content-type": "application/json"})
    assert api.status_code == 400 and "no words to search for" in api.text
    assert v1.status_code == 400 and "no words to search for" in v1.text
    # Refused by the request's schema before it reaches the encoder: a 422 naming the field, not a 500.
    assert wrong_bytes.status_code == 422 and "question" in wrong_bytes.text and len(wrong_bytes.content) < 500


@pytest.mark.parametrize("question", [f"{CABLE} ¶6", f"{CABLE} para 6", f"What does {CABLE} paragraph 6 say?",
                                      f"{CABLE}:6"])
def test_a_question_naming_a_paragraph_is_answered_from_it(demo_settings, question):
    """"09PHNOMPENH637 ¶6" answered from ¶3."""
    answer = Pipeline(demo_settings).ask(question)
    assert not answer.refused
    assert (answer.hits[0].cable_id, answer.hits[0].paragraph) == (CABLE, 6)
    assert [(c.citation.cable_id, c.citation.paragraph) for c in answer.citations][0] == (CABLE, 6)


def test_a_paragraph_reference_is_neither_a_figure_nor_a_word():
    asked = analyse(f"{CABLE} para 6")
    assert asked.paragraphs == ((CABLE, 6),) and asked.figures == frozenset() and asked.terms == ()
    assert analyse(f"How many arrests does {CABLE} report?").paragraphs == ()


# ── Settings: ranges, one place, every face ────────────────────────────────────────────────────
@pytest.mark.parametrize("var, value, message", [
    ("RAG_TOP_K", "0", f"RAG_TOP_K='0' is not a whole number from 1 to {MAX_TOP_K}: Paragraphs retrieved"),
    ("RAG_TOP_K", "-1", f"RAG_TOP_K='-1' is not a whole number from 1 to {MAX_TOP_K}: Paragraphs retrieved"),
    ("RAG_DENSE_WEIGHT", "-5", "RAG_DENSE_WEIGHT='-5' is not a number from 0 to 1: Weight of the dense ranking"),
    ("RAG_DENSE_WEIGHT", "nan", "RAG_DENSE_WEIGHT='nan' is not a number from 0 to 1: Weight of the dense ranking"),
    ("RAG_DENSE_WEIGHT", "inf", "RAG_DENSE_WEIGHT='inf' is not a number from 0 to 1"),
    ("RAG_LLM_TIMEOUT", "0", "RAG_LLM_TIMEOUT='0' is not a number over 0: Seconds an LLM backend"),
    ("RAG_QUEUE_TIMEOUT", "nan", "RAG_QUEUE_TIMEOUT='nan' is not a number of at least 0"),
    ("RAG_MAX_BODY", "0", "RAG_MAX_BODY='0' is not a whole number of at least 1"),
    ("RAG_EMBED_BATCH", "0", "RAG_EMBED_BATCH='0' is not a whole number of at least 1"),
    ("RAG_WORKERS", "-2", "RAG_WORKERS='-2' is not a whole number of at least 0"),
])
def test_a_setting_out_of_range_stops_the_command_in_one_line(monkeypatch, tmp_path, capsys, var, value, message):
    """RAG_TOP_K=0 and -1, RAG_DENSE_WEIGHT=-5 and nan ran and answered."""
    monkeypatch.setenv(var, value)
    with pytest.raises(RagError) as exc:
        Settings()
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert main(["ask", "Who leads Cambodia's police TIP response?", "--index", str(tmp_path / "none")]) == 1
    assert one_line(capsys.readouterr().err) == f"rag: error: {exc.value}"


@pytest.mark.parametrize("change", [dict(top_k=0), dict(top_k=MAX_TOP_K + 1), dict(dense_weight=math.nan),
                                    dict(dense_weight=1.5), dict(llm_timeout=-1.0), dict(retrieval="semantic")])
def test_with_validates_as_the_variables_do(change):
    name, value = next(iter(change.items()))
    with pytest.raises(RagError, match=rf"^{name}={value!r} is not "):
        Settings().with_(**change)


def test_with_keeps_good_values_and_eval_s_lists():
    s = Settings().with_(top_k=1, dense_weight=0.0, retrieval=["dense", "bm25"])
    assert (s.top_k, s.dense_weight, s.retrieval) == (1, 0.0, ["dense", "bm25"])


def test_an_option_out_of_range_is_one_line(tmp_path, capsys):
    assert main(["ask", "Who leads Cambodia's police TIP response?", "--top-k", "0",
                 "--index", str(tmp_path / "none")]) == 1
    assert one_line(capsys.readouterr().err).startswith("rag: error: top_k=0 is not a whole number from 1 to")
