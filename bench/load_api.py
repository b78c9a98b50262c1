"""Load benchmark of the JSON API: clients asking /api/ask for a fixed time while /api/health is
timed, against one or more checkouts of cablerag served one after the other in one run.

Each checkout is served by its own code (`python -m rag serve`, run in the checkout with it on
PYTHONPATH) on a free loopback port, with the extractive backend, over the same index. For each
number of clients, every client asks a question, waits for the answer and asks the next (the
suite's questions with their filters and follow-up history, in turn) for DURATION seconds, while
a prober asks /api/health four times a second. Printed, and appended to bench/results/load.md:
answers/s, errors, answer latency p50/p95/max, and health latency under that load. Not a test:
run it by hand, on an idle machine.

The last server with the global lock beside today's:

    git worktree add --detach /tmp/locked d49e277
    python bench/load_api.py --checkout /tmp/locked --checkout . --clients 20 50 --duration 60
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import DEV, ROOT, header, load, pct, record, table

# Each client's requests: a whole answer may queue behind every other client's.
REQUEST_TIMEOUT = 120
HEALTH_EVERY = 0.25


@dataclass
class Run:
    """What one load of `clients` on one server measured."""

    server: str
    clients: int
    wall: float = 0.0
    answers: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.answers) / self.wall if self.wall else 0.0

    def row(self) -> list:
        ms = lambda values, q: pct(values, q) * 1000  # noqa: E731
        return [self.server, self.clients, len(self.answers), len(self.errors) + len(self.health_errors), self.rate,
                pct(self.answers, 50), pct(self.answers, 95), max(self.answers, default=float("nan")),
                ms(self.health, 50), ms(self.health, 95), max(self.health, default=float("nan")) * 1000]


COLUMNS = ["server", "clients", "answers", "errors", "answers/s", "p50 s", "p95 s", "max s",
           "health p50 ms", "health p95 ms", "health max ms"]


def questions(path: Path) -> list[dict]:
    """Request bodies from a suite file: each case's question, filters and history."""
    bodies = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            case = json.loads(line)
            bodies.append({"question": case["question"], "filters": case.get("filters") or None,
                           "history": case.get("history") or []})
    return bodies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label(checkout: Path) -> str:
    """The checkout's commit, marked when its tree holds uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or checkout.name
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


class Server:
    """`rag serve` of one checkout, on a free port, until stopped."""

    def __init__(self, checkout: Path, index: Path, startup_timeout: float):
        self.checkout, self.port = checkout, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="load-api-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env.update(PYTHONPATH=str(checkout), RAG_LLM="extractive")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rag", "serve", "--index", str(index), "--port", str(self.port)],
            cwd=checkout, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"the server of {checkout} did not start: {self.tail()}")
                try:
                    if http.get("/api/health").json().get("status") == "ok":
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.5)

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ask(http: httpx.Client, body: dict) -> tuple[float, str | None]:
    """(seconds, error or None) of one question."""
    started = time.perf_counter()
    try:
        response = http.post("/api/ask", json=body)
        error = None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, error


def load_run(url: str, server: str, bodies: list[dict], clients: int, duration: float) -> Run:
    """`clients` closed-loop clients for `duration` seconds, and the health prober. The run's
    wall time lasts until the last answer asked before the end has come back."""
    run = Run(server, clients)
    started = time.monotonic()
    stop = started + duration

    def client(first: int) -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
            n = first
            while time.monotonic() < stop:
                seconds, error = ask(http, bodies[n % len(bodies)])
                if error:
                    run.errors.append(error)
                else:
                    run.answers.append(seconds)
                n += clients

    def prober() -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    response = http.get("/api/health")
                    error = None if response.status_code == 200 else f"health: HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = f"health: {type(exc).__name__}: {exc}"
                if error:
                    run.health_errors.append(error)
                else:
                    run.health.append(time.perf_counter() - t)
                time.sleep(HEALTH_EVERY)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=prober)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.wall = time.monotonic() - started
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--index", type=Path, default=Path.home() / ".cache" / "cablerag" / "shared",
                        help="index directory, read only (default: ~/.cache/cablerag/shared)")
    parser.add_argument("--checkout", type=Path, action="append",
                        help="a cablerag checkout to serve (repeat for side by side; default: this one)")
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 50], help="concurrent clients, one run each")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load per run")
    parser.add_argument("--questions", type=Path, default=DEV, help="suite whose questions are asked (default: dev)")
    parser.add_argument("--warmup", type=int, default=10, help="questions asked one by one before the runs")
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds a server may take to open the index")
    args = parser.parse_args()

    checkouts = [c.resolve() for c in args.checkout or [ROOT]]
    if not (args.index / "chroma").is_dir():
        raise SystemExit(f"no index at {args.index}: rag ingest ../shared/cables --index {args.index}")
    bodies = questions(args.questions)
    started = header()
    runs: list[Run] = []
    for checkout in checkouts:
        name = label(checkout)
        print(f"serving {checkout} ({name}) …", file=sys.stderr)
        server = Server(checkout, args.index, args.startup_timeout)
        try:
            with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
                for body in bodies[: args.warmup]:
                    ask(http, body)
            for clients in args.clients:
                run = load_run(server.url, name, bodies, clients, args.duration)
                print(f"  {clients} clients: {run.rate:.2f} answers/s, {len(run.errors)} errors", file=sys.stderr)
                runs.append(run)
        finally:
            server.stop()

    lines = [f"{started}, load average at end {load()}",
             f"index {args.index}, extractive backend, {len(bodies)} questions of {args.questions.name} in turn, "
             f"{args.duration:g} s per run, health every {HEALTH_EVERY} s; the clients run on the same machine", "",
             table(COLUMNS, [r.row() for r in runs])]
    if len(checkouts) > 1:
        first, last = runs[: len(args.clients)], runs[-len(args.clients):]
        lines += ["", " · ".join(f"{a.clients} clients: {b.rate / a.rate:.2f}× the answers/s of {a.server}"
                                 for a, b in zip(first, last) if a.rate)]
    for run in runs:
        for error in (run.errors + run.health_errors)[:5]:
            lines.append(f"- {run.server}, {run.clients} clients: {error}")
    record("load", f"API under load: {', '.join(dict.fromkeys(r.server for r in runs))}", "\n".join(lines))
    return 0 if not any(r.errors or r.health_errors for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
