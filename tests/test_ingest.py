"""Ingest on real cables: idempotent, replaces changed cables, survives kill -9 and bad input."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fakes

from rag.cables import read_cable_file
from rag.chunk import chunk_cable
from rag.cli import main
from rag.errors import IndexMismatch
from rag.index.demo import DEMO_DIR
from rag.index.embed import get_encoder
from rag.index.ingest import ingest, open_store
from rag.index.rows import RowIndex
from rag.index.store import Store
from rag.settings import Settings

# What ingest writes and keeps is tested with the fake encoder (tests/fakes.py): no model to load or run.
pytestmark = pytest.mark.usefixtures("fake_encoder")

SAMPLE = ["09PHNOMPENH637", "06PHNOMPENH983", "08PHNOMPENH1012", "09PHNOMPENH851", "07PHNOMPENH1285"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A handful of real cables from the bundled demo corpus."""
    src = tmp_path / "cables"
    src.mkdir()
    files = [DEMO_DIR / f"{cid}.txt" for cid in SAMPLE if (DEMO_DIR / f"{cid}.txt").exists()]
    files += sorted(DEMO_DIR.glob("*.txt"))[: 8 - len(files)]
    for f in files:
        shutil.copy(f, src / f.name)
    return src


def snapshot(settings: Settings) -> dict:
    """Every chunk's id → (document, content hash): what 'the same index' means."""
    store = open_store(settings, get_encoder(settings.encoder), create=False)
    got = store.collection.get(include=["documents", "metadatas"])
    return {i: (d, m["hash"]) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


def test_reingest_embeds_nothing_and_changed_cable_replaces_its_chunks(corpus, tmp_path):
    settings = Settings(index_dir=tmp_path / "index")
    first = ingest([corpus], settings, progress=False)
    assert first.ok and first.cables == len(list(corpus.glob("*.txt")))
    assert first.embedded == first.chunks > 0
    before = snapshot(settings)

    again = ingest([corpus], settings, progress=False)
    assert again.embedded == 0 and again.deleted == 0
    assert snapshot(settings) == before

    # Drop the cable's last paragraph and change a word: its old chunks must go.
    path = corpus / "09PHNOMPENH637.txt"
    text = path.read_text(encoding="utf-8")
    cut = text.index("¶7.")
    path.write_text(text[:cut].replace("Kang Sokhorn", "Kang S."), encoding="utf-8")
    changed = ingest([corpus], settings, progress=False)
    after = snapshot(settings)
    assert changed.deleted >= 1 and 0 < changed.embedded <= 6
    assert "09PHNOMPENH637:7" not in after and "09PHNOMPENH637:1" in after
    assert "Kang S." in after["09PHNOMPENH637:1"][0]
    assert {k: v for k, v in after.items() if not k.startswith("09PHNOMPENH637:")} == {
        k: v for k, v in before.items() if not k.startswith("09PHNOMPENH637:")
    }


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_index(corpus, tmp_path):
    for f in sorted(DEMO_DIR.glob("*.txt"))[8:40]:
        shutil.copy(f, corpus / f.name)
    reference = Settings(index_dir=tmp_path / "reference")
    ingest([corpus], reference, progress=False)

    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "killed"), "RAG_INGEST_BATCH": "4"}
    cmd = [sys.executable, fakes.__file__, "ingest", str(corpus)]
    log = tmp_path / "ingest.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 300
    # Killed once the progress bar has passed two batches: it has written into the store.
    while proc.poll() is None and time.time() < deadline and not re.search(r"ingest:.*?\b(9|[1-9]\d)/", log.read_text()):
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed: make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    rerun = subprocess.run([*cmd, "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    killed = Settings(index_dir=tmp_path / "killed")
    assert snapshot(killed) == snapshot(reference)
    killed_sidecar = RowIndex.at(killed).load()
    assert killed_sidecar.generation == open_store(killed, get_encoder(killed.encoder), create=False).generation
    assert sorted(killed_sidecar._columns["ids"].tolist()) == sorted(snapshot(killed))


def test_bad_files_are_named_with_a_reason_and_the_rest_is_ingested(corpus, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "binary.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    (bad / "latin1.txt").write_bytes("09ROME1\nSUBJ\nFri Aug 28 00:00:00 +0200 2009\nC\nEmbassy Rome\ncaf\xe9".encode("latin-1"))
    (bad / "truncated.txt").write_text("09ROME2\nSUBJECT ONLY\n", encoding="utf-8")
    (bad / "huge.txt").write_text((DEMO_DIR / "09PHNOMPENH637.txt").read_text(encoding="utf-8") + "x" * 10_500_000)
    (bad / "rows.csv").write_text('id,date,refid,origin,classification,references,header,content\n1,"2009-01-01 10:00","09ROME3"\n')
    code = main(["ingest", str(corpus), str(bad), "--index", str(tmp_path / "index"), "--quiet"])
    err = capsys.readouterr()
    assert code == 1
    lines = [l for l in err.err.splitlines() if l.startswith("skipped ")]
    assert len(lines) == 6, err.err
    for name in ("empty.txt", "binary.txt", "latin1.txt", "truncated.txt", "huge.txt", "rows.csv"):
        assert any(name in l and ": " in l for l in lines), name
    assert "Traceback" not in err.err
    assert f"{len(list(corpus.glob('*.txt')))} cables" in err.out


def test_index_built_with_another_model_is_refused(corpus, tmp_path):
    settings = Settings(index_dir=tmp_path / "index")
    ingest([corpus], settings, progress=False)
    with pytest.raises(IndexMismatch, match=fakes.FakeEncoder.model_id):
        Store(settings, model_id="some/other-model", dimension=768)


def test_long_paragraph_is_split_into_parts_that_keep_its_citation():
    cable = read_cable_file(DEMO_DIR / "09PHNOMPENH637.txt")
    enc = get_encoder(fakes.FAKE_ENCODER)  # MiniLM's word pieces and window, without loading the model
    long_text = " ".join(p.text for p in cable.paragraphs) * 2
    cable.paragraphs[0] = type(cable.paragraphs[0])(cable.id, 1, long_text)
    chunks = [c for c in chunk_cable(cable, enc.count_tokens, enc.max_tokens) if c.paragraph.number == 1]
    assert len(chunks) > 2
    assert {c.citation for c in chunks} == {cable.paragraphs[0].citation}
    assert len({c.id for c in chunks}) == len(chunks)
    assert " ".join(c.text for c in chunks).split() == long_text.split()
    assert max(enc.count_tokens([c.embed_text for c in chunks])) <= enc.max_tokens


def test_stats_reports_what_the_index_holds(corpus, tmp_path, capsys):
    index = tmp_path / "index"
    assert main(["ingest", str(corpus), "--index", str(index), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["stats", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert f"cables: {len(list(corpus.glob('*.txt')))}" in out
    assert fakes.FakeEncoder.model_id in out and "Embassy Phnom Penh" in out


def test_stats_without_an_index_is_one_line(tmp_path, capsys):
    assert main(["stats", "--index", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rag: error: no index at") and "\n" not in err


@pytest.mark.slow
def test_ingest_and_ask_through_a_chroma_server(corpus, tmp_path, chroma_server):
    """The path for users who outgrow one process: `chroma run` on loopback, --chroma-url."""
    from rag.answer.pipeline import Pipeline

    settings = Settings(index_dir=tmp_path / "local-side", chroma_url=chroma_server)
    report = ingest([corpus], settings, progress=False)
    assert report.ok and report.embedded == report.chunks > 0
    assert not (tmp_path / "local-side" / "chroma").exists()
    assert ingest([corpus], settings, progress=False).embedded == 0
    answer = Pipeline(settings).ask("Who leads Cambodia's police TIP response?")
    assert "Kang Sokhorn" in answer.text


def test_a_cable_with_no_paragraph_is_reported_and_counted(shared_dir, corpus, tmp_path, capsys):
    # 08ANKARA1423's file holds its header and "Classified By: ...", nothing more.
    shutil.copy(shared_dir / "cables" / "08ANKARA1423.txt", corpus / "08ANKARA1423.txt")
    assert main(["ingest", str(corpus), "--index", str(tmp_path / "index")]) == 0
    captured = capsys.readouterr()
    assert "no paragraphs in 08ANKARA1423: the cable holds only its header" in captured.err
    assert ", 1 without paragraphs, " in captured.out


def test_the_progress_bar_advances_within_a_batch(corpus, tmp_path):
    seen = []
    from rag.index.ingest import Ingester, IngestReport, iter_sources
    from rag.types import Cable

    cables = [c for c in iter_sources([corpus]) if isinstance(c, Cable)]
    settings = Settings(index_dir=tmp_path / "index", encoder="minilm")  # the model's batches are what is tested
    Ingester(settings)._write_batch(cables, IngestReport(), on_cables=seen.append)
    assert sum(seen) == len(cables)
    assert len(seen) > 1  # per encoder batch, not once for the whole batch
