"""The LanceDB database of the lance store (`--store lance --lance-uri URI`): the one module that
imports lancedb. Its tables, their schemas and indexes, and the SQL `where` of the filters.

    chunks      one row per paragraph chunk: text, vector, the filter columns, the stored
                metadata (JSON) and its two hashes, and `search_text`, what BM25 reads
    terms       how many chunks hold each stemmed term, for the ranker's idfs
    sentences   the vectors of each paragraph's candidate sentences, keyed by their digest
    writer      the claim of the ingest writing, on object storage (rag.index.lance_writer)

A table object stays at the version it was opened at (no read consistency interval): a reader
answers from that version until it opens the tables again.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

from rag.errors import NoIndex, RagError, require_extra
from rag.filters import Filters
from rag.settings import Settings
from rag.types import yyyymmdd

CHUNKS, TERMS, SENTENCES, WRITER = "chunks", "terms", "sentences", "writer"
# Below this many chunks a dense search scans every vector (exact, ~10 ms at 73k × 384 dims);
# from it on, an HNSW index (IVF_HNSW_SQ) is built once and kept up to date by `optimize`.
VECTOR_INDEX_ROWS = 100_000
# Candidates the HNSW index's scalar-quantised distances pick, per result, re-ranked by the full
# vectors: the quantisation, not the graph, lost most of the neighbours (on the demo's 3,258
# chunks indexed as a test: the exact top 10 of 5 questions, 34 of 50 without, 48 with).
REFINE_FACTOR = 5
# A filtered dense search goes one of three ways, by how many rows pass (measured at 1M and 3M
# synthetic chunks, 80 dev questions): through the HNSW index under the filter (1M: 44–90 ms,
# 3M: 155–219 ms, whatever the filter); exactly over the rows that pass, when at most
# EXACT_ROWS or EXACT_SHARE of them do (1M: 423 rows 10 ms, 16.8k 42 ms; 3M: 48k 128 ms; but a
# year's 1.15M rows 2.0 s), from a few thousand rows on from their vectors held in memory after
# the filter's first search (rag.index.lance_held; 3M, 48k rows: 35 ms); or, when at least
# BROAD_SHARE of the rows pass, as an unfiltered search for OVERSAMPLE times the neighbours the
# share predicts are needed, the filter applied to them (3M, a year: 39 ms, the same top 10 as
# under the filter), falling back to the index when too few pass. Below VECTOR_INDEX_ROWS every
# filtered search is exact: with no index, the rows that pass are fewer to scan than all.
EXACT_ROWS = 20_000
EXACT_SHARE = 0.02
BROAD_SHARE = 0.2
OVERSAMPLE = 3
# A date range of more months than this (the release spans 1966–2010) is one range of `date_int`.
MONTHS_LISTED = 600
# A search's default: nothing filtered.
NO_FILTERS = Filters()


def _lancedb():
    require_extra("lance", "--store lance", "lancedb", "pyarrow")
    # Lance logs a warning on stderr for every table it creates.
    os.environ.setdefault("LANCEDB_LOG", "error")
    import lancedb

    return lancedb


def connect(settings: Settings, create: bool = False):
    """The database at `settings.lance_uri`; a one-line error when none is given, or (unless
    `create`) when a local folder is not there: a read never leaves an empty folder behind."""
    uri = settings.lance_uri.strip()
    if not uri:
        raise RagError("--store lance needs --lance-uri URI (or RAG_LANCE_URI): a folder, or s3://bucket/path")
    if "://" not in uri:
        path = Path(uri).expanduser()
        if path.exists() and not path.is_dir():
            raise RagError(f"--lance-uri {uri} is a file, not a folder for a LanceDB database")
        if not create and not path.exists():
            raise NoIndex(f"no LanceDB index at {uri}: run 'rag ingest PATH --store lance --lance-uri {uri}' first")
        uri = str(path)
    try:
        return _lancedb().connect(uri)
    except Exception as exc:
        raise RagError(f"cannot open the LanceDB database at {uri}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def open_table(db, name: str):
    """The table `name` at its latest version; None when the database has none."""
    try:
        return db.open_table(name)
    except (ValueError, FileNotFoundError):
        return None


def require_table(db, name: str, uri: str):
    table = open_table(db, name)
    if table is None:
        raise NoIndex(f"no LanceDB index at {uri}: run 'rag ingest PATH --store lance --lance-uri {uri}' first")
    return table


def chunk_schema(model_id: str, dimension: int):
    import pyarrow as pa

    return pa.schema(
        [("id", pa.string()), ("cable_id", pa.string()), ("paragraph", pa.int32()), ("text", pa.string()),
         ("search_text", pa.string()), ("vector", pa.list_(pa.float32(), dimension)), ("origin", pa.string()),
         ("classification", pa.string()), ("date_int", pa.int32()), ("month", pa.int32()), ("tags", pa.list_(pa.string())),
         ("refs", pa.list_(pa.string())), ("metadata", pa.string()), ("hash", pa.string()), ("meta_hash", pa.string())],
        # The encoder that built the table: another one's vectors would be searched as if comparable.
        metadata={"embed_model": model_id, "embed_dim": str(dimension)},
    )


def terms_schema():
    import pyarrow as pa

    return pa.schema([("term", pa.string()), ("df", pa.int64())])


def sentences_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("model", pa.string()), ("vectors", pa.list_(pa.float16()))])


def writer_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("value", pa.string())])


def drop_tables(settings: Settings) -> None:
    """Remove every table of the lance store's index (`rag ingest --rebuild`), not the claim of
    the ingest that rebuilds it."""
    db = connect(settings, create=True)
    for name in (CHUNKS, TERMS, SENTENCES):
        db.drop_table(name, ignore_missing=True)


def create_table(db, name: str, schema):
    return db.create_table(name, schema=schema, exist_ok=True)


def quote(value: str) -> str:
    """A string literal of Lance's SQL."""
    return "'" + str(value).replace("'", "''") + "'"


def among(column: str, values) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def where_clause(filters: Filters, months: bool = False) -> str | None:
    """The SQL `where` of the filters, on the scalar-indexed columns; None when nothing is filtered.
    With `months` (a table with the `month` column), a date range's whole months are matched by
    `month` and only its part-months by `date_int` (`month_range`)."""
    clauses = []
    if filters.cable_id:
        clauses.append(f"cable_id = {quote(filters.cable_id)}")
    if filters.origin:
        clauses.append(f"origin = {quote(filters.origin)}")
    if filters.classification:
        clauses.append(f"classification = {quote(filters.classification)}")
    if filters.tag:
        clauses.append(f"array_has_any(tags, [{quote(filters.tag)}])")
    if months and filters.date_from and filters.date_to:
        clauses.append(month_range(filters.date_from, filters.date_to))
    else:
        if filters.day_from:
            clauses.append(f"date_int >= {int(filters.day_from)}")
        if filters.day_to:
            clauses.append(f"date_int <= {int(filters.day_to)}")
    return " AND ".join(clauses) or None


def month_range(first: date, last: date) -> str:
    """The days from `first` to `last` as whole months of `month` (YYYYMM, a bitmap index) and
    the days of the months the range cuts into as ranges of `date_int`: the same rows. LanceDB
    computes a btree range's rows one by one (2009's 1.15M rows of 3M: ~45 ms) and a bitmap's at
    once (~6 ms), before a search under them can start."""
    if last.year >= 9999:
        last = date(9998, 12, 31)

    def next_month(day: date) -> date:
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)

    start = first if first.day == 1 else next_month(first)
    end = next_month(last) if next_month(last) == last + timedelta(days=1) else last.replace(day=1)
    if start >= end or (end.year - start.year) * 12 > MONTHS_LISTED:
        return f"(date_int >= {yyyymmdd(first)} AND date_int <= {yyyymmdd(last)})"
    months, month = [], start
    while month < end:
        months.append(str(month.year * 100 + month.month))
        month = next_month(month)
    parts = [f"month IN ({', '.join(months)})"]
    if first < start:
        parts.append(f"(date_int >= {yyyymmdd(first)} AND date_int < {yyyymmdd(start)})")
    if end <= last:
        parts.append(f"(date_int >= {yyyymmdd(end)} AND date_int <= {yyyymmdd(last)})")
    return "(" + " OR ".join(parts) + ")"


def keep_indexed(table, kinds: dict[str, str]) -> None:
    """Create the indexes `kinds` names (column → btree, bitmap, label_list or fts) that `table`
    lacks, and bring those it has up to the rows written: new rows join every index, so ingest
    never rebuilds an index from scratch, and a table whose indexes cover every row is left at
    its version."""
    from lancedb.index import FTS, Bitmap, BTree, HnswSq, LabelList

    rows = table.count_rows()
    if not rows:
        return
    configs = {"btree": BTree, "bitmap": Bitmap, "label_list": LabelList,
               # The sidecar's BM25 reads English Snowball stems without stop words: so does this.
               "fts": lambda: FTS(language="English", stem=True, remove_stop_words=True, ascii_folding=True)}
    indexes = table.list_indices()
    have = {column for index in indexes for column in index.columns}
    missing = [column for column in kinds if column not in have]
    if "vector" in table.schema.names and "vector" not in have and rows >= VECTOR_INDEX_ROWS:
        missing.append("vector")
    if missing or any(index.num_unindexed_rows for index in indexes):
        # Compaction (merging the small fragments each write appends) comes first: an index built
        # on fragments that a later compaction rewrites has to be remapped then, which after a
        # first ingest of 1M chunks cost 69 s of the next ingest of 1,000 cables (6 s once the
        # fragments were merged; bench/lance_scale_bench.py). The indexes already there take the
        # new rows in the same call. Also prunes versions older than lancedb's default of 7 days:
        # a reader still on one of those would lose its files, and every reader here moves on
        # long before (a server at each answer).
        table.optimize()
    for column in missing:
        table.create_index(column, config=HnswSq(distance_type="cosine") if column == "vector" else configs[kinds[column]]())
