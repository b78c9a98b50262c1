"""Settings: read from RAG_* variables when made, validated, and documented in README.md."""

from pathlib import Path

import pytest

from rag.errors import RagError
from rag.settings import Settings, get_settings, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_the_generated_one():
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Settings")
    end = next(i for i, line in enumerate(lines[start + 1:]) if line.startswith("## "))
    table = [line for line in lines[start + 1: start + 1 + end] if line.startswith("|")]
    assert "\n".join(table) == settings_table(), "run: python -m rag.settings, and paste the table into README.md"


def test_variables_are_read_when_settings_are_made(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path))
    monkeypatch.setenv("RAG_TOP_K", " 7 ")
    monkeypatch.setenv("RAG_DENSE_WEIGHT", "0.5")
    s = Settings()
    assert (s.index_dir, s.top_k, s.dense_weight) == (tmp_path, 7, 0.5)
    assert Settings(index_dir=tmp_path / "x").index_dir == tmp_path / "x"  # a keyword wins


@pytest.mark.parametrize("value, expected", [("0", False), ("false", False), ("No", False), (" off ", False),
                                             ("", False), ("1", True), ("yes", True), ("on", True)])
def test_flags(monkeypatch, value, expected):
    monkeypatch.setenv("RAG_RANK", value)
    assert Settings().rank is expected


def test_base_url_alias_first_set_wins(monkeypatch):
    monkeypatch.delenv("RAG_LLM_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai/v1")
    assert Settings().llm_base_url == "http://openai/v1"
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://rag/v1")
    assert Settings().llm_base_url == "http://rag/v1"


def test_with_ignores_none_and_settings_are_immutable(tmp_path):
    s = Settings(index_dir=tmp_path)
    changed = s.with_(top_k=3, llm=None)
    assert (changed.top_k, changed.llm, changed.index_dir) == (3, s.llm, tmp_path)
    assert s.top_k == Settings(index_dir=tmp_path).top_k
    with pytest.raises(Exception):
        s.top_k = 5
    assert get_settings(s) is s
    with pytest.raises(TypeError):
        s.with_(top_kk=3)


@pytest.mark.parametrize("var, value, message", [
    ("RAG_DENSE_WEIGHT", "heavy", "RAG_DENSE_WEIGHT='heavy' is not a number: Weight of the dense ranking"),
    ("RAG_THREADS", "two", "RAG_THREADS='two' is not a whole number: Intra-op threads"),
    ("RAG_RETRIEVAL", "semantic", "RAG_RETRIEVAL='semantic' is not one of dense, bm25, hybrid: How paragraphs"),
    ("RAG_LLM", "gpt", "RAG_LLM='gpt' is not one of extractive, openai, llamacpp: Answer backend"),
    ("RAG_DEVICE", "gpu", "RAG_DEVICE='gpu' is not one of auto, cpu, cuda: Where the fp32 encoder runs"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(RagError) as exc:
        Settings()
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
