"""`rag mcp`: the cables as tools for agents that speak MCP (the Model Context Protocol), on the
official SDK's `MCPServer`, over stdio (a client starts it as a subprocess) or streamable HTTP.

Tools: `search` (the retriever the pipeline uses: paragraphs with their tags, scores and text),
`ask` (the pipeline's answer with its verified citations), `get_cable`, `get_paragraph`, and
`check` (`rag check`: a text's citations checked claim by claim).
All answer through one `Service`, opened in the background once the transport is up, so the
client's handshake never waits for the encoder; a tool called before it is open waits for it.
Tool calls run one at a time: one client is one user, and the index is this process's.

In stdio mode stdout carries the protocol: the SDK points fd 1 at stderr while it serves, the
index opens only after that, and logging goes to stderr.
"""

from __future__ import annotations

import inspect
import sys
import threading
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from rag.answer.pipeline import paragraph_json
from rag.check.checker import MAX_CHECK
from rag.citation import Citation, number_ranges
from rag.errors import ParagraphNotFound, RagError
from rag.filters import Filters
from rag.index.index import index_for
from rag.serve.schemas import citations_json
from rag.serve.service import Service
from rag.settings import Settings, get_settings
from rag.validate import MAX_QUESTION

# How long a tool waits for the index to open (the encoder loads in seconds; the demo index,
# built on first use at ./index, takes a minute or two).
LOAD_WAIT = 180
MAX_K = 50

INSTRUCTIONS = """Search and read US diplomatic cables (the 2010-11 Cablegate release) and answer \
questions from them. Every paragraph has a tag like [09PHNOMPENH637 ¶1] (cable id, paragraph \
number): cite it after each claim you take from that paragraph. `ask` answers with citations \
already checked against their paragraphs; `search` finds paragraphs; `get_paragraph` and \
`get_cable` read them whole."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


@with_config(ConfigDict(extra="forbid"))  # an unknown filter is an error, not a search of everything
class SearchFilters(TypedDict, total=False):
    """Restrict the search; every key is optional, dates are inclusive."""

    origin: Annotated[str, Field(description='the sending post, exactly, e.g. "Embassy Phnom Penh"')]
    date_from: Annotated[str, Field(description="earliest cable date, YYYY-MM-DD")]
    date_to: Annotated[str, Field(description="latest cable date, YYYY-MM-DD")]
    classification: Annotated[str, Field(description='e.g. "CONFIDENTIAL", exactly')]
    tag: Annotated[str, Field(description="a TAGS code, e.g. KTIP")]


Query = Annotated[str, Field(description="what to look for, in words", min_length=1, max_length=MAX_QUESTION)]
Question = Annotated[str, Field(description="the question", min_length=1, max_length=MAX_QUESTION)]
CableId = Annotated[str, Field(description="a cable id, e.g. 09PHNOMPENH637", max_length=40)]
Number = Annotated[int, Field(description="the paragraph number the cable prints: the N of [CABLEID ¶N]", ge=0)]
Text = Annotated[str, Field(description="the text to check: plain text or Markdown that cites cables",
                            min_length=1, max_length=MAX_CHECK)]
K = Annotated[int, Field(description="how many paragraphs", ge=1, le=MAX_K)]


class CableTools:
    """The tools, over one `Service` whose index opens in a background thread."""

    def __init__(self, settings: Settings):
        self.service = Service(settings)
        self.loader = threading.Thread(target=self.service.load, name="index", daemon=True)
        self.lock = threading.Lock()

    def call(self, fn, *args):
        """`fn(*args)` once the index is open, one call at a time; a RagError reaches the client
        as the tool's error text (any other exception's text stays in the server's log)."""
        self.loader.join(LOAD_WAIT)
        try:
            self.service.require_ready()
            with self.lock:
                return fn(*args)
        except RagError as exc:
            raise ToolError(str(exc)) from None

    def search(self, query: Query, filters: SearchFilters | None = None, k: K = 10) -> dict[str, Any]:
        """Find the paragraphs of the cables that best match the query (hybrid dense + BM25
        retrieval, the search `ask` answers from). Returns each paragraph's tag, its cable's
        subject, date, origin and classification, the fused retrieval score, and the text; a
        paragraph too long to embed whole comes as its parts (get_paragraph reads it whole)."""
        parsed = filters_of(filters)

        def run() -> dict[str, Any]:
            hits = self.service.search(query, k, parsed)
            return {"query": query, "filters": parsed.to_json(),
                    "paragraphs": [{"tag": h.citation.tag, **paragraph_json(h), "score": round(h.score, 5)}
                                   for h in hits]}

        return self.call(run)

    def ask(self, question: Question, filters: SearchFilters | None = None) -> dict[str, Any]:
        """Answer a question from the cables. The answer quotes or states what the cables say,
        with a [CABLEID ¶N] tag after each claim; every citation has been checked against its
        paragraph (status supported or weak) and comes with that paragraph's text. When the
        cables do not answer, `refused` is true and `refusal_reason` says why."""
        parsed = filters_of(filters)

        def run() -> dict[str, Any]:
            answer = self.service.ask(question, None, parsed)
            return {"question": answer.question, "answer": answer.text, "short_answer": answer.short_answer,
                    "refused": answer.refused, "refusal_reason": answer.refusal_reason, "backend": answer.backend,
                    "citations": citations_json(answer), "unsupported": answer.unsupported}

        return self.call(run)

    def get_cable(self, cable_id: CableId) -> dict[str, Any]:
        """A whole cable: subject, date, origin, classification, TAGS, and every paragraph in
        order with its printed number and heading."""
        return self.call(self.service.cable, cable_id)

    def get_paragraph(self, cable_id: CableId, paragraph: Number) -> dict[str, Any]:
        """One paragraph of a cable, by the number the cable prints, with its tag and the
        cable's subject, date, origin and classification."""

        def run() -> dict[str, Any]:
            cable = self.service.cable(cable_id)
            found = [p for p in cable["paragraphs"] if p["paragraph"] == paragraph]
            if not found:
                raise ParagraphNotFound(f"cable {cable['id']} has no ¶{paragraph}; it has "
                                        f"{number_ranges([p['paragraph'] for p in cable['paragraphs']])}")
            meta = {key: cable[key] for key in ("subject", "date", "origin", "classification")}
            # A number the cable prints twice is two paragraphs: both, in order.
            return {"tag": Citation(cable["id"], paragraph).tag, "cable_id": cable["id"], "paragraph": paragraph,
                    **meta, "heading": found[0]["heading"], "text": "\n\n".join(p["text"] for p in found)}

        return self.call(run)

    def check(self, text: Text) -> dict[str, Any]:
        """Check a text's cable citations against the cables, as `rag check` does: the text is
        cut into claims; each citation ([CABLEID ¶N], 'CABLEID para N', a bare cable id, a
        WikiLeaks link) gets a status (supported, weak, unsupported, unknown_cable,
        unknown_paragraph), its support score, and the paragraph that would support the claim
        better; a claim without a citation gets the paragraph it could cite."""
        return self.call(lambda: self.service.check(text).to_json())


def filters_of(filters: SearchFilters | None) -> Filters:
    try:
        return Filters.parse(dict(filters or {}))
    except RagError as exc:
        raise ToolError(str(exc)) from None


def build_server(settings: Settings | None = None) -> MCPServer:
    """The MCP server and its tools; the index starts opening when the server starts."""
    tools = CableTools(get_settings(settings))

    @asynccontextmanager
    async def lifespan(_server: MCPServer):
        # Started here, inside the transport: in stdio mode anything the load prints misses the wire.
        tools.loader.start()
        yield {}

    server = MCPServer("cablerag", version=version("cablerag"), instructions=INSTRUCTIONS, lifespan=lifespan,
                       log_level="WARNING")
    for tool in (tools.search, tools.ask, tools.get_cable, tools.get_paragraph, tools.check):
        server.add_tool(tool, description=inspect.cleandoc(tool.__doc__), annotations=READ_ONLY)
    return server


def transport_security(host: str, extra_hosts: str) -> TransportSecuritySettings:
    """The Host and Origin names the HTTP transport answers: those `rag serve` answers."""
    from rag.serve.hosts import allowed_hosts

    names = allowed_hosts(host, extra_hosts)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*names, *(f"{n}:*" for n in names)],
        allowed_origins=[f"{scheme}://{n}{port}" for n in names for scheme in ("http", "https") for port in ("", ":*")],
    )


def run(settings: Settings | None = None, http: bool = False, host: str = "127.0.0.1", port: int = 7861) -> int:
    """Serve the tools over stdio, or over streamable HTTP at http://HOST:PORT/mcp, until stopped."""
    settings = get_settings(settings)
    index = index_for(settings)
    if not settings.chroma_url:  # a replica's sidecar is built from the store when the service opens
        index.check_in_step()
    index.require()  # a missing index is one line now, not a tool error later
    server = build_server(settings)
    if not http:
        server.run("stdio")
        return 0
    from rag.serve.hosts import LOOPBACK

    if host not in LOOPBACK:
        print(f"warning: serving MCP on {host} without a login: anyone who reaches the port can use it",
              file=sys.stderr)
    print(f"cablerag: MCP server at http://{host}:{port}/mcp (Ctrl+C stops)", file=sys.stderr)
    server.run("streamable-http", host=host, port=port, transport_security=transport_security(host, settings.allowed_hosts))
    return 0
