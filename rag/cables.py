"""Parse Cablegate cables into `Cable` objects whose paragraphs carry the numbers the cable prints.

Two inputs are supported: one file per cable (five metadata lines, then the raw telegram; the
layout of ../shared/cables) and the full release's `cables.csv`. Both end in `parse_body`, so the
same telegram text gives the same paragraphs whichever way it arrived.

The raw text is untidy in many ways (see ../shared/README.md). The parser is a pipeline of small
regex-based steps over one string:

1. `_isolate_own_copy`: several files hold a truncated excerpt followed by the full text behind a
   database row (tab dump, CSV row, `refid:` record or bare metadata lines); keep one full copy.
2. `_remove_breaks`: section breaks (`PHNOM PENH 00000637  002 OF 002`, inline too), old
   `PAGE 02 ...` lines with their routing residue, stray `SIPDIS` captions, end-of-cable junk.
3. `_choose_numbering`: paragraph-number candidates (`¶6.`, `6. (C)`, `(C) 6.`, inline `6.(C)`)
   are scored and the best consistent 1, 2, 3... chain is kept, so sub-items, wrapped dates
   (`April\n¶24. 2006`) and years (`¶2009`) are not taken for paragraphs.
4. Paragraph text: number removed, underlined headings moved to the paragraph they introduce,
   whitespace normalised. Cables without printed numbers are cut into blocks numbered 1..n.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from pathlib import Path
from typing import Iterator, NamedTuple

from rag.types import Cable, Paragraph

MAX_FILE_BYTES = 5 * 1024 * 1024
CSV_COLUMNS = ("id", "date", "refid", "origin", "classification", "references", "header", "content")
# Paragraphs of at most this many characters are folded into the next block of an unnumbered cable.
MIN_BLOCK_CHARS = 40


class CableError(ValueError):
    """Input that cannot be parsed as a cable; `reason` is a one-line explanation for people."""

    def __init__(self, reason: str, source: str | None = None):
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


class ParsedBody(NamedTuple):
    """What `parse_body` finds in the telegram text after the metadata."""

    header: str
    subject: str
    tags: list[str]
    refs: list[str]
    paragraphs: list[Paragraph]


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def parse_cable(text: str) -> Cable:
    """Parse one cable in the one-file-per-cable layout.

    Args:
        text: line 1 cable id, line 2 subject (may be empty), line 3 date
            (`%a %b %d %H:%M:%S %z %Y`), line 4 classification, line 5 origin, then the raw text.

    Returns:
        The `Cable`, its paragraphs numbered as the cable prints them.

    Raises:
        CableError: missing or malformed metadata, or no text after it.
    """
    if not text.strip():
        raise CableError("empty file")
    lines = text.split("\n", 5)
    if len(lines) < 6 or not lines[5].strip():
        raise CableError("truncated: no body after the header")
    cable_id, subject, date_line, classification, origin = (line.strip() for line in lines[:5])
    if not _ID.match(cable_id):
        raise CableError(f"line 1 is not a cable id: {cable_id[:40]!r}")
    try:
        cable_date = datetime.strptime(date_line, "%a %b %d %H:%M:%S %z %Y").date()
    except ValueError:
        raise CableError(f"line 3 is not a date: {date_line[:40]!r}") from None
    if not classification:
        raise CableError("line 4 (classification) is empty")
    if not origin:
        raise CableError("line 5 (origin) is empty")
    body = parse_body(cable_id, lines[5], origin=origin, classification=classification)
    return _make_cable(cable_id, subject, cable_date, classification, origin, body)


def read_cable_file(path: str | Path) -> Cable:
    """Read and parse one cable file, checking it is a reasonable text file first.

    Raises:
        CableError: too large (over MAX_FILE_BYTES), empty, binary, not UTF-8, truncated or
            malformed; the message starts with the path.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CableError(
                f"file too large ({size / 1e6:.1f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)", str(path)
            )
        data = path.read_bytes()
    except OSError as e:
        raise CableError(f"cannot read file ({e.strerror or e})", str(path)) from None
    if not data.strip():
        raise CableError("empty file", str(path))
    if b"\x00" in data:
        raise CableError("binary file (contains NUL bytes)", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CableError(f"not UTF-8 text (bad byte at offset {e.start})", str(path)) from None
    try:
        return parse_cable(text)
    except CableError as e:
        raise CableError(e.reason, str(path)) from None


def iter_csv_cables(path: str | Path) -> Iterator[Cable | CableError]:
    """Stream the cables of a full-release `cables.csv`, one row at a time.

    Columns are id, date, refid, origin, classification, references, header, content (a header
    row naming them is optional); fields use MySQL backslash escapes (`\\n`, `\\"`, `\\'`,
    `\\\\`). The cable id is `refid`; `references` (comma- or |-separated ids) become `refs`.

    Yields:
        A `Cable` per good row, or a `CableError` naming the row (counted from 1, the header row
        included) for a bad one; the stream goes on after a bad row.
    """
    csv.field_size_limit(2**31 - 1)
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(_unescape_mysql(f), strict=False)
        columns = list(CSV_COLUMNS)
        for row_number, row in enumerate(rows, start=1):
            if row_number == 1 and row and row[0].strip().lower() == "id":
                columns = [c.strip().lower() for c in row]
                continue
            if not any(field.strip() for field in row):
                continue
            try:
                yield _cable_from_row(dict(zip(columns, row)), columns)
            except CableError as e:
                yield CableError(f"CSV row {row_number}: {e.reason}", str(path))


def parse_body(
    cable_id: str, text: str, origin: str = "", classification: str = ""
) -> ParsedBody:
    """Split the raw telegram text of one cable into header material and paragraphs.

    Args:
        cable_id: e.g. `09PHNOMPENH637`; used to recognise section breaks and refs.
        text: everything after the metadata (routing block, header, body).
        origin, classification: help recognise embedded copies of the cable's database row.

    Returns:
        A `ParsedBody`; paragraphs are numbered as printed, or as blocks 1..n with
        `numbered=False` when the cable prints no numbers.
    """
    text = _isolate_own_copy(cable_id, _normalise(text), origin, classification)
    text = _remove_breaks(cable_id, text)
    markers = _choose_numbering(_find_candidates(text))
    if markers:
        head_end = markers[0].start
        paragraphs = _numbered_paragraphs(cable_id, text, markers)
    else:
        head_end = _header_end(text)
        paragraphs = _unnumbered_paragraphs(cable_id, text[head_end:], text[:head_end])
    header = text[:head_end]
    year = _id_year(cable_id)
    return ParsedBody(
        header=_header_text(header),
        subject=_subject(header),
        tags=_tags(header),
        refs=_refs(header, year),
        paragraphs=paragraphs,
    )


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------

_ID = re.compile(r"^\d{2}[A-Z][A-Z0-9-]*\d$")


def _make_cable(
    cable_id: str, subject: str, cable_date: date | None, classification: str, origin: str,
    body: ParsedBody, extra_refs: list[str] = (),
) -> Cable:
    refs = list(dict.fromkeys([*extra_refs, *body.refs]))
    return Cable(
        id=cable_id,
        subject=subject or body.subject,
        date=cable_date,
        classification=classification,
        origin=origin,
        tags=body.tags,
        refs=[r for r in refs if r != cable_id],
        paragraphs=body.paragraphs,
        header=body.header,
    )


def _id_year(cable_id: str) -> str:
    return cable_id[:2]


def _cable_from_row(row: dict[str, str], columns: list[str]) -> Cable:
    for name in ("refid", "date", "content"):
        if name not in row:
            raise CableError(f"missing field {name!r}")
    cable_id = row["refid"].strip()
    if not cable_id:
        raise CableError("missing field 'refid'")
    if not _ID.match(cable_id):
        raise CableError(f"refid is not a cable id: {cable_id[:40]!r}")
    if not row["content"].strip() and not row.get("header", "").strip():
        raise CableError("missing field 'content'")
    cable_date = _csv_date(row["date"])
    text = row.get("header", "").rstrip("\n") + "\n" + row["content"]
    origin = row.get("origin", "").strip()
    classification = row.get("classification", "").strip()
    body = parse_body(cable_id, text, origin=origin, classification=classification)
    refs = [r for r in re.split(r"[,|\s]+", row.get("references", "")) if _ID.match(r)]
    return _make_cable(cable_id, "", cable_date, classification, origin, body, refs)


def _csv_date(value: str) -> date:
    value = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%m/%d/%Y %H:%M"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            pass
    raise CableError(f"bad date {value[:30]!r}" if value else "missing field 'date'")


_MYSQL_ESCAPE = re.compile(r"\\(.)", re.S)
_MYSQL_CHARS = {"n": "\n", "t": "\t", "r": "\r", "0": "", "Z": "\x1a", "N": "", '"': '""'}


def _unescape_mysql(lines: Iterator[str]) -> Iterator[str]:
    """Turn MySQL backslash escapes into what the csv module reads (quotes doubled).

    Escapes never span lines except an escaped newline, which sits on its own line's end, so
    each physical line can be rewritten alone and memory stays bounded.
    """
    for line in lines:
        if "\\" in line:
            line = _MYSQL_ESCAPE.sub(lambda m: _MYSQL_CHARS.get(m.group(1), m.group(1)), line)
        yield line


# --------------------------------------------------------------------------------------------
# Step 1: normalise and keep one full copy of the cable
# --------------------------------------------------------------------------------------------

_BR = re.compile(r"[ \t]*<br\s*/?>[ \t]*(\n)?", re.I)


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BR.sub("\n", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


_DATE_FIELD = r"(?:\d{4}-\d\d-\d\d(?: [\d:]+)?|\d{1,2}/\d{1,2}/\d{4} [\d:]+)"
_CLASS_WORD = r"(?:UNCLASSIFIED|CONFIDENTIAL|SECRET|LIMITED OFFICIAL USE)"
_CSV_FIELD = r'(?:"(?:[^"]|"")*"|[^,\n]*)'
_ANY_ROW = re.compile(
    rf"(?m)^(?:\d+[\t ,]+)?{_DATE_FIELD}[\t ,]+(\d\d[A-Z][A-Z0-9-]*\d)[\t ,]"
)


def _own_row_patterns(cable_id: str) -> list[tuple[str, re.Pattern]]:
    cid = re.escape(cable_id)
    return [
        ("tab", re.compile(rf"(?m)^(?:\d+\t)?{_DATE_FIELD}\t{cid}\t[^\t\n]*\t[^\t\n]*\t[^\t\n]*\t")),
        ("csv", re.compile(rf"(?m)^\d+,{_DATE_FIELD},{cid},{_CSV_FIELD},{_CSV_FIELD},{_CSV_FIELD},\"?")),
        ("spaced", re.compile(
            rf"(?m)^\d+ +{_DATE_FIELD} +{cid} {{2,}}.*? {{2}}{_CLASS_WORD}[A-Z/ ]*?(?: {{2,}}|$)")),
        ("record", re.compile(rf"(?m)^refid: {cid}\n(?:[a-z]+:.*\n)*?header:[ \t]*\n")),
    ]


def _isolate_own_copy(cable_id: str, text: str, origin: str, classification: str) -> str:
    """Keep one full copy of the cable's own text and drop anything glued after it.

    Some files hold a truncated excerpt ("...") and then the whole cable again behind a copy of
    its database row; the copy after the row is the complete one.
    """
    if cable_id not in text:
        return _cut_foreign_rows(cable_id, _splice_excerpt(cable_id, text))
    for kind, pattern in _own_row_patterns(cable_id):
        m = pattern.search(text)
        if m:
            return _cut_foreign_rows(cable_id, _unwrap_row(text[m.end():], kind))
    restart = _bare_metadata_end(cable_id, text, origin, classification)
    text = text[restart:] if restart is not None else _splice_excerpt(cable_id, text)
    return _cut_foreign_rows(cable_id, text)


def _unwrap_row(text: str, kind: str) -> str:
    if kind == "tab":
        # MySQL dumps end every line of a field with a backslash and separate fields with tabs.
        text = re.sub(r"\\$", "", text, flags=re.M).replace("\t", "\n")
    elif kind == "csv":
        text = text.replace('","', "\n").replace('""', '"')
        text = re.sub(r'"\s*$', "", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _bare_metadata_end(cable_id: str, text: str, origin: str, classification: str) -> int | None:
    """Where the text restarts after a block of bare metadata lines (…, id, origin, class)."""
    for m in re.finditer(rf"(?m)^{re.escape(cable_id)}$", text):
        following = [line.strip() for line in text[m.end():].split("\n")[1:12] if line.strip()]
        if not following or not {origin, classification} & set(following[:3]):
            continue
        pos = m.end()
        for line in text[m.end():].split("\n")[1:]:
            stripped = line.strip()
            if stripped and stripped not in (origin, classification) and not _META_LINE.match(stripped):
                break
            pos += len(line) + 1
        return pos
    return None


_META_LINE = re.compile(r"^(?:\d+|\d{4}-\d\d-\d\d[ \d:]*|\d\d[A-Z][A-Z0-9|]*\d)$")
_EXCERPT_END = re.compile(r"\.\.\.[ \t]*\n[ \t]*\n")
_ROUTING_START = re.compile(r"(?m)\A\s*(?:VZCZC|[A-Z]{2} RUE|\d+ +\d{4}-)")


def _splice_excerpt(cable_id: str, text: str) -> str:
    """Replace a truncated excerpt ("...") by the full text that follows it, if it does."""
    m = _EXCERPT_END.search(text)
    if not m:
        return text
    before, after = text[: m.start()], text[m.end():]
    block_start = max(before.rfind("\n\n"), before.rfind("\n \n")) + 1
    words = before[block_start:].split()
    # The excerpt's last word may be cut mid-way; the first few words are reliable.
    key = words[:6] if len(words) > 6 else words[:-1]
    if len(" ".join(key)) >= 8:
        found = re.search(r"\s+".join(map(re.escape, key)), after, re.I)
        if found:
            return before[:block_start] + after[found.start():]
    if _ROUTING_START.match(after) and not re.search(rf"#0*{_id_number(cable_id)}\b", after[:2000]):
        # What follows is another cable's text glued on by the source; the excerpt is all we have.
        return before
    return text


def _cut_foreign_rows(cable_id: str, text: str) -> str:
    for m in _ANY_ROW.finditer(text):
        if m.group(1) != cable_id:
            return text[: m.start()]
    cut = text.find("@@@OASYS@@@")  # a second transmission of the same cable follows
    return text[:cut] if cut >= 0 else text


def _id_number(cable_id: str) -> int:
    m = re.search(r"(\d+)$", cable_id)
    return int(m.group(1)) if m else -1


# --------------------------------------------------------------------------------------------
# Step 2: remove section breaks, page headers and other transmission residue
# --------------------------------------------------------------------------------------------

_SECTION_BREAK = re.compile(
    r"(?<![A-Za-z])(?P<post>[A-Z][A-Z .'-]{1,30}?)[ \t]+0*(?P<num>\d{1,8})[ \t]+\d{3}(?:\.\d)?"
    r"[ \t]+OF[ \t]+\d{3}\b"
)
_BREAK_MARK = "\x00"  # placeholder for a removed break until the blank lines around it go too
_BREAK_WITH_BLANKS = re.compile(r"\n(?:[ \t]*\n)*[ \t]*\x00[ \t]*\n(?:[ \t]*\n)*|[ \t]*\x00[ \t]*")
_PAGE = re.compile(
    r"^[ \t]*PAGE \d\d[ \t]+(?:[A-Z][A-Z ]{0,20}?[ \t]+\d{3,8}[ \t]+\d\d OF \d\d[ \t]+\d{6}Z"
    r"|RUE[A-Z]+\d+[ \t]+[A-Z ]+?)[ \t]*",
    re.M,
)
_CLASS_RESIDUE = re.compile(
    rf"^[ \t]*(?:{_CLASS_WORD}(?:[ \t]+PTQ\d+)?|>(?: ?@@@.*)?|NNNN|BT|=+CABLE ENDS=+)[ \t]*$", re.M
)
_SIPDIS_INSERT = re.compile(r"\n[ \t]*\n[ \t]*SIPDIS[ \t]*\n(?=[ \t]*\S)")
_TRAILING_CLASS = re.compile(rf"[ \t]+{_CLASS_WORD}[ \t]*\n(?=[ \t]*PAGE \d\d)")


def _remove_breaks(cable_id: str, text: str) -> str:
    text = _remove_page_headers(text)
    if " OF " in text:
        text = _remove_section_breaks(cable_id, text)
    text = _SIPDIS_INSERT.sub("\n", text)
    return _CLASS_RESIDUE.sub("", text)


def _remove_section_breaks(cable_id: str, text: str) -> str:
    """Remove `PHNOM PENH 00000637  002 OF 002`, on its own line or inside a re-flowed line.

    On its own line any post is accepted; inside a line only this cable's number and post
    (spaced, or cut short as in `BUENOS AIR`), so that no real words are eaten.
    """
    m = re.match(r"^\d{2}[A-Z0-9-]*?([A-Z]+)(\d+)$", cable_id)
    own_post, own_num = (m.group(1), int(m.group(2))) if m else ("", -1)

    def mark(m: re.Match) -> str:
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        rest = text[m.end(): line_end if line_end >= 0 else len(text)]
        if not text[line_start: m.start()].strip() and not rest.strip():
            return _BREAK_MARK
        if int(m.group("num")) != own_num:
            return m.group(0)
        words = m.group("post").split()
        for k in range(len(words)):
            letters = "".join(words[k:])
            if letters == own_post or (len(letters) >= 4 and own_post.startswith(letters)):
                return " ".join([*words[:k], _BREAK_MARK])
        return m.group(0)

    text = _SECTION_BREAK.sub(mark, text)
    if _BREAK_MARK not in text:
        return text

    def join(m: re.Match) -> str:
        if "\n" not in m.group(0):
            return " "
        # A break between two paragraphs keeps them apart; one inside a paragraph joins it.
        before = text[: m.start()].rstrip()
        return "\n\n" if before.endswith((".", ":", '"', "?", "!")) else "\n"

    return _BREAK_WITH_BLANKS.sub(join, text)


def _remove_page_headers(text: str) -> str:
    """Old cables repeat `PAGE 02 HARARE 05461 01 OF 02 271458Z` and, at each new section, the
    routing and header lines; remove them and keep the text that shares their lines."""
    if "PAGE 0" not in text:
        return text
    text = _TRAILING_CLASS.sub("\n", text)
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _PAGE.match(line)
        if not m:
            out.append(line)
            i += 1
            continue
        rest = line[m.end():]
        if re.match(r"PAGE 01\b", line.strip()):
            i = _skip_section_header(lines, i + 1)
            continue
        if rest.strip():
            out.append(rest)
        i += 1
    return "\n".join(out)


_SECTION_HEADER_LINE = re.compile(
    r"^[ \t]*(?:INFO |ACTION |-{5,}|[A-Z]+-\d\d|C O N F|S E C R E T|U N C L|UNCLAS|CONFIDENTIAL|"
    r"SECRET|SIPDIS|E\.?O\.? ?1\d{4}|TAGS|SUBJECT|XXXXXXXXXXXX$|DEPT|DEPARTMENT|EMBASSY .* NO\.|"
    r"C O R R E C T E D|FOR |PASS |[A-Z /]+ FOR )"
)


def _skip_section_header(lines: list[str], i: int) -> int:
    """Index of the first text line after a new section's routing and header lines."""
    last = i - 1
    for j in range(i, min(i + 15, len(lines))):
        if _SECTION_HEADER_LINE.match(lines[j]) or not lines[j].strip():
            if lines[j].strip():
                last = j
            if re.match(r"^[ \t]*(?:SUBJECT|TAGS|E\.?O\.? ?1\d{4})", lines[j]) and re.search(
                r"TAGS|SUBJECT", lines[j]
            ):
                return j + 1
        else:
            break
    return last + 1


# --------------------------------------------------------------------------------------------
# Step 3: paragraph numbers
# --------------------------------------------------------------------------------------------

_MARKING = (
    r"\((?:U|C|S|TS|SBU|LOU|FOUO|NF|u|c|s|sbu|[CSU] ?//? ?[A-Z][A-Z ]{1,14}|SBU ?/ ?[A-Z]{2,}"
    r"|U ?/ ?[A-Z]{2,})\)"
)
_LINE_CANDIDATE = re.compile(
    rf"^(?P<indent>[ \t]*)(?P<pil>¶)?[ \t]*(?P<mk1>{_MARKING}[ \t]*:?[ \t]*)?"
    rf"(?P<num>\d{{1,3}})(?:[ \t]?\.(?:[ \t]+(?P=num)\.)?[ \t]*|[ \t]+(?={_MARKING}))"
    rf"(?=(?P<mk2>{_MARKING})|[A-Za-z\"'(-]|(?<=[ \t])(?!(?:19|20)\d\d\b)\d|$)",
    re.M,
)
# Re-flowed cables may run paragraphs together on one line: "...Damascus.  3. (C) Abdel Halim".
_INLINE_CANDIDATE = re.compile(
    rf"(?<=\S)[ \t]{{1,6}}(?P<num>\d{{1,2}})[ \t]?\.[ \t]{{0,3}}(?={_MARKING}|(?:BEGIN )?SUMMARY\b|Summary\b)"
    rf"|(?<=---)[ \t]+(?P<num2>\d{{1,2}})\.[ \t]+(?=\S)"
)
# A line ending like this makes the next line's "15." part of a date or reference, as in
# "on September\n15. The" or "UNSCR\n1540.", which the WikiLeaks site still marked with a pilcrow.
_WRAPPED_REFERENCE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|No|Nos|Art|Para)\.?|"
    r"paras?|paragraphs?|UNSCR|Resolution|Article|Section|Law|Decree|number)[ \t]*$",
    re.I,
)


class _Candidate(NamedTuple):
    start: int  # where the paragraph (number prefix included) begins
    text_start: int  # where its text begins
    num: int
    marked: bool  # followed (or preceded) by a classification marking such as (C)
    layout: float  # evidence from the layout: blank line before, pilcrow, no indent


def _find_candidates(text: str) -> list[_Candidate]:
    found: dict[int, _Candidate] = {}
    for m in _LINE_CANDIDATE.finditer(text):
        start = m.start()
        prev_start = text.rfind("\n", 0, max(start - 1, 0)) + 1
        prev_line = text[prev_start: max(start - 1, 0)]
        blank_before = start == 0 or not prev_line.strip()
        marked = bool(m.group("mk1") or m.group("mk2"))
        if not (blank_before or marked) and _WRAPPED_REFERENCE.search(prev_line[-20:]):
            continue
        layout = (0.5 if blank_before else 0.0) + (0.3 if m.group("pil") else 0.0)
        layout -= 0.5 if len(m.group("indent").expandtabs()) >= 2 else 0.0
        found[start] = _Candidate(start, _text_start(m), int(m.group("num")), marked, layout)
    for m in _INLINE_CANDIDATE.finditer(text):
        start = m.start() + len(m.group(0)) - len(m.group(0).lstrip(" \t"))
        if start not in found:
            marked = text[m.end(): m.end() + 1] == "("
            num = int(m.group("num") or m.group("num2"))
            found[start] = _Candidate(start, m.end(), num, marked, -0.4)
    return sorted(found.values())


def _text_start(m: re.Match) -> int:
    """Paragraph text starts at the marking for `(C) 3.` and after the number for `3. (C)`."""
    if m.group("mk1"):
        return m.start("mk1")
    return m.end()


def _choose_numbering(cands: list[_Candidate]) -> list[_Candidate]:
    """Pick the best chain of candidates numbered 1, 2, 3...

    A longest-path search: each candidate adds its weight, a skipped or repeated number costs a
    penalty. In a cable whose paragraphs carry markings like (C), unmarked numbers are most
    likely sub-items, so they weigh little.
    """
    if not cands:
        return []
    marked_style = sum(c.marked for c in cands) >= 2
    weights = [(2.0 if c.marked else 0.2 if marked_style else 1.0) + c.layout for c in cands]
    best: list[float] = []
    back: list[int] = []
    for i, c in enumerate(cands):
        score, prev = weights[i] - min(0.25 * (c.num - 1), 3.0), -1
        for j in range(i):
            penalty = _step_penalty(c.num - cands[j].num)
            if penalty is not None and best[j] + weights[i] - penalty > score:
                score, prev = best[j] + weights[i] - penalty, j
        best.append(score)
        back.append(prev)
    end = max(range(len(cands)), key=best.__getitem__)
    chain = []
    while end >= 0:
        chain.append(cands[end])
        end = back[end]
    chain.reverse()
    if len(chain) == 1 and not (chain[0].num == 1 and (chain[0].marked or chain[0].layout > 0.6)):
        return []
    return chain


def _step_penalty(step: int) -> float | None:
    """Cost of going from paragraph n to n + step; None where that cannot happen."""
    if step == 1:
        return 0.0
    if step == 0:  # a number printed twice (06PHNOMPENH983 has two ¶11)
        return 1.5
    if 2 <= step <= 4:  # the author skipped a number, or we missed one
        return 0.6 * (step - 1)
    return None


def _numbered_paragraphs(cable_id: str, text: str, markers: list[_Candidate]) -> list[Paragraph]:
    paragraphs: list[Paragraph] = []
    seen: dict[int, int] = {}
    heading = _trailing_heading(text[: markers[0].start], in_header=True)[1]
    for k, marker in enumerate(markers):
        end = markers[k + 1].start if k + 1 < len(markers) else len(text)
        raw = text[marker.text_start: end]
        if k + 1 < len(markers):
            raw, next_heading = _trailing_heading(raw)
        else:
            raw, next_heading = _strip_signature(raw), ""
        occurrence = seen.get(marker.num, 0)
        seen[marker.num] = occurrence + 1
        paragraphs.append(
            Paragraph(cable_id, marker.num, _clean(raw), heading, numbered=True, occurrence=occurrence)
        )
        heading = next_heading
    return paragraphs


# --------------------------------------------------------------------------------------------
# Step 4: headings, signatures, text clean-up
# --------------------------------------------------------------------------------------------

_DASHES = re.compile(r"^[ \t]*-[- ]{2,}[ \t]*$")
_UNDERLINE_AT_END = re.compile(r"(?:^|[ \t])(-{3,})[ \t-]*$")
_OVERLINE = re.compile(r"(?:^|[ \t])-{3,}[ \t]+(?=[^-\s][^-]*$)")
_HEADER_LINE = re.compile(
    r"^\s*(?:SUBJ|TAGS|REF|E\.?\s?O\.?|Classified|CLASSIFIED|Derived|DECL|SIPDIS|SENSITIVE|"
    r"NOFORN|UNCLAS|C O N|S E C|CONFIDENTIAL|SECRET|FM |TO |INFO |RUE|VZCZC|DE |ZN|\d)",
    re.I,
)


def _trailing_heading(raw: str, in_header: bool = False) -> tuple[str, str]:
    """Split a heading off the end of a paragraph: it belongs to the paragraph that follows.

    Recognised: a line underlined (and maybe overlined) with dashes; the same re-flowed onto
    the end of the previous line (`END SUMMARY. Verdict -------`, the dashes as long as the
    heading); and a short title-like line standing alone.
    """
    lines = raw.rstrip().split("\n")
    if not lines or not lines[-1].strip():
        return raw, ""
    if _DASHES.match(lines[-1]) and len(lines) >= 2:
        k = len(lines) - 2
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k < 0 or _DASHES.match(lines[k]):
            return "\n".join(lines[:-1]), ""
        heading = lines[k].strip()
        cut = k - 1 if k >= 1 and _DASHES.match(lines[k - 1]) else k
        if in_header and _HEADER_LINE.match(heading):
            return "\n".join(lines[: k + 1]), ""
        return "\n".join(lines[:cut]), heading
    inline = _inline_heading(lines)
    if inline:
        return inline
    if not in_header and _looks_like_title(lines):
        return "\n".join(lines[:-1]), lines[-1].strip()
    return raw, ""


def _inline_heading(lines: list[str]) -> tuple[str, str] | None:
    """A heading re-flowed onto the end of a line: `END SUMMARY. Verdict -------`."""
    m = _UNDERLINE_AT_END.search(lines[-1])
    if not m:
        return None
    before = lines[-1][: m.start()]
    over = _OVERLINE.search(before)
    if over:  # "------- Verdict -------"
        heading, before = before[over.end():].strip(), before[: over.start()]
    else:
        # The dashes underline the heading, so their length says where it starts.
        words, kept = before.split(), []
        while words and len(" ".join([words[-1], *kept])) <= len(m.group(1)) + 2:
            kept.insert(0, words.pop())
        heading, before = " ".join(kept), " ".join(words)
    if not heading:
        return None
    return "\n".join([*lines[:-1], before]).rstrip(), heading


def _looks_like_title(lines: list[str]) -> bool:
    title = lines[-1].strip()
    before = lines[-2].strip() if len(lines) >= 2 else ""
    if before or len(lines) < 3 or not title or len(title) > 80 or len(title.split()) > 12:
        return False
    if title.endswith((",", ";", ":")) or (title.endswith(".") and not title.endswith("...")):
        return False
    if title.endswith(("?", "!", ")", '"')) or title.startswith(("-", "(", "*", "¶", "•", "o ")):
        return False
    return bool(re.search(r"[A-Za-z]{3}", title)) and not re.match(
        r"(?i)^(?:end|begin|text|septel|comment|note)\b", title
    )


_SIGNATURE = re.compile(r"^[A-Z][A-Za-z'.-]*(?: [A-Za-z][A-Za-z'.-]*){0,2}$")
_TRAILER = re.compile(
    r"^\s*(?:Visit .*|.*Classified Web ?[Ss]ite.*|https?://\S+|[\w ]*Blog at http\S*|</t[dr]>.*|"
    r"\*{10,}.*|=+.*|\"|\.\.\.)\s*$"
)


def _strip_signature(raw: str) -> str:
    """Drop the signature (`RODLEY`) and web-site footers after the last paragraph's text."""
    lines = raw.rstrip().split("\n")
    while len(lines) > 1 and (not lines[-1].strip() or _TRAILER.match(lines[-1])):
        lines.pop()
    if len(lines) > 1:
        last = lines[-1].strip()
        prev = next((line.strip() for line in reversed(lines[:-1]) if line.strip()), "")
        if (
            _SIGNATURE.match(last)
            and len(last) <= 30
            and not last.endswith(".")
            and (prev.endswith((".", "!", "?", ":", '"', ")", "-")) or not prev)
        ):
            lines.pop()
    return "\n".join(lines)


def _clean(raw: str) -> str:
    return " ".join(raw.replace("¶", "").split())


# --------------------------------------------------------------------------------------------
# Cables without printed numbers
# --------------------------------------------------------------------------------------------

_HEADER_ANCHOR = re.compile(
    r"^[ \t]*(?:SUBJ(?:ECT)?\b|TAGS\b|REF(?:S|TEL|TELS|ERENCE|ERENCES)?\b\s*[:(A-Z0-9]|"
    r"(?:Classified|CLASSIFIED|Derived) (?:[Bb]y|BY)\b|E\.?\s?O\.?\s?1\d{3}|SIPDIS|NOFORN|"
    r"SENSITIVE\b|UNCLAS\b|U N C L A S|C O N F I D E N T I A L|S E C R E T|CONFIDENTIAL\b|SECRET\b|"
    r"FOR OFFICIAL USE ONLY|DECL:|C O R R E C T E D|(?:Class|Date|Key|Tags):)"
)
_CONTINUED_ANCHOR = re.compile(r"^[ \t]*(?:SUBJ|REF|Classified|CLASSIFIED|Derived)", re.I)
_BODY_AFTER_HEADER = re.compile(
    rf"(?:(?<=\s)|^){_MARKING}\s|(?<=\(d\)\.)\s+(?=[A-Z])|(?<=\(D\)\.)\s+(?=[A-Z])"
)


def _header_end(text: str) -> int:
    """Offset where the body starts in a cable without paragraph numbers: after the last header
    field (SUBJECT, REF, Classified By, ...) of the first lines, and its wrapped continuation."""
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    last, limit = -1, min(len(lines), 120)
    for i in range(limit):
        if _HEADER_ANCHOR.match(lines[i]) or _ROUTING_LINE.match(lines[i]):
            last = i
    if last < 0:
        return 0
    end = last + 1
    if _CONTINUED_ANCHOR.match(lines[last]):
        while end < len(lines) and lines[end].strip() and not _HEADER_ANCHOR.match(lines[end]):
            end += 1
    # Re-flowed cables may run the body on from the header line: "REF: STATE 123 (SBU) Text".
    tail_start = offsets[last]
    tail = text[tail_start: offsets[end - 1] + len(lines[end - 1])]
    m = _BODY_AFTER_HEADER.search(tail, 8)
    if m:
        return tail_start + m.start()
    return min(offsets[end] if end < len(lines) else len(text), len(text))


def _unnumbered_paragraphs(cable_id: str, body: str, header: str) -> list[Paragraph]:
    blocks: list[list[str]] = [[]]
    for line in body.split("\n"):
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].append(line)
        if len(line) > 100:  # a re-flowed line is a whole paragraph
            blocks.append([])
    raw_blocks = ["\n".join(b) for b in blocks if b]
    if raw_blocks:
        raw_blocks[-1] = _strip_signature(raw_blocks[-1])
    texts, headings = [], []
    heading = _trailing_heading(header, in_header=True)[1]
    pending = ""
    for raw in raw_blocks:
        raw, next_heading = _split_dashed_heading(raw)
        if next_heading is None:
            continue
        text = _clean(raw)
        if text and (len(pending) + len(text) > MIN_BLOCK_CHARS or pending):
            texts.append(f"{pending} {text}".strip())
            headings.append(heading)
            heading, pending = "", ""
        elif text:
            pending = f"{pending} {text}".strip()
        if next_heading:
            if pending and texts:
                texts[-1] += " " + pending
                pending = ""
            heading = next_heading
    if pending:
        if texts:
            texts[-1] += " " + pending
        else:
            texts.append(pending)
            headings.append(heading)
    return [
        Paragraph(cable_id, n, t, h, numbered=False)
        for n, (t, h) in enumerate(zip(texts, headings), start=1)
    ]


def _split_dashed_heading(raw: str) -> tuple[str, str | None]:
    """For a block of an unnumbered cable: (text, heading for the next block).

    Returns heading None when the block is only a dash line (the underline of a heading that
    was already taken).
    """
    if _DASHES.match(raw.strip()) or not raw.strip("- \n"):
        return "", None
    lines = raw.split("\n")
    if len(lines) >= 2 and _DASHES.match(lines[-1]):
        k = len(lines) - 2
        cut = k - 1 if k >= 1 and _DASHES.match(lines[k - 1]) else k
        return "\n".join(lines[:cut]), lines[k].strip()
    return _inline_heading(lines) or (raw, "")


# --------------------------------------------------------------------------------------------
# Header fields
# --------------------------------------------------------------------------------------------

_ROUTING_LINE = re.compile(
    r"^[ \t]*(?:VZCZC|[A-Z]{2} RUE|DE RUE|ZN[YR] |[OPRZ] \d{6}Z|FM |TO |INFO |R[A-Z]{3,}/|BT$|"
    r"ACTION |id: |date: |refid: |origin: |classification: |destination: |header:|"
    r"(?:Class|Date|Key|Tags):\s|This record is a partial extract|\d+$|\d{6}Z |\d{4}-\d\d-\d\d)"
)
_GLUED_CLASSIFICATION = re.compile(
    r"(IMMEDIATE|PRIORITY|ROUTINE|WASHDC|COLLECTIVE)(UNCLAS|C O N F|S E C R|CONFIDENTIAL|SECRET)"
)
_FIELD_STOP = (
    r"(?=\s+(?:REF(?:S|TEL)?\s*:|Classified [Bb]y|CLASSIFIED BY|E\.O\.|TAGS\s*:|SUBJECT\s*:|"
    rf"\d{{1,2}}\.\s?{_MARKING}|{_MARKING})|$)"
)


def _header_text(header: str) -> str:
    """The header material kept as context: routing lines dropped, blank lines collapsed."""
    header = _GLUED_CLASSIFICATION.sub(r"\1\n\2", header)
    lines = [line.strip() for line in header.split("\n")]
    kept = [line for line in lines if line and not _ROUTING_LINE.match(line)]
    return "\n".join(kept).replace("¶", "")


def _field(header: str, name: str) -> str:
    """The text of a header field such as SUBJECT, with its wrapped continuation lines."""
    m = re.search(rf"(?m)^[ \t]*{name}[ \t]*:?[ \t]*(.*)$", header)
    if not m:
        return ""
    parts = [m.group(1)]
    for line in header[m.end():].split("\n")[1:]:
        if not line.strip() or _HEADER_ANCHOR.match(line) or _LINE_CANDIDATE.match(line):
            break
        parts.append(line)
    value = " ".join(" ".join(parts).split())
    return re.match(rf"(.*?){_FIELD_STOP}", value).group(1).strip()


def _subject(header: str) -> str:
    return _field(header, r"SUBJ(?:ECT)?").replace("¶", "")


def _tags(header: str) -> list[str]:
    value = _field(header, r"TAGS")
    tags = [t for t in re.split(r"[\s,;]+", value) if re.fullmatch(r"[A-Z][A-Z0-9-]{1,11}", t)]
    return list(dict.fromkeys(tags))


_REF_STOP = {"AND", "REF", "REFS", "REFTEL", "REFTELS", "NOTAL", "PREVIOUS", "ALSO", "SEE",
             "PARA", "PARAS", "TO", "IN", "OF", "FROM", "TEL", "NO", "THE", "EMAIL", "E-MAIL"}


def _refs(header: str, year: str) -> list[str]:
    """Referenced cable ids: `A. 08 PHNOM PENH 123` -> `08PHNOMPENH123`; no year: the cable's."""
    value = _field(header, r"REF(?:S|TEL|TELS|ERENCES?)?").replace("¶", "")
    refs: list[str] = []
    tokens = re.findall(r"[A-Za-z][A-Za-z'-]*\.?|\d+|[^\sA-Za-z\d]", value)
    for i, token in enumerate(tokens):
        if not token.isdigit() or len(token) > 7:
            continue
        words, k = [], i - 1
        while k >= 0 and re.fullmatch(r"[A-Z][A-Z'-]+|State|Secstate", tokens[k]):
            if tokens[k].upper() in _REF_STOP and (words or k == i - 1):
                if tokens[k].upper() != "THE" or not words:
                    break
            words.insert(0, tokens[k].upper())
            k -= 1
        post = "".join(words)
        if len(post) < 3 or len(words) > 4:
            continue
        ref_year = tokens[k] if k >= 0 and re.fullmatch(r"\d{2}|\d{4}", tokens[k]) else year
        post = "STATE" if post == "SECSTATE" else post
        refs.append(f"{ref_year[-2:]}{post}{int(token)}")
    return list(dict.fromkeys(refs))
