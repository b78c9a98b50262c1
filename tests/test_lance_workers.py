"""An ingest into the lance store spread over Ray workers (`--workers`), for real: one local Ray of
two workers per module, the fake encoder in every worker, each result checked against a serial
ingest of the same cables."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fakes import FAKE_ENCODER

from rag.answer.retrieve import open_retriever
from rag.cli import main
from rag.errors import RagError
from rag.index.demo import DEMO_DIR
from rag.index.lance_ingest import ingest_lance
from rag.index.lance_workers import OBJECT_STORE_BYTES, SYSTEM_CONFIG, shares, superseded
from rag.settings import Settings

ray = pytest.importorskip("ray")
# The ray extra brings pylance (rag/index/lance_fragments.py) with it.
lancedb = pytest.importorskip("lancedb")

TESTS = Path(__file__).resolve().parent
FIRST = ["09PHNOMPENH637", "08PHNOMPENH694", "08PHNOMPENH679", "03ANKARA4230", "04BRASILIA2129"]
LATER = ["08PHNOMPENH706", "03THEHAGUE3067"]
QUESTIONS = ["Who leads Cambodia's police TIP response?", "What did the embassy in Ankara report?",
             "Brazil ethanol exports", "Cambodia 08PHNOMPENH706"]


def lance_settings(folder: Path) -> Settings:
    return Settings(store="lance", lance_uri=str(folder), encoder=FAKE_ENCODER, index_dir=folder.parent / "unused")


def copy_cables(folder: Path, cable_ids: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    for cable_id in cable_ids:
        shutil.copy(DEMO_DIR / f"{cable_id}.txt", folder / f"{cable_id}.txt")
    return folder


def tables(settings: Settings) -> dict:
    """Every row of the three tables, keyed so that two databases compare whatever their files."""
    db = lancedb.connect(settings.lance_uri)
    rows = {name: db.open_table(name).to_arrow().to_pylist() for name in ("chunks", "terms", "sentences")}
    return {"chunks": {row["id"]: row for row in rows["chunks"]},
            # A serial ingest keeps a count that fell to 0; one commit of summed changes never writes it.
            "terms": {row["term"]: row["df"] for row in rows["terms"] if row["df"]},
            "sentences": {row["key"]: row for row in rows["sentences"]}}


def versions(settings: Settings) -> list[int]:
    db = lancedb.connect(settings.lance_uri)
    return [db.open_table(name).version for name in ("chunks", "terms", "sentences")]


def searches(settings: Settings, modes=("dense", "bm25", "hybrid")) -> dict:
    return {(mode, q): [h.chunk_id for h in open_retriever(settings, mode).search(q, 10)]
            for mode in modes for q in QUESTIONS}


@pytest.fixture(scope="module")
def local_ray():
    # The workers import this checkout's rag/ and the fake encoder's module (tests/fakes.py).
    path = os.pathsep.join(p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", object_store_memory=OBJECT_STORE_BYTES,
             _system_config=SYSTEM_CONFIG, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_both(local_ray, tmp_path_factory):
    """The demo corpus ingested serially and by two workers, into two databases."""
    root = tmp_path_factory.mktemp("lance-workers")
    serial, spread = lance_settings(root / "serial"), lance_settings(root / "spread")
    assert ingest_lance([DEMO_DIR], serial, progress=False).ok
    report = ingest_lance([DEMO_DIR], spread, progress=False, workers=2)
    assert report.ok and report.embedded == report.chunks > 3000 and report.sentences > 0
    return serial, spread


@pytest.mark.slow
def test_two_workers_end_with_the_rows_counts_sentences_and_searches_of_a_serial_ingest(demo_both):
    serial, spread = demo_both
    assert tables(spread) == tables(serial)
    assert searches(spread) == searches(serial)


@pytest.mark.slow
def test_a_rerun_through_the_cli_commits_nothing(demo_both, capsys, fake_encoder):
    _, spread = demo_both
    before = versions(spread)
    code = main(["ingest", str(DEMO_DIR), "--store", "lance", "--lance-uri", spread.lance_uri, "--workers", "2",
                 "--quiet"])
    assert code == 0 and "(0 embedded" in capsys.readouterr().out
    assert versions(spread) == before


@pytest.mark.slow
def test_added_changed_and_twice_given_cables_through_workers_end_as_a_serial_ingest(local_ray, tmp_path):
    first = copy_cables(tmp_path / "first", FIRST)
    later = copy_cables(tmp_path / "later", LATER)
    # The same cable in a later file, a paragraph reworded and the last one gone: the later copy wins.
    changed = (DEMO_DIR / f"{FIRST[0]}.txt").read_text()
    (later / f"{FIRST[0]}.txt").write_text(changed[: changed.index("COMMENT")].replace("Kang Sokhorn", "Zyxwort Sokhorn")
                                           + "RODLEY\n")
    serial, spread = lance_settings(tmp_path / "serial"), lance_settings(tmp_path / "spread")
    for settings, workers in ((serial, None), (spread, 2)):
        ingest_lance([first], settings, progress=False, workers=workers)
        report = ingest_lance([first, later], settings, progress=False, workers=workers)
        assert report.embedded > 0 and report.deleted > 0, report.summary()
    assert tables(spread) == tables(serial)
    # Lance's full-text scores count the rows a commit dropped until the index is rebuilt, so after
    # a change the BM25 order near ties follows how the rows were replaced: a serial ingest of the
    # same files in one run and in two differ the same way.
    assert searches(spread, ["dense"]) == searches(serial, ["dense"])
    assert open_retriever(spread, "hybrid").search("Cambodia 08PHNOMPENH706", 3)[0].cable_id == "08PHNOMPENH706"
    assert open_retriever(spread, "bm25").search("Zyxwort", 3)[0].cable_id == FIRST[0]


def test_workers_with_the_chroma_store_or_fewer_than_one_are_one_line(tmp_path, capsys, fake_encoder):
    assert main(["ingest", str(DEMO_DIR), "--index", str(tmp_path / "index"), "--workers", "2"]) == 1
    assert "--store lance" in capsys.readouterr().err
    with pytest.raises(RagError, match="give 1 or more"):
        ingest_lance([DEMO_DIR], lance_settings(tmp_path / "db"), progress=False, workers=0)
    assert not (tmp_path / "index").exists() and not (tmp_path / "db").exists()


def test_files_are_dealt_by_size_and_the_copy_read_last_wins(tmp_path):
    files = []
    for name, size in (("a", 10), ("b", 300), ("c", 100), ("d", 250)):
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text("x" * size)
    dealt = shares(files, 2)
    assert dealt == [[(0, str(files[0])), (1, str(files[1]))], [(2, str(files[2])), (3, str(files[3]))]]
    found = [[("A", (0, 0)), ("B", (1, 0))], [("A", (2, 0)), ("C", (3, 0)), ("C", (3, 1))]]
    assert superseded(found) == [{(0, 0)}, {(3, 0)}]
