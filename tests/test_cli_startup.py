"""What the CLI imports: `rag ask` answers without the heavy libraries, and bad input stops
before any library that serves the index or a model is imported. Structural, not timed
(bench/cli_startup.py times it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.index.embed import MINILM, get_encoder

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who leads Cambodia's police TIP response?"
# Runs the CLI as `rag` does, then prints the top-level packages it imported as the last line.
PROBE = """
import json, sys
from rag.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), flush=True)
sys.exit(code)
"""
# Seconds of import each on 2 cores (sentence-transformers with torch ≈ 6, gradio ≈ 3): none is
# needed to answer with the extractive backend.
HEAVY = {"sentence_transformers", "torch", "transformers", "gradio", "llama_index", "sklearn", "matplotlib"}
# What opens the index or runs a model: input that cannot be answered stops before these.
INDEX = {"chromadb", "onnxruntime", "bm25s", "tokenizers"}


def rag(*args: str, **env: str) -> tuple[int, str, set[str]]:
    """Exit status, stderr, and the top-level packages imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, **env})
    modules = done.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    return done.returncode, done.stderr, set(json.loads(modules))


@pytest.fixture(scope="module")
def onnx_ready():
    """The ONNX copy of the encoder exists (its first use makes it, with torch)."""
    get_encoder(MINILM, queries=True).model


def test_ask_imports_none_of_the_heavy_libraries(demo_settings, onnx_ready):
    code, err, modules = rag("ask", QUESTION, "--index", str(demo_settings.index_dir))
    assert code == 0, err
    assert not modules & HEAVY, modules & HEAVY
    assert {"chromadb", "onnxruntime"} <= modules  # the check above looks where it should


def test_stats_loads_no_model(demo_settings):
    code, err, modules = rag("stats", "--index", str(demo_settings.index_dir))
    assert code == 0, err
    assert not modules & (HEAVY | {"onnxruntime"}), modules & (HEAVY | {"onnxruntime"})


@pytest.mark.parametrize("args, env, error", [
    (("stats", "--index", "/nonexistent"), {}, "no index at /nonexistent"),
    (("ask", "", "--index", "/nonexistent"), {}, "the question is empty"),
    (("ask", QUESTION, "--index", "/nonexistent"), {}, "no index at /nonexistent"),
    (("ask", QUESTION, "--index", "/nonexistent", "--date-from", "2009-13-45"), {}, "must be a date"),
    (("ask", QUESTION, "--index", "/nonexistent"), {"RAG_TOP_K": "abc"}, "RAG_TOP_K='abc' is not a whole number"),
])
def test_bad_input_stops_before_the_index_libraries(args, env, error):
    code, err, modules = rag(*args, **env)
    assert code == 1 and err.count("\n") == 1 and err.startswith("rag: error: ") and error in err, err
    assert not modules & (HEAVY | INDEX), modules & (HEAVY | INDEX)


def test_mcp_with_no_index_stops_before_the_mcp_sdk():
    code, err, modules = rag("mcp", "--index", "/nonexistent")
    assert code == 1 and err.count("\n") == 1 and "no index at /nonexistent" in err, err
    assert not modules & (HEAVY | {"mcp", "onnxruntime"}), modules & (HEAVY | {"mcp", "onnxruntime"})
