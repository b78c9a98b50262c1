"""Train the reader: the packaged MiniLM with a 1-logit head as a cross-encoder, in bf16 autocast
on the CPU (or `--device cuda`), resumable from its last checkpoint (issue 20).

Each step takes --batch groups of (query, positive, --group - 1 negatives) mined by
evals.reader.mine; the loss is a softmax over each group (the positive must beat its negatives)
plus --bce times a per-pair logistic loss (so the score also reads on its own: answerability).
Negatives: the near miss first when the group has one, the rest drawn from the group's list.

Deterministic given --seed: epoch e visits the groups in RandomState(seed + e)'s permutation,
step s draws its negatives from Random(seed * 1_000_003 + s) and seeds dropout with seed + s, so
a resumed run replays exactly what an uninterrupted one does. The checkpoint (model, optimizer,
scheduler, step, CPU seconds) is written to CACHE/ckpt.pt every --ckpt-s seconds through a
temporary file and a rename; a restarted run continues from it.

    nice -n 10 python -m evals.reader.train --steps 2400
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from evals.reader.common import CACHE, MAX_LENGTH, offline

offline()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def load_model(path: Path | str | None = None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rag.index.embed import minilm_path

    base = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"] if "model" in state else state)
    return model, tokenizer


def encode(tokenizer, queries: list[str], passages: list[str], max_length: int = MAX_LENGTH):
    return tokenizer(queries, passages, truncation="longest_first", max_length=max_length, padding=True,
                     return_tensors="pt")


class Stream:
    """The deterministic sequence of training groups, addressable by step."""

    def __init__(self, groups: list[dict], batch: int, group: int, seed: int):
        self.groups, self.batch, self.group, self.seed = groups, batch, group, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.RandomState(self.seed + epoch).permutation(len(self.groups))}
        return self._perms[epoch]

    def step(self, s: int) -> tuple[list[str], list[str], list[float]]:
        rng = random.Random(self.seed * 1_000_003 + s)
        queries, passages, labels = [], [], []
        n = len(self.groups)
        for k in range(self.batch):
            pos = s * self.batch + k
            g = self.groups[int(self._perm(pos // n)[pos % n])]
            negs = list(g["negs"])
            chosen = [negs.pop(0)] if g.get("near") else []
            rng.shuffle(negs)
            chosen += negs[: self.group - 1 - len(chosen)]
            while len(chosen) < self.group - 1:  # a group short of negatives borrows another group's positive
                other = self.groups[rng.randrange(n)]
                if other["cable"] != g["cable"]:
                    chosen.append(other["pos"])
            for text, label in [(g["pos"], 1.0)] + [(x, 0.0) for x in chosen]:
                queries.append(g["query"])
                passages.append(text)
                labels.append(label)
        return queries, passages, labels


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=4, help="groups a step (pairs = batch * group)")
    ap.add_argument("--group", type=int, default=4, help="passages a group: 1 positive + negatives")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--warmup", type=int, default=120)
    ap.add_argument("--bce", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=192,
                    help="tokens a training pair (scoring reads up to MAX_LENGTH=256): a mined positive averages "
                         "~150 words, and on the shared 2-core CPU a step costs in proportion")
    ap.add_argument("--ckpt-s", type=float, default=240)
    ap.add_argument("--snapshot-every", type=int, default=600, help="also keep model-only weights every N steps")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for a lent GPU machine (the checkpoint stays loadable on cpu)")
    ap.add_argument("--dir", type=Path, default=CACHE)
    ap.add_argument("--stop-after", type=int, default=0, help="stop (checkpointed) after this many steps this run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    groups = [json.loads(line) for line in (args.dir / "groups.jsonl").read_text().splitlines()]
    stream = Stream(groups, args.batch, args.group, args.seed)
    model, tokenizer = load_model()
    model.to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / args.warmup if s < args.warmup
        else max(0.0, (args.steps - s) / max(1, args.steps - args.warmup)))
    ckpt = args.dir / "ckpt.pt"
    step, cpu_s, wall_s = 0, 0.0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if any(state["args"].get(k) != getattr(args, k) for k in ("seed", "steps", "batch", "group", "lr", "max_length")):
            sys.exit(f"{ckpt} is from another run ({state['args']}); move it away to start afresh")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, cpu_s, wall_s = state["step"], state["cpu_s"], state["wall_s"]
        print(f"resumed at step {step} ({cpu_s / 3600:.2f} CPU-hours so far)", flush=True)
    model.train()
    log = open(args.dir / "train.log", "a")
    last_ckpt = time.time()
    cpu0, wall0 = time.process_time(), time.time()
    started = step
    window = []

    def checkpoint():
        nonlocal last_ckpt
        save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                     "cpu_s": cpu_s + time.process_time() - cpu0, "wall_s": wall_s + time.time() - wall0,
                     "args": vars(args) | {"dir": str(args.dir)}, "groups": len(groups)}, ckpt)
        last_ckpt = time.time()

    while step < args.steps:
        t = time.time()
        q, p, y = stream.step(step)
        batch = encode(tokenizer, q, p, args.max_length).to(args.device)
        torch.manual_seed(args.seed + step)
        if args.fp32:
            logits = model(**batch).logits.float().view(-1)
        else:
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16):
                logits = model(**batch).logits.float().view(-1)
        labels = torch.tensor(y, device=args.device)
        listwise = F.cross_entropy(logits.view(args.batch, args.group),
                                   torch.zeros(args.batch, dtype=torch.long, device=args.device))
        loss = listwise + args.bce * F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        window.append((time.time() - t, loss.item(), listwise.item()))
        if step % 20 == 0 or step == args.steps:
            secs = sum(w[0] for w in window)
            log.write(json.dumps({"step": step, "loss": round(np.mean([w[1] for w in window]), 4),
                                  "listwise": round(np.mean([w[2] for w in window]), 4),
                                  "pairs_s": round(len(window) * args.batch * args.group / secs, 2),
                                  "lr": sched.get_last_lr()[0], "time": time.strftime("%H:%M:%S")}) + "\n")
            log.flush()
            window = []
        if step % args.snapshot_every == 0:
            save_atomic(model.state_dict(), args.dir / f"model-step{step}.pt")
        if time.time() - last_ckpt > args.ckpt_s or step == args.steps or (
                args.stop_after and step - started >= args.stop_after):
            checkpoint()
            if args.stop_after and step - started >= args.stop_after:
                break
    if step >= args.steps:
        save_atomic(model.state_dict(), args.dir / "model-final.pt")
    total_cpu = cpu_s + time.process_time() - cpu0
    print(f"step {step}/{args.steps}, {step * args.batch * args.group} pairs, {total_cpu / 3600:.2f} CPU-hours",
          flush=True)


if __name__ == "__main__":
    main()
