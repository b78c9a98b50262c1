"""The JSON API under /api: ask, check, cables, health, and its schema (openapi.json), all behind the
login when there is one. Each route calls the `Service`; errors become one-line JSON with a 4xx
status (503 while the index is not open, or with Retry-After when a question waited too long for
its turn). Questions wait and are answered in the service's own threads (`Service.run`), and
health and the login check run on the event loop, so neither waits behind questions.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from rag.answer.chat import Turn
from rag.check.checker import MAX_CHECK
from rag.errors import CableNotFound, RagError
from rag.filters import Filters
from rag.serve.service import HISTORY_TURNS, Busy, NotReady, Service
from rag.validate import MAX_QUESTION, check_question

log = logging.getLogger(__name__)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    history: list[Turn] = Field(default_factory=list, max_length=50)
    filters: dict | None = None
    llm: str | None = None


class CheckRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_CHECK)


def logged_in(given: HTTPBasicCredentials | None, credentials: tuple[str, str]) -> bool:
    """Whether HTTP Basic credentials are the app's user and password (compared in constant time)."""
    return given is not None and secrets.compare_digest(given.username.encode(), credentials[0].encode()) \
        and secrets.compare_digest(given.password.encode(), credentials[1].encode())


def basic_auth(credentials: tuple[str, str] | None):
    """A dependency that requires the app's user and password (HTTP Basic) when it has one:
    gradio's login protects only the UI."""
    security = HTTPBasic(auto_error=False)

    async def check(given: HTTPBasicCredentials | None = Depends(security)) -> None:
        if credentials is None:
            return
        if not logged_in(given, credentials):
            raise HTTPException(401, "login required", headers={"WWW-Authenticate": 'Basic realm="cablerag"'})

    return check


def api_router(service: Service, credentials: tuple[str, str] | None) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(basic_auth(credentials))])

    @router.post("/ask")
    async def ask(request: AskRequest) -> dict:
        """Answer a question; the answer, its checked citations, the cited paragraphs, timings."""
        history = list(request.history)[-HISTORY_TURNS:]
        question, filters = check_question(request.question), Filters.parse(request.filters)
        return (await service.run(service.ask, question, history, filters, request.llm)).to_json()

    @router.post("/check")
    async def check(request: CheckRequest) -> dict:
        """Check a text's cable citations, claim by claim, as `rag check --json` does."""
        return (await service.run(service.check, request.text)).to_json()

    @router.get("/cables/{cable_id:path}")
    def cable(cable_id: str) -> dict:
        """A whole cable: metadata and every paragraph (the path converter makes every id,
        slashes included, reach validation instead of another route)."""
        return service.cable(cable_id)

    @router.get("/health")
    async def health() -> JSONResponse:
        """The server's state (`Service.health`): 200 when it can answer, else 503, so a load
        balancer or supervisor that reads the status sends no questions to it."""
        state = service.health()
        return JSONResponse(state, status_code=200 if state["status"] == "ok" else 503)

    @router.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> dict:
        """The API's schema, behind the same login as the API (FastAPI's own route would not be)."""
        return request.app.openapi()

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(rest: str) -> JSONResponse:
        return JSONResponse({"detail": "no such API endpoint"}, status_code=404)

    return router


def error_responses(app: FastAPI) -> None:
    """Errors become one-line JSON with a 4xx status (503 while the index is not open)."""
    statuses = ((CableNotFound, 404), (NotReady, 503), (RagError, 400))
    for exc_type, status in statuses:
        app.add_exception_handler(exc_type, lambda _r, exc, s=status: JSONResponse({"detail": str(exc)}, status_code=s))

    @app.exception_handler(Busy)
    async def busy(_request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 echoes each bad value back: a megabyte question came back whole.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)
