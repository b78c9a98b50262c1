"""The chat app and the JSON API, served together by one uvicorn server.

`python app.py` and `rag serve` call `serve()`. One FastAPI app holds the API (`rag.serve.api`, under
/api), the OpenAI-compatible API (`rag.serve.openai_api`, mounted at /v1) and the chat UI (`rag.serve.ui`,
gradio, mounted at /); all answer through one `Service` (`rag.serve.service`), which owns the
pipelines and queues the questions.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import RagError
from rag.index.index import index_for
from rag.serve.api import api_router, error_responses
from rag.serve.hosts import LOOPBACK, allowed_hosts
from rag.serve.openai_api import openai_app
from rag.serve.ratelimit import Limiter, RateLimited
from rag.serve.service import Service
from rag.serve.ui import mount_ui
from rag.settings import Settings, get_settings


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise RagError("RAG_AUTH (or the --auth-file) must be USER:PASSWORD")
    return user, password


def login(settings: Settings, auth: str | None = None) -> tuple[str, str] | None:
    """The user and password to require: `auth`, else RAG_AUTH (or --auth-file's, put there by the CLI)."""
    return parse_auth(auth if auth is not None else settings.auth)


def read_auth_file(path: str | Path) -> str:
    """USER:PASSWORD from the first line of a file (so the password never shows in `ps`)."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"cannot read --auth-file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines or not lines[0].strip():
        raise RagError(f"--auth-file {path} is empty: it must hold USER:PASSWORD")
    return lines[0].strip()


class BodyLimit:
    """A request body over `limit` bytes is a 413 with one line of JSON, before the app reads
    any of it: a declared Content-Length is checked at once, a chunked body is read up to the
    limit and then handed on whole."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit() or int(length) > self.limit:
                return await self.refuse(send)
            return await self.app(scope, receive, send)
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            return await self.app(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self.refuse(send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def refuse(self, send: Send) -> None:
        await send_json(send, 413, f"request body over {self.limit} bytes", [(b"connection", b"close")])


class RateLimit:
    """The `Limiter`'s count of the questions asked through the APIs: POSTs under /api and /v1
    (asks, checks, chat completions). One more is a 429 with Retry-After and one line of JSON.
    Health, cables and the page are not counted; the chat page's handlers count their own."""

    PATHS = ("/api/", "/v1/")

    def __init__(self, app: ASGIApp, limiter: Limiter):
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(self.PATHS):
            try:
                self.limiter.hit(client_address(scope.get("client")))
            except RateLimited as exc:
                return await send_json(send, 429, str(exc), [(b"retry-after", str(exc.retry_after).encode())])
        await self.app(scope, receive, send)


def client_address(client: tuple | None) -> str:
    """The address a request came from, as the rate limit counts it."""
    return client[0] if client else "unknown"


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    """A response of one line of JSON, {"detail": …}, sent by a middleware before the app runs."""
    content = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": content})


def create_app(service: Service, credentials: tuple[str, str] | None = None, hosts: list[str] | None = None,
               max_body: int | None = None, origins: list[str] | None = None) -> FastAPI:
    """One FastAPI app: the JSON API under /api, the OpenAI-compatible API under /v1, the chat UI
    at /. Only requests whose Host is one of `hosts` (default: loopback) are answered, no body
    over `max_body` bytes is read, and only pages of `origins` (default: RAG_CORS_ORIGINS) may
    read its responses from another origin; RAG_RATE_LIMIT, when set, limits each client's
    questions on every route that answers one."""
    limiter = Limiter(service.settings.rate_limit) if service.settings.rate_limit else None
    # No Swagger page: it loads its scripts from a CDN, and the app must work offline. The schema
    # is served by the API's router, behind its login.
    app = FastAPI(title="cablerag", docs_url=None, redoc_url=None, openapi_url=None)
    error_responses(app)
    app.include_router(api_router(service, credentials))
    app.mount("/v1", openai_app(service, credentials))
    app = mount_ui(app, service, credentials, limiter)
    app.add_middleware(BodyLimit, limit=max_body if max_body is not None else service.settings.max_body)
    if limiter is not None:
        app.add_middleware(RateLimit, limiter=limiter)
    # Starlette's own class, exactly: gradio then leaves CORS to it, instead of reflecting any
    # localhost origin to a page served on localhost (another local port's page could read the
    # config and answers).
    app.add_middleware(CORSMiddleware, allow_origins=cors_origins(service.settings.cors_origins, origins),
                       allow_credentials=True, allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or allowed_hosts(), www_redirect=False)
    return app


def cors_origins(listed: str, own: list[str] | None = None) -> list[str]:
    """The origins whose pages may read responses: the server's own (`own`) and the operator's
    (comma-separated `listed`), as browsers send them: scheme://host[:port], no trailing slash."""
    names = [*(own or []), *(o.strip().rstrip("/").lower() for o in listed.split(","))]
    return list(dict.fromkeys(n for n in names if n))


def own_origins(hosts: list[str], port: int) -> list[str]:
    """The origins of the server's own page, under each name it answers to."""
    return [f"{scheme}://{host}:{port}" for host in hosts for scheme in ("http", "https")]


def serve(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None) -> int:
    """Serve the app until interrupted. The index opens (or the demo index is built) in the
    background, so the page is up at once and shows the build's progress. The login is `auth`,
    else RAG_AUTH (never a command-line value: it would show in `ps`)."""
    settings = get_settings(settings)
    credentials = login(settings, auth)
    if not settings.chroma_url:
        # A sidecar out of step stops the server here, with the repair, not in a page. On a Chroma
        # server it is a replica's own to build from the store, which `Service.load` does.
        index_for(settings).check_in_step()
    if not settings.threads:
        # Answers run side by side, so each encoder call gets one thread: intra-op threads spinning
        # against the other answers' waste the cores (bench/README.md: CPU per answer -30 %).
        os.environ["RAG_THREADS"] = "1"
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        settings = settings.with_(threads=1)
    service = Service(settings)
    threading.Thread(target=service.load, name="index", daemon=True).start()
    hosts = allowed_hosts(host, settings.allowed_hosts)
    app = create_app(service, credentials, hosts, origins=own_origins(hosts, port))
    if host not in LOOPBACK and credentials is None:
        print(f"warning: serving on {host} without a login (RAG_AUTH or --auth-file): anyone who reaches the port "
              "can use it", file=sys.stderr)
    if host not in LOOPBACK and not settings.allowed_hosts:
        print(f"note: only requests for {', '.join(hosts)} are answered; add the names clients use with "
              "--allowed-hosts or RAG_ALLOWED_HOSTS", file=sys.stderr)
    print(f"cablerag: chat at http://{host}:{port}/ , JSON API at http://{host}:{port}/api , OpenAI-compatible API "
          f"at http://{host}:{port}/v1 (Ctrl+C stops)",
          file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


class BackgroundServer:
    """The app on a free loopback port, in a daemon thread (tests and benchmarks)."""

    def __init__(self, settings: Settings | None = None, auth: str | None = None, timeout: float = 120):
        self.service = Service(settings)
        self.service.load()
        self.service.require_ready()
        settings = self.service.settings
        app = create_app(self.service, login(settings, auth), allowed_hosts("127.0.0.1", settings.allowed_hosts))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
