"""Export a reader checkpoint to ONNX: fp32 (TorchScript exporter, opset 17), then dynamic int8
quantisation with onnxruntime; the tokenizer files go beside it in reader-tokenizer/. Checks the
int8 scores against torch fp32 on a few mined pairs (correlation, largest difference).

    python -m evals.reader.export [--ckpt ~/.cache/cablerag/reader/ckpt.pt]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from evals.reader.common import CACHE, offline

offline()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=CACHE / "ckpt.pt")
    ap.add_argument("--dir", type=Path, default=CACHE)
    args = ap.parse_args()
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from evals.reader.evaluate import OnnxReader
    from evals.reader.train import encode, load_model
    from rag.index.embed import minilm_path

    torch.set_num_threads(2)
    model, tokenizer = load_model(args.ckpt)
    model.eval()
    fp32 = args.dir / "reader-fp32.onnx"
    int8 = args.dir / "reader-int8.onnx"
    ex = encode(tokenizer, ["who leads the police response?"] * 2, ["The police response is led by General X.", "Nothing."])

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(Wrap(model), (ex["input_ids"], ex["attention_mask"], ex["token_type_ids"]), str(fp32),
                      dynamo=False, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logits"], dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                                             "token_type_ids": axes, "logits": {0: "batch"}},
                      opset_version=17)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    tok_dir = args.dir / "reader-tokenizer"
    tok_dir.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, tok_dir / name)
    # Check: int8 ONNX against torch fp32 on mined pairs.
    groups = [json.loads(line) for line in (args.dir / "groups.jsonl").read_text().splitlines()[:12]]
    q = [g["query"] for g in groups for _ in range(2)]
    p = [x for g in groups for x in (g["pos"], g["negs"][0])]
    with torch.inference_mode():
        ref = model(**encode(tokenizer, q, p)).logits.view(-1).numpy()
    reader = OnnxReader(int8)
    got = np.concatenate([reader.score(q[i], [p[i]]) for i in range(len(q))])
    check = {"checkpoint": str(args.ckpt), "fp32_mb": round(fp32.stat().st_size / 2**20, 1), "int8_mb": round(int8.stat().st_size / 2**20, 1),
             "corr_int8_vs_torch": round(float(np.corrcoef(ref, got)[0, 1]), 4),
             "max_abs_diff": round(float(np.abs(ref - got).max()), 3),
             "pairwise_order_agree": round(float(np.mean((ref[0::2] > ref[1::2]) == (got[0::2] > got[1::2]))), 3)}
    (args.dir / "export.json").write_text(json.dumps(check, indent=1))
    print(json.dumps(check, indent=1))


if __name__ == "__main__":
    sys.exit(main())
