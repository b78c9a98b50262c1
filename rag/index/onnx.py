"""MiniLM as an ONNX graph run by onnxruntime (no torch), and the fp32 ONNX copy of the packaged model.

Importing sentence-transformers (and torch with it) costs about 6 s on 2 cores, many times a
0.3 s answer. onnxruntime runs the same weights after one `torch.onnx.export`: the vectors
equal sentence-transformers' within 1e-5 (tests/test_encoders.py), so the index built with
sentence-transformers needs no re-embedding, and its model id stays the same.

The copy is made on first use, checked against torch on a few sentences, and kept in the user's
cache (`$XDG_CACHE_HOME/cablerag/encoders`, else `~/.cache/...`) under a name keyed by the model
files, so every index and checkout shares one copy and another version of the model gets its
own. It is written to a temporary file in the same directory and renamed into place: processes
making it at the same time each rename a whole file, and an interrupted one leaves nothing where
a reader looks.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from rag.errors import RagError
from rag.settings import get_settings

# Raised when the ONNX graph, its inputs or the pooling change, so older copies are not reused.
FORMAT = 1
# The files the graph is made from (the tokenizer is read from the package at run time).
SOURCES = ("config.json", "model.safetensors")
# A temporary file older than this is an export killed mid-write (one takes seconds).
STALE_TMP_S = 3600
# Largest difference from torch the check at export accepts; measured ≈ 2e-7.
TOLERANCE = 1e-5
CHECK_TEXTS = ("Who leads Cambodia's police TIP response?",
               "The Ambassador met the Minister of Interior on August 26 to discuss the 2009 TIP Action Plan.")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cablerag" / "encoders"


def model_key(model_dir: Path) -> str:
    """Names one version of the model files: their names, sizes and modification times (a stat
    each; hashing the 90 MB of weights would cost a query more than encoding it), and FORMAT."""
    digest = hashlib.sha256(f"format {FORMAT}".encode())
    for name in SOURCES:
        st = (model_dir / name).stat()
        digest.update(f"\n{name} {st.st_size} {st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def onnx_path(model_dir: Path, directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"minilm-fp32-{model_key(model_dir)}.onnx"


def ensure_onnx(model_dir: Path, directory: Path | None = None) -> Path:
    """The ONNX copy of the model in `model_dir`, made (once, with a note on stderr) if missing."""
    path = onnx_path(model_dir, directory)
    if not path.exists():
        print(f"rag: making an ONNX copy of the encoder for fast start-up (once, ~20 s): {path}", file=sys.stderr)
        export(model_dir, path)
    return path


def export(model_dir: Path, path: Path) -> None:
    """Export the transformer of `model_dir` to `path`: token ids and attention mask in, the
    last hidden state out (OnnxMiniLM pools and normalises). Atomic: a temporary
    file renamed into place once it is checked."""
    import torch
    from transformers import AutoModel

    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("*.tmp"):
        if time.time() - old.stat().st_mtime > STALE_TMP_S:
            old.unlink(missing_ok=True)
    model = AutoModel.from_pretrained(str(model_dir))

    class HiddenStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    # In eval mode as a whole: the exporter restores the wrapper's mode on everything inside it,
    # and a wrapper left in training mode would switch the model's dropout on.
    hidden_states = HiddenStates().eval()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        ids = torch.ones((2, 8), dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        dynamic = {n: {0: "batch", 1: "tokens"} for n in names + ["last_hidden_state"]}
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo's, which needs onnxscript;
            # its tracer warnings concern branches an encoder without a cache never takes.
            warnings.simplefilter("ignore")
            torch.onnx.export(hidden_states, (ids, ids, torch.zeros_like(ids)), str(tmp), dynamo=False,
                              input_names=names, output_names=["last_hidden_state"], dynamic_axes=dynamic,
                              opset_version=17)
        check(hidden_states, model_dir, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o644)  # mkstemp's 0600 suits the file being written, not the one kept
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check(hidden_states, model_dir: Path, onnx_file: Path) -> None:
    """Raise unless the graph's pooled vectors equal torch's (`hidden_states`: ids, mask, types →
    last hidden state) on CHECK_TEXTS, encoded as one padded batch."""
    import torch

    onnx = OnnxMiniLM(onnx_file, model_dir / "tokenizer.json", threads=1)
    encodings = onnx.tokenizer.encode_batch(list(CHECK_TEXTS))
    width = max(len(e.ids) for e in encodings)
    ids = torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in encodings])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encodings])
    with torch.no_grad():
        hidden = hidden_states(ids, mask, torch.zeros_like(ids))
    m = mask[:, :, None].float()
    expected = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1).numpy()
    gap = float(np.abs(onnx.encode(list(CHECK_TEXTS)) - expected).max())
    if not gap <= TOLERANCE:
        raise RuntimeError(f"the ONNX export differs from torch by {gap:.1e} (more than {TOLERANCE:.0e})")


# all-MiniLM-L6-v2's window (sentence_bert_config.json max_seq_length), special tokens included.
MINILM_WINDOW = 256
MINILM_DIMENSION = 384


def token_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices, longest texts first, cut into batches whose padded size (rows × longest)
    stays within `max_tokens` (default RAG_EMBED_TOKENS; at least one text each) and `batch_size`
    texts. On this project's 2-core CPU, ~2k-token batches encode 25-30 % more texts per
    CPU-second than 64 texts of ~170 pieces (~11k tokens): the activations stay in cache."""
    max_tokens = max_tokens or get_settings().embed_tokens
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(batch_size, max_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


def _threads() -> int:
    """Intra-op threads: RAG_THREADS (set_threads sets it), else one per core."""
    if threads := get_settings().threads:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxMiniLM:
    """all-MiniLM-L6-v2 as an ONNX graph (int8, or the fp32 export): tokenize → run → mean-pool
    → normalise, as sentence-transformers does. Answers the parts of SentenceTransformer's
    interface the Encoder reads (dimension, window)."""

    dimension = MINILM_DIMENSION

    def __init__(self, model_file: Path, tokenizer_file: Path, threads: int | None = None,
                 window: int = MINILM_WINDOW):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RagError("the minilm-int8 encoder needs onnxruntime: pip install -e '.[int8]'") from exc
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or _threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.window = window
        # Read once: a Settings() per encode was ~3% of an answer's CPU under `rag serve`.
        self.max_tokens = get_settings().embed_tokens
        tok = Tokenizer.from_file(str(tokenizer_file))
        tok.enable_truncation(max_length=window)
        tok.no_padding()
        self.tokenizer = tok

    @property
    def max_seq_length(self) -> int:
        return self.window

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: list[str], batch_size: int = 64, max_tokens: int | None = None) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Length-sorted batches: each pads only to its own longest text.
        for rows in token_batches(lengths, batch_size, max_tokens or self.max_tokens):
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                n = lengths[r]
                ids[j, :n] = encodings[r].ids
                mask[j, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[rows] = pooled
        return out
