"""The service behind the chat UI and the APIs: the index, one `Pipeline` per LLM backend, and
the queue that lets a bounded number of answers run at once.

`Service.load` opens the index (building the demo index first when there is none) and builds
every backend the settings configure. `ask` and `stream` answer, and `check` checks a text's
citations (`rag check`), each from one generation of the index: the newest when it starts. They
run concurrently, each backend's at most RAG_WORKERS at a time (llamacpp's one); a question that
waits longer than RAG_QUEUE_TIMEOUT for its turn is refused with `Busy`. `cable` and `health`
serve the cable view and the status and never wait. The UI and the APIs only call this.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from rag.answer.backends import REGISTRY, backend
from rag.answer.pipeline import Answer, Pipeline
from rag.check.checker import Checker, Report, check_text
from rag.citation import validate_cable_id
from rag.errors import CableNotFound, RagError, StaleIndex
from rag.filters import Filters
from rag.index.embed import get_encoder
from rag.index.index import index_for
from rag.index.ingest import catch_up
from rag.index.writer import IndexBusy
from rag.settings import Settings, get_settings
from rag.types import Hit
from rag.validate import check_question

log = logging.getLogger(__name__)

# Turns of history sent to the condense step: the last exchange carries the context a
# follow-up needs, and a longer transcript only slows an LLM down.
HISTORY_TURNS = 6
# Threads that web requests wait and answer in (`Service.run`): apart from the server's default
# pool of 40, which health, cables and static files use, so a queue of questions never holds
# those up. Enough for every question waiting its turn; the queue timeout bounds how long.
REQUEST_THREADS = 256
# Asked once when the index opens, so that the models and lazily loaded parts load then, and not
# in the first requests, all at once.
WARM_UP = "Who leads Cambodia's police TIP response?"

# Seconds a question refused while an ingest updates the index is told to wait (Retry-After).
UPDATING_RETRY_S = 5

T = TypeVar("T")


class NotReady(RagError):
    """The index is still being built, or failed to open."""


class Busy(RagError):
    """A question waited longer than the queue timeout for its turn."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Turns:
    """At most `n` holders at a time, granted in the order they asked. threading.Semaphore lets a
    newcomer take a freed slot before the waiter it woke, which then queues again at the back:
    under load a few questions waited many answers' time (load_api: p95 3.0 s, max 7 s at 20
    clients). Here a release hands the slot to the oldest waiter directly."""

    def __init__(self, n: int):
        self._lock = threading.Lock()
        self._free = n
        self._waiting: collections.deque[threading.Event] = collections.deque()

    def acquire(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return True
            granted = threading.Event()
            self._waiting.append(granted)
        if granted.wait(timeout):
            return True
        with self._lock:
            if granted.is_set():  # handed over just as the wait ran out
                return True
            self._waiting.remove(granted)
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1


@dataclass(frozen=True)
class Snapshot:
    """One generation of the index and what is read from it: a pipeline per backend, all over
    one retriever, the index's stats and the filter choices. Never changed once made: a newer
    generation is a new Snapshot swapped in whole, and answers begun on this one finish on it."""

    pipelines: dict[str, Pipeline]
    stats: dict
    choices: dict[str, list[str]]

    @classmethod
    def of(cls, pipelines: dict[str, Pipeline]) -> Snapshot:
        retriever = next(iter(pipelines.values())).retriever
        # The filter dropdowns offer what the index holds.
        return cls(pipelines, retriever.parts.stats(), retriever.lexical.vocabulary())

    @property
    def generation(self) -> int | None:
        return next(iter(self.pipelines.values())).retriever.lexical.generation

    def behind(self) -> bool:
        """Whether the index has moved to another generation since this snapshot was opened."""
        return next(iter(self.pipelines.values())).retriever.store.generation != self.generation

    def newer(self) -> Snapshot | None:
        """The snapshot of the store's current generation, once an ingest has built its sidecar."""
        retriever = next(iter(self.pipelines.values())).retriever.newer()
        if retriever is None:
            return None
        return Snapshot.of({name: pipeline.over(retriever) for name, pipeline in self.pipelines.items()})


class Service:
    """The index and one `Pipeline` per configured backend, sharing one retriever; answers run
    concurrently (the pipeline shares only read-only state and thread-safe caches), at most
    `workers` per backend at a time."""

    def __init__(self, settings: Settings | None = None):
        self.settings = get_settings(settings)
        self.ready = threading.Event()
        self.error = ""
        self.started = time.monotonic()
        self.snapshot: Snapshot | None = None
        # Backends the settings do not make usable, and why (a request naming one gets that line).
        self.unavailable: dict[str, str] = {}
        self.workers = self.settings.workers or 2 * cores()
        # A llama.cpp model answers one prompt at a time: its context is not thread-safe.
        self._turns = {name: Turns(b.workers or self.workers) for name, b in REGISTRY.items()}
        self._switching = threading.Lock()
        # When a request last looked for a newer generation: looking reads the store (on a Chroma
        # server or object storage, a round trip), so it is done at most every RAG_REFRESH seconds.
        self._looked = -math.inf
        # Why the index's newest generation could not be opened (kept for health), "" when it could.
        self.switch_error = ""
        self._catching_up = threading.Lock()
        self.threads = CapacityLimiter(REQUEST_THREADS)

    def load(self) -> None:
        """Open the index, building the demo index first when there is none, and build every
        backend the settings configure. Failures are kept in `error` for the status line and the
        API, since this usually runs in a thread."""
        try:
            index = index_for(self.settings)
            index.ensure()
            if self.settings.chroma_url:
                try:
                    index.check_in_step()
                except StaleIndex:
                    # A replica: another machine ingested into the shared store, or this --index is new.
                    log.warning("the sidecar of %s is behind the store at %s: building it from the store",
                                self.settings.index_dir, self.settings.chroma_url)
                    catch_up(self.settings)
            default = Pipeline(self.settings)
            pipelines = {self.settings.llm: default}
            for name in REGISTRY:
                if name not in pipelines:
                    try:
                        pipelines[name] = self._build(name, default)
                    except RagError as exc:
                        self.unavailable[name] = str(exc)
            pipelines["extractive"].ask(WARM_UP)
            self.snapshot = Snapshot.of(pipelines)
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

    def _build(self, name: str, default: Pipeline) -> Pipeline:
        """The pipeline of another backend than the default, over the default's retriever. An
        in-process llama.cpp model is loaded only when RAG_LLM_MODEL names one: the bundled small
        model would cost memory and start-up time to every server that never uses it."""
        if REGISTRY[name].needs_model_file and not self.settings.llm_model:
            raise RagError(f"the {name} backend needs a local GGUF file: --model PATH (or RAG_LLM_MODEL)")
        return Pipeline(self.settings.with_(llm=name), retriever=default.retriever,
                        ranker=default.ranker, evidence=default.evidence)

    @property
    def generation(self) -> int | None:
        """The generation of the index the answers are read from (rag.index.store)."""
        return self.snapshot.generation if self.snapshot else None

    @property
    def stats(self) -> dict:
        return self.snapshot.stats if self.snapshot else {}

    @property
    def choices(self) -> dict[str, list[str]]:
        return self.snapshot.choices if self.snapshot else {"origins": [], "classifications": [], "tags": []}

    @property
    def default(self) -> Pipeline:
        self.require_ready()
        return self.snapshot.pipelines[self.settings.llm]

    @property
    def can_stream(self) -> bool:
        return self.default.answerer.can_stream

    def backend(self, llm: str | None) -> str:
        """The backend a request names (None: the default), checked: one built at start-up."""
        name = backend(llm or self.settings.llm).name
        self.require_ready()
        if name in self.unavailable:
            raise RagError(f"llm {name!r} is not available on this server: {self.unavailable[name]}")
        return name

    def _current(self) -> Snapshot:
        """The newest snapshot, moved to a newer generation of the index once an ingest has built
        its sidecar (at once on the lance store, whose versions need none). One request at a time
        looks (a read of the store's generation), and none sooner than RAG_REFRESH seconds after
        the last look; the others go on with the snapshot there is, so none waits for the switch.
        A generation that fails to open is logged and the snapshot there is kept: it still answers
        whole."""
        if time.monotonic() - self._looked < self.settings.refresh:
            return self.snapshot
        if self._switching.acquire(blocking=False):
            try:
                self._looked = time.monotonic()
                newer = self.snapshot.newer()
            except Exception as exc:  # noqa: BLE001 — answered from the snapshot there is
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if reason != self.switch_error:
                    log.warning("kept generation %s: the next one failed to open: %s", self.generation, reason)
                self.switch_error = reason
            else:
                if newer is not None:
                    self.snapshot, self.switch_error = newer, ""
                elif self.settings.chroma_url and self.snapshot.behind():
                    self._catch_up_in_background()
            finally:
                self._switching.release()
        return self.snapshot

    def _catch_up_in_background(self) -> None:
        """Build this replica's sidecar from the shared store, which another machine has written
        to (rag.index.ingest.catch_up), while the snapshot there is goes on answering; the first
        request after it is built moves to it. One build at a time."""
        if not self._catching_up.acquire(blocking=False):
            return

        def build() -> None:
            try:
                catch_up(self.settings)
            except IndexBusy:
                pass  # an ingest into this --index is writing: it builds the sidecar itself
            except Exception as exc:  # noqa: BLE001 — kept for health; the snapshot there is still answers
                self.switch_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning("could not build the sidecar from the store: %s", self.switch_error)
            finally:
                self._catching_up.release()

        threading.Thread(target=build, name="catch-up", daemon=True).start()

    @contextmanager
    def _turn(self, backend: str) -> Iterator[Snapshot]:
        """The snapshot to answer from, once one of `backend`'s workers is free: waited for at
        most RAG_QUEUE_TIMEOUT seconds, then `Busy`; `NotReady` while the index is not open."""
        self.require_ready()
        timeout = self.settings.queue_timeout
        turns = self._turns[backend]
        if not turns.acquire(timeout=timeout):
            raise Busy(f"the server is busy: no {backend} worker was free for {timeout:g} s; try again shortly",
                       retry_after=max(1, math.ceil(timeout)))
        try:
            snapshot = self._current()
            try:
                yield snapshot
            except RagError:
                raise
            except Exception as exc:
                # Chroma keeps no old versions: between an ingest's writes and its sidecar, the
                # snapshot's store can fail on what the ingest changed. Not a fault of the server.
                if not snapshot.behind():
                    raise
                log.warning("answer failed while an ingest updates the index: %s: %s", type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
                raise Busy("the index is being updated by an ingest; try again in a few seconds",
                           retry_after=UPDATING_RETRY_S) from exc
        finally:
            turns.release()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` (an ask, a check) from async code, in the threads kept for requests
        that may wait their turn (REQUEST_THREADS), never in the server's default pool."""
        return await anyio.to_thread.run_sync(partial(call, *args), limiter=self.threads)

    def ask(self, question: str, history: list[dict] | None = None, filters: Filters = Filters(),
            llm: str | None = None) -> Answer:
        question = check_question(question)
        backend = self.backend(llm)
        with self._turn(backend) as snapshot:
            answer = snapshot.pipelines[backend].ask(question, history or None, filters)
        answer.generation = snapshot.generation
        return answer

    def stream(self, question: str, history: list[dict] | None = None,
               filters: Filters = Filters()) -> Iterator[str | Answer]:
        """`Pipeline.stream` of the default backend, run to completion by a worker thread: a
        browser that goes away mid-answer then never leaves its turn held."""
        question = check_question(question)
        backend = self.backend(None)
        items: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                with self._turn(backend) as snapshot:
                    for item in snapshot.pipelines[backend].stream(question, history or None, filters):
                        items.put(item)
            except Exception as exc:  # noqa: BLE001 — re-raised in the consumer
                items.put(exc)
            items.put(done)

        threading.Thread(target=work, name="answer", daemon=True).start()
        while (item := items.get()) is not done:
            if isinstance(item, Exception):
                raise item
            yield item

    def search(self, query: str, k: int, filters: Filters = Filters()) -> list[Hit]:
        """The paragraphs retrieval finds for `query` (what `ask` answers from), in an extractive
        worker's turn, from one generation of the index."""
        query = check_question(query)
        with self._turn("extractive") as snapshot:
            return snapshot.pipelines[self.settings.llm].retriever.search(query, k, filters)

    def cable(self, value: str) -> dict:
        """The whole cable as JSON, with its references both ways; the id is validated before it
        reaches the store."""
        cable_id = validate_cable_id(value)
        cable = self.default.retriever.parts.cable(cable_id)
        if cable is None:
            raise CableNotFound(f"no cable {cable_id} in this index")
        return cable

    def check(self, text: str) -> Report:
        """`rag check` for a text: every claim and citation checked against the index."""
        text = check_text(text)
        self.require_ready()
        # Retrieval and the verifier's encoder: the work of an extractive answer, in its queue.
        with self._turn("extractive") as snapshot:
            pipeline = snapshot.pipelines[self.settings.llm]
            return Checker(pipeline.retriever, pipeline.verifier).check(text)

    def health(self) -> dict:
        """What the server answers from: `status` is "ok" only when it can answer from what the
        store holds now; "stale" while the store has moved past the generation it serves (an
        ingest here or, on a shared Chroma server, anywhere), until it has moved on; `generation`
        is the generation it serves, `store_generation` the store's, and `switch_error` why it
        keeps serving that one when the index has a newer generation it cannot open; `refresh_s`
        how soon after a newer generation is committed the server answers from it (RAG_REFRESH)."""
        status = "error" if self.error else "ok" if self.ready.is_set() else "building"
        # Read once: an answer may move the server on while this runs, and the report must say
        # the generation its status was decided on.
        generation = self.generation
        error, store_generation = self.error, generation
        if status == "ok":
            try:
                store_generation = index_for(self.settings).generation()
            except Exception as exc:  # noqa: BLE001 — a store that cannot be read cannot be answered from
                status, error = "error", f"cannot read the store: {type(exc).__name__}: {exc}".splitlines()[0]
        if status == "ok" and store_generation != generation:
            # Answers still come whole from the generation served, but not from what the store
            # holds now: a load balancer should prefer a replica that has caught up.
            status = "stale"
            # Moving on loads the newer sidecar (seconds at scale): never on the event loop this runs on.
            threading.Thread(target=self._current, name="move-on", daemon=True).start()
        return {
            "status": status, **({"error": error} if error else {}),
            "generation": generation, "store_generation": store_generation,
            **({"switch_error": self.switch_error} if self.switch_error else {}),
            "refresh_s": self.settings.refresh,
            "index": self.stats or {"location": index_for(self.settings).location},
            "model": self.stats.get("model"),
            "backend": self.settings.llm,
            "llm_model": self.settings.llm_model or None,
            "retrieval": self.settings.retrieval,
        }

    def build_progress(self) -> str:
        """How far the index build has got, read from the store it writes into."""
        try:
            index = index_for(self.settings)
            if not index.exists():
                return "loading the embedding model"
            encoder = get_encoder(self.settings.encoder, self.settings.embed_batch_size, self.settings.device,
                                  precision=self.settings.precision)
            store = index.store(encoder.model_id, encoder.dimension)
            return f"{store.count():,} paragraphs stored"
        except Exception:  # noqa: BLE001 — progress is best-effort while the build writes
            return "working"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
