"""Many users at once: answers run concurrently, a slow LLM holds up no one, health, cables and
the page never wait behind questions, a question that waits too long is a 503 with Retry-After,
a client over the rate limit a 429, and concurrent answers equal serial ones.

Answers are held inside the pipeline on purpose (an LLM that answers when released, an answer
step that waits for an event), so that what must overlap provably does, on any machine, however
busy: no test here times anything.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest

import rag.answer.backends
from rag.answer.backends import LlamaIndexAnswerer
from rag.answer.retrieve import open_retriever
from rag.errors import RagError
from rag.filters import Filters
from rag.serve.service import Service
from rag.serve.web import BackgroundServer

CAMBODIA = "Who leads Cambodia's police TIP response?"
BOUT = "Where was Viktor Bout arrested?"
COSTA_RICA = "When does child labor in Costa Rica peak, according to UNICEF?"
KINSHASA = "What became of the nuclear fuel rods stolen from the Kinshasa research reactor?"
WORKERS = 2


class HeldLLM:
    """An LLM with llama-index's interface whose answer comes only once `release` is set."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def stream_chat(self, messages):
        self.entered.set()
        assert self.release.wait(120), "the test never released the LLM"
        yield SimpleNamespace(delta="Lieutenant General Kang Sokhorn leads the police response to trafficking "
                                    "[09PHNOMPENH637 ¶1].")


@pytest.fixture(scope="module")
def held_llm() -> HeldLLM:
    return HeldLLM()


@pytest.fixture(scope="module")
def server(fake_demo, held_llm):
    """The app over the demo index, two workers per backend, a one-second queue, and the openai
    backend configured, answered by `held_llm`."""
    settings = fake_demo.with_(llm_base_url="http://127.0.0.1:9/v1", workers=WORKERS, queue_timeout=1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rag.answer.backends, "openai_llm", lambda _settings: held_llm)
        running = BackgroundServer(settings)
    yield running
    held_llm.release.set()
    running.stop()


def post(server, body: dict, timeout: float = 120) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=timeout) as http:
        return http.post("/api/ask", json=body)


def get(server, path: str, timeout: float = 10) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=timeout) as http:
        return http.get(path)


def hold(service: Service, monkeypatch, question: str) -> tuple[threading.Event, threading.Event]:
    """Extractive answers to `question` wait inside the answer step, holding their worker, until
    the returned `release` is set; `entered` is set when one arrives there."""
    answerer = service.default.answerer
    entered, release = threading.Event(), threading.Event()
    stream = answerer.stream

    def held(asked, hits):
        if asked == question:
            entered.set()
            assert release.wait(120), "the test never released the answer"
        return stream(asked, hits)

    monkeypatch.setattr(answerer, "stream", held)
    return entered, release


def test_backends_are_built_at_start_up(server):
    service = server.service
    assert set(service.snapshot.pipelines) == {"extractive", "openai"}
    assert "RAG_LLM_MODEL" in service.unavailable["llamacpp"]
    response = post(server, {"question": CAMBODIA, "llm": "llamacpp"})
    assert response.status_code == 400 and "GGUF" in response.json()["detail"]
    assert len(response.text.splitlines()) == 1


def test_a_held_llm_answer_holds_up_no_one(server, held_llm):
    with ThreadPoolExecutor(1) as pool:
        llm_answer = pool.submit(post, server, {"question": CAMBODIA, "llm": "openai"})
        assert held_llm.entered.wait(120)
        try:
            assert get(server, "/api/health").json()["status"] == "ok"
            assert get(server, "/api/cables/09PHNOMPENH637").status_code == 200
            assert get(server, "/").status_code == 200
            extractive = post(server, {"question": CAMBODIA}, timeout=60)
            assert extractive.status_code == 200 and "Kang Sokhorn" in extractive.json()["answer"]
            assert not llm_answer.done()
        finally:
            held_llm.release.set()
        response = llm_answer.result(120)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["backend"] == "openai" and ("09PHNOMPENH637", 1) in {
        (c["cable_id"], c["paragraph"]) for c in answer["citations"]}


def test_extractive_answers_overlap(server, monkeypatch):
    entered, release = hold(server.service, monkeypatch, BOUT)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(post, server, {"question": BOUT})
        try:
            assert entered.wait(120)
            other = post(server, {"question": CAMBODIA}, timeout=60)  # answered while BOUT's is mid-answer
            assert other.status_code == 200 and "Kang Sokhorn" in other.json()["answer"]
            assert not held.done()
        finally:
            release.set()
        assert held.result(120).status_code == 200


def test_a_question_that_waits_past_the_queue_timeout_is_503_with_retry_after(server, monkeypatch):
    holds = [hold(server.service, monkeypatch, q) for q in (BOUT, KINSHASA)]
    with ThreadPoolExecutor(WORKERS) as pool:
        held = [pool.submit(post, server, {"question": q}) for q in (BOUT, KINSHASA)]
        try:
            assert all(entered.wait(120) for entered, _ in holds)  # every extractive worker is busy
            refused = post(server, {"question": CAMBODIA}, timeout=60)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert "busy" in refused.json()["detail"] and len(refused.text.splitlines()) == 1
            assert get(server, "/api/health").status_code == 200
        finally:
            for _, release in holds:
                release.set()
        assert [f.result(120).status_code for f in held] == [200, 200]


def test_health_cables_and_the_page_never_wait_behind_queued_questions(server, monkeypatch):
    """More questions than the server's default thread pool (40) wait their turn at once; they
    wait in the service's own threads, so health, a cable and the page are still answered."""
    queued = 45
    monkeypatch.setattr(server.service, "settings", server.service.settings.with_(queue_timeout=300.0))
    holds = [hold(server.service, monkeypatch, q) for q in (BOUT, KINSHASA)]
    with ThreadPoolExecutor(WORKERS + queued) as pool:
        held = [pool.submit(post, server, {"question": q}, 300) for q in (BOUT, KINSHASA)]
        try:
            assert all(entered.wait(120) for entered, _ in holds)
            waiting = [pool.submit(post, server, {"question": CAMBODIA}, 300) for _ in range(queued)]
            deadline = time.monotonic() + 120
            while server.service.threads.borrowed_tokens < WORKERS + queued:
                assert time.monotonic() < deadline, "the questions never reached the queue"
                time.sleep(0.05)
            assert get(server, "/api/health", timeout=10).json()["status"] == "ok"
            assert get(server, "/api/cables/09PHNOMPENH637", timeout=10).status_code == 200
            assert get(server, "/", timeout=10).status_code == 200
            assert not any(f.done() for f in waiting)
        finally:
            for _, release in holds:
                release.set()
        assert {f.result(300).status_code for f in held + waiting} == {200}


def test_concurrent_answers_equal_serial_ones(server, monkeypatch):
    """Answers computed concurrently, queued four at a time for two workers, reading the sentence
    vectors kept from ingest, are the answers computed one by one with every sentence encoded
    (timings aside)."""
    service = server.service
    monkeypatch.setattr(service, "settings", service.settings.with_(queue_timeout=300.0))
    history = [{"role": "user", "content": CAMBODIA}, {"role": "assistant", "content": "Kang Sokhorn [09PHNOMPENH637 ¶1]"}]
    asks = [(CAMBODIA, None, Filters()), (BOUT, None, Filters()), (COSTA_RICA, None, Filters()), (KINSHASA, None, Filters()),
            (CAMBODIA, None, Filters(origin="Embassy Phnom Penh")), ("What is his rank?", history, Filters()),
            ("Who won Cambodia's 2013 national election?", None, Filters())]

    def answer(ask) -> dict:
        return {k: v for k, v in service.ask(*ask).to_json().items() if k != "timings_ms"}

    answerer = service.default.answerer
    answerer.encoded.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(answerer, "stored", None)
        serial = [answer(a) for a in asks]
    encoded = answerer.encoded.cache_info().misses
    assert encoded > 0 and len(answerer.stored)
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(answer, asks * 3))
    assert concurrent == serial * 3
    assert answerer.encoded.cache_info().misses == encoded  # every paragraph's sentences read from the store


def test_a_client_over_the_rate_limit_is_429_with_retry_after(fake_demo):
    running = BackgroundServer(fake_demo.with_(rate_limit="2/minute"))
    try:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            assert [http.post("/api/ask", json={}).status_code for _ in range(2)] == [422, 422]  # counted
            refused = http.post("/api/ask", json={"question": CAMBODIA})
            assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
            assert "2/minute" in refused.json()["detail"] and len(refused.text.splitlines()) == 1
            assert http.get("/api/health").status_code == 200  # only questions are counted
            assert http.get("/api/cables/09PHNOMPENH637").status_code == 200
    finally:
        running.stop()


def gradio_call(http: httpx.Client, name: str, data: list) -> str:
    """One call of the chat page's handler `name` through gradio's own API, as a script would
    make it: the event's whole stream of results, as text."""
    event = http.post(f"/gradio_api/call/{name}", json={"data": data})
    assert event.status_code == 200, event.text
    return http.get(f"/gradio_api/call/{name}/{event.json()['event_id']}").text


def test_the_rate_limit_covers_the_chat_pages_handlers_and_gradios_api(fake_demo):
    # The page's handlers are an API too (/gradio_api/call/respond): it let anyone past the limit.
    running = BackgroundServer(fake_demo.with_(rate_limit="3/minute"))
    try:
        with httpx.Client(base_url=running.url, timeout=120) as http:
            assert "Kang Sokhorn" in gradio_call(http, "respond", [CAMBODIA, "", "", "", "", ""])
            assert "check-summary" in gradio_call(http, "check", ["Police made 100 TIP arrests [09PHNOMPENH637 ¶1]."])
            assert http.post("/v1/chat/completions", json={"model": "cablerag", "messages": []}).status_code == 400
            refused = gradio_call(http, "respond", [CAMBODIA, "", "", "", "", ""])
            assert "rate limit of 3/minute exceeded; retry in" in refused and "Kang Sokhorn" not in refused
            assert "rate limit of 3/minute exceeded" in gradio_call(http, "check", ["Police made 100 TIP arrests."])
            assert http.post("/api/ask", json={"question": CAMBODIA}).status_code == 429
            assert "09PHNOMPENH637" in gradio_call(http, "open_cable", ["09PHNOMPENH637"])  # reading is not asking
    finally:
        running.stop()


def test_a_bad_rate_limit_is_one_line_naming_the_variable(monkeypatch):
    from rag.settings import Settings

    monkeypatch.setenv("RAG_RATE_LIMIT", "lots")
    with pytest.raises(RagError, match=r"^RAG_RATE_LIMIT='lots' is not valid: Questions one client"):
        Settings()


def test_an_llm_past_its_timeout_stops_between_tokens(fake_demo):
    """What bounds the in-process llama.cpp backend: the stream is given up once past the time."""
    closed = threading.Event()

    class SlowLLM:
        def stream_chat(self, messages):
            try:
                while True:
                    time.sleep(0.05)
                    yield SimpleNamespace(delta="more ")
            finally:
                closed.set()

    hits = open_retriever(fake_demo).search(CAMBODIA, 3)
    answerer = LlamaIndexAnswerer(SlowLLM(), "llamacpp", timeout=0.3)
    with pytest.raises(RagError, match=r"^the llamacpp backend failed: TimeoutError: no answer within 0.3 s"):
        list(answerer.stream(CAMBODIA, hits))
    assert closed.is_set()  # generation stopped, not left running


def test_turns_are_granted_in_the_order_asked_and_a_timed_out_wait_leaves_the_queue():
    from rag.serve.service import Turns

    turns = Turns(1)
    assert turns.acquire(timeout=0)
    order: list[str] = []
    done = threading.Event()

    def wait(name: str) -> None:
        assert turns.acquire(timeout=30)
        order.append(name)
        done.wait(30)
        turns.release()

    threads = []
    for queued, name in enumerate(("first", "second"), start=1):
        threads.append(threading.Thread(target=wait, args=(name,), daemon=True))
        threads[-1].start()
        while len(turns._waiting) < queued:  # noqa: SLF001 — the queue is what is under test
            time.sleep(0.001)
    assert not turns.acquire(timeout=0.05)
    assert len(turns._waiting) == 2  # noqa: SLF001 — the timed-out wait left the queue
    turns.release()
    # The freed slot went to the first waiter: a newcomer cannot take it before that thread runs.
    assert not turns.acquire(timeout=0)
    done.set()
    for thread in threads:
        thread.join(30)
    assert order == ["first", "second"]
    assert turns.acquire(timeout=0) and not turns.acquire(timeout=0)
