"""Rebuild the bundled demo corpus (rag/demo/cables/) from ../shared/cables.

The demo holds every Embassy Phnom Penh cable, every cable the dev and smoke suites cite, and
a seeded random sample of the rest, so a fresh install answers real questions with no
../shared. Run from the project root: python scripts/make_demo_corpus.py
"""

import json
import random
import shutil
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OUT = Path(__file__).resolve().parents[1] / "rag" / "demo" / "cables"
TARGET = 300


def main() -> None:
    files = sorted((SHARED / "cables").glob("*.txt"))
    origin = {f: f.read_text(encoding="utf-8").split("\n", 5)[4].strip() for f in files}
    chosen = {f for f in files if origin[f] == "Embassy Phnom Penh"}
    for line in (SHARED / "evals" / "dev.jsonl").read_text().splitlines():
        for cable_id, _ in json.loads(line)["citations"]:
            chosen.add(SHARED / "cables" / f"{cable_id}.txt")
    rest = sorted(set(files) - chosen)
    random.Random(2010).shuffle(rest)
    chosen.update(rest[: max(0, TARGET - len(chosen))])
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    for f in sorted(chosen):
        shutil.copy(f, OUT / f.name)
    print(f"{len(chosen)} cables → {OUT}")


if __name__ == "__main__":
    main()
