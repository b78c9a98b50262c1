"""Reader (cross-encoder) training speed in bf16 autocast against fp32, in the same run.

The packaged MiniLM with a 1-logit head, the reader's training step (groups of 1 positive + 3
negatives, 4 groups = 16 pairs a step, listwise + logistic loss, AdamW), on the
groups evals.reader.mine wrote (~/.cache/cablerag/reader/groups.jsonl). Alternating rounds
(fp32, bf16, fp32, ...) of --steps steps each (≤ --max-length tokens a pair), the same batches in both modes, so a change in load
hits both; the best round of each mode is reported. Model loading and one warm-up step excluded.

    python bench/reader_train_bench.py [--steps 6] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from common import header, record, table  # noqa: E402

from evals.reader.common import CACHE, offline  # noqa: E402

offline()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from evals.reader.train import Stream, encode, load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=192, help="tokens a pair (the training run's default)")
    args = ap.parse_args()
    groups_file = CACHE / "groups.jsonl"
    if not groups_file.exists():
        sys.exit(f"{groups_file} is missing: run python -m evals.reader.mine first")
    torch.set_num_threads(args.threads)
    groups = [json.loads(line) for line in groups_file.read_text().splitlines()[:2000]]
    stream = Stream(groups, 4, 4, seed=7)
    base, tokenizer = load_model()
    batches = [encode(tokenizer, *stream.step(s)[:2], args.max_length) for s in range(args.steps + 1)]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[1:]) / args.steps / 16

    def run(model, opt, bf16: bool, steps) -> float:
        t = time.perf_counter()
        for batch in steps:
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = model(**batch).logits.float().view(-1)
            else:
                logits = model(**batch).logits.float().view(-1)
            labels = torch.tensor([1.0, 0, 0, 0] * 4)
            loss = F.cross_entropy(logits.view(4, 4), torch.zeros(4, dtype=torch.long)) + 0.5 * \
                F.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    models = {}
    for mode in ("fp32", "bf16"):
        m = copy.deepcopy(base)
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
        run(m, opt, mode == "bf16", batches[:1])  # warm-up
        models[mode] = (m, opt)
    seconds = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for mode in ("fp32", "bf16"):
            seconds[mode].append(run(*models[mode], mode == "bf16", batches[1:]))
    pairs = args.steps * 16
    rows = [[mode, f"{pairs / min(s):.1f}", f"{min(s):.2f}", " ".join(f"{pairs / x:.1f}" for x in s)]
            for mode, s in seconds.items()]
    body = (f"{header()}\n\n{args.steps} steps of 16 pairs (mean {tokens:.0f} tokens a pair), {args.threads} threads, "
            f"best of {args.rounds} alternating rounds\n\n"
            + table(["mode", "pairs/s", "seconds", "each round pairs/s"], rows)
            + f"\n\nbf16 / fp32 training speed: {min(seconds['fp32']) / min(seconds['bf16']):.2f}x")
    record("reader_train", "reader (cross-encoder) training steps, bf16 autocast against fp32", body)


if __name__ == "__main__":
    main()
