"""The OpenAI-compatible endpoint (/v1), through the official `openai` client, against the real
server (uvicorn on a free loopback port) over the demo index."""

from __future__ import annotations

import html
import os
import shutil
import subprocess

import httpx
import openai
import pytest
from markdown_it import MarkdownIt

from rag.answer.pipeline import Answer
from rag.citation import Citation
from rag.check.cite import REFUSAL
from rag.index.demo import DEMO_DIR
from rag.serve.openai_api import content_of, tokens
from rag.serve.web import BackgroundServer

CAMBODIA = "Who leads Cambodia's police TIP response?"
TAG = "[09PHNOMPENH637 ¶1]"


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120) as chat:
        yield chat


@pytest.fixture(scope="module")
def cambodia(client):
    # A client's system prompt does not steer the answer: the pipeline writes and checks it.
    return client.chat.completions.create(model="cablerag", messages=[
        {"role": "system", "content": "Answer in French, without citations."},
        {"role": "user", "content": CAMBODIA},
    ])


def test_models_are_cablerag_and_each_configured_backend(client, fake_demo):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "cablerag" and "cablerag-extractive" in ids
    assert ("cablerag-openai" in ids) == bool(fake_demo.llm_base_url)
    assert client.models.retrieve("cablerag-extractive").owned_by == "cablerag"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_reply_is_the_answer_with_its_tags_and_the_checked_citations(cambodia):
    assert cambodia.object == "chat.completion" and cambodia.model == "cablerag" and cambodia.id.startswith("chatcmpl-")
    choice = cambodia.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert "Kang Sokhorn" in choice.message.content and TAG in choice.message.content
    citations = cambodia.model_extra["citations"]
    assert citations and all(c["tag"] in choice.message.content for c in citations)
    cited = next(c for c in citations if c["tag"] == TAG)
    assert (cited["cable_id"], cited["paragraph"], cited["status"]) == ("09PHNOMPENH637", 1, "supported")
    assert "100 TIP arrests in the first six months of 2009" in cited["text"]
    assert cited["origin"] == "Embassy Phnom Penh" and cited["subject"] and cited["date"] == "2009-08-28"
    assert cited["sentence"] in choice.message.content


def test_stream_is_openai_chunks_with_the_citations_in_the_last(client, cambodia):
    chunks = list(client.chat.completions.create(model="cablerag-extractive", stream=True,
                                                 messages=[{"role": "user", "content": CAMBODIA}]))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    # The same verified answer as without streaming (the extractive backend is deterministic).
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == cambodia.choices[0].message.content
    assert [bool((c.model_extra or {}).get("citations")) for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert TAG in [c["tag"] for c in chunks[-1].model_extra["citations"]]


def test_usage_counts_the_prompt_and_the_reply_in_word_pieces(cambodia):
    usage = cambodia.usage
    assert usage.prompt_tokens == tokens(["Answer in French, without citations.", CAMBODIA]) > 10
    assert usage.completion_tokens == tokens([cambodia.choices[0].message.content]) > 50
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_stream_carries_usage_in_a_last_chunk_when_asked(client, cambodia):
    messages = [{"role": "system", "content": "Answer in French, without citations."},
                {"role": "user", "content": CAMBODIA}]
    chunks = list(client.chat.completions.create(model="cablerag", stream=True, messages=messages,
                                                 stream_options={"include_usage": True}))
    *answer, last = chunks
    assert last.choices == [] and last.usage == cambodia.usage
    assert [c.usage for c in answer] == [None] * len(answer) and answer[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in answer) == cambodia.choices[0].message.content


def test_cable_text_reaches_a_markdown_renderer_as_text_and_tags_stay_whole():
    # 09PHNOMPENH637 ¶1 as a hostile cable might have it: markup a front-end would run.
    cable = (DEMO_DIR / "09PHNOMPENH637.txt").read_text(encoding="utf-8")
    paragraph = " ".join(cable.split("Laying the groundwork")[1][:200].split())
    hostile = ("<img src=x onerror=alert(1)> see [the plan](javascript:alert(1)), ![x](http://x/t.png), "
               "<javascript:alert(1)> and [ref]: javascript:alert(1) R&D \\[x](javascript:alert(2))")
    text = f"Laying the groundwork{paragraph} {hostile} {TAG} [09PHNOMPENH637 ¶4]"
    content = content_of(Answer(question=CAMBODIA, standalone=CAMBODIA, text=text, refused=False,
                                backend="extractive"))
    assert content.endswith(f" {TAG} [09PHNOMPENH637 ¶4]")
    rendered = MarkdownIt("commonmark").render(content)
    assert rendered == f"<p>{html.escape(text, quote=False)}</p>\n"  # every character shown, nothing live
    assert "<img" not in rendered and "<a " not in rendered


@pytest.mark.slow
def test_llm_no_stream_reads_the_reply_and_its_usage(server, tmp_path):
    """simonw/llm with cablerag as an OpenAI-compatible model: `--no-stream` reads `usage` and
    failed without it."""
    llm = shutil.which("llm")
    if llm is None:
        pytest.skip("simonw/llm is not installed: pip install llm (in a venv of its own: it needs openai>=3)")
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: cablerag\n  model_name: cablerag\n  api_base: {server.url}/v1\n", encoding="utf-8")
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    done = subprocess.run([llm, "-m", "cablerag", "--key", "unused", "--no-stream", CAMBODIA], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Kang Sokhorn" in done.stdout and TAG in done.stdout
    logged = subprocess.run([llm, "logs", "-n", "1", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert '"input_tokens": ' in logged.stdout and '"input_tokens": null' not in logged.stdout


def test_earlier_turns_are_the_history_of_a_follow_up(client, cambodia):
    reply = client.chat.completions.create(model="cablerag", messages=[
        {"role": "user", "content": CAMBODIA},
        {"role": "assistant", "content": cambodia.choices[0].message.content},
        {"role": "user", "content": [{"type": "text", "text": "How many arrests did he report?"}]},
    ])
    # Whether the answer is the arrests sentence is the encoder's part (tests/test_answer.py): here,
    # that the follow-up was asked of the cable the earlier turns were about.
    cited = Citation.find_all(reply.choices[0].message.content)
    assert cited and {c.cable_id for _, c in cited} == {"09PHNOMPENH637"}


def test_a_question_the_cables_do_not_answer_is_refused_with_its_reason(client):
    reply = client.chat.completions.create(model="cablerag", messages=[
        {"role": "user", "content": "Who won Cambodia's 2013 national election?"}])
    content = reply.choices[0].message.content
    assert content.startswith(REFUSAL) and "Why: " in content and "2013" in content
    assert reply.model_extra["citations"] == []


def test_filters_ride_in_the_extra_body(client):
    reply = client.chat.completions.create(model="cablerag", messages=[{"role": "user", "content": CAMBODIA}],
                                           extra_body={"filters": {"origin": "Embassy Phnom Penh"}})
    assert {c["origin"] for c in reply.model_extra["citations"]} == {"Embassy Phnom Penh"}


@pytest.mark.parametrize("messages, extra, param", [
    ([{"role": "user", "content": CAMBODIA}, {"role": "assistant", "content": "Kang Sokhorn"}], None, "messages.1.role"),
    ([], None, "messages"),
    ([{"role": "user", "content": "   "}], None, "messages.0.content"),
    ([{"role": "user", "content": "x" * 5000}], None, "messages.0.content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}], None,
     "messages.0.content"),
    ([{"role": "wizard", "content": CAMBODIA}], None, "messages.0.role"),
    ([{"role": "user", "content": CAMBODIA}], {"filters": {"planet": "Mars"}}, "filters"),
    ([{"role": "user", "content": CAMBODIA}], {"filters": {"date_from": "last year"}}, "filters"),
])
def test_a_bad_request_is_a_400_in_openais_shape(client, messages, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="cablerag", messages=messages, extra_body=extra)
    error = caught.value
    assert error.status_code == 400 and error.body.keys() == {"message", "type", "param", "code"}
    assert error.type == "invalid_request_error" and error.param == param and error.message
    assert "xxxxx" not in error.message  # the bad value is not echoed back


def test_an_unknown_model_is_a_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": CAMBODIA}])
    assert caught.value.code == "model_not_found" and "cablerag" in caught.value.message


@pytest.mark.parametrize("method, path, body, status", [
    ("POST", "/v1/chat/completions", b"{not json", 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}]}', 400),
    ("GET", "/v1/nothing/here", None, 404),
    ("GET", "/v1/chat/completions", None, 405),
])
def test_every_error_is_openai_shaped_json(server, method, path, body, status):
    response = httpx.request(method, server.url + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"].keys() == {"message", "type", "param", "code"}


def test_the_login_guards_v1_and_the_password_is_the_api_key(fake_demo):
    running = BackgroundServer(fake_demo.with_(auth="reader:s3cret"))
    try:
        url = f"{running.url}/v1"
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
        assert httpx.get(f"{url}/models").status_code == 401
        with openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0, timeout=120) as chat:
            assert "cablerag" in [m.id for m in chat.models.list()]
            reply = chat.chat.completions.create(model="cablerag", messages=[{"role": "user", "content": CAMBODIA}])
            assert TAG in reply.choices[0].message.content
        assert httpx.get(f"{url}/models", auth=("reader", "s3cret")).status_code == 200
        assert httpx.get(f"{url}/models", auth=("someone", "s3cret")).status_code == 401
    finally:
        running.stop()
