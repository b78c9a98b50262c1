"""References between cables (issue 11): the REF lines the parser resolves to cable ids are stored
at ingest, indexed by the sidecar both ways, and listed by the cable view, on real demo cables.

The demo corpus holds a chain of Embassy Phnom Penh cables on the Uighur asylum-seekers of
December 2009: 09PHNOMPENH954's REF lines name 934, 926, 925 and 913 (all in the demo), and 957,
958, 959 and 960 name 954.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rag.chunk
from rag.answer.retrieve import open_retriever
from rag.cables import read_cable_file
from rag.index.demo import DEMO_DIR
from rag.index.index import Index
from rag.index.ingest import ingest
from rag.index.rows import RowIndex
from rag.settings import Settings

UIGHURS = "09PHNOMPENH954"
CITED = ["09PHNOMPENH934", "09PHNOMPENH926", "09PHNOMPENH925", "09PHNOMPENH913"]
CITING = ["09PHNOMPENH957", "09PHNOMPENH958", "09PHNOMPENH959", "09PHNOMPENH960"]
TIP = "09PHNOMPENH637"  # its one REF names a State cable the demo does not hold
NO_REFS = "06PHNOMPENH1088"  # prints no REF line
# A small corpus: 954, two cables it names (925 and 913 left out), two that name it, and two more.
SMALL = [UIGHURS, "09PHNOMPENH934", "09PHNOMPENH926", "09PHNOMPENH957", "09PHNOMPENH958", TIP, NO_REFS]


@pytest.fixture(scope="module")
def parsed() -> dict:
    """Every demo cable as the parser reads it: the oracle for what the index should list."""
    return {c.id: c for c in map(read_cable_file, sorted(DEMO_DIR.glob("*.txt")))}

# References are kept by ingest whatever the encoder: the fake one (tests/fakes.py) builds these indexes.
pytestmark = pytest.mark.usefixtures("fake_encoder")


def view(settings, cable_id: str) -> dict | None:
    return Index(settings).reader().cable(cable_id)


def citing_of(cables: dict, cable_id: str) -> list[str]:
    return [c.id for c in cables.values() if cable_id in c.refs]


def test_the_demo_holds_the_chain_the_tests_rely_on(parsed):
    assert parsed[NO_REFS].refs == [] and all(parsed[c].refs for c in SMALL if c != NO_REFS)
    assert parsed[UIGHURS].refs == CITED
    assert sorted(citing_of(parsed, UIGHURS)) == CITING
    assert parsed[TIP].refs == ["09STATE87525"] and "09STATE87525" not in parsed


def test_the_sidecar_holds_every_demo_cables_references_both_ways(fake_demo, parsed):
    lexical = RowIndex.at(fake_demo).load()
    edges = sum(len(c.refs) for c in parsed.values())
    assert edges > 300 and len(lexical._columns["ref_from"]) == edges
    for cable_id, cable in parsed.items():
        assert lexical.references(cable_id) == cable.refs, cable_id
        assert lexical.referenced_by(cable_id) == sorted(citing_of(parsed, cable_id)), cable_id
    assert lexical.references("09NOWHERE1") == lexical.referenced_by("09NOWHERE1") == []


def test_the_cable_view_lists_references_with_subjects_and_who_cites_it(fake_demo, parsed):
    cable = view(fake_demo, UIGHURS)
    assert cable["references"] == [
        {"id": c, "in_index": True, "subject": parsed[c].subject, "date": parsed[c].date_iso} for c in CITED]
    citing = sorted(CITING, key=lambda c: (parsed[c].date_iso, c))
    assert cable["referenced_by"] == [
        {"id": c, "subject": parsed[c].subject, "date": parsed[c].date_iso} for c in citing]

    tip = view(fake_demo, TIP)
    assert tip["references"] == [{"id": "09STATE87525", "in_index": False}]
    assert tip["referenced_by"] == []


@pytest.fixture
def small(demo_cables) -> Path:
    return demo_cables(SMALL)


def test_an_index_from_before_references_opens_and_ingest_adds_them_without_embedding(small, tmp_path, monkeypatch):
    settings = Settings(index_dir=tmp_path / "index")
    with monkeypatch.context() as patch:  # the metadata the code before references wrote
        original = rag.chunk.chunk_metadata

        def without_refs(*args):
            meta = original(*args)
            meta.pop("refs", None)
            return meta

        patch.setattr(rag.chunk, "chunk_metadata", without_refs)
        first = ingest([small], settings, progress=False)
    assert first.ok and first.embedded == first.chunks

    before = view(settings, UIGHURS)
    assert before["references"] == before["referenced_by"] == [] and before["paragraphs"]
    assert open_retriever(settings).search("Uighur asylum seekers deported to China", 3)

    rows = RowIndex.at(settings).load()
    again = ingest([small], settings, progress=False)
    # Only the chunks of cables with references get new metadata; nothing is embedded again.
    assert again.embedded == 0 and again.deleted == 0
    assert again.relabelled == again.chunks - len(rows.cable_rows(NO_REFS)) < again.chunks
    after = view(settings, UIGHURS)
    assert [(r["id"], r["in_index"]) for r in after["references"]] == [
        ("09PHNOMPENH934", True), ("09PHNOMPENH926", True), ("09PHNOMPENH925", False), ("09PHNOMPENH913", False)]
    assert [r["id"] for r in after["referenced_by"]] == ["09PHNOMPENH957", "09PHNOMPENH958"]
    assert {k: v for k, v in after.items() if "referenc" not in k} == \
        {k: v for k, v in before.items() if "referenc" not in k}
    assert ingest([small], settings, progress=False).relabelled == 0


def test_a_sidecar_built_before_reference_lists_answers_with_none(small, tmp_path):
    settings = Settings(index_dir=tmp_path / "index")
    assert ingest([small], settings, progress=False).ok
    columns = settings.index_dir / "bm25" / "columns.npz"
    with np.load(columns) as npz:
        kept = {key: npz[key] for key in npz.files if not key.startswith("ref_")}
    np.savez(columns, **kept)

    cable = view(settings, UIGHURS)
    assert cable["references"] == cable["referenced_by"] == [] and cable["paragraphs"]
