"""The chat app and the JSON API, served together by one uvicorn server.

`python app.py` and `rag serve` call `serve()`. One FastAPI app holds the API (`rag.api`, under
/api) and the chat UI (`rag.ui`, gradio, mounted at /); both answer through one `Service`
(`rag.service`), which owns the pipelines and serialises calls to them.
"""

from __future__ import annotations

import sys
import threading
import time

import uvicorn
from fastapi import FastAPI

from rag.api import api_router, error_responses
from rag.errors import RagError
from rag.retrieve import check_in_step
from rag.service import Service
from rag.settings import Settings
from rag.ui import mount_ui


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise RagError("--auth must be USER:PASSWORD")
    return user, password


def create_app(service: Service, credentials: tuple[str, str] | None = None) -> FastAPI:
    """One FastAPI app: the JSON API under /api, the chat UI at /."""
    # No Swagger page: it loads its scripts from a CDN, and the app must work offline.
    app = FastAPI(title="cablerag", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    error_responses(app)
    app.include_router(api_router(service, credentials))
    return mount_ui(app, service, credentials)


def serve(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None) -> int:
    """Serve the app until interrupted. The index opens (or the demo index is built) in the
    background, so the page is up at once and shows the build's progress."""
    credentials = parse_auth(auth)
    check_in_step(settings)  # a sidecar out of step stops the server here, with the repair, not in a page
    service = Service(settings)
    threading.Thread(target=service.load, name="index", daemon=True).start()
    app = create_app(service, credentials)
    if host not in ("127.0.0.1", "localhost", "::1") and credentials is None:
        print(f"warning: serving on {host} without --auth: anyone who reaches the port can use it", file=sys.stderr)
    print(f"cablerag: chat at http://{host}:{port}/ , JSON API at http://{host}:{port}/api (Ctrl+C stops)",
          file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


class BackgroundServer:
    """The app on a free loopback port, in a daemon thread (tests and benchmarks)."""

    def __init__(self, settings: Settings | None = None, auth: str | None = None, timeout: float = 120):
        self.service = Service(settings)
        self.service.load()
        self.service.require_ready()
        app = create_app(self.service, parse_auth(auth))
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
