"""Start-up of the CLI: `rag ask` on the demo index against the import floor of what it imports,
and the commands that fail on bad input.

Every row is the wall time of a fresh process (`python -m rag ...`, as the `rag` script runs it),
median and fastest of --repeat runs, the rows interleaved so a load change touches them alike:

- `rag ask` on the demo index (extractive backend), and the pipeline's own time inside it
  (`--json` timings: retrieve → verify), so the rest is imports, opening the index and the model;
- the import floor: `python -c "import A, B, ..."` of the third-party packages that `rag ask`
  imports (found by running it once), and `python -c pass`;
- what `rag ask` no longer imports (sentence-transformers, gradio, llama-index): their import alone;
- bad input: `rag stats --index /nonexistent`, `rag ask ""`, `RAG_TOP_K=abc rag ask ...`, and a
  mistyped `--index`; target 1 s each;
- with `--baseline DIR` (a checkout of an older commit: `git archive REV | tar -x -C DIR`), that
  checkout's `rag ask` too, in the same run.

Targets (issue 12) are for an idle 2-core machine; on a busy one read the ratios.

    python bench/cli_startup.py [--index DIR] [--repeat 5] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, header, load, record, table  # noqa: E402

QUESTION = "Who leads Cambodia's police TIP response?"
NOT_IMPORTED = ("sentence_transformers", "gradio", "llama_index.core")


def run(cmd: list[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU (user + system) seconds of a fresh process, and what it did."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done


def imported_by_rag(importtime: str) -> list[str]:
    """The third-party packages that rag's modules import, at import time or inside a function
    (those have no parent), from `-X importtime` output, where each module is printed after what
    it imported, one level deeper. Importing them imports everything else the command does."""
    rows = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1]
            rows.append((len(name) - len(name.lstrip()), name.strip()))
    found: dict[str, None] = {}
    for i, (depth, name) in enumerate(rows):
        parent = next((n for d, n in rows[i + 1:] if d < depth), "")
        top = name.split(".")[0]
        if parent.split(".")[0] in ("rag", "") and top != "rag" and _third_party(top):
            found[top] = None
    return list(found)


def _third_party(name: str) -> bool:
    import importlib.util

    if name in sys.stdlib_module_names or name.startswith("_"):
        return False
    spec = importlib.util.find_spec(name)
    return bool(spec and spec.origin and "site-packages" in spec.origin)


def ensure_demo_index(index: Path) -> None:
    if (index / "chroma").exists():
        return
    print(f"building the demo index at {index} (once, untimed)", file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "rag", "ingest", str(ROOT / "rag" / "demo" / "cables"),
                           "--index", str(index), "--quiet"], cwd=ROOT)
    if done.returncode:
        sys.exit(done.returncode)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=str(Path.home() / ".cache" / "cablerag" / "bench-demo-index"),
                    help="a demo index (built there if missing)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", metavar="DIR", help="an older checkout whose `rag ask` is timed beside")
    args = ap.parse_args()
    index = Path(args.index).expanduser()
    ensure_demo_index(index)
    py = sys.executable
    ask = [py, "-m", "rag", "ask", QUESTION, "--index", str(index)]

    # Untimed, twice: the first run makes the encoder's ONNX copy if it is missing (with torch);
    # the second shows what `rag ask` imports.
    for _ in range(2):
        _, _, first = run([py, "-X", "importtime", *ask[1:]])
    if first.returncode:
        print(first.stderr, file=sys.stderr)
        return 1
    floor = imported_by_rag(first.stderr)
    heavy = {"sentence_transformers", "torch", "gradio", "llama_index"} & set(floor)
    if heavy:
        print(f"note: rag ask imports {', '.join(sorted(heavy))}", file=sys.stderr)

    # name → (command, environment, target on an idle machine, directory it runs in); the commands
    # with a 1 s target exit 1, the others 0.
    cases: dict[str, tuple[list[str], dict, str, Path]] = {
        "`rag ask` (demo index, extractive)": (ask, {}, "≤ 2.5 s", ROOT),
        "`rag ask --json` (timings: the pipeline inside it)": (ask + ["--json"], {}, "", ROOT),
        f"import floor: `python -c \"import {', '.join(floor)}\"`": (
            [py, "-c", f"import {', '.join(floor)}"], {}, "", ROOT),
        "`python -c pass`": ([py, "-c", "pass"], {}, "", ROOT),
        f"not imported any more: `import {', '.join(NOT_IMPORTED)}`": (
            [py, "-c", f"import {', '.join(NOT_IMPORTED)}"], {}, "", ROOT),
        "`rag stats --index /nonexistent`": ([py, "-m", "rag", "stats", "--index", "/nonexistent"], {}, "≤ 1 s", ROOT),
        '`rag ask ""`': ([py, "-m", "rag", "ask", "", "--index", "/nonexistent"], {}, "≤ 1 s", ROOT),
        "`RAG_TOP_K=abc rag ask ...`": (ask, {"RAG_TOP_K": "abc"}, "≤ 1 s", ROOT),
        "`rag ask ... --index /nonexistent`": (ask[:-1] + ["/nonexistent"], {}, "≤ 1 s", ROOT),
    }
    if args.baseline:
        cases[f"baseline: `rag ask` of {args.baseline}"] = (ask, {}, "", Path(args.baseline).resolve())
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    pipeline: list[float] = []
    start, start_load = header(), os.getloadavg()[0]
    for _ in range(args.repeat):
        for name, (cmd, env, target, cwd) in cases.items():
            seconds, cpu_seconds, done = run(cmd, env, cwd)
            if done.returncode != (1 if target == "≤ 1 s" else 0):
                sys.exit(f"{name} exited {done.returncode}: {done.stderr.strip()[-500:]}")
            times[name].append(seconds)
            cpu[name].append(cpu_seconds)
            if "--json" in cmd:
                pipeline.append(json.loads(done.stdout)["timings_ms"]["total"] / 1000)

    rows = [[name, f"{statistics.median(times[name]):.2f}", f"{min(times[name]):.2f}",
             f"{statistics.median(cpu[name]):.2f}", target] for name, (_, _, target, _) in cases.items()]
    rows.insert(2, ["  of which the pipeline (retrieve → verify)", f"{statistics.median(pipeline):.2f}",
                    f"{min(pipeline):.2f}", "", ""])
    ask_name = "`rag ask` (demo index, extractive)"
    floor_name = next(name for name in cases if name.startswith("import floor"))
    ask_s, floor_s = statistics.median(times[ask_name]), statistics.median(times[floor_name])
    body = [
        f"{start}; at end {load()}. {args.repeat} runs of each, interleaved; wall seconds per fresh "
        f"process. Index {index}. "
        + ("Idle enough to read the absolute figures." if start_load < 0.5 else
           "The machine was busy: read the ratios, not the absolute figures."), "",
        table(["command", "median wall s", "fastest wall s", "median CPU s", "target (idle wall)"], rows), "",
        f"`rag ask` / its import floor: {ask_s / floor_s:.2f}× wall, "
        f"{statistics.median(cpu[ask_name]) / statistics.median(cpu[floor_name]):.2f}× CPU ({ask_s - floor_s:.2f} s "
        "above it: rag's own modules, opening the index, loading the ONNX encoder, answering). The floor is "
        f"the third-party packages rag's modules import on that path: {', '.join(floor)}. CPU seconds (user + system) move "
        "less with other processes' load than wall seconds.",
    ]
    if args.baseline:
        base_name = f"baseline: `rag ask` of {args.baseline}"
        body.append(f"Baseline `rag ask` / this `rag ask`: {statistics.median(times[base_name]) / ask_s:.2f}× wall, "
                    f"{statistics.median(cpu[base_name]) / statistics.median(cpu[ask_name]):.2f}× CPU.")
    record("cli_startup", "CLI start-up: `rag ask` against its import floor, and failing fast", "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
