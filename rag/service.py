"""The service behind the chat UI and the JSON API: the index, one `Pipeline` per LLM backend,
and the lock that serialises answers.

`Service.load` opens the index (building the demo index first when there is none), `ask` and
`stream` answer under the lock, moving to a newer generation of the index between answers,
`check` checks a text's citations (`rag check`) under the same lock, and `cable` and `health`
serve the cable view and the status. The UI and the API only call this.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Iterator, Sequence

from rag.answer import BACKENDS
from rag.check import Checker, Report, check_text
from rag.demo import ensure_index
from rag.embed import get_encoder
from rag.errors import RagError
from rag.filters import Filters
from rag.pipeline import Answer, Pipeline
from rag.retrieve import Retriever
from rag.settings import Settings, get_settings
from rag.stats import index_stats
from rag.store import Store
from rag.types import Hit
from rag.validate import check_question, validate_cable_id

log = logging.getLogger(__name__)

# Turns of history sent to the condense step: the last exchange carries the context a
# follow-up needs, and a longer transcript only slows an LLM down.
HISTORY_TURNS = 6


class CableNotFound(RagError):
    """A well-formed cable id that the index does not hold."""


class NotReady(RagError):
    """The index is still being built, or failed to open."""


class Service:
    """The index and one `Pipeline` per LLM backend, sharing one retriever.

    Pipeline calls run one at a time under `lock`: the pipeline is not proven thread-safe, and
    on a small machine concurrent answers would only share the same cores.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = get_settings(settings)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.error = ""
        self.started = time.monotonic()
        self.stats: dict = {}
        self.choices: dict[str, list[str]] = {"origins": [], "classifications": [], "tags": []}
        self._pipelines: dict[str, Pipeline] = {}

    def load(self) -> None:
        """Open the index, building the demo index first when there is none. Failures are kept
        in `error` for the status line and the API, since this usually runs in a thread."""
        try:
            ensure_index(self.settings)
            pipeline = Pipeline(self.settings)
            self._pipelines[self.settings.llm] = pipeline
            self.stats = index_stats(pipeline.retriever.store, pipeline.retriever.lexical)
            self.choices = filter_choices(pipeline)
            self.ready.set()
        except RagError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 — the server stays up to say what went wrong
            log.exception("could not open the index")
            self.error = f"could not open the index: {type(exc).__name__}: {exc}".splitlines()[0]

    def require_ready(self) -> None:
        if self.error:
            raise NotReady(self.error)
        if not self.ready.is_set():
            raise NotReady("the index is still being built; try again in a minute")

    @property
    def default(self) -> Pipeline:
        self.require_ready()
        return self._pipelines[self.settings.llm]

    @property
    def can_stream(self) -> bool:
        return self.default.answerer.can_stream

    def _pipeline(self, llm: str | None) -> Pipeline:
        """The pipeline for backend `llm`, built on first use; the caller holds `lock`."""
        name = llm or self.settings.llm
        if name not in BACKENDS:
            raise RagError(f"unknown llm {name!r}: choose one of {', '.join(BACKENDS)}")
        if name not in self._pipelines:
            self._pipelines[name] = Pipeline(self.settings.with_(llm=name), retriever=self.default.retriever)
        return self._pipelines[name]

    def ask(self, question: str, history: list[dict] | None = None, filters: Filters = Filters(),
            llm: str | None = None) -> Answer:
        question = check_question(question)
        self.require_ready()
        with self.lock:
            self._refresh()
            return self._pipeline(llm).ask(question, history or None, filters)

    def _refresh(self) -> None:
        """Move every pipeline (they share one retriever) to a newer generation of the index once
        an ingest has finished it: between answers, so each answer reads one generation. The
        caller holds `lock`."""
        retriever = self.default.retriever
        if retriever.refresh():
            self.stats = index_stats(retriever.store, retriever.lexical)
            self.choices = filter_choices(self.default)

    def stream(self, question: str, history: list[dict] | None = None,
               filters: Filters = Filters()) -> Iterator[str | Answer]:
        """`Pipeline.stream`, run to completion by a worker thread: a browser that goes away
        mid-answer then never leaves the lock held."""
        question = check_question(question)
        self.require_ready()
        items: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                with self.lock:
                    self._refresh()
                    for item in self._pipeline(None).stream(question, history or None, filters):
                        items.put(item)
            except Exception as exc:  # noqa: BLE001 — re-raised in the consumer
                items.put(exc)
            items.put(done)

        threading.Thread(target=work, name="answer", daemon=True).start()
        while (item := items.get()) is not done:
            if isinstance(item, Exception):
                raise item
            yield item

    def cable(self, value: str) -> dict:
        """The whole cable as JSON, with its references both ways; the id is validated before it
        reaches the store."""
        cable_id = validate_cable_id(value)
        cable = cable_view(self.default.retriever, cable_id)
        if cable is None:
            raise CableNotFound(f"no cable {cable_id} in this index")
        return cable

    def check(self, text: str) -> Report:
        """`rag check` for a text: every claim and citation checked against the index."""
        text = check_text(text)
        self.require_ready()
        with self.lock:
            self._refresh()
            pipeline = self.default
            return Checker(pipeline.retriever, pipeline.verifier).check(text)

    def health(self) -> dict:
        status = "error" if self.error else "ok" if self.ready.is_set() else "building"
        return {
            "status": status, **({"error": self.error} if self.error else {}),
            "index": self.stats or {"location": self.settings.chroma_url or str(self.settings.index_dir)},
            "model": self.stats.get("model"),
            "backend": self.settings.llm,
            "llm_model": self.settings.llm_model or None,
            "retrieval": self.settings.retrieval,
        }

    def build_progress(self) -> str:
        """How far the index build has got, read from the store it writes into."""
        try:
            if not Store.exists(self.settings):
                return "loading the embedding model"
            encoder = get_encoder(self.settings.encoder, self.settings.embed_batch_size, self.settings.device)
            store = Store(self.settings, model_id=encoder.model_id, dimension=encoder.dimension, create=False)
            return f"{store.count():,} paragraphs stored"
        except Exception:  # noqa: BLE001 — progress is best-effort while the build writes
            return "working"


def filter_choices(pipeline: Pipeline) -> dict[str, list[str]]:
    """Values the filter dropdowns offer: what the index holds."""
    return pipeline.retriever.lexical.vocabulary()


def cable_view(retriever: Retriever, cable_id: str) -> dict | None:
    """The cable view's JSON (`cable_json`) of a cable and its references both ways; None when
    the index does not hold it."""
    hits = retriever.cable(cable_id)
    return cable_json(cable_id, hits, **cable_references(retriever, cable_id)) if hits else None


def cable_references(retriever: Retriever, cable_id: str) -> dict[str, list[dict]]:
    """What the cable's REF lines name and which cables of the index name it, looked up in the
    sidecar's reference lists (rag.rows), with the subject and date of each cable the index
    holds, read from one of its chunks.

    Returns:
        `references`: [{"id", "in_index", and "subject", "date" when in the index}] in REF-line
        order; `referenced_by`: [{"id", "subject", "date"}], oldest first. Both are empty for an
        index ingested before references were stored, until `rag ingest` rewrites its metadata.
    """
    lexical = retriever.lexical
    cited, citing = lexical.references(cable_id), lexical.referenced_by(cable_id)
    held = lexical.chunk_of_each(cited + citing)
    stored = retriever.store.chunk_metadata(list(held.values()))
    about = {cable: stored.get(chunk_id, {}) for cable, chunk_id in held.items()}

    def described(cable: str) -> dict:
        return {"subject": about[cable].get("subject", ""), "date": about[cable].get("date", "")}

    references = [{"id": c, "in_index": c in about, **(described(c) if c in about else {})} for c in cited]
    referenced_by = sorted(({"id": c, **described(c)} for c in citing), key=lambda c: (c["date"], c["id"]))
    return {"references": references, "referenced_by": referenced_by}


def cable_json(cable_id: str, hits: list[Hit], references: Sequence[dict] = (),
               referenced_by: Sequence[dict] = ()) -> dict:
    """A cable from its stored chunks (in reading order), parts of a split paragraph re-joined,
    with its references both ways as `cable_references` gives them."""
    paragraphs: list[dict] = []
    last_key = None
    for hit in hits:
        key = (hit.paragraph, hit.metadata.get("occurrence", 0))
        if key == last_key:
            paragraphs[-1]["text"] += " " + hit.text
            continue
        last_key = key
        paragraphs.append({"paragraph": hit.paragraph, "heading": hit.metadata.get("heading", ""), "text": hit.text})
    meta = hits[0].metadata
    return {
        "id": cable_id, "subject": meta.get("subject", ""), "date": meta.get("date", ""),
        "origin": meta.get("origin", ""), "classification": meta.get("classification", ""),
        "tags": list(meta.get("tags") or []), "references": list(references),
        "referenced_by": list(referenced_by), "paragraphs": paragraphs,
    }
