"""Client/server: the query-latency table with Chroma embedded and with Chroma as a server.

Both run on the same corpus in the same run. By default the corpus is the bundled demo
corpus (300 cables), indexed once into the scratch directory; `--index DIR` uses a copy of an
existing index instead. The server (`chroma run --path COPY/chroma --host 127.0.0.1 --port N`)
gets its own copy of the index data, is started by this script and stopped after. The BM25
index is a local file in both cases. Each configuration is measured in its own process, so the
memory column is that configuration's alone (for the server: client + server processes).

    python bench/server_bench.py [--index DIR] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (dev_questions, fmt, header, latency_rows, load, peak_rss_mib, record, rss_mib, table,  # noqa: E402
                    tree_rss_mib)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child(args) -> int:
    from rag.settings import Settings

    settings = Settings(index_dir=Path(args.index), chroma_url=args.chroma_url)
    rows, _ = latency_rows(settings, dev_questions())
    out = {"rows": rows, "rss": rss_mib(), "peak": peak_rss_mib()}
    if args.server_pid:
        out["server_rss"] = tree_rss_mib(args.server_pid)
    print("RESULT " + json.dumps(out))
    return 0


def run_child(index: Path, chroma_url: str = "", server_pid: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", "--index", str(index), "--chroma-url", chroma_url,
           "--server-pid", str(server_pid)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", help="existing index to copy (default: build the demo corpus index)")
    ap.add_argument("--work", help="scratch directory (default: a new one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chroma-url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from rag.index.demo import DEMO_DIR
    from rag.index.ingest import ingest
    from rag.settings import Settings

    start_load = load()
    work = Path(args.work or tempfile.mkdtemp(prefix="server_bench_"))
    embedded = work / "embedded"
    if args.index:
        if not embedded.exists():
            shutil.copytree(Path(args.index).expanduser(), embedded)
        corpus = f"a copy of {args.index}"
    else:
        print("indexing the demo corpus …", flush=True)
        rep = ingest([DEMO_DIR], Settings(index_dir=embedded), progress=False)
        corpus = f"the demo corpus ({rep.cables} cables, {rep.chunks} chunks)"
    served = work / "server"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(embedded, served)

    results = {}
    print("embedded …", flush=True)
    results["embedded (PersistentClient)"] = run_child(embedded)
    port = free_port()
    log = open(work / "chroma-server.log", "w")
    server = subprocess.Popen(["chroma", "run", "--path", str(served / "chroma"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import httpx

        for _ in range(120):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"chroma run exited: {(work / 'chroma-server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        print(f"server on port {port} …", flush=True)
        results[f"server (chroma run, HttpClient, 127.0.0.1:{port})"] = run_child(served, f"http://127.0.0.1:{port}", server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    names = list(results)
    head = ["what"] + [f"{n}: p50 / p95 ms" for n in names]
    rows = []
    for i, row in enumerate(results[names[0]]["rows"]):
        rows.append([row[0]] + [f"{fmt(results[n]['rows'][i][1])} / {fmt(results[n]['rows'][i][2])}" for n in names])
    mem = [["client process RSS (MiB)"] + [fmt(results[n]["rss"], 0) for n in names],
           ["server process RSS (MiB)"] + [fmt(results[n].get("server_rss"), 0) if "server_rss" in results[n] else "–"
                                           for n in names]]
    body = [f"Corpus: {corpus}; each configuration in its own process, 80 dev questions after 10 warm-up. "
            f"Load average at start {start_load}, at end {load()}.", "", table(head, rows + mem)]
    record("server", header(), "\n".join(body))
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
