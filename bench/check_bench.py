"""`rag check` on a long text: 100 KB of prose checked claim by claim against the demo index.

The text is made from the demo cables themselves, so every claim has a paragraph that backs it:
the first two sentences of each paragraph, in cable order, a third of them cited to their own
paragraph, a third to the next paragraph of the cable (a wrong citation: retrieval must find
the right one) and a third uncited (retrieval must find what they could cite), until --kb
kilobytes. Rows:

- `Checker.check`: the check alone, the index and the encoder already open (median of --repeat);
- `rag check FILE --json`: a fresh process, as a user runs it (imports, opening the index).

Target (issue: bounded input): 100 KB in at most 10 s on 2 cores. Run it on a quiet machine.

    python bench/check_bench.py [--index DIR] [--kb 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_startup import ensure_demo_index  # noqa: E402
from common import ROOT, header, load, record, table  # noqa: E402

from rag.cables import read_cable_file  # noqa: E402
from rag.index.demo import DEMO_DIR  # noqa: E402
from rag.text import split_sentences  # noqa: E402


def draft(kilobytes: int) -> str:
    """Prose of about `kilobytes` KB from the demo cables, a third cited right, a third cited to
    the wrong paragraph, a third uncited."""
    blocks, size, i = [], 0, 0
    for path in sorted(DEMO_DIR.glob("*.txt")):
        cable = read_cable_file(path)
        numbers = [p.number for p in cable.paragraphs]
        for paragraph in cable.paragraphs:
            sentences = split_sentences(paragraph.text)
            if len(sentences) < 2:
                continue
            prose = " ".join(sentences[:2])
            if i % 3 == 0:
                prose += f" [{cable.id} ¶{paragraph.number}]"
            elif i % 3 == 1 and len(numbers) > 1:
                prose += f" [{cable.id} ¶{numbers[(numbers.index(paragraph.number) + 1) % len(numbers)]}]"
            blocks.append(prose)
            size += len(prose.encode()) + 2
            i += 1
            if size >= kilobytes * 1024:
                return "\n\n".join(blocks) + "\n"
    return "\n\n".join(blocks) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=str(Path.home() / ".cache" / "cablerag" / "bench-demo-index"),
                    help="a demo index (built there if missing)")
    ap.add_argument("--kb", type=int, default=100, help="size of the text, in KB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    index = Path(args.index).expanduser()
    ensure_demo_index(index)
    text = draft(args.kb)
    start_load = load()

    from rag.answer.retrieve import open_retriever
    from rag.check.checker import Checker
    from rag.settings import Settings

    checker = Checker(open_retriever(Settings(index_dir=index)))
    checker.check(text[:2000])  # untimed: loads the encoder and opens the store
    seconds = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        report = checker.check(text)
        seconds.append(time.perf_counter() - started)
    summary = report.summary

    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as f:
        f.write(text)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rag", "check", f.name, "--json", "--index", str(index)],
                          capture_output=True, text=True, cwd=ROOT)
    cli = time.perf_counter() - started
    Path(f.name).unlink()
    if done.returncode not in (0, 1):
        print(done.stderr, file=sys.stderr)
        return 1
    assert json.loads(done.stdout)["summary"] == summary

    rows = [
        ["Checker.check (warm)", f"{statistics.median(seconds):.2f}", f"{min(seconds):.2f}",
         f"{summary['claims'] / statistics.median(seconds):.0f}"],
        ["rag check FILE --json (fresh process)", f"{cli:.2f}", "", f"{summary['claims'] / cli:.0f}"],
    ]
    body = (f"{header()}\n\n{len(text.encode()) / 1024:.0f} KB, {summary['claims']} claims "
            f"({summary['supported']} supported, {summary['weak']} weak, {summary['unsupported']} unsupported, "
            f"{summary['uncited']} uncited); load average at end {load()} (at start {start_load})\n\n"
            + table(["", "median s", "fastest s", "claims/s"], rows))
    record("check", f"rag check on {args.kb} KB of prose (demo index)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
