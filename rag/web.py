"""The chat app and the JSON API, served together by one uvicorn server.

`python app.py` and `rag serve` call `serve()`. The UI (gradio Blocks, mounted at /) and the
API (FastAPI routes under /api) both answer through one `Service`, which owns the `Pipeline`s
and serialises calls to them: this module renders answers, it never answers on its own.
"""

from __future__ import annotations

import html
import logging
import os
import queue
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Literal

# Before gradio is imported: it would otherwise report usage over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.security import HTTPBasic, HTTPBasicCredentials  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from rag.answer import BACKENDS  # noqa: E402
from rag.cite import CheckedCitation, overlap  # noqa: E402
from rag.demo import ensure_index  # noqa: E402
from rag.embed import get_encoder  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.pipeline import Answer, Pipeline  # noqa: E402
from rag.retrieve import check_in_step  # noqa: E402
from rag.settings import Settings, get_settings  # noqa: E402
from rag.stats import index_stats  # noqa: E402
from rag.store import Store  # noqa: E402
from rag.text import split_sentences  # noqa: E402
from rag.types import Citation, Hit  # noqa: E402
from rag.validate import MAX_QUESTION, check_question, validate_cable_id, validate_filters  # noqa: E402

log = logging.getLogger("rag.web")

EXAMPLES = [
    "Who leads Cambodia's police TIP response?",
    "When does child labor in Costa Rica peak, according to UNICEF?",
    "Where and when was arms trafficker Viktor Bout arrested?",
    "What became of the nuclear fuel rods stolen from the Kinshasa research reactor?",
]
# Turns of history sent to the condense step: the last exchange carries the context a
# follow-up needs, and a longer transcript only slows an LLM down.
HISTORY_TURNS = 6


class CableNotFound(RagError):
    """A well-formed cable id that the index does not hold."""


class NotReady(RagError):
    """The index is still being built, or failed to open."""


# ── the service: what the UI and the API share ────────────────────────────────────────────────────


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

    def ask(self, question: str, history: list[dict] | None = None, filters: dict | None = None,
            llm: str | None = None) -> Answer:
        question, filters = check_question(question), validate_filters(filters)
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
               filters: dict | None = None) -> Iterator[str | Answer]:
        """`Pipeline.stream`, run to completion by a worker thread: a browser that goes away
        mid-answer then never leaves the lock held."""
        question, filters = check_question(question), validate_filters(filters)
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
        """The whole cable as JSON; the id is validated before it reaches the store."""
        cable_id = validate_cable_id(value)
        hits = self.default.retriever.cable(cable_id)
        if not hits:
            raise CableNotFound(f"no cable {cable_id} in this index")
        return cable_json(cable_id, hits)

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


def cable_json(cable_id: str, hits: list[Hit]) -> dict:
    """A cable from its stored chunks (in reading order), parts of a split paragraph re-joined."""
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
        "tags": list(meta.get("tags") or []), "paragraphs": paragraphs,
    }


# ── rendering: every string from a cable or a user is escaped here ────────────────────────────────

_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#|~$])")
_MD_LINE_START = re.compile(r"^(\s*)(\d+[.)]|[-+>=])", re.MULTILINE)


def md_text(text: str) -> str:
    """Text shown literally inside the chat's markdown: no HTML, no markdown syntax."""
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def citation_chip(citation: Citation, check: CheckedCitation | None) -> str:
    """A citation as a link that opens the cable at the paragraph (see CLICK_JS)."""
    status = check.status if check else "weak"
    note = f"{status}: support score {check.score:.2f}" if check else "weak: not scored"
    label = html.escape(str(citation)) + (" ⚠" if status == "weak" else "")
    href = f"#cable={html.escape(citation.cable_id)}&p={citation.paragraph}"
    return f'<a class="cite cite-{status}" href="{href}" title="{html.escape(note)}">{label}</a>'


def best_checks(answer: Answer) -> dict[Citation, CheckedCitation]:
    """Per cited paragraph, its best-supported citation: what its chip and card show."""
    best: dict[Citation, CheckedCitation] = {}
    for check in answer.citations:
        if check.citation not in best or check.score > best[check.citation].score:
            best[check.citation] = check
    return best


def answer_markdown(answer: Answer) -> str:
    """The verified answer for the chat: escaped text, citation chips, marked weak spots."""
    if answer.refused:
        reason = answer.refusal_reason.rstrip(".")
        why = f" Why: {md_text(reason)}{'' if reason.endswith('?') else '.'}" if reason else ""
        return f'<span class="refusal">Not answered</span> {md_text(answer.text)}{why}'
    checks = best_checks(answer)
    out, last = [], 0
    if answer.short_answer:
        out.append(f'<span class="short-answer">{md_text(answer.short_answer)}</span>\n\n')
    for match, citation in Citation.find_all(answer.text):
        out.append(with_answer_marked(answer.text[last : match.start()], answer.short_answer))
        out.append(citation_chip(citation, checks.get(citation)))
        last = match.end()
    out.append(with_answer_marked(answer.text[last:], answer.short_answer))
    for claim in answer.unsupported:
        out.append(f'\n\n<span class="unsupported">⚠ No cited paragraph supports: “{md_text(claim)}”</span>')
    return "".join(out)


def with_answer_marked(text: str, short: str) -> str:
    """Escaped text with the first occurrence of the short answer marked, so the reader sees
    where in the quote the answer stands."""
    at = text.find(short) if short else -1
    if at < 0:
        return md_text(text)
    return (md_text(text[:at]) + f'<mark class="answer">{md_text(short)}</mark>'
            + md_text(text[at + len(short):]))


def partial_markdown(text: str) -> str:
    """Text still streaming from the LLM: not verified yet, so shown plain."""
    return md_text(text) + " ▍"


def support_spans(text: str, claims: list[str]) -> list[tuple[int, int]]:
    """Character spans of `text` that back the answer's claims. Each sentence of a claim (one
    claim can join several sentences of the paragraph) is marked where it is quoted verbatim
    (extractive answers), else the paragraph sentence it overlaps most is."""
    sentences, pos = [], 0
    for sentence in split_sentences(text):
        start = text.find(sentence, pos)
        if start >= 0:
            sentences.append((start, start + len(sentence), sentence))
            pos = start + len(sentence)
    spans = set()
    for claim in (s for c in claims for s in split_sentences(c, min_chars=0)):
        start = text.find(claim)
        if start >= 0:
            spans.add((start, start + len(claim)))
        elif sentences:
            best = max(sentences, key=lambda s: overlap(claim, s[2]))
            if overlap(claim, best[2]) > 0:
                spans.add(best[:2])
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlighted(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        out.append(html.escape(text[last:start]))
        out.append(f'<mark class="support">{html.escape(text[start:end])}</mark>')
        last = end
    out.append(html.escape(text[last:]))
    return "".join(out)


def meta_line(*values: str) -> str:
    return " · ".join(html.escape(v) for v in values if v)


def paragraph_card(hit: Hit, checks: list[CheckedCitation]) -> str:
    """One cited paragraph: where it comes from, its full text, the supporting sentence marked."""
    m = hit.metadata
    best = max(checks, key=lambda c: c.score, default=None)
    status = best.status if best else "weak"
    badge = f"{status} · {best.score:.2f}" if best else "weak"
    heading = f'<div class="heading">{html.escape(m.get("heading", ""))}</div>' if m.get("heading") else ""
    text = highlighted(hit.text, support_spans(hit.text, [c.sentence for c in checks]))
    return (
        f'<div class="para-card {status}">'
        f'<div class="card-head">{citation_chip(hit.citation, best)}'
        f'<span class="badge {status}">{html.escape(badge)}</span></div>'
        f'<div class="subject">{html.escape(m.get("subject", ""))}</div>'
        f'<div class="meta">{meta_line(m.get("date", ""), m.get("origin", ""), m.get("classification", ""))}</div>'
        f'{heading}<p class="para-text">{text}</p></div>'
    )


def paragraphs_html(answer: Answer) -> str:
    """The side panel: every cited paragraph, or why there is none."""
    if answer.refused:
        why = f" ({html.escape(answer.refusal_reason)})" if answer.refusal_reason else ""
        return ('<div class="panel-note"><span class="refusal">Not answered</span> No paragraph in the '
                f"index answers this question{why}, so nothing is cited.</div>")
    if not answer.paragraphs:
        return '<div class="panel-note">The answer cites no paragraph.</div>'
    by_citation: dict[Citation, list[CheckedCitation]] = {}
    for check in answer.citations:
        by_citation.setdefault(check.citation, []).append(check)
    return "".join(paragraph_card(hit, by_citation.get(hit.citation, [])) for hit in answer.paragraphs)


def cable_html(cable: dict, highlight: int | None) -> str:
    """The whole cable, paragraph numbers shown, paragraph `highlight` marked (SCROLL_JS finds it)."""
    rows = []
    for p in cable["paragraphs"]:
        hl = " hl" if p["paragraph"] == highlight else ""
        heading = f'<div class="heading">{html.escape(p["heading"])}</div>' if p["heading"] else ""
        rows.append(f'<div class="cable-para{hl}"><span class="pnum">¶{p["paragraph"]}</span>'
                    f'<div>{heading}<div class="para-text">{html.escape(p["text"])}</div></div></div>')
    missing = highlight is not None and not any(p["paragraph"] == highlight for p in cable["paragraphs"])
    note = f'<div class="panel-note">This cable has no ¶{highlight}.</div>' if missing else ""
    meta = meta_line(cable["date"], cable["origin"], cable["classification"], " ".join(cable["tags"]))
    return (
        f'<div class="cable"><div class="cable-head"><span class="cable-id">{html.escape(cable["id"])}</span> '
        f'<span class="subject">{html.escape(cable["subject"])}</span>'
        f'<div class="meta">{meta}</div></div>'
        f'{note}<div class="cable-body">{"".join(rows)}</div></div>'
    )


def error_html(message: str) -> str:
    return f'<div class="panel-note error">{html.escape(message)}</div>'


def status_markdown(service: Service, answer: Answer | None = None) -> str:
    """Which index, which backend, how long the last answer took — or how the build is going."""
    if service.error:
        return f"⚠ {md_text(service.error)}"
    if not service.ready.is_set():
        elapsed = time.monotonic() - service.started
        return (f"⏳ Building the demo index (first start only, a few minutes): {elapsed:.0f} s so far, "
                f"{service.build_progress()} (stored in batches; details in the terminal)")
    s, settings = service.stats, service.settings
    backend = settings.llm + (f" ({settings.llm_model})" if settings.llm_model else "")
    parts = [f"**Index** {s.get('cables') or 0:,} cables, {s.get('paragraphs') or 0:,} paragraphs "
             f"({md_text(str(s.get('location', '')))})",
             f"**Answers** {md_text(backend)}, {settings.retrieval} retrieval"]
    if answer is not None:
        t = answer.timings_ms
        steps = ", ".join(f"{k} {t[k]:.0f} ms" for k in ("retrieve", "rank", "answer", "verify") if k in t)
        parts.append(f"**Last answer** {t.get('total', 0) / 1000:.2f} s ({steps})")
    return " · ".join(parts)


# ── the chat UI ───────────────────────────────────────────────────────────────────────────────────

CSS = """
#status { font-size: .9em; }
.cite { display: inline-block; padding: 0 .45em; margin: 0 .15em; border: 1px solid; border-radius: .7em;
        font: .82em/1.5 ui-monospace, Consolas, monospace; white-space: nowrap; cursor: pointer;
        text-decoration: none !important; }
.cite-supported { background: #e8f0fe; border-color: #8ab0ea; color: #0b4a9e !important; }
.cite-weak { background: #fff4e0; border-color: #d9962b; border-style: dashed; color: #8a4b00 !important; }
.refusal { display: inline-block; padding: 0 .5em; margin-right: .3em; border-radius: .3em;
           background: #fde8e8; color: #8a1c1c; font-weight: 600; }
.unsupported { color: #8a4b00; font-size: .9em; }
.short-answer { font-weight: 600; font-size: 1.05em; }
mark.answer { background: #fff1a8; padding: 0 .1em; border-radius: .2em; }
.panel-note { padding: .6em; color: var(--body-text-color-subdued); }
.panel-note.error { color: #b42318; }
.para-card { border: 1px solid var(--border-color-primary); border-left: 4px solid #8ab0ea; border-radius: 8px;
             padding: .55em .8em; margin-bottom: .7em; }
.para-card.weak { border-left-color: #d9962b; }
.card-head { display: flex; align-items: center; gap: .5em; }
.badge { font-size: .75em; padding: 0 .4em; border-radius: .4em; background: #e8f0fe; color: #0b4a9e; }
.badge.weak { background: #fff4e0; color: #8a4b00; }
/* the bundled semibold face renders capitals unevenly; subjects are often all capitals */
.subject { font-weight: 600; margin-top: .3em; font-family: ui-sans-serif, system-ui, sans-serif; }
.meta { font-size: .82em; color: var(--body-text-color); opacity: .8; }
.heading { font-style: italic; margin-top: .3em; }
.para-text { margin: .35em 0 0; line-height: 1.45; white-space: pre-wrap; }
mark.support { background: #fff0a0; color: #1f1f1f; padding: 0 .1em; border-radius: .2em; }
.cable-head { padding-bottom: .4em; border-bottom: 1px solid var(--border-color-primary); }
.cable-id { font-family: ui-monospace, Consolas, monospace; font-weight: 600; }
.cable-body { position: relative; max-height: 62vh; overflow-y: auto; padding-top: .4em; }
.cable-para { display: flex; gap: .6em; padding: .35em .5em; border-radius: 6px; }
.cable-para.hl { background: #fff6c9; color: #1f1f1f; outline: 2px solid #e5c100; }
.pnum { min-width: 2.6em; font-weight: 600; color: var(--body-text-color-subdued); }
"""

# Citation chips are plain links (the chat's HTML sanitiser keeps those); a click puts the
# citation into the cable box and presses Open, so chips and typed ids take the same path.
CLICK_JS = """
() => {
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[href^='#cable=']");
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const match = /^#cable=([A-Z0-9-]+)&p=(\\d+)$/.exec(link.getAttribute("href"));
    const box = document.querySelector("#cable-input textarea, #cable-input input");
    const open = document.querySelector("#cable-open");
    if (!match || !box || !open) return;
    box.value = match[1] + " ¶" + match[2];
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => open.click(), 0);
  }, true);
}
"""

SCROLL_JS = """
() => {
  setTimeout(() => {
    const para = document.querySelector("#cable-view .cable-para.hl");
    const body = para && para.closest(".cable-body");
    if (!body) return;
    body.scrollTop = para.offsetTop - body.clientHeight / 3;
    body.scrollIntoView({ block: "nearest" });
  }, 150);
}
"""

CABLE_REF = re.compile(r"^\s*([^\s¶]+)\s*(?:¶\s*(\d{1,4})|\s(\d{1,4}))?\s*$")


def parse_cable_ref(value: str) -> tuple[str, int | None]:
    """'09PHNOMPENH637 ¶1', '09PHNOMPENH637 1' or '09PHNOMPENH637' → (validated id, paragraph)."""
    match = CABLE_REF.match(value or "")
    if not match:
        raise RagError("enter a cable id, e.g. 09PHNOMPENH637 or 09PHNOMPENH637 ¶1")
    number = match.group(2) or match.group(3)
    return validate_cable_id(match.group(1)), int(number) if number else None


@dataclass
class ChatUI:
    """Event handlers of the chat page. The conversation lives in a gr.State list of turns:
    {"role", "content" (plain text, what the condense step reads), "display" (chat markdown),
    "history" (False for failed turns, which follow-ups should not build on)}."""

    service: Service

    @staticmethod
    def chat(turns: list[dict]) -> list[dict]:
        return [{"role": t["role"], "content": t["display"]} for t in turns]

    @staticmethod
    def history(turns: list[dict]) -> list[dict]:
        return [{"role": t["role"], "content": t["content"]} for t in turns if t["history"]][-HISTORY_TURNS:]

    def respond(self, message, turns, origin, classification, tag, date_from, date_to):
        """Chat handler: streams the answer into the chat, then shows the verified answer,
        its cited paragraphs and the timings."""
        question = (message or "").strip()
        if not question:
            yield (gr.skip(),) * 6
            return
        history = self.history(turns)
        user = {"role": "user", "content": question, "display": md_text(question), "history": True}
        reply = {"role": "assistant", "content": "", "display": "_Searching the cables…_", "history": True}
        yield self.chat(turns + [user, reply]), turns, "", gr.skip(), gr.skip(), gr.skip()
        filters = {"origin": origin, "classification": classification, "tag": tag,
                   "date_from": (date_from or "").strip(), "date_to": (date_to or "").strip()}
        try:
            answer, partial = None, ""
            for item in self.service.stream(question, history, filters):
                if isinstance(item, Answer):
                    answer = item
                elif self.service.can_stream:
                    partial += item
                    reply["display"] = partial_markdown(partial)
                    yield self.chat(turns + [user, reply]), turns, "", gr.skip(), gr.skip(), gr.skip()
        except RagError as exc:
            answer, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 — shown in the chat, not as a traceback
            log.exception("answering %r failed", question)
            answer, error = None, f"internal error ({type(exc).__name__}); see the server log"
        if answer is None:
            user["history"] = reply["history"] = False
            reply["display"] = f'<span class="unsupported">⚠ {md_text(error)}</span>'
            turns = turns + [user, reply]
            yield self.chat(turns), turns, "", gr.skip(), gr.skip(), gr.skip()
            return
        reply.update(content=answer.text, display=answer_markdown(answer))
        turns = turns + [user, reply]
        yield (self.chat(turns), turns, "", paragraphs_html(answer), status_markdown(self.service, answer),
               gr.Tabs(selected="cited"))

    def open_cable(self, value):
        """Cable box handler: the whole cable, the asked-for paragraph highlighted."""
        try:
            cable_id, paragraph = parse_cable_ref(value)
            return cable_html(self.service.cable(cable_id), paragraph), gr.Tabs(selected="cable")
        except RagError as exc:
            return error_html(str(exc)), gr.Tabs(selected="cable")

    def refresh(self):
        """Page load and timer tick: status line, and filter choices once the index is open."""
        status = status_markdown(self.service)
        if not self.service.ready.is_set() and not self.service.error:
            return status, gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=True)
        c = self.service.choices
        any_ = [("any", "")]
        return (status, gr.Dropdown(choices=any_ + c["origins"], value=""),
                gr.Dropdown(choices=any_ + c["classifications"], value=""),
                gr.Dropdown(choices=any_ + c["tags"], value=""), gr.Timer(active=False))

    @staticmethod
    def clear():
        """A new chat: no turns, no question, no cited paragraph, no cable id or cable open."""
        return ([], [], "", '<div class="panel-note">Ask a question: the paragraphs it cites appear here.</div>', "",
                '<div class="panel-note">Click a citation or enter a cable id.</div>')

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Cable questions", analytics_enabled=False) as blocks:
            gr.Markdown("## Questions on US diplomatic cables\nEvery claim cites the paragraph it comes "
                        "from; click a citation to read the whole cable.")
            status = gr.Markdown(elem_id="status")
            turns = gr.State([])
            with gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(elem_id="chat", height=520, show_label=False, latex_delimiters=[],
                                         buttons=["copy"], placeholder="Ask about the cables in the index.")
                    with gr.Row():
                        question = gr.Textbox(placeholder="Ask a question…", show_label=False, scale=6,
                                              elem_id="question", max_length=MAX_QUESTION, submit_btn=False)
                        ask = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="ask")
                        new = gr.Button("New chat", scale=1, min_width=120)
                    gr.Examples(EXAMPLES, inputs=[question], label="Examples")
                    with gr.Accordion("Filters", open=False):
                        with gr.Row():
                            origin = gr.Dropdown(label="Origin", choices=[("any", "")], value="", filterable=True)
                            classification = gr.Dropdown(label="Classification", choices=[("any", "")], value="")
                            tag = gr.Dropdown(label="Tag", choices=[("any", "")], value="", filterable=True)
                        with gr.Row():
                            date_from = gr.Textbox(label="From date", placeholder="YYYY-MM-DD")
                            date_to = gr.Textbox(label="To date", placeholder="YYYY-MM-DD")
                with gr.Column(scale=2):
                    with gr.Row():
                        cable_box = gr.Textbox(placeholder="Cable id, e.g. 09PHNOMPENH637 ¶1", show_label=False,
                                               scale=4, elem_id="cable-input", max_length=64, submit_btn=False)
                        open_button = gr.Button("Open", scale=1, min_width=90, elem_id="cable-open")
                    with gr.Tabs(selected="cited") as tabs:
                        with gr.Tab("Cited paragraphs", id="cited"):
                            cited = gr.HTML(self.clear()[3], elem_id="cited")
                        with gr.Tab("Cable", id="cable"):
                            cable_view = gr.HTML(self.clear()[5], elem_id="cable-view")
            timer = gr.Timer(2.0)

            chat_outputs = [chatbot, turns, question, cited, status, tabs]
            chat_inputs = [question, turns, origin, classification, tag, date_from, date_to]
            for trigger in (question.submit, ask.click):
                trigger(self.respond, chat_inputs, chat_outputs, show_progress="minimal")
            for trigger in (cable_box.submit, open_button.click):
                trigger(self.open_cable, [cable_box], [cable_view, tabs]).then(None, js=SCROLL_JS)
            for trigger in (new.click, chatbot.clear):
                trigger(self.clear, None, [chatbot, turns, question, cited, cable_box, cable_view])
            refresh_outputs = [status, origin, classification, tag, timer]
            blocks.load(self.refresh, None, refresh_outputs)
            timer.tick(self.refresh, None, refresh_outputs, show_progress="hidden")
        return blocks


# ── the JSON API ──────────────────────────────────────────────────────────────────────────────────


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    history: list[Turn] = Field(default_factory=list, max_length=50)
    filters: dict | None = None
    llm: str | None = None


def basic_auth(credentials: tuple[str, str] | None):
    """A dependency that requires the app's user and password (HTTP Basic) when it has one:
    gradio's login protects only the UI."""
    security = HTTPBasic(auto_error=False)

    def check(given: HTTPBasicCredentials | None = Depends(security)) -> None:
        if credentials is None:
            return
        ok = given is not None and secrets.compare_digest(given.username.encode(), credentials[0].encode()) \
            and secrets.compare_digest(given.password.encode(), credentials[1].encode())
        if not ok:
            raise HTTPException(401, "login required", headers={"WWW-Authenticate": 'Basic realm="cablerag"'})

    return check


def api_router(service: Service, credentials: tuple[str, str] | None) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(basic_auth(credentials))])

    @router.post("/ask")
    def ask(request: AskRequest) -> dict:
        """Answer a question; the answer, its checked citations, the cited paragraphs, timings."""
        history = [t.model_dump() for t in request.history][-HISTORY_TURNS:]
        return service.ask(request.question, history, request.filters, request.llm).to_json()

    @router.get("/cables/{cable_id:path}")
    def cable(cable_id: str) -> dict:
        """A whole cable: metadata and every paragraph (the path converter makes every id,
        slashes included, reach validation instead of another route)."""
        return service.cable(cable_id)

    @router.get("/health")
    def health() -> dict:
        return service.health()

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unknown(rest: str) -> JSONResponse:
        return JSONResponse({"detail": "no such API endpoint"}, status_code=404)

    return router


def error_responses(app: FastAPI) -> None:
    """Errors become one-line JSON with a 4xx status (503 while the index is not open)."""
    statuses = ((CableNotFound, 404), (NotReady, 503), (RagError, 400))
    for exc_type, status in statuses:
        app.add_exception_handler(exc_type, lambda _r, exc, s=status: JSONResponse({"detail": str(exc)}, status_code=s))

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)


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
    return gr.mount_gradio_app(
        app, ChatUI(service).build(), path="/", auth=credentials, css=CSS, js=CLICK_JS,
        footer_links=["settings"], run_history=False, ssr_mode=False,
    )


# ── serving ───────────────────────────────────────────────────────────────────────────────────────


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
