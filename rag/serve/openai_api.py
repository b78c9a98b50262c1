"""An OpenAI-compatible endpoint under /v1, so chat front-ends (Open WebUI, LibreChat) and any
OpenAI client can ask the cables: `GET /v1/models` (and `/v1/models/{id}`) and `POST
/v1/chat/completions`.

The messages become a question (the last user message) and its history (the user and
assistant turns before it); system messages are ignored, since the answer's wording and
citations are the pipeline's to decide. The reply's content is the verified answer with its
`[ID ¶N]` tags, and an extra `citations` field carries each checked citation with its
paragraph. With `stream: true` the same reply comes as `chat.completion.chunk` events, the
citations in the last one; the content arrives whole, after verification, because a streamed
token cannot be taken back and an unchecked tag must never reach the screen.

Front-ends render the content as Markdown, so the cable text in it is quoted as text: HTML
escaped and link syntax broken, so that a cable quoting `<img onerror=…>` or
`[x](javascript:…)` shows those characters instead of running them; the `[ID ¶N]` tags stay as
they are. `usage` counts word pieces with the packaged MiniLM tokenizer (the encoder's, not an
LLM's): an estimate, which clients that require the field (simonw/llm) read like any other.

It is a FastAPI app of its own, mounted by `rag.serve.web`, so that its errors are OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) while /api keeps its own. It is behind the
same login as /api: HTTP Basic, or the password as the API key (`Authorization: Bearer
PASSWORD`), which is what OpenAI clients send.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
import secrets
import time
import uuid
from typing import Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from fastapi.sse import format_sse_event
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from rag.answer.backends import REGISTRY
from rag.answer.pipeline import Answer
from rag.citation import Citation
from rag.errors import RagError
from rag.filters import Filters
from rag.serve.api import logged_in
from rag.serve.schemas import citations_json
from rag.serve.service import HISTORY_TURNS, Busy, NotReady, Service
from rag.settings import Settings
from rag.validate import check_question

log = logging.getLogger(__name__)

MODEL = "cablerag"


class OpenAIError(Exception):
    """An error as OpenAI's API reports it: an HTTP status and the `error` object."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}


class Message(BaseModel):
    # A client's other fields (name, tool_calls …) are accepted and not read.
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    # temperature, max_tokens, top_p …: accepted and not read; the pipeline decides how it answers.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Not OpenAI's: the search filters (origin, date_from, date_to, classification, tag), which
    # an OpenAI client sends with `extra_body={"filters": {...}}`.
    filters: dict | None = None


def models(settings: Settings) -> dict[str, str]:
    """Model id → answer backend: `cablerag` is the configured default, and each backend the
    settings can run has its own id (openai only with a base URL)."""
    usable = {"extractive", settings.llm} | ({"openai"} if settings.llm_base_url else set())
    return {MODEL: settings.llm, **{f"{MODEL}-{name}": name for name in REGISTRY if name in usable}}


def unknown_model(name: str, settings: Settings) -> OpenAIError:
    return OpenAIError(404, f"the model {name[:80]!r} does not exist: use one of {', '.join(models(settings))}",
                       param="model", code="model_not_found")


def text_of(message: Message, at: int) -> str:
    """A message's text: a string, or its text parts joined."""
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise OpenAIError(400, f"only text content is supported, not {str(part.get('type'))[:40]!r}",
                              param=f"messages.{at}.content")
        texts.append(part["text"])
    return "\n".join(texts)


def question_and_history(messages: list[Message]) -> tuple[str, list[dict]]:
    """The last message is the question and must be the user's; the user and assistant turns
    before it, with text, are the history (the last HISTORY_TURNS of them)."""
    last = len(messages) - 1
    if messages[last].role != "user":
        raise OpenAIError(400, "the last message must be the user's question", param=f"messages.{last}.role")
    try:
        question = check_question(text_of(messages[last], last))
    except RagError as exc:
        raise OpenAIError(400, str(exc), param=f"messages.{last}.content") from None
    history = [{"role": m.role, "content": text} for i, m in enumerate(messages[:last])
               if m.role in ("user", "assistant") and (text := text_of(m, i).strip())]
    return question, history[-HISTORY_TURNS:]


def content_of(answer: Answer) -> str:
    """The answer with its tags, quoted for a Markdown renderer; a refusal says why, as `rag ask` does."""
    if answer.refused and answer.refusal_reason:
        return f"{quoted(answer.text)}\n\nWhy: {quoted(answer.refusal_reason)}"
    return quoted(answer.text)


# A backslash of the text is escaped first, so that none of its own cancels an escape of ours.
_LINK_SYNTAX = re.compile(r"([\\\[\]])")


def quoted(text: str) -> str:
    """`text` as Markdown that shows its HTML and links as the characters they are: `<`, `>` and
    `&` as entities (no tag, no autolink), `[` and `]` backslash-escaped (no link, image or link
    definition), while its `[ID ¶N]` tags are left whole."""
    out, at = [], 0
    for match, _ in Citation.find_all(text):
        out += [_escaped(text[at:match.start()]), match.group(0)]
        at = match.end()
    return "".join([*out, _escaped(text[at:])])


def _escaped(text: str) -> str:
    return html.escape(_LINK_SYNTAX.sub(r"\\\1", text), quote=False)


@functools.cache
def _word_pieces():
    from tokenizers import Tokenizer

    from rag.index.embed import minilm_path

    tokenizer = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def tokens(texts: list[str]) -> int:
    """Word pieces of `texts` by the packaged MiniLM's tokenizer: an estimate of an LLM's count."""
    texts = [t for t in texts if t]
    return sum(len(e.ids) for e in _word_pieces().encode_batch(texts, add_special_tokens=False)) if texts else 0


def usage(messages: list[Message], content: str) -> dict[str, int]:
    """OpenAI's `usage`: the messages' text as the prompt, the reply as the completion."""
    sent = [m.content if isinstance(m.content, str) else
            "\n".join(p["text"] for p in m.content or [] if isinstance(p.get("text"), str)) for m in messages]
    prompt, completion = tokens(sent), tokens([content])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def key_or_login(credentials: tuple[str, str] | None):
    """A dependency that requires the app's login when it has one: HTTP Basic with the user and
    password, or the password alone as a bearer key (an OpenAI client's API key)."""
    basic, bearer = HTTPBasic(auto_error=False), HTTPBearer(auto_error=False)

    def check(given: HTTPBasicCredentials | None = Depends(basic),
              key: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            return
        if key is not None and secrets.compare_digest(key.credentials.encode(), credentials[1].encode()):
            return
        if logged_in(given, credentials):
            return
        raise OpenAIError(401, "login required: send the password as the API key (Authorization: Bearer PASSWORD) "
                          "or use HTTP Basic", code="invalid_api_key",
                          headers={"WWW-Authenticate": 'Bearer realm="cablerag"'})

    return check


def openai_app(service: Service, credentials: tuple[str, str] | None = None) -> FastAPI:
    """The /v1 app: models and chat completions, answered by `service`."""
    app = FastAPI(title="cablerag OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(key_or_login(credentials))])
    started = int(time.time())
    openai_errors(app)

    def model(name: str) -> dict:
        return {"id": name, "object": "model", "created": started, "owned_by": MODEL}

    @app.get("/models")
    def list_models() -> dict:
        return {"object": "list", "data": [model(name) for name in models(service.settings)]}

    @app.get("/models/{name}")
    def get_model(name: str) -> dict:
        if name not in models(service.settings):
            raise unknown_model(name, service.settings)
        return model(name)

    @app.post("/chat/completions")
    async def chat_completions(request: ChatRequest):
        backend = models(service.settings).get(request.model)
        if backend is None:
            raise unknown_model(request.model, service.settings)
        question, history = question_and_history(request.messages)
        try:
            filters = Filters.parse(request.filters)
        except RagError as exc:
            raise OpenAIError(400, str(exc), param="filters") from None
        answer = await service.run(service.ask, question, history, filters, backend)  # out of the default pool
        reply = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": request.model}
        content = content_of(answer)
        counted = usage(request.messages, content)
        if request.stream:
            with_usage = request.stream_options is not None and request.stream_options.include_usage
            return StreamingResponse(chunks(reply, answer, content, counted if with_usage else None),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        message = {"role": "assistant", "content": content, "refusal": None}
        return {**reply, "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": counted, "citations": citations_json(answer)}

    return app


def chunks(reply: dict, answer: Answer, content: str, counted: dict[str, int] | None):
    """The answer as OpenAI's stream: the role, the content, then the stop with the citations;
    when the client asked for `stream_options.include_usage`, every chunk has `usage`, null but
    in a last chunk without choices, as OpenAI sends it."""
    head = {**reply, "object": "chat.completion.chunk", **({"usage": None} if counted is not None else {})}
    deltas = [({"role": "assistant", "content": ""}, None, {}), ({"content": content}, None, {}),
              ({}, "stop", {"citations": citations_json(answer)})]
    events = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
              for delta, finish, extra in deltas]
    if counted is not None:
        events.append({**head, "choices": [], "usage": counted})
    for event in events:
        yield format_sse_event(data_str=json.dumps(event, ensure_ascii=False))
    yield format_sse_event(data_str="[DONE]")


def openai_errors(app: FastAPI) -> None:
    """Every error of the /v1 app in OpenAI's shape, with a 4xx status (503 while the index opens)."""

    def reply(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
              code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(OpenAIError(status, message, type, param, code).body, status_code=status, headers=headers)

    @app.exception_handler(OpenAIError)
    async def openai_error(_request: Request, exc: OpenAIError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The first problem, named by its path in the body; the bad value is not echoed back.
        error = exc.errors()[0] if exc.errors() else {}
        if error.get("type") == "json_invalid":
            return reply(400, "the request body is not valid JSON")
        where = [str(p) for p in error.get("loc", ()) if p != "body"]
        message = error.get("msg", "invalid request")
        return reply(400, f"{'.'.join(where)}: {message}" if where else message, param=".".join(where) or None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no such endpoint: {request.method} {request.url.path}" if exc.status_code in (404, 405) else \
            str(exc.detail)
        return reply(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(NotReady)
    async def not_ready(_request: Request, exc: NotReady) -> JSONResponse:
        return reply(503, str(exc), type="server_error", code="not_ready")

    @app.exception_handler(Busy)
    async def busy(_request: Request, exc: Busy) -> JSONResponse:
        return reply(503, str(exc), type="server_error", code="busy", headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RagError)
    async def rag_error(_request: Request, exc: RagError) -> JSONResponse:
        return reply(400, str(exc))

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return reply(500, "internal error; see the server log", type="server_error")
