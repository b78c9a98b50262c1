"""Settings: every path and default in one place, each overridable from the environment.

Library functions take `settings: Settings | None = None` and start with
`settings = get_settings(settings)`, so tests can point the whole tool at a temporary directory
by setting RAG_INDEX_DIR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

# Nothing may be fetched from a model hub at run time: the models ship inside PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    index_dir: Path = field(
        default_factory=lambda: Path(_env("RAG_INDEX_DIR", "index")),
        metadata={"description": "Directory of the Chroma index and the BM25 index beside it."},
    )
    chroma_url: str = field(
        default_factory=lambda: _env("RAG_CHROMA_URL"),
        metadata={"description": "http://host:port of a Chroma server; empty = embedded store."},
    )
    collection: str = field(
        default_factory=lambda: _env("RAG_COLLECTION", "cables"),
        metadata={"description": "Chroma collection name."},
    )
    encoder: str = field(
        default_factory=lambda: _env("RAG_ENCODER", "minilm"),
        metadata={"description": "'minilm' (packaged fp32 model), 'minilm-int8' (ONNX) or a local model path."},
    )
    embed_batch_size: int = field(
        default_factory=lambda: int(_env("RAG_EMBED_BATCH", "64")),
        metadata={"description": "Texts per forward pass of the encoder."},
    )
    ingest_batch: int = field(
        default_factory=lambda: int(_env("RAG_INGEST_BATCH", "200")),
        metadata={"description": "Cables per store round-trip during ingest: large enough that "
                  "length-sorted encoding removes most padding, small enough that a kill loses little."},
    )
    retrieval: str = field(
        default_factory=lambda: _env("RAG_RETRIEVAL", "hybrid"),
        metadata={"description": "dense | bm25 | hybrid."},
    )
    top_k: int = field(
        default_factory=lambda: int(_env("RAG_TOP_K", "10")),
        metadata={"description": "Paragraphs retrieved per question."},
    )
    reranker: str = field(
        default_factory=lambda: _env("RAG_RERANKER"),
        metadata={"description": "Local path of a cross-encoder model; empty = no reranking."},
    )
    llm: str = field(
        default_factory=lambda: _env("RAG_LLM", "extractive"),
        metadata={"description": "extractive | openai | llamacpp."},
    )
    llm_base_url: str = field(
        default_factory=lambda: _env("RAG_LLM_BASE_URL", _env("OPENAI_BASE_URL")),
        metadata={"description": "Base URL of an OpenAI-compatible server (…/v1)."},
    )
    llm_model: str = field(
        default_factory=lambda: _env("RAG_LLM_MODEL"),
        metadata={"description": "Model name for the openai backend, GGUF path for llamacpp."},
    )

    def with_(self, **changes) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def get_settings(settings: Settings | None = None) -> Settings:
    return settings if settings is not None else Settings()
