"""The chat page: a gradio Blocks app whose handlers answer through the `Service` and show
what `rag.render.html` makes of the answer, the cited paragraphs and the cables.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

# Before gradio is imported: it would otherwise report usage over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from rag.answer.pipeline import Answer  # noqa: E402
from rag.check.checker import MAX_CHECK  # noqa: E402
from rag.citation import Citation
from rag.errors import RagError  # noqa: E402
from rag.filters import Filters  # noqa: E402
from rag.render.html import (answer_markdown, cable_html, check_html, error_html, md_text,  # noqa: E402
                             paragraphs_html, partial_markdown)
from rag.serve.ratelimit import Limiter, RateLimited  # noqa: E402
from rag.serve.service import HISTORY_TURNS, Service  # noqa: E402
from rag.validate import MAX_QUESTION, check_question  # noqa: E402

log = logging.getLogger(__name__)

EXAMPLES = [
    "Who leads Cambodia's police TIP response?",
    "When does child labor in Costa Rica peak, according to UNICEF?",
    "Where and when was arms trafficker Viktor Bout arrested?",
    "What became of the nuclear fuel rods stolen from the Kinshasa research reactor?",
]


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
.cable-refs { padding: .2em .5em .5em; }
.refs-label { font-size: .82em; font-weight: 600; color: var(--body-text-color-subdued); }
.cable-ref { font-size: .9em; }
.cable-link, .ref-absent { font-family: ui-monospace, Consolas, monospace; }
.cable-link { cursor: pointer; }
.ref-absent { color: var(--body-text-color-subdued); }
.cite-unsupported { background: #fde8e8; border-color: #e08a8a; color: #8a1c1c !important; }
.cite-unknown_paragraph, .cite-unknown_cable { background: #f1f1f1; border-color: #999; border-style: dotted;
                                               color: #444 !important; }
.cite-suggested { background: #e9f7ec; border-color: #7cc48d; color: #1d6b32 !important; }
.check-summary { padding: .4em 0; font-weight: 600; }
.checked-text { white-space: pre-wrap; line-height: 1.7; }
.claim { border-radius: .25em; padding: .05em 0; }
.claim-supported, .legend-supported { background: #e8f0fe; color: #1f1f1f; }
.claim-weak, .legend-weak { background: #fff4e0; color: #1f1f1f; }
.claim-unsupported, .claim-unknown_paragraph, .claim-unknown_cable, .legend-unsupported { background: #fde8e8;
                                                                                          color: #1f1f1f; }
.claim-uncited, .legend-uncited { text-decoration: underline dotted #999; }
.check-legend { display: flex; flex-wrap: wrap; gap: .5em; padding-bottom: .5em; font-size: .85em; }
.legend { padding: 0 .4em; border-radius: .25em; }
/* The checked text as its Markdown renders; the markers stay in the page, hidden. */
.md-mark { display: none; }
.md-h1, .md-h2, .md-h3, .md-h4, .md-h5, .md-h6 { font-weight: 600; margin: .3em 0 .1em; }
.md-h1 { font-size: 1.35em; } .md-h2 { font-size: 1.2em; } .md-h3 { font-size: 1.08em; }
.md-blank { height: .7em; }
.md-li { padding-left: 1em; }
.md-quote { border-left: 3px solid var(--border-color-primary); padding-left: .7em; }
.md-b { font-weight: 600; } .md-em { font-style: italic; }
.md-code { font-family: ui-monospace, Consolas, monospace; font-size: .92em; }
.md-link { text-decoration: underline dotted; }
"""

# Citation chips and the cable view's references are plain links (the chat's HTML sanitiser
# keeps those); a click puts the citation or cable id into the cable box and presses Open, so
# chips, references and typed ids take the same path.
CLICK_JS = """
() => {
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[href^='#cable=']");
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const match = /^#cable=([A-Z0-9-]+)(?:&p=(\\d+))?$/.exec(link.getAttribute("href"));
    const box = document.querySelector("#cable-input textarea, #cable-input input");
    const open = document.querySelector("#cable-open");
    if (!match || !box || !open) return;
    box.value = match[2] ? match[1] + " ¶" + match[2] : match[1];
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => open.click(), 0);
  }, true);
}
"""

# Gradio updates the cable view in place, so its body keeps the scroll of the cable shown
# before: a cable opened at a paragraph scrolls to it, one opened whole starts at its top.
SCROLL_JS = """
() => {
  setTimeout(() => {
    const body = document.querySelector("#cable-view .cable-body");
    if (!body) return;
    const para = body.querySelector(".cable-para.hl");
    body.scrollTop = para ? Math.max(0, para.offsetTop - body.clientHeight / 3) : 0;
    (para ? body : body.closest(".cable")).scrollIntoView({ block: "nearest" });
  }, 150);
}
"""

@dataclass
class ChatUI:
    """Event handlers of the chat page. The conversation lives in a gr.State list of turns:
    {"role", "content" (plain text, what the condense step reads), "display" (chat markdown),
    "history" (False for failed turns, which follow-ups should not build on)}."""

    service: Service
    limiter: Limiter | None = None

    def count(self, request: gr.Request | None) -> None:
        """One question of the client against RAG_RATE_LIMIT, shared with the APIs: gradio serves
        these handlers as an API too (/gradio_api/call/respond), which must not bypass it."""
        if self.limiter is not None:
            client = request.client if request is not None else None
            self.limiter.hit(client.host if client is not None else "unknown")

    @staticmethod
    def chat(turns: list[dict]) -> list[dict]:
        return [{"role": t["role"], "content": t["display"]} for t in turns]

    @staticmethod
    def history(turns: list[dict]) -> list[dict]:
        return [{"role": t["role"], "content": t["content"]} for t in turns if t["history"]][-HISTORY_TURNS:]

    def respond(self, message, turns, origin, classification, tag, date_from, date_to, request: gr.Request = None):
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
        try:
            answer, partial = None, ""
            question = check_question(question)
            self.count(request)
            filters = Filters.parse({"origin": origin, "classification": classification, "tag": tag,
                                     "date_from": (date_from or "").strip(), "date_to": (date_to or "").strip()})
            for item in self.service.stream(question, history, filters):
                if isinstance(item, Answer):
                    answer = item
                elif self.service.can_stream:
                    partial += item
                    reply["display"] = partial_markdown(partial)
                    yield self.chat(turns + [user, reply]), turns, "", gr.skip(), gr.skip(), gr.skip()
        except (RagError, RateLimited) as exc:
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
            if not (value or "").strip():
                raise RagError("enter a cable id, e.g. 09PHNOMPENH637 or 09PHNOMPENH637 ¶1")
            ref = Citation.parse(value)
            return cable_html(self.service.cable(ref.cable_id), ref.paragraph), gr.Tabs(selected="cable")
        except RagError as exc:
            return error_html(str(exc)), gr.Tabs(selected="cable")

    def check(self, text, request: gr.Request = None):
        """Check tab handler: the text with each claim coloured by its status and its chips."""
        try:
            self.count(request)
            return check_html(self.service.check(text or ""), text or "")
        except (RagError, RateLimited) as exc:
            return error_html(str(exc))
        except Exception as exc:  # noqa: BLE001 — shown in the tab, not as a traceback
            log.exception("checking a text failed")
            return error_html(f"internal error ({type(exc).__name__}); see the server log")

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
                    with gr.Tabs():
                        with gr.Tab("Ask", id="ask"):
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
                        with gr.Tab("Check a text", id="check"):
                            check_box = gr.Textbox(
                                lines=10, max_lines=30, max_length=MAX_CHECK, show_label=False, elem_id="check-input",
                                placeholder="Paste a text that cites cables ([09PHNOMPENH637 ¶1], 09PHNOMPENH637, a "
                                "WikiLeaks link): each claim is checked against the paragraph it cites.")
                            check_run = gr.Button("Check", variant="primary", elem_id="check-run")
                            check_result = gr.HTML(elem_id="check-result")
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
                # As many at once as the service answers (gradio's default is one); the rest wait
                # in gradio's queue, which shows their place, not in threads the server shares.
                trigger(self.respond, chat_inputs, chat_outputs, show_progress="minimal",
                        concurrency_limit=self.service.workers, concurrency_id="answer")
            check_run.click(self.check, [check_box], [check_result], show_progress="minimal",
                            concurrency_limit=self.service.workers, concurrency_id="answer")
            for trigger in (cable_box.submit, open_button.click):
                trigger(self.open_cable, [cable_box], [cable_view, tabs]).then(None, js=SCROLL_JS)
            for trigger in (new.click, chatbot.clear):
                trigger(self.clear, None, [chatbot, turns, question, cited, cable_box, cable_view])
            refresh_outputs = [status, origin, classification, tag, timer]
            blocks.load(self.refresh, None, refresh_outputs)
            timer.tick(self.refresh, None, refresh_outputs, show_progress="hidden")
        return blocks


def mount_ui(app: FastAPI, service: Service, credentials: tuple[str, str] | None = None,
             limiter: Limiter | None = None) -> FastAPI:
    """`app` with the chat page mounted at /, behind gradio's login when there are credentials;
    its questions and checks count against `limiter`."""
    return gr.mount_gradio_app(
        app, ChatUI(service, limiter).build(), path="/", auth=credentials, css=CSS, js=CLICK_JS,
        footer_links=["settings"], run_history=False, ssr_mode=False,
        app_kwargs={"openapi_url": None},  # gradio's own schema would be outside the API's login
    )
