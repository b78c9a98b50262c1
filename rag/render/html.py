"""HTML and chat Markdown for answers, citations, cited paragraphs, whole cables and checked texts.

Pure functions of their arguments: every string from a cable or a user is escaped here, and
nothing here knows how an answer was found.
"""

from __future__ import annotations

import html
import itertools
import re
from typing import TYPE_CHECKING

from rag.check.cite import CheckedCitation, overlap
from rag.citation import Citation
from rag.text import split_sentences
from rag.types import Hit

if TYPE_CHECKING:
    from rag.answer.pipeline import Answer
    from rag.check.checker import CitationCheck, Report, Suggestion

_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#|~$])")
_MD_LINE_START = re.compile(r"^(\s*\d*)([.)]|[-+>=])", re.MULTILINE)


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
        if citation not in checks:
            continue  # a tag no check verified (quoted from a cable, or a model's) stays text, not a chip
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


def cable_link(cable: dict) -> str:
    """One cable of a reference list: its id as a link that opens it in the cable view (see
    CLICK_JS) when the index holds it, plain text marked "not in this index" when not; its
    date and subject beside it."""
    cable_id = html.escape(cable["id"])
    if not cable.get("in_index", True):
        return (f'<div class="cable-ref"><span class="ref-absent">{cable_id}</span> '
                f'<span class="meta">not in this index</span></div>')
    return (f'<div class="cable-ref"><a class="cable-link" href="#cable={cable_id}">{cable_id}</a> '
            f'<span class="meta">{meta_line(cable.get("date", ""), cable.get("subject", ""))}</span></div>')


def references_html(cable: dict) -> str:
    """The cables this cable references and the cables of the index that reference it."""
    lists = [(label, cable.get(key) or []) for label, key in
             (("References", "references"), ("Referenced by", "referenced_by"))]
    return "".join(f'<div class="cable-refs"><div class="refs-label">{label} ({len(cables)})</div>'
                   f'{"".join(cable_link(c) for c in cables)}</div>' for label, cables in lists if cables)


def cable_html(cable: dict, highlight: int | None) -> str:
    """The whole cable, paragraph numbers shown, paragraph `highlight` marked (SCROLL_JS finds
    it), after the cables it references and that reference it."""
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
        f'{note}<div class="cable-body">{references_html(cable)}{"".join(rows)}</div></div>'
    )


def check_chip(check: CitationCheck) -> str:
    """A checked citation of someone's text: its status, and a link to the paragraph it resolves
    to (a cable-level citation opens at its best paragraph; a cable not in the index has none)."""
    paragraph = check.paragraph
    if paragraph is None and check.suggested and check.suggested.cable_id == check.cable_id:
        paragraph = check.suggested.paragraph
    score = "" if check.score is None else f", support score {check.score:.2f}"
    best = f" (¶{paragraph})" if check.paragraph is None and paragraph is not None else ""
    label = html.escape(str(check))
    title = html.escape(f"{check.status}{score}{best}")
    if check.status == "unknown_cable":
        return f'<span class="cite cite-{check.status}" title="{title}">{label}</span>'
    href = f"#cable={html.escape(check.cable_id)}" + (f"&p={paragraph}" if paragraph is not None else "")
    return f'<a class="cite cite-{check.status}" href="{href}" title="{title}">{label}</a>'


def suggestion_chip(suggestion: Suggestion, prefix: str) -> str:
    """A paragraph to cite instead (or to cite at all), as a link that opens it."""
    href = f"#cable={html.escape(suggestion.cable_id)}&p={suggestion.paragraph}"
    title = html.escape(f"{prefix} {suggestion}: support score {suggestion.score:.2f}")
    return f'<a class="cite cite-suggested" href="{href}" title="{title}">→ {html.escape(str(suggestion))}</a>'


# The Markdown a draft is written in, as the check tab shows it: heading and quote markers at the
# start of a line, list items (their markers read well as they are), and inline pairs within a
# line. Markers stay in the HTML, hidden by CSS (.md-mark), so every character of the text is
# there to select and compare.
_MD_BLOCKS = (
    ("h", re.compile(r"[ \t]{0,3}(#{1,6})[ \t]+")),
    ("quote", re.compile(r"[ \t]{0,3}>[ \t]?")),
)
_MD_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
_MD_INLINE = (
    ("code", re.compile(r"(`)(?=[^`\n]*[^`\s])([^`\n]+)(`)")),
    ("link", re.compile(r"(\[)([^\]\n]+)(\]\((?:[^()\s]|\([^()\s]*\))*\))")),
    ("b", re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)(\1)")),
    ("em", re.compile(r"(?<![\w*])([*_])(?=[^\s*_])(.+?)(?<=[^\s*_])(\1)(?![\w*])")),
)
CHECK_LEGEND = (("supported", "supported"), ("weak", "weak"), ("unsupported", "unsupported"),
                ("uncited", "no citation"))


def _markdown_of(text: str, hidden: list[bool]) -> tuple[list[str], list[str], list[str]]:
    """Per line of `text` its block (p, h1 to h6, li, quote, blank), and per character the marker
    it is part of ("" for text) and its inline style; characters already `hidden` (citations,
    which chips replace) are neither."""
    blocks, marks, styles = [], [""] * len(text), [""] * len(text)
    at = 0
    for line in text.split("\n"):
        block = "blank" if not line.strip() else "p"
        for kind, pattern in _MD_BLOCKS:
            match = pattern.match(line)
            if match and match.end() < len(line) and not any(hidden[at:at + match.end()]):
                block = f"h{len(match.group(1))}" if kind == "h" else kind
                marks[at:at + match.end()] = ["block"] * match.end()
                break
        else:
            block = "li" if _MD_LIST_ITEM.match(line) else block
        blocks.append(block)
        for kind, pattern in _MD_INLINE:
            for match in pattern.finditer(line):
                s, e = at + match.start(), at + match.end()
                if any(hidden[s:e]) or any(marks[s:e]) or any("md-code" in style for style in styles[s:e]):
                    continue
                opening, closing = at + match.end(1), at + match.start(3)
                marks[s:opening] = ["inline"] * (opening - s)
                marks[closing:e] = ["inline"] * (e - closing)
                for i in range(opening, closing):
                    styles[i] = f"{styles[i]} md-{kind}".strip()
        at += len(line) + 1
    return blocks, marks, styles


def check_html(report: Report, text: str) -> str:
    """A checked text as its Markdown renders (headings, lists, quotes, emphasis, code; a link
    shows its words, not live), each claim marked by its status, each citation replaced by its
    chips, with the paragraph to cite instead after a citation that does not hold and after an
    uncited claim that could cite one; a summary and a legend of the colours above."""
    claim_of: list[int | None] = [None] * len(text)
    hidden = [False] * len(text)
    inserts: dict[int, list[tuple[int | None, str]]] = {}
    pos = 0
    for n, claim in enumerate(report.claims):
        start, end = max(claim.start, pos), max(claim.end, pos)
        claim_of[start:end] = [n] * (end - start)
        mentions: dict = {}
        for c in claim.citations:
            mentions.setdefault(c.mention, []).append(c)
        for mention, checks in mentions.items():
            hidden[mention.start:mention.end] = [True] * (mention.end - mention.start)
            for c in checks:
                chips = inserts.setdefault(mention.start, [])
                chips.append((n, check_chip(c)))
                if c.suggested and not (c.paragraph is None and c.suggested.cable_id == c.cable_id):
                    chips.append((n, suggestion_chip(c.suggested, "cite instead")))
        if claim.suggested:
            inserts.setdefault(end, []).append((None, suggestion_chip(claim.suggested, "could cite")))
        pos = end
    blocks, marks, styles = _markdown_of(text, hidden)

    lines, at = [], 0
    for line, block in zip(text.split("\n"), blocks):
        # Pieces of the line: (claim, style, html), runs of one claim then one style joined.
        pieces: list[tuple[int | None, str, str]] = []
        for i in range(at, at + len(line) + 1):
            pieces += [(n, "", chip) for n, chip in inserts.get(i, [])]
            if i < at + len(line) and not hidden[i]:
                style = "md-mark" if marks[i] else styles[i]
                pieces.append((claim_of[i], style, html.escape(text[i])))
        lines.append(f'<div class="md-{block}">{_claim_runs(pieces, report)}</div>')
        at += len(line) + 1
    s = report.summary
    summary = (f"{s['claims']} claims: {s['cited']} cited ({s['supported']} supported, {s['weak']} weak, "
               f"{s['unsupported']} unsupported, {s['unknown']} unknown), {s['uncited']} uncited")
    legend = "".join(f'<span class="legend legend-{status}">{label}</span>' for status, label in CHECK_LEGEND)
    return (f'<div class="check-summary">{summary}</div><div class="check-legend">{legend}</div>'
            f'<div class="checked-text">{"".join(lines)}</div>')


def _claim_runs(pieces: list[tuple[int | None, str, str]], report: Report) -> str:
    out = []
    for n, run in itertools.groupby(pieces, key=lambda piece: piece[0]):
        styled = "".join(f'<span class="{style}">{"".join(p[2] for p in part)}</span>' if style else
                         "".join(p[2] for p in part)
                         for style, part in itertools.groupby(run, key=lambda piece: piece[1]))
        if n is None:
            out.append(styled)
        else:
            status = html.escape(report.claims[n].status)
            out.append(f'<span class="claim claim-{status}" title="{status}">{styled}</span>')
    return "".join(out)


def error_html(message: str) -> str:
    return f'<div class="panel-note error">{html.escape(message)}</div>'
