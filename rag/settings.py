"""Settings: every path and default in one place, each overridable from the environment.

Library functions take `settings: Settings | None = None` and start with
`settings = get_settings(settings)`, so tests can point the whole tool at a temporary directory
by setting RAG_INDEX_DIR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from rag.errors import RagError

# Nothing may be fetched from a model hub at run time: the models ship inside PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _env(names: str, default: str) -> str:
    """The first of the `|`-separated variables that is set, else `default`."""
    return next((os.environ[n] for n in names.split("|") if n in os.environ), default)


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def setting(env: str, default: str, description: str, cast: Callable = str):
    """A field read from the environment when Settings() is made (not at import), so tests can
    point everything at a temporary directory with monkeypatch.setenv. A value that does not
    parse is a one-line error naming the variable."""

    def read():
        raw = _env(env, default)
        try:
            return cast(raw)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(cast, "valid")
            raise RagError(f"{env.split('|')[0]}={raw!r} is not {kind}: {description}") from None

    return field(default_factory=read, metadata={"description": description})


@dataclass(frozen=True)
class Settings:
    index_dir: Path = setting("RAG_INDEX_DIR", "index", "Directory of the Chroma index and the BM25 index beside it.", Path)
    chroma_url: str = setting("RAG_CHROMA_URL", "", "http://host:port of a Chroma server; empty = embedded store.")
    collection: str = setting("RAG_COLLECTION", "cables", "Chroma collection name.")
    encoder: str = setting("RAG_ENCODER", "minilm", "'minilm' (packaged fp32 model), 'minilm-int8' (ONNX) or a local model path.")
    device: str = setting("RAG_DEVICE", "auto", "Where the fp32 encoder runs: auto (a CUDA GPU when torch sees one, "
                          "else the CPU), cpu or cuda.")
    embed_batch_size: int = setting("RAG_EMBED_BATCH", "64", "Texts per forward pass of the encoder.", int)
    ingest_batch: int = setting("RAG_INGEST_BATCH", "200", "Cables per store round-trip during ingest: large enough that "
                  "length-sorted encoding removes most padding, small enough that a kill loses little.", int)
    retrieval: str = setting("RAG_RETRIEVAL", "hybrid", "dense | bm25 | hybrid.")
    dense_weight: float = setting(
        "RAG_DENSE_WEIGHT", "0.2", "Weight of the dense ranking against BM25's 1.0 in hybrid fusion; 0.2 scored best "
        "on the dev set over the full shared corpus (evals/RESULTS.md).", float)
    top_k: int = setting("RAG_TOP_K", "10", "Paragraphs retrieved per question.", int)
    rank: bool = setting("RAG_RANK", "1", "Reorder retrieved paragraphs by whether they answer the question "
                         "(rag/models/ranker.json); 0 keeps retrieval's order.", _flag)
    refuse: bool = setting("RAG_REFUSE", "1", "Refuse questions the cables do not answer (rag.evidence: stated checks, "
                           "and rag/models/evidence.json when ranking is on); 0 always answers.", _flag)
    reranker: str = setting("RAG_RERANKER", "", "Local path of a cross-encoder model; empty = no reranking.")
    llm: str = setting("RAG_LLM", "extractive", "extractive | openai | llamacpp.")
    llm_base_url: str = setting("RAG_LLM_BASE_URL|OPENAI_BASE_URL", "", "Base URL of an OpenAI-compatible server (…/v1).")
    llm_model: str = setting("RAG_LLM_MODEL", "", "Model name for the openai backend, GGUF path for llamacpp.")

    def with_(self, **changes) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def get_settings(settings: Settings | None = None) -> Settings:
    return settings if settings is not None else Settings()
