"""Hostile cable text and hostile LLM output through every renderer of rag/render/html.py (issues 12, 13).

Script tags, event-handler attributes, attribute breakers, markdown links and images, entities,
backticks, newlines and fake citation tags go in as cable text, subject, metadata, heading,
question, answer, short answer, claims and error messages. What comes out must hold only the
tags the renderers write themselves, every attribute double-quoted with nothing able to close it,
no event handler, no `javascript:` link, and a citation chip only for a verified citation. The
chat Markdown is also rendered by a permissive Markdown renderer (raw HTML on, every link
scheme accepted) so that markdown syntax slipping through shows as a link, image or heading.

Pure functions, no index, no model: the fast tier.
"""

from __future__ import annotations

import html
import re

import pytest

from rag.answer.pipeline import Answer
from rag.cables import read_cable_file
from rag.check.checker import STATUSES, UNCITED, CitationCheck, ClaimCheck, Report, Suggestion
from rag.check.cite import CheckedCitation
from rag.check.claims import split_text
from rag.chunk import chunk_metadata
from rag.citation import Citation, Mention, find_citations
from rag.index.cable import cable_json
from rag.index.demo import DEMO_DIR
from rag.render import html as render
from rag.types import Hit

CABLE = read_cable_file(DEMO_DIR / "09PHNOMPENH637.txt")
REAL = Citation("09PHNOMPENH637", 1)

SCRIPT = "<script>alert(1)</script>"
PAYLOADS = [
    SCRIPT,
    "<SCRIPT SRC=//evil/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)",
    "\" onmouseover=\"alert(1)\" x=\"",
    "[click](javascript:alert(1))",
    "![x](http://evil/x.png)",
    "[x]: javascript:alert(1)\n\n[x]",
    "<javascript:alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "&lt;script&gt;alert(1)&lt;/script&gt; &#60;img src=x onerror=alert(1)&#62; &amp;",
    "`<script>alert(1)</script>` and ```js\nalert(1)\n```",
    "first line\n\n# heading\n- item\n+ item\n* item\n> quote\n1. one\n2) two\n---\n====\n    indented",
    "**bold** _em_ ~~strike~~ | a | b |\n|---|---|\n$x$ \\[escaped\\] \\",
    "He wrote “see [99FAKE1 ¶3] and [09PHNOMPENH637 ¶99]”, then [09PHNOMPENH637, para 42].",
]
HOSTILE = " ".join(PAYLOADS)
FAKE_TAGS = ("[99FAKE1 ¶3]", "[09PHNOMPENH637 ¶99]")

# What the renderers write themselves; a permissive Markdown renderer adds <p> and <br>.
OUR_TAGS = {"a", "span", "div", "p", "mark"}
MARKDOWN_TAGS = OUR_TAGS | {"br"}
OUR_ATTRS = {"class", "href", "title"}
TAG = re.compile(r'</([a-z]+)\s*>|<([a-z]+)((?:\s+[a-z-]+="[^"<>]*")*)\s*/?>')
ATTR = re.compile(r'\s+([a-z-]+)="([^"<>]*)"')
ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x27|#39);")
CHIP_HREF = re.compile(r"#cable=([^&]*)&(?:amp;)?p=(\d+)")


def safe_tags(out: str, allowed: set[str] = OUR_TAGS) -> list[tuple[str, dict[str, str]]]:
    """The opening tags of `out`, after asserting that no markup from the input survives:
    every `<` starts a tag the renderers write, every attribute is one of theirs and
    double-quoted with no quote or bracket inside, no event handler or `javascript:` URL, and
    the text between tags holds no bracket and only escaped entities."""
    low = out.lower()
    for needle in ("<script", "<img", "<svg", "<iframe", "<style", "<object"):
        assert needle not in low, f"{needle} survives in {out!r}"
    tags: list[tuple[str, dict[str, str]]] = []
    for at in (m.start() for m in re.finditer("<", out)):
        m = TAG.match(out, at)
        assert m, f"markup not written by the renderer at {out[at:at + 60]!r} in {out!r}"
        name = m.group(1) or m.group(2)
        assert name in allowed, f"<{name}> in {out!r}"
        outside_values = re.sub(r'"[^"]*"', '""', m.group(0))
        assert not re.search(r"\son\w+\s*=", outside_values, re.IGNORECASE), f"event handler in {m.group(0)!r}"
        if m.group(2):
            attrs = dict(ATTR.findall(m.group(3)))
            assert set(attrs) <= OUR_ATTRS, f"attributes {set(attrs)} in {m.group(0)!r}"
            for key, value in attrs.items():
                if key == "href":  # a fragment the page's click handler reads, never a scheme
                    url = re.sub(r"[\s\x00-\x1f]", "", html.unescape(value)).lower()
                    assert not url.startswith(("javascript:", "data:", "vbscript:")), f"script URL in {m.group(0)!r}"
                    assert value.startswith("#cable="), f"a link out of the page: {m.group(0)!r}"
                else:
                    assert all(ENTITY.match(value, i) for i in _amps(value)), f"raw & in {m.group(0)!r}"
            tags.append((name, attrs))
    text = TAG.sub("", out)
    assert "<" not in text and ">" not in text, f"a bracket left in the text of {out!r}"
    assert all(ENTITY.match(text, i) for i in _amps(text)), f"an unescaped entity in {out!r}"
    return tags


def _amps(text: str) -> list[int]:
    return [m.start() for m in re.finditer("&", text)]


def visible(out: str) -> str:
    """What a reader sees of `out`: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(TAG.sub(" ", out)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


def markdown(md: str) -> str:
    """The chat Markdown as a permissive renderer shows it: raw HTML passed, every link scheme
    allowed, so the escaping in md_text is all that stands between the input and a link."""
    markdown_it = pytest.importorskip("markdown_it")
    parser = markdown_it.MarkdownIt("commonmark", {"html": True})
    parser.validateLink = lambda url: True
    return parser.render(md)


def chips(out: str) -> list[Citation]:
    """The citation chips of `out`, read from their links (the cable view's links to other
    cables are not chips: see `cable_links`)."""
    found = []
    for name, attrs in safe_tags(out, MARKDOWN_TAGS):
        if name == "a" and attrs["class"] != "cable-link":
            assert attrs["class"].split()[0] == "cite", attrs
            m = CHIP_HREF.fullmatch(attrs["href"])
            assert m, attrs
            found.append(Citation(html.unescape(m.group(1)), int(m.group(2))))
    return found


def real_hit(number: int, **changes) -> Hit:
    """A paragraph of 09PHNOMPENH637 as the store returns it; `changes` replace its text or metadata."""
    p = CABLE.paragraph(number)
    meta = {**chunk_metadata(CABLE, p, 0, 1), **changes.get("metadata", {})}
    return Hit(p.key, CABLE.id, p.number, changes.get("text", p.text), meta, 0.9)


def first_sentence(number: int) -> str:
    text = CABLE.paragraph(number).text
    return text[: text.index(". ") + 1]


# --- the checker itself catches what it is meant to catch ------------------------------------

@pytest.mark.parametrize("bad", [
    SCRIPT,
    "<img src=x onerror=alert(1)>",
    '<a class="cite" href="#cable=X&p=1" onmouseover="alert(1)">x</a>',
    '<a class="cite" href="#cable=X&p=1" title="" onmouseover="alert(1)">x</a>',
    '<a class="cite" href="#cable=X&p=1" title=\'x\'>x</a>',
    '<a href="javascript:alert(1)">x</a>',
    '<span class="x">a "><svg onload=alert(1)></span>',
    "<div>&lt;ok&gt; &#60;img&#62;</div>",
    '<div title="a & b">x</div>',
    "<em>x</em>",
])
def test_the_checker_rejects_executable_or_foreign_markup(bad):
    with pytest.raises(AssertionError):
        safe_tags(bad)


def test_the_markdown_check_sees_links_images_and_syntax():
    for raw in ("[click](javascript:alert(1))", "![x](http://evil/x.png)", "# heading", "`code`", "- item"):
        with pytest.raises(AssertionError):
            safe_tags(markdown(raw), MARKDOWN_TAGS)


# --- chat Markdown ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("fn", [render.md_text, render.partial_markdown])
def test_chat_text_shows_hostile_text_literally(fn, payload):
    out = fn(payload)
    assert safe_tags(out) == []
    shown = markdown(out)
    assert {name for name, _ in safe_tags(shown, MARKDOWN_TAGS)} <= {"p", "br"}
    assert visible(shown).startswith(flat(payload))


def test_chat_text_keeps_plain_text_as_it_is():
    sentence = first_sentence(1)
    assert visible(markdown(render.md_text(sentence))) == flat(sentence)


def answer(text: str, *, short: str = "", checks: list[CheckedCitation] | None = None, **fields) -> Answer:
    return Answer(question=HOSTILE, standalone=HOSTILE, text=text, refused=False, backend="hostile",
                  short_answer=short, citations=checks or [], **fields)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_answer_markdown_hostile_llm_output(payload):
    """Payload as answer text, short answer, unsupported claim: escaped, shown, one chip only."""
    check = CheckedCitation(REAL, payload, 0.81, True)
    text = f"{payload} [09PHNOMPENH637 ¶1]. {first_sentence(2)}"
    for short in (payload, "nowhere in the text " + payload, ""):
        out = render.answer_markdown(answer(text, short=short, checks=[check], unsupported=[payload]))
        assert chips(out) == [REAL]
        shown = markdown(out)
        assert chips(shown) == [REAL]
        seen = visible(shown)
        assert flat(payload) in seen and flat(first_sentence(2)) in seen
        assert "No cited paragraph supports" in seen
        assert "09PHNOMPENH637 ¶1" in seen
        if short:
            assert visible(markdown(render.md_text(short))) in seen


def test_only_verified_citations_become_chips():
    """Tags quoted from a cable or written by a model without a check stay text, however real
    they look; the verified ones are chips, each with its status."""
    quoted = "The cable quotes “[99FAKE1 ¶3]” and “[09PHNOMPENH637 ¶99]” and [09PHNOMPENH637 ¶2]"
    text = f"{first_sentence(1)} [09PHNOMPENH637 ¶1]. {quoted}. {first_sentence(3)} [09PHNOMPENH637 ¶3]."
    checks = [CheckedCitation(REAL, first_sentence(1), 0.9, True),
              CheckedCitation(Citation("09PHNOMPENH637", 3), first_sentence(3), 0.3, False)]
    out = render.answer_markdown(answer(text, checks=checks))
    assert chips(out) == [REAL, Citation("09PHNOMPENH637", 3)]
    assert 'class="cite cite-supported"' in out and 'class="cite cite-weak"' in out
    seen = visible(markdown(out))
    for tag in FAKE_TAGS + ("[09PHNOMPENH637 ¶2]",):
        assert tag in seen


def test_answer_markdown_refusal_hostile_reason():
    refused = Answer(question=HOSTILE, standalone=HOSTILE, text=HOSTILE, refused=True, backend="hostile",
                     refusal_reason=HOSTILE)
    out = render.answer_markdown(refused)
    assert chips(out) == []
    shown = markdown(out)
    assert chips(shown) == []
    assert visible(shown).count(flat(HOSTILE.rstrip("."))) == 2


def test_with_answer_marked_escapes_both_sides_and_the_mark():
    for payload in PAYLOADS:
        out = render.with_answer_marked(f"{payload} and {payload}", payload)
        assert safe_tags(out) == [("mark", {"class": "answer"})]
        assert chips(markdown(out)) == []


# --- HTML of citations, paragraphs and cables -------------------------------------------------

@pytest.mark.parametrize("payload", PAYLOADS)
def test_citation_chip_escapes_its_attributes(payload):
    citation = Citation(payload, 7)
    for check in (None, CheckedCitation(citation, payload, 0.5, False), CheckedCitation(citation, payload, 0.9, True)):
        out = render.citation_chip(citation, check)
        [(name, attrs)] = safe_tags(out)
        assert name == "a" and attrs["class"] in ("cite cite-weak", "cite cite-supported")
        assert html.unescape(attrs["href"]) == f"#cable={payload}&p=7"
        assert visible(out).startswith(flat(f"{payload} ¶7"))


def test_citation_chip_of_a_real_paragraph():
    out = render.citation_chip(REAL, CheckedCitation(REAL, first_sentence(1), 0.87, True))
    assert safe_tags(out) == [("a", {"class": "cite cite-supported", "href": "#cable=09PHNOMPENH637&p=1",
                                     "title": "supported: support score 0.87"})]
    assert visible(out) == "09PHNOMPENH637 ¶1"
    assert visible(render.citation_chip(REAL, None)) == "09PHNOMPENH637 ¶1 ⚠"


def hostile_metadata() -> dict:
    return {key: f"{key}: {HOSTILE}" for key in ("subject", "date", "origin", "classification", "heading")}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_paragraphs_html_hostile_cable_text_and_metadata(payload):
    text = f"{CABLE.paragraph(1).text} {payload}"
    hit = real_hit(1, text=text, metadata=hostile_metadata())
    checks = [CheckedCitation(REAL, payload, 0.7, True), CheckedCitation(REAL, HOSTILE, 0.2, False)]
    out = render.paragraphs_html(answer(f"{payload} [09PHNOMPENH637 ¶1]", checks=checks, paragraphs=[hit]))
    assert chips(out) == [REAL]
    assert flat(text) in visible(out)
    assert "subject: " + flat(HOSTILE) in visible(out)
    marks = [attrs for name, attrs in safe_tags(out) if name == "mark"]
    assert marks and all(m == {"class": "support"} for m in marks)


def test_paragraph_card_with_no_check_and_hostile_everything():
    hit = real_hit(2, text=HOSTILE, metadata=hostile_metadata())
    out = render.paragraph_card(hit, [])
    assert chips(out) == [Citation("09PHNOMPENH637", 2)]
    assert flat(HOSTILE) in visible(out)
    for fake in FAKE_TAGS:
        assert fake in visible(out)


def test_paragraphs_html_refusal_and_empty_hostile_reason():
    refused = Answer(question=HOSTILE, standalone=HOSTILE, text="", refused=True, backend="x", refusal_reason=HOSTILE)
    for a in (refused, answer(HOSTILE)):
        out = render.paragraphs_html(a)
        assert chips(out) == []
    assert flat(HOSTILE) in visible(render.paragraphs_html(refused))


def test_paragraphs_html_of_a_real_answer():
    sentence = first_sentence(1)
    out = render.paragraphs_html(answer(f"{sentence} [09PHNOMPENH637 ¶1].", paragraphs=[real_hit(1)],
                                        checks=[CheckedCitation(REAL, sentence, 0.9, True)]))
    assert chips(out) == [REAL]
    assert html.escape(sentence) in out
    assert f'<mark class="support">{html.escape(sentence)}</mark>' in out
    assert html.escape(CABLE.subject) in out and "2009-08-28" in out
    assert visible(out).startswith("09PHNOMPENH637 ¶1 supported · 0.90 CAMBODIA: TIP ACTION PLAN DELIVERED")


def test_highlighted_and_support_spans_on_hostile_text():
    text = f"{CABLE.paragraph(1).text} {HOSTILE}"
    spans = render.support_spans(text, [PAYLOADS[2], "[click](javascript:alert(1))"])
    assert spans and all(0 <= s < e <= len(text) for s, e in spans)
    out = render.highlighted(text, spans)
    assert {name for name, _ in safe_tags(out)} == {"mark"}
    assert visible(out) == flat(text)
    assert render.highlighted(text, []) == html.escape(text)


def test_meta_line_escapes_every_value():
    out = render.meta_line(*PAYLOADS, "", "2009-08-28")
    assert safe_tags(out) == []
    assert visible(out) == flat(" · ".join(PAYLOADS + ["2009-08-28"]))


def test_best_checks_keeps_the_best_scored_check_per_paragraph():
    low, high = CheckedCitation(REAL, HOSTILE, 0.2, False), CheckedCitation(REAL, SCRIPT, 0.8, True)
    other = CheckedCitation(Citation("99FAKE1", 3), HOSTILE, 0.1, False)
    assert render.best_checks(answer(HOSTILE, checks=[low, high, other])) == {REAL: high, other.citation: other}


def cable_links(out: str) -> list[str]:
    """The cable ids the cable view's reference links of `out` open (CLICK_JS reads the href)."""
    found = []
    for name, attrs in safe_tags(out):
        if name == "a" and attrs["class"] == "cable-link":
            assert attrs["href"].startswith("#cable="), attrs
            found.append(html.unescape(attrs["href"])[len("#cable="):])
    return found


def hostile_references() -> dict:
    """Citation lists whose ids, subjects and dates are each a payload."""
    return {
        "references": [{"id": p, "in_index": i % 2 == 0, **({"subject": p, "date": p} if i % 2 == 0 else {})}
                       for i, p in enumerate(PAYLOADS)],
        "referenced_by": [{"id": p, "subject": p, "date": p} for p in PAYLOADS],
    }


def hostile_cable() -> dict:
    hits = [real_hit(p.number, text=f"{p.text} {HOSTILE}", metadata=hostile_metadata()) for p in CABLE.paragraphs]
    cable = cable_json(CABLE.id, hits, **hostile_references())
    cable["id"] = f"{CABLE.id} {HOSTILE}"
    cable["tags"] = PAYLOADS
    return cable


@pytest.mark.parametrize("highlight", [None, 1, 99])
def test_cable_html_hostile_cable(highlight):
    cable = hostile_cable()
    out = render.cable_html(cable, highlight)
    assert chips(out) == []
    seen = visible(out)
    assert seen.count(flat(HOSTILE)) >= 4 + 2 * len(CABLE.paragraphs)
    rows = [attrs["class"] for name, attrs in safe_tags(out) if attrs.get("class", "").startswith("cable-para")]
    assert len(rows) == len(CABLE.paragraphs)
    # Cables the index holds are links whose href gives back the id whole; the others are text.
    refs = hostile_references()
    assert cable_links(out) == [r["id"] for r in refs["references"] if r["in_index"]] + \
        [r["id"] for r in refs["referenced_by"]]
    assert seen.count("not in this index") == sum(not r["in_index"] for r in refs["references"])
    assert rows.count("cable-para hl") == (1 if highlight == 1 else 0)
    assert ("This cable has no ¶99." in seen) == (highlight == 99)


def test_cable_html_of_a_real_cable():
    hits = [real_hit(p.number) for p in CABLE.paragraphs]
    out = render.cable_html(cable_json(CABLE.id, hits), 2)
    safe_tags(out)
    seen = visible(out)
    assert seen.startswith("09PHNOMPENH637 CAMBODIA: TIP ACTION PLAN DELIVERED 2009-08-28 · Embassy Phnom Penh")
    for p in CABLE.paragraphs:
        assert f"¶{p.number}" in seen and flat(p.text) in seen
    assert '<div class="cable-para hl"><span class="pnum">¶2</span>' in out
    assert f'<div class="heading">{html.escape(CABLE.paragraph(2).heading)}</div>' in out


@pytest.mark.parametrize("payload", PAYLOADS)
def test_cable_link_hostile_id_subject_and_date(payload):
    held = render.cable_link({"id": payload, "in_index": True, "subject": payload, "date": payload})
    assert cable_links(held) == [payload]
    assert visible(held) == flat(f"{payload} {payload} · {payload}")
    absent = render.cable_link({"id": payload, "in_index": False})
    assert cable_links(absent) == [] and visible(absent) == flat(f"{payload} not in this index")


def test_references_html_of_real_cables():
    """09PHNOMPENH954 of the demo names 934 (in the demo) and 925 (not); 957 names it."""
    cited, citing = (read_cable_file(DEMO_DIR / f"{c}.txt") for c in ("09PHNOMPENH934", "09PHNOMPENH957"))
    cable = {"references": [{"id": cited.id, "in_index": True, "subject": cited.subject, "date": cited.date_iso},
                            {"id": "09PHNOMPENH925", "in_index": False}],
             "referenced_by": [{"id": citing.id, "subject": citing.subject, "date": citing.date_iso}]}
    out = render.references_html(cable)
    assert cable_links(out) == ["09PHNOMPENH934", "09PHNOMPENH957"]
    assert visible(out) == flat(f"References (2) 09PHNOMPENH934 {cited.date_iso} · {cited.subject} "
                                f"09PHNOMPENH925 not in this index "
                                f"Referenced by (1) 09PHNOMPENH957 {citing.date_iso} · {citing.subject}")
    assert render.references_html({"references": [], "referenced_by": []}) == ""
    assert render.references_html({}) == ""


def checked(text: str) -> Report:
    """`text` cut into claims as `rag check` cuts it, each citation given a status in turn (every
    status appears), every other one a paragraph to cite instead, each uncited claim one."""
    claims = []
    for i, draft in enumerate(split_text(text)):
        refs = [(m, r) for m in draft.mentions for r in m.citations]
        checks = []
        for j, (mention, ref) in enumerate(refs):
            status = STATUSES[(i + j) % len(STATUSES)]
            score = None if status.startswith("unknown") else 0.3 + 0.1 * j
            suggested = Suggestion(REAL.cable_id, 2, 0.71) if (i + j) % 2 else None
            checks.append(CitationCheck(ref.cable_id, ref.paragraph, status, score, suggested, mention, ""))
        status = max((c.status for c in checks), key=STATUSES.index) if checks else UNCITED
        claims.append(ClaimCheck(draft.text, draft.start, draft.end, status, checks,
                                 None if checks else Suggestion(REAL.cable_id, 1, 0.62)))
    return Report(claims)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_check_html_hostile_text(payload):
    text = (f"{payload} [09PHNOMPENH637 ¶1].\n\nPolice made {payload} arrests (09PHNOMPENH637) and "
            f"[99FAKE1 ¶3; 09PHNOMPENH637 ¶¶4-6].\n\nAn uncited {payload} claim about the police.")
    report = checked(text)
    assert {c.status for c in report.citations} >= set(STATUSES) - {"unknown_cable"}
    out = render.check_html(report, text)
    tags = safe_tags(out)
    links = [attrs for name, attrs in tags if name == "a"]
    assert links and all(re.fullmatch(r"#cable=[A-Z0-9-]+(&p=\d+)?", a["href"]) for a in links)
    assert all(a["class"].split()[0] == "cite" for a in links)
    assert ("span", {"class": "cite cite-unknown_cable", "title": "unknown_cable"}) in tags or \
        not any(c.status == "unknown_cable" for c in report.citations)
    # Every word of the text is there, as text, but the citations, which the chips replace.
    without_chips = re.sub(r'<(a|span) class="cite[^"]*"[^>]*>[^<]*</\1>', " ", out)
    citations_blanked = "".join(" " if any(m.start <= i < m.end for m in find_citations(text)) else ch
                                for i, ch in enumerate(text))
    assert "".join(visible(without_chips).split()).endswith("".join(citations_blanked.split()))
    assert "→ 09PHNOMPENH637 ¶2" in visible(out)


def test_check_html_keeps_the_text_and_replaces_each_citation_by_chips():
    text = "# Title\n\nPolice made 100 arrests [09PHNOMPENH637 ¶1]. Kang leads the police (09PHNOMPENH637 ¶¶4-5).\n"
    report = checked(text)
    out = render.check_html(report, text)
    assert visible(out).startswith("2 claims: 2 cited")
    chips = [attrs["href"] for name, attrs in safe_tags(out) if name == "a" and "cite-suggested" not in attrs["class"]]
    assert chips == ["#cable=09PHNOMPENH637&p=1", "#cable=09PHNOMPENH637&p=4", "#cable=09PHNOMPENH637&p=5"]
    assert "[09PHNOMPENH637 ¶1]" not in visible(out)
    assert out.count('<span class="claim claim-') == 2
    # The Markdown renders: the heading is one, its marker kept in the HTML but hidden.
    assert '<div class="md-h1"><span class="md-mark"># </span>Title</div>' in out
    assert [label for _, label in render.CHECK_LEGEND] == ["supported", "weak", "unsupported", "no citation"]
    assert all(f'<span class="legend legend-{status}">{label}</span>' in out for status, label in render.CHECK_LEGEND)


def test_check_html_renders_a_drafts_markdown_and_breaks_no_claim_or_link():
    text = ("## Police\n\n> Police made **100 TIP arrests** in the first _six months_ of 2009 [09PHNOMPENH637 ¶1].\n"
            "- Kang leads `the police` response, see [the plan](javascript:alert(1)) (09PHNOMPENH637 ¶4).\n"
            "1. **unclosed and `a**b` (09PHNOMPENH637 ¶5).")
    out = render.check_html(checked(text), text)
    lines = re.findall(r'<div class="md-([a-z0-9]+)">', out.split('class="checked-text">')[1])
    assert lines == ["h2", "blank", "quote", "li", "li"]
    shown = re.sub(r'<span class="md-mark">[^<]*</span>', "", out)  # what the CSS leaves on screen
    assert "#" not in visible(shown) and "**" in visible(shown)  # an unclosed marker stays as written
    assert '<span class="md-b">100 TIP arrests</span>' in out and '<span class="md-em">six months</span>' in out
    assert '<span class="md-code">the police</span>' in out and '<span class="md-code">a**b</span>' in out
    assert '<span class="md-link">the plan</span>' in out and "javascript" not in shown
    assert out.count('<span class="claim claim-') == 3 and all(name in ("a", "span", "div") for name, _ in safe_tags(out))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_check_and_suggestion_chips_escape_their_attributes(payload):
    mention = Mention(0, 1, (Citation(REAL.cable_id, 1),))
    for chip in (render.check_chip(CitationCheck(REAL.cable_id, None, "weak", 0.4,
                                                 Suggestion(REAL.cable_id, 3, 0.6, payload), mention, payload)),
                 render.suggestion_chip(Suggestion(REAL.cable_id, 3, 0.6, payload), payload)):
        (name, attrs), = safe_tags(chip)
        assert name == "a" and attrs["href"] == "#cable=09PHNOMPENH637&p=3"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_error_html(payload):
    out = render.error_html(payload)
    assert safe_tags(out) == [("div", {"class": "panel-note error"})]
    assert visible(out) == flat(payload)


def test_every_public_renderer_is_covered():
    """A renderer added to rag/render/html.py gets a hostile-input test here."""
    public = {name for name, value in vars(render).items()
              if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == render.__name__}
    covered = {"md_text", "partial_markdown", "answer_markdown", "with_answer_marked", "citation_chip",
               "best_checks", "support_spans", "highlighted", "meta_line", "paragraph_card",
               "paragraphs_html", "cable_html", "cable_link", "references_html", "error_html", "check_chip",
               "suggestion_chip", "check_html"}
    assert public == covered
