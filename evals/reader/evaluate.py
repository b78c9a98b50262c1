"""Offline evaluation of the reader on the dev suite (issue 20).

    collect   run every dev case through the pipeline up to ranking (condense, retrieve, rank,
              exactly as `Pipeline.stream` does) over --index, and keep the ranked top 10 with the
              ranker's scores: CACHE/dev_top10.json. Needs the index; run once.
    score     score each (question, paragraph) of the top 10 with a reader: --onnx (int8 ONNX,
              onnxruntime, no torch) or --ckpt (a torch checkpoint, bf16 autocast).
    report    hit@1 / MRR@10 of the current order, the reader alone, and a blend of the two
              (per-question z-scores, ranker + w * reader, w chosen out of fold by 5-fold
              GroupKFold over cases), with paired bootstrap intervals (cases resampled); the
              AUC of max reader score separating unanswerable from answerable cases.
    latency   int8 ONNX scoring time for 8 paragraphs, 2 threads.

    python -m evals.reader.evaluate collect --index ~/.cache/cablerag/shared
    python -m evals.reader.evaluate score --onnx ~/.cache/cablerag/reader/reader-int8.onnx
    python -m evals.reader.evaluate report --scores ~/.cache/cablerag/reader/scores-int8.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from evals.reader.common import CACHE, DEV, MAX_LENGTH, offline, paragraph_passage

offline()

TOP = 10


def collect(index: Path, out: Path) -> None:
    from rag.answer.chat import condense
    from rag.answer.pipeline import Pipeline
    from rag.evaluation.suite import load_suite
    from rag.settings import Settings

    settings = Settings().with_(index_dir=index, top_k=TOP)
    pipeline = Pipeline(settings)
    rows = []
    for case in load_suite(DEV):
        history = list(case.history) or None
        standalone = condense(case.question, history, pipeline.llm)
        asked, found = pipeline.candidates(case.question, standalone, case.filters)
        ranked = pipeline.ranker.rank(found, asked)[:TOP]
        gold = [[str(c[0]), int(c[1])] for c in case.citations]
        rows.append({"id": case.id, "kind": case.kind, "question": case.question, "standalone": standalone,
                     "gold": gold, "hits": [{"cable_id": c.hit.cable_id, "paragraph": c.hit.paragraph,
                                             "score": c.hit.score, "text": c.hit.text,
                                             "passage": paragraph_passage(c.hit.cable_id, c.hit.paragraph, c.hit.text)}
                                            for c in ranked]})
    out.write_text(json.dumps(rows))
    print(f"{len(rows)} cases -> {out}")


class OnnxReader:
    """The int8 reader through onnxruntime and the `tokenizers` library: no torch."""

    def __init__(self, model: Path, threads: int = int(os.environ.get("READER_THREADS", "2"))):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model.parent / "reader-tokenizer" / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_LENGTH, strategy="longest_first")
        self.tokenizer.enable_padding()

    def score(self, question: str, passages: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch([(question, p) for p in passages])
        feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
        return self.session.run(None, feed)[0].reshape(-1)


class TorchReader:
    def __init__(self, ckpt: Path):
        import torch

        from evals.reader.train import load_model

        torch.set_num_threads(int(os.environ.get("READER_THREADS", "2")))
        self.torch = torch
        self.model, self.tokenizer = load_model(ckpt)
        self.model.eval()

    def score(self, question: str, passages: list[str]) -> np.ndarray:
        from evals.reader.train import encode

        with self.torch.inference_mode(), self.torch.autocast("cpu", dtype=self.torch.bfloat16):
            return self.model(**encode(self.tokenizer, [question] * len(passages), passages)).logits.float().view(-1).numpy()


def score(top: Path, reader, out: Path) -> None:
    rows = json.loads(top.read_text())
    scores = {}
    t = time.time()
    for row in rows:
        if row["hits"]:
            scores[row["id"]] = [float(x) for x in reader.score(row["standalone"], [h["passage"] for h in row["hits"]])]
        else:
            scores[row["id"]] = []
    out.write_text(json.dumps(scores))
    print(f"scored {len(rows)} cases in {time.time() - t:.0f}s -> {out}")


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6) if len(x) > 1 else x * 0


def _metrics(order: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """hit@1 and reciprocal rank within the top 10 for one case."""
    ranks = [r for r, i in enumerate(order) if gold[i]]
    return (1.0 if ranks and ranks[0] == 0 else 0.0), (1.0 / (ranks[0] + 1) if ranks else 0.0)


def report(top: Path, scores_path: Path, folds: int = 5, boot: int = 2000, seed: int = 13) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    rows = json.loads(top.read_text())
    scores = json.loads(scores_path.read_text())
    cases = []
    for row in rows:
        gold_set = {(c, p) for c, p in row["gold"]}
        ranker = np.array([h["score"] for h in row["hits"]], dtype=float)
        reader = np.array(scores[row["id"]], dtype=float)
        gold = np.array([(h["cable_id"], h["paragraph"]) in gold_set for h in row["hits"]], dtype=bool)
        cases.append({"id": row["id"], "kind": row["kind"], "ranker": ranker, "reader": reader, "gold": gold})
    answerable = [c for c in cases if c["kind"] != "unanswerable"]
    grid = np.round(np.concatenate([np.arange(0, 2.01, 0.1), [2.5, 3, 4, 6, 10, 100]]), 2)

    def blend_metrics(subset, w):
        out = []
        for c in subset:
            s = _z(c["ranker"]) + w * _z(c["reader"])
            out.append(_metrics(np.argsort(-s, kind="stable"), c["gold"]))
        return np.array(out)

    n = len(answerable)
    current = np.array([_metrics(np.arange(len(c["gold"])), c["gold"]) for c in answerable])
    alone = np.array([_metrics(np.argsort(-c["reader"], kind="stable"), c["gold"]) for c in answerable])
    blended = np.zeros((n, 2))
    chosen = []
    ids = np.arange(n)
    for train, test in GroupKFold(n_splits=folds).split(ids, groups=ids):
        tr = [answerable[i] for i in train]
        best = max(grid, key=lambda w: (blend_metrics(tr, w)[:, 1].mean(), -w))
        chosen.append(float(best))
        blended[test] = blend_metrics([answerable[i] for i in test], best)
    rng = np.random.RandomState(seed)
    samples = rng.randint(0, n, size=(boot, n))

    def interval(values: np.ndarray) -> list[float]:
        means = values[samples].mean(axis=1)
        return [round(float(np.percentile(means, 2.5)), 3), round(float(np.percentile(means, 97.5)), 3)]

    result = {"cases": n, "gold_in_top10": int(sum(c["gold"].any() for c in answerable)),
              "current": {"hit1": round(current[:, 0].mean(), 3), "mrr10": round(current[:, 1].mean(), 3)},
              "reader": {"hit1": round(alone[:, 0].mean(), 3), "mrr10": round(alone[:, 1].mean(), 3),
                         "d_hit1": interval(alone[:, 0] - current[:, 0]), "d_mrr10": interval(alone[:, 1] - current[:, 1])},
              "blend": {"hit1": round(blended[:, 0].mean(), 3), "mrr10": round(blended[:, 1].mean(), 3),
                        "w_by_fold": chosen, "d_hit1": interval(blended[:, 0] - current[:, 0]),
                        "d_mrr10": interval(blended[:, 1] - current[:, 1])}}
    result["changed"] = {"blend_hit1_won": int(((blended[:, 0] == 1) & (current[:, 0] == 0)).sum()),
                         "blend_hit1_lost": int(((blended[:, 0] == 0) & (current[:, 0] == 1)).sum()),
                         "reader_hit1_won": int(((alone[:, 0] == 1) & (current[:, 0] == 0)).sum()),
                         "reader_hit1_lost": int(((alone[:, 0] == 0) & (current[:, 0] == 1)).sum())}
    by_kind = {}
    for kind in sorted({c["kind"] for c in answerable}):
        idx = [i for i, c in enumerate(answerable) if c["kind"] == kind]
        by_kind[kind] = {"n": len(idx), "current_hit1": round(current[idx, 0].mean(), 3),
                         "reader_hit1": round(alone[idx, 0].mean(), 3), "blend_hit1": round(blended[idx, 0].mean(), 3)}
    result["by_kind"] = by_kind
    # Answerability: the best reader score among the top 5 / top 10.
    with_hits = [c for c in cases if len(c["reader"])]
    label = np.array([c["kind"] != "unanswerable" for c in with_hits])
    auc = {}
    for name, feature in (("reader_max_top5", lambda c: c["reader"][:5].max()),
                          ("reader_max_top10", lambda c: c["reader"].max()),
                          ("reader_top1", lambda c: c["reader"][0]),
                          ("ranker_top1", lambda c: c["ranker"][0])):
        x = np.array([feature(c) for c in with_hits])
        boots = []
        brng = np.random.RandomState(seed)
        for _ in range(boot):
            i = brng.randint(0, len(x), len(x))
            if label[i].all() or not label[i].any():
                continue
            boots.append(roc_auc_score(label[i], x[i]))
        auc[name] = {"auc": round(float(roc_auc_score(label, x)), 3),
                     "ci": [round(float(np.percentile(boots, 2.5)), 3), round(float(np.percentile(boots, 97.5)), 3)]}
    result["unanswerable_auc"] = auc
    result["unanswerable_n"] = int((~label).sum())
    # Near-miss unanswerables: how a reader threshold at 90 % recall of answerables would refuse.
    ans_max = np.array([c["reader"][:5].max() for c in with_hits if c["kind"] != "unanswerable"])
    una_max = np.array([c["reader"][:5].max() for c in with_hits if c["kind"] == "unanswerable"])
    thr = float(np.percentile(ans_max, 10))
    result["refusal_at_10pct_false"] = {"threshold": round(thr, 3), "unanswerable_refused": round(float((una_max < thr).mean()), 3)}
    return result


def latency(onnx: Path, top: Path, k: int = 8, repeats: int = 30) -> dict:
    reader = OnnxReader(onnx)
    rows = [r for r in json.loads(top.read_text()) if len(r["hits"]) >= k][:repeats]
    reader.score(rows[0]["standalone"], [h["passage"] for h in rows[0]["hits"][:k]])
    times = []
    for row in rows:
        t = time.perf_counter()
        reader.score(row["standalone"], [h["passage"] for h in row["hits"][:k]])
        times.append(time.perf_counter() - t)
    return {"paragraphs": k, "questions": len(times), "p50_s": round(float(np.percentile(times, 50)), 3),
            "p95_s": round(float(np.percentile(times, 95)), 3)}


def card(report_path: Path, latency_path: Path | None, out: Path) -> None:
    """A short model card from what the run wrote: mining stats, checkpoint, export check, metrics."""
    import torch

    stats = json.loads((CACHE / "mine_stats.json").read_text())
    state = torch.load(CACHE / "ckpt.pt", map_location="cpu", weights_only=False)
    exported = json.loads((CACHE / "export.json").read_text()) if (CACHE / "export.json").exists() else {}
    result = json.loads(report_path.read_text())
    lat = json.loads(latency_path.read_text()) if latency_path and latency_path.exists() else {}
    a = state["args"]
    pairs = state["step"] * a["batch"] * a["group"]
    lines = [
        "# cablerag reader (cross-encoder), issue 20 experiment", "",
        "MiniLM-L6 (the packaged all-MiniLM-L6-v2 weights) with a 1-logit head, trained as a cross-encoder "
        "(question, paragraph) -> score on this project's 2-core CPU in bf16 autocast; exported to ONNX, "
        "dynamically quantised to int8.", "",
        "## Data", "",
        f"- Mined from /work/shared/cables minus the {stats['excluded_dev_cables']} cables evals/dev.jsonl cites "
        f"({stats['cables']} cables); no dev question used.",
        f"- {stats['groups']} groups (query, positive, hard negatives): {json.dumps(stats['by_source'])}.",
        f"- summary sentence -> body paragraph stating it (MiniLM cosine >= {stats['args']['min_cos']}, margin >= "
        f"{stats['args']['margin']}); questions by cutting an answer span and putting a wh-phrase in its place; "
        f"headings -> their paragraph. Near-miss negatives (stating sentence removed): {stats['near_miss']} summary groups.",
        "", "## Training", "",
        f"- evaluated: {exported.get('checkpoint', '?')}; the run's checkpoint at card time: "
        f"{state['step']} of {a['steps']} steps, batch {a['batch']} groups x {a['group']} passages = "
        f"{a['batch'] * a['group']} pairs a step, {pairs} pairs seen; lr {a['lr']}, warmup {a['warmup']}, "
        f"listwise softmax + {a['bce']} x logistic loss, max {a.get('max_length', MAX_LENGTH)} tokens a training pair ({MAX_LENGTH} when scoring), seed {a['seed']}.",
        f"- {state['cpu_s'] / 3600:.2f} CPU-hours ({state['wall_s'] / 3600:.2f} h wall, shared CPU, nice 10).",
        "", "## Export", "", f"- {json.dumps(exported)}", f"- latency: {json.dumps(lat)}",
        "", "## Dev metrics (offline re-ranking of the current top 10; 150 answerable cases)", "",
        "| order | hit@1 | MRR@10 | d hit@1 95% CI | d MRR 95% CI |", "| --- | ---: | ---: | --- | --- |",
        f"| current ranker | {result['current']['hit1']} | {result['current']['mrr10']} | | |",
        f"| reader alone | {result['reader']['hit1']} | {result['reader']['mrr10']} | {result['reader']['d_hit1']} | "
        f"{result['reader']['d_mrr10']} |",
        f"| blend (w out of fold {result['blend']['w_by_fold']}) | {result['blend']['hit1']} | {result['blend']['mrr10']} | "
        f"{result['blend']['d_hit1']} | {result['blend']['d_mrr10']} |", "",
        f"Unanswerable ({result['unanswerable_n']}) vs answerable AUC: {json.dumps(result['unanswerable_auc'])}", "",
    ]
    out.write_text("\n".join(lines))
    print(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["collect", "score", "report", "latency", "card"])
    ap.add_argument("--report", type=Path)
    ap.add_argument("--latency", type=Path)
    ap.add_argument("--index", type=Path, default=Path.home() / ".cache" / "cablerag" / "shared")
    ap.add_argument("--top", type=Path, default=CACHE / "dev_top10.json")
    ap.add_argument("--onnx", type=Path)
    ap.add_argument("--ckpt", type=Path)
    ap.add_argument("--scores", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.command == "collect":
        collect(args.index.expanduser(), args.top)
    elif args.command == "score":
        reader = OnnxReader(args.onnx) if args.onnx else TorchReader(args.ckpt)
        name = args.onnx.stem if args.onnx else args.ckpt.stem
        score(args.top, reader, args.out or CACHE / f"scores-{name}.json")
    elif args.command == "report":
        result = report(args.top, args.scores)
        text = json.dumps(result, indent=1)
        print(text)
        (args.out or args.scores.with_name(args.scores.stem + "-report.json")).write_text(text)
    elif args.command == "latency":
        text = json.dumps(latency(args.onnx, args.top), indent=1)
        print(text)
        (CACHE / "latency.json").write_text(text)
    else:
        card(args.report, args.latency or CACHE / "latency.json", args.out or CACHE / "MODEL_CARD.md")


if __name__ == "__main__":
    sys.exit(main())
