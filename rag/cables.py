"""Parse Cablegate cables into `Cable` objects whose paragraphs carry the numbers the cable prints.

Two inputs: one file per cable (five metadata lines, then the raw telegram; the layout of
../shared/cables) and the full release's `cables.csv`. Both go through `parse_body`, so the same
telegram text gives the same paragraphs whichever way it arrived.

The raw text is untidy in many ways (../shared/README.md lists them). `parse_body` is a pipeline
of regex-based steps over one string:

1. `_isolate_own_copy`: some files hold a truncated excerpt ("...") and then the whole cable again,
   often behind a copy of its database row, and some have another cable glued on; keep one full
   copy of this cable.
2. `_remove_breaks`: section breaks (`PHNOM PENH 00000637  002 OF 002`, also inside re-flowed
   lines), old `PAGE 02 ...` page headers with their routing residue, stray `SIPDIS` captions.
3. `_choose_numbering`: paragraph-number candidates (`¶6.`, `6. (C)`, `(C) 6.`, `6.(C)` inside a
   re-flowed line) are weighed and the best 1, 2, 3... chain is kept, so that sub-items, quoted
   lists and wrapped dates (`on April\n¶24. The...`) are not taken for paragraphs.
4. Paragraph text: number removed (a `(C)` marking is kept), headings underlined with dashes moved
   to the paragraph they introduce, signature and web-site footers dropped, whitespace normalised.
   Cables that print no numbers are cut into blocks numbered 1..n with `numbered=False`.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from pathlib import Path
from typing import Iterator, NamedTuple

from rag.citation import is_cable_id
from rag.types import Cable, Paragraph

MAX_FILE_BYTES = 5 * 1024 * 1024
CSV_COLUMNS = ("id", "date", "refid", "origin", "classification", "references", "header", "content")
# In a cable without printed numbers, blocks this short are folded into the next block.
MIN_BLOCK_CHARS = 40


class CableError(ValueError):
    """Input that cannot be parsed as a cable. The message (also `reason`) is a one-line
    explanation for people; `source` names the file it came from, when known."""

    def __init__(self, reason: str, source: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.source = source


class ParsedBody(NamedTuple):
    """What `parse_body` finds in a cable's raw text."""

    header: str  # header material (classification line, TAGS, SUBJECT, REF, Classified By...)
    subject: str  # from the SUBJECT: line, wrapped lines joined
    tags: list[str]
    refs: list[str]  # referenced cable ids that could be resolved
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
        CableError: empty, truncated (no text after the metadata) or malformed metadata.
    """
    if not text.strip():
        raise CableError("empty file")
    lines = text.split("\n", 5)
    if len(lines) < 6 or not lines[5].strip():
        raise CableError("truncated: no body after the header")
    cable_id, subject, date_line, classification, origin = (line.strip() for line in lines[:5])
    if not is_cable_id(cable_id):
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
    """Read and parse one cable file, checking first that it is a sane text file.

    Raises:
        CableError: larger than MAX_FILE_BYTES, empty, binary, not UTF-8, truncated or
            malformed; `source` is the path.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            limit = MAX_FILE_BYTES / 2**20
            raise CableError(f"file too large ({size / 2**20:.1f} MB > {limit:.0f} MB)", str(path))
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

    Columns: id, date, refid, origin, classification, references, header, content (a first row
    naming them is optional). Fields may use MySQL backslash escapes (`\\n`, `\\"`, `\\'`, `\\\\`)
    or CSV doubled quotes. The cable id is `refid`; `references` (ids separated by commas or `|`)
    are added to the refs found in the text.

    Yields:
        A `Cable` per good row, or a `CableError` naming the row (counted from 1, a header row
        included) and the problem for a bad one; the stream goes on after a bad row.
    """
    csv.field_size_limit(2**31 - 1)  # a whole cable is one field
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        columns = list(CSV_COLUMNS)
        row_number = 0
        for text, closed in _csv_records(_unescape_mysql(f)):
            if not closed:
                row_number += 1
                yield CableError(f"CSV row {row_number}: a quoted field is never closed (the row is cut short)", str(path))
                continue
            for row in csv.reader(io.StringIO(text, newline=""), strict=False):
                row_number += 1
                if row_number == 1 and row and row[0].strip().lower() == "id":
                    columns = [name.strip().lower() for name in row]
                    continue
                if not any(field.strip() for field in row):
                    continue
                try:
                    yield _cable_from_row(dict(zip(columns, row)))
                except CableError as e:
                    yield CableError(f"CSV row {row_number}: {e.reason}", str(path))


# A physical line that can begin a row: the release's numeric id column, then a comma.
_ROW_START = re.compile(r'"?\d+"?,')


def _csv_records(lines: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """Group physical lines into rows, so that one broken row costs only itself.

    A row ends where a line that can begin a row follows with every quote closed. A row whose
    quote never closes (a cut-short row) would otherwise swallow every row after it: once it
    has run past MAX_FILE_BYTES, or at the end of the file, it is given up — yielded with
    `closed` False — and reading resumes at the first line inside it that could begin a row.

    Yields:
        (the row's text, whether its quotes all closed).
    """
    source = iter(lines)
    replay: list[str] = []  # lines to read again after a row was given up, last first
    record: list[str] = []
    size, open_quote = 0, False
    restarts: list[int] = []  # where, inside an open quote, a line could begin a row
    while True:
        line = replay.pop() if replay else next(source, None)
        if line is not None and record and _ROW_START.match(line):
            if not open_quote:
                yield "".join(record), True
                record, size, restarts = [], 0, []
            else:
                restarts.append(len(record))
        if line is not None:
            record.append(line)
            size += len(line)
            open_quote ^= line.count('"') % 2 == 1
        if open_quote and restarts and (line is None or size > MAX_FILE_BYTES):
            yield "".join(record[:restarts[0]]), False
            replay.extend(reversed(record[restarts[0]:]))
            record, size, restarts, open_quote = [], 0, [], False
        elif line is None:
            break
    if record:
        yield "".join(record), not open_quote


def parse_body(cable_id: str, text: str, origin: str = "", classification: str = "") -> ParsedBody:
    """Split the raw text of one cable (everything after the metadata) into header and paragraphs.

    Args:
        cable_id: e.g. `09PHNOMPENH637`; used to recognise section breaks, embedded copies and refs.
        text: routing block, header and body as the source gives them.
        origin, classification: help recognise bare metadata lines of an embedded copy.

    Returns:
        A `ParsedBody`. Paragraphs carry the numbers the cable prints; when the first printed
        number is 2, unnumbered text before it becomes ¶1 with `numbered=False`; a cable that
        prints no numbers gives blocks 1..n with `numbered=False`.
    """
    text = _isolate_own_copy(cable_id, _normalise(text), origin, classification)
    text = _remove_breaks(cable_id, text)
    candidates = _find_candidates(text)
    deduplicated = _drop_repeated_paragraphs(text, candidates)
    if deduplicated != text:
        text, candidates = deduplicated, _find_candidates(deduplicated)
    markers = _choose_numbering(candidates)
    if markers:
        head_end = markers[0].start
        if markers[0].num == 2:  # the first paragraph may simply carry no number
            head_end = _header_end(text[:head_end])
        paragraphs = _numbered_paragraphs(cable_id, text, markers, head_end)
    else:
        head_end = _header_end(text)
        body = _strip_signature(text[head_end:])
        paragraphs = _unnumbered_paragraphs(cable_id, body, text[:head_end])
    header = text[:head_end]
    return ParsedBody(
        header=_header_text(header),
        subject=_field(header, r"SUBJ(?:ECT)?"),
        tags=_tags(header),
        refs=_refs(header, year=cable_id[:2]),
        paragraphs=paragraphs,
    )


# --------------------------------------------------------------------------------------------
# Building the Cable; CSV rows
# --------------------------------------------------------------------------------------------



def _make_cable(
    cable_id: str,
    subject: str,
    cable_date: date | None,
    classification: str,
    origin: str,
    body: ParsedBody,
    listed_refs: list[str] | None = None,
) -> Cable:
    refs = dict.fromkeys([*(listed_refs or []), *body.refs])
    refs.pop(cable_id, None)
    return Cable(
        id=cable_id,
        subject=subject or body.subject,
        date=cable_date,
        classification=classification,
        origin=origin,
        tags=body.tags,
        refs=list(refs),
        paragraphs=body.paragraphs,
        header=body.header,
    )


def _cable_from_row(row: dict[str, str]) -> Cable:
    absent = [name for name in CSV_COLUMNS if name not in row]  # the row is short
    empty = [name for name in ("refid", "date", "content") if not row.get(name, "-").strip()]
    if absent or empty:
        raise CableError(f"missing field {(absent + empty)[0]!r}")
    cable_id = row["refid"].strip()
    if not is_cable_id(cable_id):
        raise CableError(f"refid is not a cable id: {cable_id[:40]!r}")
    text = row["header"].rstrip("\n") + "\n" + row["content"]
    origin, classification = row["origin"].strip(), row["classification"].strip()
    body = parse_body(cable_id, text, origin=origin, classification=classification)
    listed = [ref for ref in re.split(r"[,|\s]+", row["references"]) if is_cable_id(ref)]
    return _make_cable(cable_id, "", _csv_date(row["date"]), classification, origin, body, listed)


def _csv_date(value: str) -> date:
    value = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%m/%d/%Y %H:%M"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            pass
    raise CableError(f"bad date {value[:30]!r}")


_MYSQL_ESCAPE = re.compile(r"\\(.)", re.S)
_MYSQL_CHARS = {"n": "\n", "t": "\t", "r": "\r", "0": "", "Z": "\x1a", "N": "", '"': '""'}


def _unescape_mysql(lines: Iterator[str]) -> Iterator[str]:
    """Turn MySQL backslash escapes into what the csv module reads (a quote becomes `""`).

    An escape never spans lines (an escaped newline is the backslash ending its own line), so
    each physical line is rewritten alone and memory stays bounded.
    """
    for line in lines:
        if "\\" in line:
            line = _MYSQL_ESCAPE.sub(lambda m: _MYSQL_CHARS.get(m.group(1), m.group(1)), line)
        yield line


# --------------------------------------------------------------------------------------------
# Step 1: normalise, and keep one full copy of this cable
# --------------------------------------------------------------------------------------------

_BR = re.compile(r"[ \t]*<br\s*/?>[ \t]*\n?", re.I)
_DATE_FIELD = r"(?:\d{4}-\d\d-\d\d(?: [\d:]+)?|\d{1,2}/\d{1,2}/\d{4} [\d:]+)"
_ID_FIELD = r"(?P<id>\d\d[A-Z][A-Z0-9-]*\d)"
_CLASS_WORD = r"(?:UNCLASSIFIED|CONFIDENTIAL|SECRET|LIMITED OFFICIAL USE)"
_CSV_FIELD = r'(?:"(?:[^"]|"")*"|[^,\n]*)'
# The cable's database row as files embed it: MySQL tab dump (sometimes with its first columns
# doubled), CSV, a space-aligned listing, and one "field: value" line per column.
_OWN_ROWS = [
    ("tab", re.compile(
        rf"(?m)^(?:\d+\t)?(?:{_DATE_FIELD}\t\d+\t)?{_DATE_FIELD}\t{_ID_FIELD}"
        r"\t[^\t\n]*\t[^\t\n]*\t[^\t\n]*\t"
    )),
    ("csv", re.compile(
        rf"(?m)^\d+,{_DATE_FIELD},{_ID_FIELD},{_CSV_FIELD},{_CSV_FIELD},{_CSV_FIELD},\"?"
    )),
    ("spaced", re.compile(
        rf"(?m)^\d+ +{_DATE_FIELD} +{_ID_FIELD} {{2,}}.*? {{2}}{_CLASS_WORD}[A-Z/ ]*?(?: {{2,}}|$)"
    )),
    ("record", re.compile(rf"(?m)^refid: {_ID_FIELD}\n(?:[a-z]+:.*\n)*?header:[ \t]*\n")),
]
_ANY_ROW = re.compile(rf"(?m)(?:^|[ \t])(?:\d+[\t ,]+)?{_DATE_FIELD}[\t ,]+{_ID_FIELD}[\t ,]")
_META_LINE = re.compile(r"^(?:\d+|\d{4}-\d\d-\d\d[ \d:]*|\d\d[A-Z][A-Z0-9|]*\d)$")
_ROUTING_BLOCK = re.compile(r"(?m)(?:^|[ \t])VZCZC")
_EXCERPT_END = re.compile(r"\.\.\.[ \t]*\n[ \t]*\n")
# What the second, full copy of a cable starts with.
_RESTART = re.compile(r"(?m)C O N F I D E N T I A L|S E C R E T|UNCLAS|VZCZC|SUBJECT|^refid:|^\d+$")
_ROUTING_START = re.compile(r"\A\s*(?:VZCZC|[A-Z]{2} RUE|\d+ +\d{4}-)")
_FIRST_PARAGRAPH = re.compile(r"(?m)^[ \t]*¶?1\.[ \t]")
_SECOND_PARAGRAPH = re.compile(r"(?m)^[ \t]*¶?2\.[ \t]")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", " ").replace("\u2029", " ")  # used as spaces in a few cables
    if "<br" in text or "<BR" in text:
        text = _BR.sub("\n", text)
    # A line holding a lone "-" separates paragraphs in old cables; a trailing backslash is left
    # over from MySQL dumps, which escape every newline.
    return "\n".join(
        "" if line.strip() == "-" else line.rstrip().removesuffix("\\").rstrip()
        for line in text.split("\n")
    )


def _isolate_own_copy(cable_id: str, text: str, origin: str, classification: str) -> str:
    """Keep one full copy of the cable's own text and drop what the source glued after it.

    The copy after an embedded database row (or bare metadata lines) of this cable is the
    complete one; a truncated excerpt ("...") followed by a second copy is spliced to it.
    """
    if cable_id in text:
        for kind, pattern in _OWN_ROWS:
            for m in pattern.finditer(text):
                if m.group("id") == cable_id:
                    return _unwrap_row(_cut_glued(cable_id, text[m.end():]), kind)
        restart = _bare_metadata_end(cable_id, text, origin, classification)
        if restart is not None:
            return _cut_glued(cable_id, text[restart:])
    return _cut_glued(cable_id, _splice_excerpt(cable_id, text))


def _unwrap_row(text: str, kind: str) -> str:
    if kind == "tab":
        text = text.replace("\t", "\n")
    elif kind == "csv":
        text = text.replace('","', "\n").replace('""', '"')
        text = re.sub(r'"\s*$', "", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _bare_metadata_end(cable_id: str, text: str, origin: str, classification: str) -> int | None:
    """Where the text restarts after bare metadata lines (number, date, id, origin, class)."""
    for m in re.finditer(rf"(?m)^{re.escape(cable_id)}$", text):
        following = [line.strip() for line in text[m.end():].split("\n")[1:12] if line.strip()]
        if not {origin, classification} & set(following[:3]):
            continue
        pos = m.end()
        for line in text[m.end():].split("\n")[1:]:
            value = line.strip()
            if value and value not in (origin, classification) and not _META_LINE.match(value):
                break
            pos += len(line) + 1
        return min(pos, len(text))
    return None


def _splice_excerpt(cable_id: str, text: str) -> str:
    """Replace a truncated excerpt ("...") by the full copy that follows it, where one does."""
    m = _EXCERPT_END.search(text)
    if not m or _SECOND_PARAGRAPH.search(text, 0, m.start()):
        return text  # excerpts stop in the header or the first paragraph; this "..." is text
    before, after = text[: m.start()], text[m.end():]
    block_start = before.rfind("\n\n") + 1
    words = before[block_start:].split()
    # The excerpt's last word may be cut short; its first words are reliable.
    key = words[:6] if len(words) > 6 else words[:-1]
    if len(" ".join(key)) >= 8:
        found = re.search(r"\s+".join(map(re.escape, key)), after, re.I)
        if found and _RESTART.search(after, 0, found.end()):
            return before[:block_start] + after[found.start():]
    number = re.search(r"\d+$", cable_id)
    own_routing = re.compile(rf"#0*{int(number.group())}\b") if number else None
    if _ROUTING_START.match(after) and not (own_routing and own_routing.search(after[:2000])):
        return before  # another cable's routing block follows: the excerpt is all we have
    return text


def _cut_glued(cable_id: str, text: str) -> str:
    """Cut off what the source glued after the cable: another cable's database row, or a
    second transmission (`@@@OASYS@@@`, or a new `VZCZC` routing block after paragraph 1)."""
    cuts = [m.start() for m in _ANY_ROW.finditer(text) if m.group("id") != cable_id][:1]
    cuts += [i for i in [text.find("@@@OASYS@@@")] if i >= 0]
    later = [m.start() for m in _ROUTING_BLOCK.finditer(text)][1:]
    cuts += [i for i in later if _FIRST_PARAGRAPH.search(text, 0, i)][:1]
    return text[: min(cuts)] if cuts else text


# --------------------------------------------------------------------------------------------
# Step 2: remove section breaks, page headers and other transmission residue
# --------------------------------------------------------------------------------------------

_SECTION_NUMBER = re.compile(
    r"[ \t]+0*(?P<num>\d{1,8})[ \t]+\d{3}(?:\.\d)?[ \t]+[Oo][Ff][ \t]+\d{3}\b"
)
_POST_AT_END = re.compile(r"(?<![A-Za-z])[A-Z][A-Za-z.'-]*(?:[ \t]+[A-Z][A-Za-z.'-]*)*$")
_BREAK_MARK = "\x00"  # stands for a removed break until the blank lines around it go too
_BREAK_WITH_BLANKS = re.compile(r"\n(?:[ \t]*\n)*[ \t]*\x00[ \t]*\n(?:[ \t]*\n)*|[ \t]*\x00[ \t]*")
_PAGE_HEADER = (
    r"PAGE \d\d[ \t]+(?:[A-Z][A-Z ]{0,20}?[ \t]+\d{3,8}(?:[ \t]+\d\d OF \d\d)?[ \t]+\d{6}Z"
    r"|RUE[A-Z]+\d+[ \t]+[A-Z ]+?)"
)
_PAGE = re.compile(rf"^[ \t]*{_PAGE_HEADER}[ \t]*")
_PAGE_INSIDE_LINE = re.compile(rf"[ \t]+{_PAGE_HEADER}[ \t]+")
_TRAILING_CLASS = re.compile(rf"[ \t]+{_CLASS_WORD}[ \t]*\n(?=[ \t]*PAGE \d\d)")
_LATER_SECTION = re.compile(
    r"(?m)^[ \t]*(?:C O N F I D E N T I A L|S E C R E T|U N C L A S|UNCLAS|CONFIDENTIAL|SECRET)\b"
    r".*\bSECTION 0*(?:[2-9]|[1-9]\d) OF \d+"
)
_ADDRESS_LINE = re.compile(
    r"^[ \t]*(?:AMEMBASSY|AMCONSUL|USMISSION|USINT|SECSTATE|USCINC|CINC|DIA |CIA |NSC |JCS |SECDEF|"
    r"[A-Z ]+ WASHDC|CONFIDENTIAL|SECRET|UNCLASSIFIED)"
)
_SECTION_HEADER_LINE = re.compile(
    r"^[ \t]*(?:INFO |ACTION |-{5,}|[A-Z]+-\d\d|C O N F|S E C R E T|U N C L|UNCLAS|CONFIDENTIAL|"
    r"SECRET|SIPDIS|E\.?O\.? ?1\d{4}|TAGS|SUBJECT|XXXXXXXXXXXX$|DEPT|DEPARTMENT|EMBASSY .* NO\.|"
    r"C O R R E C T E D|FOR |PASS |[A-Z /,]+ FOR )"
)
_RESIDUE_LINE = re.compile(
    rf"^[ \t]*(?:{_CLASS_WORD}(?:[ \t]+PTQ\d+)?|>(?: ?@@@.*)?|NNNN|BT|=+CABLE ENDS=+|SIPDIS|"
    rf"\d{{4}}[A-Z]+\d+ - Classification: .*)[ \t]*(?:\n|$)",
    re.M,
)
# The SIPDIS caption dropped into the middle of a paragraph, with a blank line before it.
_SIPDIS_INSERT = re.compile(r"\n[ \t]*\n[ \t]*SIPDIS[ \t]*\n(?=[ \t]*\S)")


def _remove_breaks(cable_id: str, text: str) -> str:
    text = _remove_page_headers(text)
    if " OF " in text or " of 0" in text:
        text = _remove_section_breaks(cable_id, text)
    text = _SIPDIS_INSERT.sub("\n", text)
    return _RESIDUE_LINE.sub("", text)


def _remove_section_breaks(cable_id: str, text: str) -> str:
    """Remove `PHNOM PENH 00000637  002 OF 002`, on its own line or inside a re-flowed line.

    On its own line any post is accepted; inside a line only this cable's number and post
    (spaced, or cut short as in `BUENOS AIR`), so that no real words are eaten.
    """
    m = re.match(r"^\d{2}[A-Z0-9-]*?([A-Z]+)(\d+)$", cable_id)
    own_post, own_num = (m.group(1), int(m.group(2))) if m else ("", -1)
    pieces, done = [], 0
    for m in _SECTION_NUMBER.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        post = _POST_AT_END.search(text, max(line_start, m.start() - 40), m.start())
        if not post or post.start() < done:
            continue
        rest_of_line = text[m.end(): line_end if line_end >= 0 else len(text)]
        if not text[line_start: post.start()].strip() and not rest_of_line.strip():
            start = post.start()
        elif int(m.group("num")) == own_num:
            start = _own_post_start(post, own_post)
        else:
            start = None
        if start is not None:
            pieces += [text[done:start], _BREAK_MARK]
            done = m.end()
    if not pieces:
        return text
    text = "".join(pieces) + text[done:]

    def join(m: re.Match) -> str:
        if "\n" not in m.group(0):
            return " "
        # A break between two paragraphs keeps them apart; one inside a paragraph joins it.
        before = text[max(0, m.start() - 200): m.start()].rstrip()
        return "\n\n" if before.endswith((".", ":", '"', "?", "!")) else "\n"

    return _BREAK_WITH_BLANKS.sub(join, text)


def _own_post_start(post: re.Match, own_post: str) -> int | None:
    """Where this cable's post name starts among the capitalised words before a break number."""
    words = list(re.finditer(r"\S+", post.group(0)))
    for k, word in enumerate(words):
        letters = "".join(w.group(0) for w in words[k:]).upper()
        if letters == own_post or (len(letters) >= 4 and own_post.startswith(letters)):
            return post.start() + word.start()
    if own_post and words[-1].group(0).upper().endswith(own_post):  # "XXXXXXXXXXXXLONDON"
        return post.start() + words[-1].end() - len(own_post)
    return None


def _remove_page_headers(text: str) -> str:
    """Old cables repeat `PAGE 02 HARARE 05461 01 OF 02 271458Z` on each page and, at each new
    section, the routing and header lines; remove them, keeping text that shares their lines."""
    if "PAGE 0" not in text and not _LATER_SECTION.search(text):
        return text
    lines = _TRAILING_CLASS.sub("\n", text).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        page = _PAGE.match(lines[i])
        if (page and lines[i].split()[1] == "01") or _LATER_SECTION.match(lines[i]):
            while out and (
                not out[-1].strip() or _ROUTING_LINE.match(out[-1]) or _ADDRESS_LINE.match(out[-1])
            ):
                out.pop()
            out.append("")
            i, stop = i + 1, min(i + 16, len(lines))
            while i < stop and (not lines[i].strip() or _SECTION_HEADER_LINE.match(lines[i])):
                i += 1
            continue
        if not page:
            out.append(lines[i])
        elif lines[i][page.end():].strip():
            out.append(lines[i][page.end():])
        i += 1
    return _PAGE_INSIDE_LINE.sub(" ", "\n".join(out))


# --------------------------------------------------------------------------------------------
# Step 3: paragraph numbers
# --------------------------------------------------------------------------------------------

_MARKING = (
    r"\((?:U|C|S|TS|SBU|LOU|FOUO|NF|u|c|s|sbu)(?:\s*//?\s*[A-Za-z][A-Za-z ,\n]{1,60})?\)"
)
# `¶6.  (SBU) ...`, `6. (C) ...`, `6.(C)`, `(C) 6. ...`, `1 (S) ...`, `¶1. 1. Summary`.
_LINE_CANDIDATE = re.compile(
    rf"^(?P<indent>[ \t]*)(?P<pil>¶)?[ \t]*(?P<mk1>{_MARKING}[ \t]*:?[ \t]*)?"
    rf"(?P<num>\d{{1,3}})(?:[ \t]?\.(?:[ \t]+(?P=num)\.)?[ \t]*|[ \t]+(?={_MARKING}))"
    rf"(?=(?P<mk2>{_MARKING})|[A-Za-z\"'(\[-]|(?<=[ \t])(?!(?:19|20)\d\d\b)\d|$)",
    re.M,
)
# Re-flowed cables may run paragraphs together on one line: "...Damascus.  3. (C) Abdel Halim",
# "...Support ----------- 3.  Subsequently", "NOC REACTS SWIFTLY 4 (SBU) Libya's".
_INLINE_CANDIDATE = re.compile(
    rf"(?<=[ \t])(?:(?P<num>\d{{1,2}})[ \t]?\.[ \t]{{0,3}}"
    rf"(?={_MARKING}|(?:BEGIN )?SUMMARY\b|Summary\b)"
    rf"|(?:(?<=---[ \t])|(?<=---[ \t][ \t]))(?P<num2>\d{{1,2}})\.[ \t]+(?=\S)"
    rf"|(?:(?<=[A-Z][A-Z][ \t])|(?<=[A-Z][A-Z][ \t][ \t]))(?P<num3>\d{{1,2}})[ \t]+(?={_MARKING}))"
)
# A line ending like this makes a number starting the next line part of a date or reference,
# "on September\n15. The" or "UNSCR\n1540.", which the WikiLeaks site still gave a pilcrow.
_WRAPPED_REFERENCE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|No|Nos|Art|Para)\.?|"
    r"paras?|paragraphs?|UNSCR|Resolution|Article|Section|Law|Decree|number)[ \t]*$",
    re.I,
)
# No sentence ends like this, so a number on the next line continues it ("under the age of\n16.").
_OPEN_SENTENCE = re.compile(
    r"(?:\b(?:of|to|the|a|an|by|for|in|on|at|with|from|than|under|over|about|between|aged?|"
    r"ages|grades?|nearly|approximately|around)|(?<=\w )(?:and|or))[ \t]*$"
)


class _Candidate(NamedTuple):
    start: int  # where the paragraph, number included, begins
    text_start: int  # where its text begins
    num: int
    marked: bool  # followed (or preceded) by a classification marking such as (C)
    marking: str  # a marking printed before the number, `(C) 3.`, which the text keeps
    layout: float  # evidence from the layout: blank line before, pilcrow, indentation
    after_redaction: bool  # follows XXXXXXXXXXXX, which may stand for whole paragraphs


def _find_candidates(text: str) -> list[_Candidate]:
    found: dict[int, _Candidate] = {}
    for m in _LINE_CANDIDATE.finditer(text):
        start = m.start()
        prev_start = text.rfind("\n", 0, max(start - 1, 0)) + 1
        blank_before = start == 0 or not text[prev_start:start].strip()
        before = text[max(0, start - 40): start].rstrip()
        marked = bool(m.group("mk1") or m.group("mk2"))
        open_sentence = not marked and bool(_OPEN_SENTENCE.search(before))
        if not (marked or blank_before) and (open_sentence or _WRAPPED_REFERENCE.search(before)):
            continue
        layout = (0.5 if blank_before else 0.0) + (0.3 if m.group("pil") else 0.0)
        layout -= 0.5 if len(m.group("indent").expandtabs()) >= 2 else 0.0
        layout -= 1.0 if open_sentence else 0.0
        marking = (m.group("mk1") or "").strip(" \t:")
        redacted = before.endswith("XXXXXXXXXXXX")
        found[start] = _Candidate(start, m.end(), int(m.group("num")), marked, marking, layout,
                                  redacted)
    for m in _INLINE_CANDIDATE.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if text[line_start: m.start()].strip():  # at a line start it was found above
            marked = text[m.end(): m.end() + 1] == "("
            num = int(m.group("num") or m.group("num2") or m.group("num3"))
            found[m.start()] = _Candidate(m.start(), m.end(), num, marked, "", -0.4, False)
    return sorted(found.values())


def _drop_repeated_paragraphs(text: str, cands: list[_Candidate]) -> str:
    """Remove paragraphs that the source repeats word for word under the same number (some
    files repeat part of the cable after a section break)."""
    first: dict[tuple[int, str], str] = {}
    cuts: list[tuple[int, int]] = []
    for k, c in enumerate(cands):
        end = cands[k + 1].start if k + 1 < len(cands) else len(text)
        words = " ".join(text[c.start: end].split())
        key = (c.num, words[:100])
        if key not in first:
            first[key] = words
        elif len(key[1]) == 100:
            cuts.append((c.start, _repeated_until(text, c.start, end, first[key])))
    for start, end in reversed(cuts):
        text = text[:start] + text[end:]
    return text


def _repeated_until(text: str, start: int, end: int, words: str) -> int:
    """How far text[start:end] repeats `words` (whitespace-normalised), as an index into text."""
    i, j = start, 0
    while i < end and j < len(words):
        if text[i].isspace():
            j += words[j] == " "
        elif text[i] == words[j]:
            j += 1
        else:
            break
        i += 1
    return i


# A paragraph's predecessor is looked for among this many earlier candidates, which keeps the
# search linear on huge inputs; real cables have at most a few hundred candidates.
_CHAIN_WINDOW = 200


def _choose_numbering(cands: list[_Candidate]) -> list[_Candidate]:
    """Pick the best chain of candidates numbered 1, 2, 3...

    A longest-path search: each candidate adds its weight and a skipped or repeated number
    costs a penalty. In a cable whose paragraphs carry markings like (C), unmarked numbers are
    most likely sub-items, so they weigh little.
    """
    if not cands:
        return []
    marked_style = sum(c.marked for c in cands) >= 2
    weights = [(2.0 if c.marked else 0.2 if marked_style else 1.0) + c.layout for c in cands]
    best: list[float] = []
    back: list[int] = []
    for i, c in enumerate(cands):
        score, prev = weights[i] - min(0.25 * (c.num - 1), 3.0), -1
        for j in range(max(0, i - _CHAIN_WINDOW), i):
            penalty = _step_penalty(c.num - cands[j].num, c.after_redaction)
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
    if len(chain) == 1 and not (chain[0].marked or chain[0].num <= 2 and chain[0].layout > 0.2):
        return []  # a lone "1." is more likely a list item in an unnumbered cable
    return chain


def _step_penalty(step: int, after_redaction: bool) -> float | None:
    """Cost of going from paragraph n to n + step; None where that cannot happen."""
    if step == 1:
        return 0.0
    if step > 1 and after_redaction:  # the redaction took the paragraphs in between
        return 0.3
    if step == 0:  # a number printed twice (06PHNOMPENH983 has two ¶11)
        return 1.5
    if step >= 2:  # the author skipped numbers, or a paragraph was withheld
        return min(0.6 * (step - 1), 2.0)
    return None


# --------------------------------------------------------------------------------------------
# Step 4: paragraphs, headings, signatures
# --------------------------------------------------------------------------------------------


def _numbered_paragraphs(
    cable_id: str, text: str, markers: list[_Candidate], body_start: int
) -> list[Paragraph]:
    """Paragraphs between the chosen markers; text between the header and a first marker `¶2`
    becomes an unprinted ¶1 (`numbered=False`)."""
    paragraphs: list[Paragraph] = []
    heading = _trailing_heading(text[:body_start], in_header=True)[1]
    if body_start < markers[0].start:
        intro, next_heading = _trailing_heading(text[body_start: markers[0].start])
        if len(_clean(intro)) >= MIN_BLOCK_CHARS:
            paragraphs.append(Paragraph(cable_id, 1, _clean(intro), heading, numbered=False))
            heading = next_heading
    seen: dict[int, int] = {}
    for k, marker in enumerate(markers):
        if k + 1 < len(markers):
            raw, next_heading = _trailing_heading(text[marker.text_start: markers[k + 1].start])
        else:
            raw, next_heading = _strip_signature(text[marker.text_start:]), ""
        occurrence = seen.get(marker.num, 0)
        seen[marker.num] = occurrence + 1
        clean = _clean(f"{marker.marking} {raw}")
        paragraphs.append(Paragraph(cable_id, marker.num, clean, heading, occurrence=occurrence))
        heading = next_heading
    return paragraphs


_DASHES = re.compile(r"^[ \t]*-[- ]{2,}[ \t]*$")
_UNDERLINE_AT_END = re.compile(r"(?:^|[ \t])(-{3,})[ \t-]*$")
_OVERLINE = re.compile(r"(?:^|[ \t])-{3,}[ \t]+(?=[^-\s][^-]*$)")
# Table rows, links and "End text"-like lines are not headings.
_NOT_A_TITLE = re.compile(
    r"\d[\d,.)]*\s+\S*\d|%|https?:|\.pdf|(?i:^(?:end|begin|text|septel|comment|note)\b)"
)


def _trailing_heading(raw: str, in_header: bool = False) -> tuple[str, str]:
    """Split a heading off the end of a paragraph: it belongs to the paragraph that follows.

    Recognised: a line underlined (and maybe overlined) with dashes; the same re-flowed onto
    the end of a line (`END SUMMARY. Verdict -------`, the dashes as long as the heading); and,
    except in the header, a short title-like line standing alone after a blank line.

    Returns:
        (text without the heading, heading or "").
    """
    lines = raw.rstrip().split("\n")
    if all(_DASHES.match(line) or not line.strip() for line in lines):
        return "", ""
    if _DASHES.match(lines[-1]):
        k = len(lines) - 2
        while not lines[k].strip():
            k -= 1
        heading = lines[k].strip()
        if _DASHES.match(lines[k]) or in_header and _is_header_line(heading):
            return "\n".join(lines[: k + 1]), ""
        cut = k - 1 if k >= 1 and _DASHES.match(lines[k - 1]) else k
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
    if len(lines) < 3 or lines[-2].strip() or len(title) > 80 or len(title.split()) > 12:
        return False
    if title.endswith((",", ";", ":", "?", "!", ")", '"')):
        return False
    if title.startswith(("-", "(", "*", "¶", "•", "o ")):
        return False
    if title.endswith(".") and not title.endswith("..."):
        return False
    return bool(re.search(r"[A-Za-z]{3}", title)) and not _NOT_A_TITLE.search(title)


def _is_header_line(line: str) -> bool:
    return bool(_HEADER_ANCHOR.match(line) or _ROUTING_LINE.match(line) or line[:1].isdigit())


_SITE_PILCROW = re.compile(r"(?m)^([ \t]*)¶")
_FOOTER = re.compile(
    r"(?:\*[\s*]*)?(?:Please )?[Vv]isit\b[^\n]{0,80}?Classified [Ww]eb ?[Ss]ite.*", re.S
)
_TRAILER = re.compile(
    r"^\s*(?:https?://\S+.*|.*Partnership Blog at.*|.*North American\s*|</t[dr]>.*|\*{10,}.*|=+.*|"
    r"\"|\.\.\.)\s*$"
)
_SIGNATURE = re.compile(
    r"^(?:(?:van|de|von|del|da|la) )?[A-Z][A-Za-z'.-]*(?: [A-Za-z][A-Za-z'.-]*){0,2}$"
)
# A re-flowed last line keeps the signature on it: "... End comment. TUTTLE".
_INLINE_SIGNATURE = re.compile(r"(?<=[.!?\"')\]])[ \t]+(?:(?:van|de|von) )?[A-Z][A-Za-z'-]+[ \t]*$")


def _strip_signature(raw: str) -> str:
    """Drop the signature (`RODLEY`) and web-site footers after the last paragraph's text."""
    lines = _FOOTER.sub("", raw).rstrip().split("\n")
    signed = False
    while len(lines) > 1:
        last = lines[-1].strip()
        if not last or _TRAILER.match(last):
            lines.pop()
        elif not signed and _is_signature(last, lines[:-1]):
            lines.pop()
            signed = True
        else:
            break
    if not signed:
        lines[-1] = _INLINE_SIGNATURE.sub("", lines[-1])
    return "\n".join(lines)


def _is_signature(last: str, before: list[str]) -> bool:
    prev = next((line.strip() for line in reversed(before) if line.strip()), "")
    return bool(
        _SIGNATURE.match(last)
        and len(last) <= 30
        and not last.endswith(".")
        and (not prev or prev.endswith((".", "!", "?", ":", '"', ")", "-")))
    )


def _clean(raw: str) -> str:
    """Text on one line, without the pilcrows the WikiLeaks site put at line starts (`¶B.`)."""
    return " ".join(_SITE_PILCROW.sub("", raw).split())


# --------------------------------------------------------------------------------------------
# Cables that print no paragraph numbers
# --------------------------------------------------------------------------------------------

_HEADER_ANCHOR = re.compile(
    r"^[ \t]*(?:SUBJ(?:ECT)?\b|TAGS\b|REF(?:S|TEL|TELS|ERENCE|ERENCES)?\b\s*[:(A-Z0-9]|"
    r"(?:Classified|CLASSIFIED|Derived) (?:[Bb]y|BY)\b|E\.?\s?O\.?\s?1\d{3}|SIPDIS|NOFORN|"
    r"SENSITIVE\b|UNCLAS\b|U N C L A S|C O N F I D E N T I A L|S E C R E T|CONFIDENTIAL\b|SECRET\b|"
    r"FOR OFFICIAL USE ONLY|DECL:|C O R R E C T E D|(?:Class|Date|Key|Tags):)"
)
_CONTINUED_FIELD = re.compile(r"^[ \t]*(?:SUBJ|REF|TAGS|Classified|CLASSIFIED|Derived)", re.I)
_REF_ITEM = re.compile(r"^[ \t]*¶?\(?[A-Ha-h][.)][ \t]")
_ADDRESSEE = re.compile(r"^[ \t]*[A-Z0-9/(][A-Z0-9 ,.:;/&()'+-]{0,100}$")
# A marking, or the end of "Classified By: ... 1.4 (b) and (d).", where a re-flowed body starts.
_BODY_AFTER_HEADER = re.compile(
    rf"(?<!1\.\d )(?<!1\.\d)(?<!, ){_MARKING}(?![ \t]*(?:,|and\b|AND\b))\s+(?=[A-Z])"
    r"|(?<=\([dD]\)\.)\s+(?=[A-Z])"
)


def _header_end(text: str) -> int:
    """Offset where the body starts in a cable without paragraph numbers.

    The header is read line by line: routing lines, the classification line, captions and
    addressees, then E.O., TAGS, SUBJECT, REF and Classified By with their wrapped lines. Once
    one of those fields has been seen, the first line that is none of these starts the body.
    """
    pos = end = last_start = 0
    field, seen_field, blank_before = "", False, True
    for line in text.split("\n"):
        start, pos = pos, pos + len(line) + 1
        if not line.strip():
            blank_before = True
            continue
        if _HEADER_ANCHOR.match(line):
            continued = _CONTINUED_FIELD.match(line)
            field = continued.group(0).strip().upper()[:3] if continued else ""
            seen_field = seen_field or bool(field)
        elif field and not blank_before or field == "REF" and _REF_ITEM.match(line):
            pass  # a wrapped header field, or the next item of a REF list
        elif seen_field or not (_ROUTING_LINE.match(line) or _ADDRESSEE.match(line)):
            break
        end, last_start, blank_before = min(pos, len(text)), start, False
    # Re-flowed cables may run the body on from the last header line: "REF: STATE 123 (SBU) X".
    m = _BODY_AFTER_HEADER.search(text, last_start + 8)
    return m.start() if m and m.start() < end else end


def _unnumbered_paragraphs(cable_id: str, body: str, header: str) -> list[Paragraph]:
    """Blocks of a cable that prints no paragraph numbers, numbered 1..n.

    Blocks are separated by blank lines (a re-flowed line is a block of its own); blocks of at
    most MIN_BLOCK_CHARS are folded into the next one, and an underlined heading goes to the
    block it introduces.
    """
    heading = _trailing_heading(header, in_header=True)[1]
    blocks: list[tuple[str, str]] = []
    pending = ""
    for raw in _blocks(body):
        raw, next_heading = _trailing_heading(raw)
        text = f"{pending} {_clean(raw)}".strip()
        pending = ""
        if len(text) > MIN_BLOCK_CHARS or (text and next_heading):
            blocks.append((heading, text))
            heading = ""
        else:
            pending = text
        heading = next_heading or heading
    if pending and blocks:
        blocks[-1] = (blocks[-1][0], f"{blocks[-1][1]} {pending}")
    elif pending:
        blocks.append((heading, pending))
    return [
        Paragraph(cable_id, n, text, heading, numbered=False)
        for n, (heading, text) in enumerate(blocks, start=1)
    ]


def _blocks(body: str) -> Iterator[str]:
    block: list[str] = []
    for line in body.split("\n"):
        if line.strip():
            block.append(line)
        if block and (not line.strip() or len(line) > 100):  # a re-flowed line is a paragraph
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


# --------------------------------------------------------------------------------------------
# Header fields
# --------------------------------------------------------------------------------------------

_ROUTING_LINE = re.compile(
    r"^[ \t]*(?:VZCZC|[A-Z]{2} RUE|DE RUE|ZN[YR] |[OPRZ] \d{6}Z|FM |TO |INFO |R[A-Z]{3,}/|BT$|"
    r"ACTION |id: |date: |refid: |origin: |classification: |destination: |header:|"
    r"(?:Class|Date|Key|Tags):\s|This record is a partial extract|\d+$|\d{6}Z |\d{4}-\d\d-\d\d)"
)
_CLASSIFICATION_LINE = re.compile(
    r"(?m)^[ \t]*(?:UNCLAS|U N C L A S|C O N F I D E N T I A L|S E C R E T|CONFIDENTIAL|SECRET|"
    r"LIMITED OFFICIAL USE)\b"
)
_GLUED_CLASSIFICATION = re.compile(
    r"(IMMEDIATE|PRIORITY|ROUTINE|WASHDC|COLLECTIVE)(UNCLAS|C O N F|S E C R|CONFIDENTIAL|SECRET)"
)
_FIELD_STOP = (
    r"(?=\s+(?:REF(?:S|TEL)?\s*:|Classified [Bb]y|CLASSIFIED BY|E\.O\.|TAGS\s*:|SUBJECT\s*:|"
    rf"\d{{1,2}}\.\s?{_MARKING}|{_MARKING})|$)"
)
_REF_ID = re.compile(
    r"(?:(?<=[\s.,;:)(])|^)(?:(?P<year>\d{2}|\d{4})\s+)?"
    r"(?P<post>(?:[A-Z][A-Z'-]*|State|Secstate|SecState)(?:\s+[A-Z][A-Z'-]*){0,4})"
    r"\s+0*(?P<num>\d{1,7})\b"
)
_REF_NOISE = {"A", "B", "C", "D", "E", "F", "G", "H", "AND", "REF", "REFS", "REFTEL", "REFTELS",
              "SEE", "ALSO", "NOTAL", "PREVIOUS", "EMAIL", "E-MAIL", "TEL", "CABLE", "PARA", "NO"}


def _header_text(header: str) -> str:
    """The header material kept as context: from the classification line on (the routing block
    before it goes), without routing lines, blank lines and pilcrows."""
    header = _GLUED_CLASSIFICATION.sub(r"\1\n\2", header)
    start = _CLASSIFICATION_LINE.search(header)
    lines = [line.strip() for line in header[start.start() if start else 0:].split("\n")]
    return "\n".join(
        _SITE_PILCROW.sub("", line) for line in lines if line and not _ROUTING_LINE.match(line)
    )


def _field(header: str, name: str) -> str:
    """The text of a header field such as SUBJECT with its wrapped lines (for REF, also further
    items after a blank line); in re-flowed text the field may start mid-line."""
    m = re.search(rf"(?m)^[ \t]*{name}\b[ \t]*:?[ \t]*(.*)$|(?<=\s){name}[ \t]*:[ \t]*(.*)$",
                  header)
    if not m:
        return ""
    parts = [m.group(1) or m.group(2) or ""]
    blank = False
    for line in header[m.end():].split("\n")[1:]:
        if not line.strip():
            blank = True
        elif _HEADER_ANCHOR.match(line) or _LINE_CANDIDATE.match(line):
            break
        elif blank and not (name.startswith("REF") and _REF_ITEM.match(line)):
            break
        else:
            parts.append(line)
            blank = False
    value = _clean("\n".join(parts))
    return re.match(rf"(.*?){_FIELD_STOP}", value).group(1).strip()


def _tags(header: str) -> list[str]:
    value = _field(header, r"TAGS")
    tags = [t for t in re.split(r"[\s,;]+", value) if re.fullmatch(r"[A-Z][A-Z0-9-]{1,11}", t)]
    return list(dict.fromkeys(tags))


def _refs(header: str, year: str) -> list[str]:
    """Referenced cable ids: `A. 08 PHNOM PENH 123` gives `08PHNOMPENH123`; without a year the
    cable's own year is used; `PORT AU PRINCE 1543 AND 1497` gives two ids."""
    value = _field(header, r"REF(?:S|TEL|TELS|ERENCES?)?")
    refs: list[str] = []
    post = ""
    for m in _REF_ID.finditer(value):
        words = m.group("post").upper().split()
        while words and words[0] in _REF_NOISE:
            words.pop(0)
        if words:
            post = "STATE" if words == ["SECSTATE"] else "".join(words)
        elif not m.group("post").upper().endswith("AND"):
            continue
        if len(post) >= 3:
            refs.append(f"{(m.group('year') or year)[-2:]}{post}{int(m.group('num'))}")
    return list(dict.fromkeys(refs))
