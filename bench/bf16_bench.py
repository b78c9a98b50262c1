"""Ingest encoding in bf16 (AMX / AVX-512 BF16) against fp32: the speed-up and the vectors.

`rag ingest` encodes documents under bf16 autocast when the CPU multiplies bf16 in hardware
(rag.index.embed.cpu_has_bf16). This measures that choice on the texts ingest embeds: the first
--paragraphs paragraphs of the demo corpus, each with its context line, batch 32, in
alternating rounds (fp32, bf16, fp32, ...) so a change in load hits both; model loading is
excluded. Then the lowest cosine between a paragraph's bf16 and fp32 vectors, and how often the
top-10 neighbours of 40 dev questions (fp32 ONNX query vectors) differ between the two.

    python bench/bf16_bench.py [--paragraphs 256] [--rounds 3]

With --ingest N, the whole of `rag ingest` instead (parse, chunk, encode, store, BM25 sidecar,
sentence vectors) of the first N demo cables into a fresh index per run, fp32 and bf16 in
alternating rounds, models loaded before the clock: the ingest rate each precision gives, and
how much of it the paragraph encoding is (the sentence vectors are encoded in fp32 either way,
by the answers' own ONNX encoder, so that stored vectors are the ones an answer would compute).

    python bench/bf16_bench.py --ingest 100 [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import DEV, header, record, table  # noqa: E402

import rag.index.embed as embed  # noqa: E402
from rag.cables import read_cable_file  # noqa: E402
from rag.chunk import chunk_cables  # noqa: E402
from rag.index.demo import DEMO_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paragraphs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ingest", type=int, default=0, metavar="N",
                        help="time the whole `rag ingest` of the first N demo cables instead")
    args = parser.parse_args()
    if not embed.cpu_has_bf16():
        sys.exit("this CPU has no bf16 units (amx_bf16 / avx512_bf16): ingest stays in fp32 here")
    if args.ingest:
        ingest_rates(args.ingest, args.rounds)
        return
    encoder = embed.get_encoder(embed.MINILM)
    cables = (read_cable_file(f) for f in sorted(DEMO_DIR.glob("*.txt")))
    texts = [c.embed_text for c in chunk_cables(cables, encoder.count_tokens, encoder.max_tokens)][: args.paragraphs]
    hardware = embed.cpu_has_bf16
    vectors, seconds = {}, {"fp32": [], "bf16": []}
    encoder._st_encode(texts[:32], 32)  # warm-up: first-call allocations and kernel choice
    for _ in range(args.rounds):
        for mode in ("fp32", "bf16"):
            embed.cpu_has_bf16 = (lambda: True) if mode == "bf16" else (lambda: False)
            t = time.perf_counter()
            vectors[mode] = encoder._st_encode(texts, 32)
            seconds[mode].append(time.perf_counter() - t)
    embed.cpu_has_bf16 = hardware
    cosine = np.sum(vectors["fp32"] * vectors["bf16"], axis=1)
    questions = [json.loads(line)["question"] for line in DEV.read_text().splitlines()[:40]]
    query = embed.get_encoder(embed.MINILM, queries=True).encode_documents(questions)
    changed = np.mean([set(np.argsort(-vectors["fp32"] @ q)[:10]) != set(np.argsort(-vectors["bf16"] @ q)[:10])
                       for q in query])
    rows = [[mode, f"{len(texts) / min(s):.1f}", f"{min(s):.2f}"] for mode, s in seconds.items()]
    body = (f"{header()}\n\n{len(texts)} demo paragraphs, batch 32, best of {args.rounds} alternating rounds\n\n"
            + table(["mode", "paragraphs/s", "seconds"], rows)
            + f"\n\nbf16 / fp32 speed: {min(seconds['fp32']) / min(seconds['bf16']):.2f}x; "
              f"lowest cosine bf16 vs fp32 {cosine.min():.5f}; top-10 neighbours of {len(questions)} dev "
              f"questions differ for {changed:.2f} of them")
    record("bf16", "bf16 ingest encoding against fp32", body)


def ingest_rates(cables: int, rounds: int) -> None:
    from rag.index.ingest import ingest
    from rag.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bf16-ingest-"))
    try:
        folder = work / "cables"
        folder.mkdir()
        for path in sorted(DEMO_DIR.glob("*.txt"))[:cables]:
            shutil.copy(path, folder / path.name)
        settings = Settings()
        for mode in ("fp32", "bf16"):
            embed.get_encoder(settings.encoder, settings.embed_batch_size, settings.device, precision=mode)
        embed.get_encoder(settings.encoder, settings.embed_batch_size, settings.device, queries=True)
        # One untimed ingest first: the first one in a process pays imports and first-call set-up.
        warm = work / "warm"
        warm.mkdir()
        shutil.copy(next(folder.iterdir()), warm)
        ingest([warm], settings.with_(index_dir=work / "warm-index"), progress=False)
        reports = {"fp32": [], "bf16": []}
        for r in range(rounds):
            for mode in reports:
                run = settings.with_(index_dir=work / f"{mode}-{r}", precision=mode)
                reports[mode].append(ingest([folder], run, progress=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {mode: min(runs, key=lambda report: report.seconds) for mode, runs in reports.items()}
    rows = [[mode, f"{b.chunks:,}", f"{b.sentences:,}", f"{b.seconds:.1f}", f"{b.chunks / b.seconds:.1f}",
             f"{b.embed_seconds:.1f}", f"{b.seconds - b.embed_seconds:.1f}"] for mode, b in best.items()]
    fp32, bf16 = best["fp32"], best["bf16"]
    body = (f"{header()}\n\n`rag ingest` of the first {cables} demo cables into a fresh index, best of {rounds} "
            f"alternating rounds, models loaded before the clock\n\n"
            + table(["precision", "paragraphs", "sentences", "seconds", "paragraphs/s", "paragraph encoding s",
                     "the rest s (sentences, store, BM25)"], rows)
            + f"\n\nbf16 / fp32 ingest rate: {fp32.seconds / bf16.seconds:.2f}x; paragraph encoding alone "
              f"{fp32.embed_seconds / bf16.embed_seconds:.2f}x")
    record("bf16", "bf16 against fp32: the whole ingest", body)


if __name__ == "__main__":
    main()
