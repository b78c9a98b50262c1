"""Load benchmark of the JSON API: concurrent /api/ask requests against the demo index.

Starts the server on a free 127.0.0.1 port (building the demo index first if the index
directory has none), sends REQUESTS concurrent questions, and prints how many were answered,
the errors, and the median and p95 latency. Not a test: run it by hand.

    python bench/load_api.py [--index DIR] [--requests 20] [--timeout 600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.demo import ensure_index  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.web import BackgroundServer  # noqa: E402

QUESTIONS = [
    {"question": "Who leads Cambodia's police TIP response?"},
    {"question": "When does child labor in Costa Rica peak, according to UNICEF?"},
    {"question": "Where and when was arms trafficker Viktor Bout arrested?"},
    {"question": "What became of the nuclear fuel rods stolen from the Kinshasa research reactor?"},
    {"question": "Which Nordic country partnered with Djibouti on the Lac Assal geothermal plant?"},
    {"question": "Which companies are Petrobras's partners in the Carioca block?"},
    {"question": "What was the poverty rate in Peru's Cusco region in 2007?"},
    {"question": "Which lawyer working for Kalashov was murdered in Madrid?"},
    {"question": "Who leads Cambodia's police TIP response?", "filters": {"origin": "Embassy Phnom Penh"}},
    {"question": "What did the Estonian cyber attacks involve?", "filters": {"date_from": "2007-01-01"}},
]


def timed_ask(http: httpx.Client, body: dict) -> tuple[float, str | None]:
    """(seconds, error or None) of one request."""
    started = time.perf_counter()
    try:
        response = http.post("/api/ask", json=body)
        error = None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, error


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, help="index directory (default: ./index or $RAG_INDEX_DIR)")
    parser.add_argument("--requests", type=int, default=20, choices=range(1, 101), metavar="1..100")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    args = parser.parse_args()

    settings = Settings().with_(index_dir=args.index)
    ensure_index(settings)
    server = BackgroundServer(settings)
    bodies = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
    try:
        with httpx.Client(base_url=server.url, timeout=args.timeout) as http:
            timed_ask(http, QUESTIONS[0])  # warm-up: the first answer loads models
            started = time.perf_counter()
            pool = ThreadPoolExecutor(len(bodies))
            futures = [pool.submit(timed_ask, http, body) for body in bodies]
            done, pending = wait(futures, timeout=args.timeout)
            wall = time.perf_counter() - started
            pool.shutdown(wait=False, cancel_futures=True)  # the time bound holds even if some hang
    finally:
        server.stop()

    results = [f.result() for f in done]
    latencies = [seconds for seconds, error in results if error is None]
    errors = [error for _, error in results if error] + ["timed out"] * len(pending)
    print(f"{len(latencies)}/{len(bodies)} answered, {len(errors)} errors, wall {wall:.1f} s, "
          f"backend {settings.llm}, index {settings.index_dir}")
    if latencies:
        print(f"latency: median {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
              f"max {max(latencies):.2f} s; throughput {len(latencies) / wall:.2f} answers/s")
    for error in errors[:10]:
        print(f"error: {error}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
