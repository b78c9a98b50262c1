"""A damaged index is named in one line, with the command that repairs it, never a traceback or a
segfault: each part of a copy of the demo index is truncated or overwritten, then `rag ask`,
`rag stats` and `rag stats --verify` are run on it, and the repair is run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fakes
from fakes import FAKE_ENCODER
from rag.cli import main
from rag.index.demo import DEMO_DIR
from rag.index.hnsw_files import segments

QUESTION = "Who leads Cambodia's police TIP response?"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def index(fake_demo, tmp_path, monkeypatch) -> Path:
    """A copy of the demo index (built by the fake encoder, which the CLI is told of) that a test may damage."""
    copy = tmp_path / "index"
    shutil.copytree(fake_demo.index_dir, copy, ignore=shutil.ignore_patterns(".last-used", ".complete", ".demo-*"))
    monkeypatch.setenv("RAG_ENCODER", FAKE_ENCODER)
    return copy


def truncate(path: Path, keep: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep))


def overwrite(path: Path, at: int, length: int = 64) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"\xa5" * length)


def hnsw_file(index: Path, name: str) -> Path:
    (segment,) = segments(index / "chroma")
    return segment / name


def rag(*args: str) -> subprocess.CompletedProcess:
    """The CLI (with the fakes) in a process of its own: a segfault in Chroma's hnswlib kills that, not the tests."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, fakes.__file__, *args], capture_output=True, text=True, env=env, timeout=300)


def one_line(err: str) -> str:
    err = err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_sound_copy_verifies_part_by_part(index, capsys):
    code, out, _ = run(capsys, "stats", "--verify", "--index", str(index))
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["sqlite", "hnsw", "sidecar", "sentences"]
    assert all(": ok" in line for line in lines), out
    assert "3,258 rows" in out and "quick_check ok" in out


def test_an_index_that_is_a_file_is_one_line_for_every_command(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("not an index\n")
    for args in (["ingest", str(DEMO_DIR / "09PHNOMPENH637.txt")], ["ingest", "--rebuild", str(DEMO_DIR)],
                 ["ask", QUESTION], ["stats"], ["stats", "--verify"], ["show", "09PHNOMPENH637"]):
        code, out, err = run(capsys, *args, "--index", str(file))
        assert code == 1 and not out, (args, out)
        assert one_line(err) == (f"rag: error: --index {file} is a file, not an index directory: give the "
                                 "directory the index is (or is to be) built in"), args
    assert file.read_text() == "not an index\n"


SIDECAR_DAMAGE = [
    ("ids.npy", truncate, "bm25/columns.npz or ids.npy cannot be read"),
    ("columns.npz", lambda p: overwrite(p, p.stat().st_size // 2, 256), "bm25/columns.npz or ids.npy cannot be read"),
    ("vocab.json", lambda p: p.write_text('{"origins": ['), "bm25/vocab.json cannot be read"),
    ("vectors.f32", truncate, "bm25/vectors.f32 holds"),
    ("ids_order.npy", truncate, "bm25/ids_sorted.npy or ids_order.npy cannot be read"),
    ("data.csc.index.npy", truncate, "bm25/the BM25 score matrix (*.index.*) cannot be read"),
    ("indptr.csc.index.npy", lambda p: p.write_bytes(p.read_bytes()[:-40]), "bm25/the BM25 score matrix"),
]


@pytest.mark.parametrize("name, damage, named", SIDECAR_DAMAGE, ids=[d[0] for d in SIDECAR_DAMAGE])
def test_a_damaged_sidecar_file_is_named_by_ask_stats_and_verify(index, capsys, name, damage, named):
    damage(index / "bm25" / name)
    code, out, err = run(capsys, "ask", QUESTION, "--index", str(index))
    assert code == 1 and not out
    line = one_line(err)
    assert line.startswith(f"rag: error: the index at {index} is damaged: {named}"), line
    assert line.endswith(f"run 'rag ingest CABLES --index {index}' with any of its cables to make it again from "
                         "the store (nothing is embedded again)"), line

    code, out, err = run(capsys, "stats", "--index", str(index))
    assert code == 0 and not err
    (bm25,) = [line for line in out.splitlines() if line.strip().startswith("bm25:")]
    assert "bm25: damaged: " + named in bm25, out

    code, out, _ = run(capsys, "stats", "--verify", "--index", str(index))
    assert code == 1
    assert out.splitlines()[2].startswith("   sidecar: damaged: " + named), out
    assert [line for line in out.splitlines() if "damaged" in line] == [out.splitlines()[2]]


def test_an_overwritten_sidecar_generation_is_refused_and_ingest_rebuilds_it(index, capsys):
    (index / "bm25" / "generation").write_bytes(b"\xa5\xa5")
    code, _, err = run(capsys, "ask", QUESTION, "--index", str(index))
    assert code == 1 and "has no BM25 sidecar built from what it holds" in one_line(err)


def test_ingest_remakes_a_damaged_sidecar_without_embedding(index, capsys):
    truncate(index / "bm25" / "vectors.f32")
    code, out, _ = run(capsys, "stats", "--verify", "--index", str(index))
    assert code == 1 and "sidecar: damaged: bm25/vectors.f32" in out, out
    code, out, _ = run(capsys, "ingest", "--quiet", str(DEMO_DIR / "09PHNOMPENH637.txt"), "--index", str(index))
    assert code == 0 and "(0 embedded," in out, out
    code, out, _ = run(capsys, "stats", "--verify", "--index", str(index))
    assert code == 0 and "3,258 rows" in out, out
    code, out, _ = run(capsys, "ask", QUESTION, "--index", str(index))
    assert code == 0 and "[09PHNOMPENH637 ¶1]" in out


def test_a_damaged_sentence_store_is_named_by_verify_and_stats(index, capsys):
    overwrite(index / "sentences" / "keys.npy", 0, 16)
    code, out, _ = run(capsys, "stats", "--verify", "--index", str(index))
    assert code == 1
    assert out.splitlines()[3].startswith(" sentences: damaged: sentences/keys.npy cannot be read"), out
    code, out, _ = run(capsys, "stats", "--index", str(index))
    assert code == 0
    assert "sentence_vectors: damaged, so answers encode their sentences: sentences/keys.npy" in out, out


STORE_DAMAGE = [
    ("sqlite-truncated", lambda i: truncate(i / "chroma" / "chroma.sqlite3"), "sqlite",
     "chroma/chroma.sqlite3 is truncated ("),
    ("sqlite-header", lambda i: overwrite(i / "chroma" / "chroma.sqlite3", 0, 32), "sqlite",
     "chroma/chroma.sqlite3 is not an SQLite database"),
    ("hnsw-header", lambda i: overwrite(hnsw_file(i, "header.bin"), 12, 40), "hnsw",
     "/header.bin does not describe an HNSW index"),
    ("hnsw-header-truncated", lambda i: truncate(hnsw_file(i, "header.bin"), 0.3), "hnsw", "/header.bin is truncated"),
    ("hnsw-data-truncated", lambda i: truncate(hnsw_file(i, "data_level0.bin")), "hnsw", "/data_level0.bin is truncated"),
    ("hnsw-data-links", lambda i: overwrite(hnsw_file(i, "data_level0.bin"), 0, 128), "hnsw",
     "/data_level0.bin links to elements that do not exist"),
    ("hnsw-length-truncated", lambda i: truncate(hnsw_file(i, "length.bin")), "hnsw", "/length.bin is truncated"),
    ("hnsw-link-lists", lambda i: overwrite(hnsw_file(i, "link_lists.bin"), 0, 4096), "hnsw", "/link_lists.bin "),
    ("hnsw-link-lists-truncated", lambda i: truncate(hnsw_file(i, "link_lists.bin"), 0.2), "hnsw",
     "/link_lists.bin is truncated"),
    ("hnsw-missing", lambda i: hnsw_file(i, "length.bin").unlink(), "hnsw", "/length.bin is missing"),
    ("hnsw-pickle", lambda i: truncate(hnsw_file(i, "index_metadata.pickle")), "hnsw",
     "/index_metadata.pickle is truncated or overwritten"),
]


# Each case runs the CLI twice in a process of its own (~1.5 s): the fast tier takes one of each kind
# of damage, the full tier every case.
FAST_STORE_DAMAGE = {"sqlite-truncated", "hnsw-data-links", "hnsw-pickle"}


@pytest.mark.parametrize("damage, part, named", [
    pytest.param(*d[1:], id=d[0], marks=() if d[0] in FAST_STORE_DAMAGE else pytest.mark.slow) for d in STORE_DAMAGE])
def test_a_damaged_store_is_named_before_chroma_reads_it(index, damage, part, named):
    damage(index)
    asked = rag("ask", QUESTION, "--index", str(index))
    assert asked.returncode == 1, (asked.returncode, asked.stderr[-2000:])  # a segfault is -11
    line = one_line(asked.stderr)
    assert line.startswith(f"rag: error: the index at {index} is damaged: chroma/") and named in line, line
    assert line.endswith(f"run 'rag ingest --rebuild CABLES --index {index}' with its cables to build it again"), line
    assert not asked.stdout

    verified = rag("stats", "--verify", "--index", str(index))
    assert verified.returncode == 1, verified.stderr
    (damaged,) = [line for line in verified.stdout.splitlines() if "damaged" in line]
    assert damaged.strip().startswith(f"{part}: damaged: ") and named in damaged, verified.stdout


def test_overwritten_sqlite_pages_are_found_by_verify(index):
    db = index / "chroma" / "chroma.sqlite3"
    overwrite(db, 4096 * 2, 4096 * 4)
    verified = rag("stats", "--verify", "--index", str(index))
    assert verified.returncode == 1
    assert verified.stdout.splitlines()[0].startswith("    sqlite: damaged: chroma/chroma.sqlite3: "), verified.stdout


@pytest.mark.slow
def test_ingest_rebuild_replaces_a_damaged_store(index, demo_cables, capsys):
    truncate(hnsw_file(index, "data_level0.bin"))
    (index / "notes.txt").write_text("the operator's own file\n")
    cables = demo_cables(["09PHNOMPENH637", "01PHNOMPENH1740", "03PHNOMPENH922"])
    code, out, _ = run(capsys, "ingest", "--quiet", str(cables), "--index", str(index))
    assert code == 1  # a plain ingest opens the store, so it stops at the damage too
    code, out, err = run(capsys, "ingest", "--quiet", "--rebuild", str(cables), "--index", str(index))
    assert code == 0, err
    assert out.startswith("3 cables,"), out
    assert (index / "notes.txt").read_text() == "the operator's own file\n"
    code, out, _ = run(capsys, "stats", "--verify", "--index", str(index))
    assert code == 0, out
    code, out, _ = run(capsys, "ask", QUESTION, "--index", str(index))
    assert code == 0 and "[09PHNOMPENH637 ¶1]" in out


def test_rebuild_from_a_path_that_does_not_exist_leaves_the_index(index, capsys, tmp_path):
    code, _, err = run(capsys, "ingest", "--rebuild", str(tmp_path / "nowhere"), "--index", str(index))
    assert code == 1
    assert one_line(err) == f"rag: error: no such file or directory: {tmp_path / 'nowhere'}: the index was left as it is"
    assert (index / "chroma" / "chroma.sqlite3").exists() and (index / "bm25" / "ids.npy").exists()
