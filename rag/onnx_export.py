"""The fp32 ONNX copy of the packaged MiniLM, so questions are encoded without torch.

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
    last hidden state out (rag.embed.OnnxMiniLM pools and normalises). Atomic: a temporary
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
    import numpy as np
    import torch

    from rag.embed import OnnxMiniLM

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
