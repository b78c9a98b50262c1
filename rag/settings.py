"""Settings: every path and default in one place, each overridable from a `RAG_*` variable.

Library functions take `settings: Settings | None = None` and start with
`settings = get_settings(settings)`, so tests can point the whole tool at a temporary directory
by setting RAG_INDEX_DIR. The variables are read when a Settings is made, not at import.

`python -m rag.settings` prints the table of every variable that README.md carries (a test keeps
the two equal).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import annotated_types
from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.errors import RagError, require_extra

# Nothing may be fetched from a model hub at run time: the models ship inside PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _flag(value: Any) -> Any:
    """A flag from the environment: 0, false, no, off and the empty string are false."""
    return value.strip().lower() not in ("0", "false", "no", "off", "") if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_flag)]
# A count where unset, empty and 0 all mean "the default of the machine".
Count = Annotated[int, BeforeValidator(lambda value: value or 0)]
# The values a choice may take: a bad RAG_* value stops at Settings(), before a model loads.
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "bf16", "fp32"]
Retrieval = Literal["dense", "bm25", "hybrid"]
Backend = Literal["extractive", "openai", "llamacpp"]
Store = Literal["chroma", "lance"]
DEVICES, RETRIEVALS, BACKENDS, STORES = get_args(Device), get_args(Retrieval), get_args(Backend), get_args(Store)
PRECISIONS = get_args(Precision)


def _rate_limit(value: str) -> str:
    """A rate in the notation of the `limits` package ("30/minute", "5 per second"), or empty."""
    if value.strip():
        require_extra("serve", "RAG_RATE_LIMIT", "limits")
        from limits import parse

        parse(value)
    return value.strip()


RateLimit = Annotated[str, AfterValidator(_rate_limit)]

# The most paragraphs a question may retrieve: the ranker reorders 40 candidates, and an answer
# quoting more than 100 paragraphs is no answer.
MAX_TOP_K = 100


def setting(env: str, default: Any, description: str, **field: Any) -> Any:
    """A field read from `env` (`A|B`: the first of them that is set); `description` is the
    one-line reference that `--help` and the README table show, and ends a bad value's error."""
    names = env.split("|")
    return Field(default, description=description,
                 validation_alias=AliasChoices(*names) if len(names) > 1 else names[0], **field)


class Settings(BaseSettings):
    """Immutable: derive changed settings with `with_`."""

    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, validate_by_name=True,
                                      validate_by_alias=True, extra="forbid")

    index_dir: Path = setting("RAG_INDEX_DIR", Path("index"), "Directory of the Chroma index and the BM25 index beside it.")
    chroma_url: str = setting("RAG_CHROMA_URL", "", "http://host:port of a Chroma server; empty = embedded store.")
    collection: str = setting("RAG_COLLECTION", "cables", "Chroma collection name.")
    store: Store = setting("RAG_STORE", "chroma", "Where paragraphs are stored and searched: chroma (the Chroma store "
                           "and the BM25 sidecar in the index directory) or lance (a LanceDB database at RAG_LANCE_URI, "
                           "which does the searching).")
    lance_uri: str = setting("RAG_LANCE_URI", "", "The LanceDB database of the lance store: a local folder or s3://...; "
                             "required with RAG_STORE=lance.")
    encoder: str = setting("RAG_ENCODER", "minilm", "'minilm' (packaged fp32 model), 'minilm-int8' (ONNX) or a local model path.")
    device: Device = setting("RAG_DEVICE", "auto", "Where the fp32 encoder runs: auto (a CUDA GPU when torch sees one, "
                          "else the CPU), cpu or cuda.")
    precision: Precision = setting(
        "RAG_PRECISION", "auto", "Arithmetic of ingest's encoder on the CPU: auto (bf16 autocast where the CPU multiplies "
        "bf16 in hardware, AMX or AVX-512 BF16, else fp32), bf16 or fp32.")
    embed_batch_size: int = setting("RAG_EMBED_BATCH", 64, "Texts per forward pass of the encoder.", ge=1)
    embed_tokens: int = setting(
        "RAG_EMBED_TOKENS", 2048, "Padded word pieces per forward pass: texts are length-sorted, then cut into batches "
        "of at most this many tokens (and RAG_EMBED_BATCH texts); on a 2-core CPU ~2k tokens keep the activations in "
        "cache (bench/ingest_bench.py).", ge=1)
    threads: Count = setting("RAG_THREADS", 0, "Intra-op threads of the encoder's ONNX graph; 0 = one per core, but "
                             "one under `rag serve`, whose answers run side by side.", ge=0)
    ingest_batch: int = setting("RAG_INGEST_BATCH", 200, "Cables per store round-trip during ingest: large enough that "
                                "length-sorted encoding removes most padding, small enough that a kill loses little.", ge=1)
    sentence_vectors: Flag = setting(
        "RAG_SENTENCE_VECTORS", True, "Keep the vectors of every paragraph's sentences from ingest (rag.index.sentences; "
        "~0.8 KiB a sentence, 207 MB for the 6,835 shared cables, ingest half as long again), so answers do not encode "
        "them; 0 = encode them when answering.")
    retrieval: Retrieval = setting("RAG_RETRIEVAL", "hybrid", "How paragraphs are found: dense (embeddings), bm25 "
                                     "(words) or hybrid (both, fused).")
    dense_weight: float = setting(
        "RAG_DENSE_WEIGHT", 0.2, "Weight of the dense ranking against BM25's 1.0 in hybrid fusion; 0.2 scored best "
        "on the dev set over the full shared corpus (evals/RESULTS.md).", ge=0, le=1, allow_inf_nan=False)
    top_k: int = setting("RAG_TOP_K", 10, "Paragraphs retrieved per question.", ge=1, le=MAX_TOP_K)
    rank: Flag = setting("RAG_RANK", True, "Reorder retrieved paragraphs by whether they answer the question "
                         "(rag/models/ranker.json); 0 keeps retrieval's order.")
    refuse: Flag = setting("RAG_REFUSE", True, "Refuse questions the cables do not answer (rag.answer.evidence: stated "
                           "checks, and rag/models/evidence.json when ranking is on); 0 always answers.")
    one_line: Flag = setting("RAG_ONE_LINE", True, "Show a one-line answer above the quotes when the fitted model "
                             "(rag/models/one_line.json) is confident of it; 0 never shows one.")
    reranker: str = setting("RAG_RERANKER", "", "Local path of a cross-encoder model; empty = no reranking.")
    llm: Backend = setting("RAG_LLM", "extractive", "Answer backend: extractive (quotes, offline), openai (an "
                           "OpenAI-compatible server) or llamacpp (a local GGUF file).")
    llm_base_url: str = setting("RAG_LLM_BASE_URL|OPENAI_BASE_URL", "", "Base URL of an OpenAI-compatible server (…/v1).")
    llm_model: str = setting("RAG_LLM_MODEL", "", "Model name for the openai backend, GGUF path for llamacpp.")
    llm_timeout: float = setting("RAG_LLM_TIMEOUT", 120.0, "Seconds an LLM backend may take to answer: the openai "
                                 "backend's request timeout; llamacpp stops generating once past it.", gt=0, allow_inf_nan=False)
    auth: str = setting("RAG_AUTH", "", "USER:PASSWORD that `rag serve` requires (HTTP Basic for the API and its "
                        "schema, the login page for the chat); `--auth-file PATH` reads it from a file instead; "
                        "empty = no login.", repr=False)
    allowed_hosts: str = setting("RAG_ALLOWED_HOSTS", "", "Host names `rag serve` answers besides localhost, "
                                 "127.0.0.1, ::1 and its --host, comma-separated; any other Host header is a 400 "
                                 "(a DNS-rebinding page cannot reach the loopback server).")
    max_body: int = setting("RAG_MAX_BODY", 1_048_576, "Largest request body `rag serve` accepts, in bytes; a "
                            "larger one is a 413 before it is read.", ge=1)
    workers: Count = setting("RAG_WORKERS", 0, "Questions the server answers at once per backend (llamacpp: one, "
                             "its model is not thread-safe); the others wait their turn; 0 = two per core.", ge=0)
    queue_timeout: float = setting("RAG_QUEUE_TIMEOUT", 30.0, "Seconds a question may wait for its turn on the "
                                   "server; past that it is a 503 with Retry-After.", ge=0, allow_inf_nan=False)
    refresh: float = setting("RAG_REFRESH", 0.0, "Seconds a server may go on answering from a generation of the index "
                             "(a Chroma generation, a version of the lance tables) once a newer one is committed: it "
                             "looks for one between questions at most this often (each look reads the store: a round "
                             "trip to a Chroma server or object storage); 0 = before every question.",
                             ge=0, allow_inf_nan=False)
    rate_limit: RateLimit = setting("RAG_RATE_LIMIT", "", "Questions one client address may ask the server's APIs, "
                                    "e.g. 30/minute; more are a 429 with Retry-After; empty = no limit.")
    cors_origins: str = setting("RAG_CORS_ORIGINS", "", "Origins (scheme://host:port, comma-separated) whose web "
                                "pages may call `rag serve` from the browser besides its own page; any other "
                                "origin, other localhost ports included, is refused.")

    def __init__(self, **values: Any):
        """Keyword values first, then the RAG_* variables, then the defaults."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _one_line(exc) from None

    def with_(self, **changes: Any) -> Settings:
        """A copy with `changes`, those that are None ignored, each validated as a RAG_* value is
        (a command-line option is a change). It does not read the environment. A list is carried
        as it is: `rag eval` compares lists of modes, and validates each as it makes its pipeline."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"Settings has no field {', '.join(sorted(unknown))}")
        update = {}
        for name, value in changes.items():
            if value is None:
                continue
            if not isinstance(value, (list, tuple)):
                try:
                    value = _adapter(name).validate_python(value)
                except ValidationError as exc:
                    raise _one_line(exc, name) from None
            update[name] = value
        return self.model_copy(update=update)


def get_settings(settings: Settings | None = None) -> Settings:
    return settings if settings is not None else Settings()


def env_names(name: str) -> list[str]:
    """The variables a field is read from, first first."""
    alias = Settings.model_fields[name].validation_alias
    return list(alias.choices) if isinstance(alias, AliasChoices) else [alias]


@lru_cache(maxsize=None)
def _adapter(name: str) -> TypeAdapter:
    """The validator of one field, bounds included, for `Settings.with_`."""
    field = Settings.model_fields[name]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


# Errors of a value out of its field's range: the message then states the whole range.
_OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}


def _range(field) -> str:
    """A field's bounds in words: "from 0 to 1", "of at least 1", "over 0"."""
    bounds = {key: getattr(m, key) for m in field.metadata for key in ("ge", "gt", "le", "lt")
              if isinstance(m, annotated_types.BaseMetadata) and hasattr(m, key)}
    if "ge" in bounds and "le" in bounds:
        return f"from {bounds['ge']} to {bounds['le']}"
    words = [f"of at least {bounds['ge']}" if "ge" in bounds else f"over {bounds['gt']}" if "gt" in bounds else "",
             f"at most {bounds['le']}" if "le" in bounds else f"under {bounds['lt']}" if "lt" in bounds else ""]
    return " and ".join(w for w in words if w)


def _one_line(exc: ValidationError, source: str | None = None) -> RagError:
    """The first bad value, named by the variable (or keyword) it came from, with its field's
    description; a value out of range says the range ("RAG_TOP_K='0' is not a whole number from 1
    to 100: …")."""
    error = exc.errors()[0]
    source = source or (str(error["loc"][0]) if error["loc"] else "settings")
    name = next((n for n in Settings.model_fields if source == n or source in env_names(n)), None)
    if name is None:
        return RagError(f"{source}: {error['msg']}")
    field = Settings.model_fields[name]
    choices = get_args(field.annotation) if getattr(field.annotation, "__origin__", None) is Literal else ()
    kind = "one of " + ", ".join(choices) if choices else {int: "a whole number", float: "a number"}.get(
        field.annotation, "valid")
    if error["type"] in _OUT_OF_RANGE:
        kind = f"{kind} {_range(field)}".rstrip()
    return RagError(f"{source}={error.get('input')!r} is not {kind}: {field.description}")


def settings_table() -> str:
    """Every setting as a Markdown table: variable(s), default, description."""
    rows = ["| variable | default | description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        variables = " or ".join(f"`{n}`" for n in env_names(name))
        default = field.default
        shown = ("1" if default else "0") if isinstance(default, bool) else str(default)
        description = field.description.replace("|", "\\|")
        rows.append(f"| {variables} | {f'`{shown}`' if shown else '(empty)'} | {description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    try:
        print(settings_table(), flush=True)
    except BrokenPipeError:  # `python -m rag.settings | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
