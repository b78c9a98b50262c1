"""Ingest benchmark: our `rag ingest` against the encoder limit and the stock llama-index pipeline.

On one corpus of real cables (the bundled demo corpus, which holds every dev-set gold cable,
plus random cables of ../shared/cables until there are --paragraphs paragraphs), in one run:

  (a) the encoder limit: plain `SentenceTransformer.encode` of exactly the texts `rag ingest`
      embeds (each paragraph with its context line), one call, batch 64;
  (b) `rag ingest` (rag.index.ingest.ingest into a temporary index: parse, chunk, embed, Chroma, BM25);
  (c) the llama-index pipeline from its docs: SimpleDirectoryReader → SentenceSplitter (defaults:
      1024 tokens, overlap 200) → HuggingFaceEmbedding (same packaged model, by local path) →
      ChromaVectorStore. Needs `pip install llama-index-embeddings-huggingface` (bench only).

Model loading is excluded from every timing. "Embedded" counts only the word pieces inside the
model's 256-piece window (254 + [CLS]/[SEP]); what lies beyond is truncated, i.e. never embedded.
Then: length-sorted batching and thread count (on --ablation texts), the int8 ONNX encoder
(`minilm-int8`) as (a) and (b), and (--metrics, default on) the dev-set retrieval metrics of
the fp32 and int8 indexes built in (b) (every gold cable is in this corpus).

    python bench/ingest_bench.py [--paragraphs 5000] [--ablation 600] [--no-llama] [--no-int8] [--no-metrics]
    python bench/ingest_bench.py --metrics-only   # the fp32 / int8 dev-set comparison alone
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEV, SHARED, Timer, header, load, record, table  # noqa: E402

from rag.cables import read_cable_file  # noqa: E402
from rag.chunk import chunk_cables  # noqa: E402
from rag.index.demo import DEMO_DIR  # noqa: E402
from rag.index.embed import MINILM, MINILM_INT8, get_encoder, minilm_int8_path, minilm_path  # noqa: E402
from rag.index.onnx import OnnxMiniLM  # noqa: E402

WINDOW = 254  # word pieces embedded per text, special tokens excluded


def pick_corpus(target: int, seed: int = 0) -> list[Path]:
    """The demo cables, then random shared cables until `target` paragraphs."""
    files = sorted(DEMO_DIR.glob("*.txt"))
    have = {f.name for f in files}
    count = sum(len(read_cable_file(f).paragraphs) for f in files)
    extra = sorted(p for p in (SHARED / "cables").glob("*.txt") if p.name not in have)
    random.Random(seed).shuffle(extra)
    for f in extra:
        if count >= target:
            break
        files.append(f)
        count += len(read_cable_file(f).paragraphs)
    return files


def embedded_chars(tokenizer, strings: list[str], content_starts: list[int], content_ends: list[int]) -> list[int]:
    """Characters of [start, end) in each string that fall inside the first WINDOW word pieces."""
    out = []
    for enc, s, start, end in zip(tokenizer.encode_batch(strings, add_special_tokens=False), strings,
                                  content_starts, content_ends):
        cut = len(s) if len(enc.ids) <= WINDOW else enc.offsets[WINDOW - 1][1]
        out.append(max(0, min(cut, end) - start))
    return out


def token_share(tokenizer, strings: list[str]) -> float:
    lengths = [len(e.ids) for e in tokenizer.encode_batch(strings, add_special_tokens=False)]
    return sum(min(n, WINDOW) for n in lengths) / max(1, sum(lengths))


def union_length(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, -1
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def run_llama(corpus_dir: Path, work: Path, tokenizer) -> dict:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    embed_model = HuggingFaceEmbedding(model_name=str(minilm_path()), device="cpu")  # loaded, untimed
    client = chromadb.PersistentClient(path=str(work / "llama_chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    with Timer() as t:
        documents = SimpleDirectoryReader(str(corpus_dir)).load_data()
        collection = client.get_or_create_collection("cables")
        storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
        index = VectorStoreIndex.from_documents(documents, storage_context=storage, embed_model=embed_model,
                                                transformations=[SentenceSplitter()])
    nodes = list(index.vector_store._collection.get(include=["documents", "metadatas"])["ids"])
    # What was embedded: re-split the same way (deterministic) and look at each node's EMBED text.
    splitter_nodes = SentenceSplitter().get_nodes_from_documents(documents)
    embed_strings, starts, ends, spans = [], [], [], []
    for node in splitter_nodes:
        s = node.get_content(metadata_mode=MetadataMode.EMBED)
        at = s.rfind(node.text)
        embed_strings.append(s)
        starts.append(max(at, 0))
        ends.append(max(at, 0) + len(node.text))
        spans.append((node.ref_doc_id, node.start_char_idx or 0))
    got = embedded_chars(tokenizer, embed_strings, starts, ends)
    per_doc: dict[str, list[tuple[int, int]]] = {}
    for (doc, start), n in zip(spans, got):
        per_doc.setdefault(doc, []).append((start, start + n))
    doc_chars = sum(len(d.text) for d in documents)
    covered = sum(union_length(v) for v in per_doc.values())
    return {"seconds": t.seconds, "chunks": len(nodes), "doc_chars": doc_chars, "embedded_chars": covered,
            "token_share": token_share(tokenizer, embed_strings)}


def encode_rate(fn, texts: list[str]) -> float:
    with Timer() as t:
        fn(texts)
    return len(texts) / t.seconds


def compare_metrics(suite: str, fp32, int8, work: Path) -> list[str]:
    """Dev-set retrieval metrics of the fp32 and int8 indexes, side by side, and the largest gap."""
    from rag.evaluation.evaluate import evaluate

    print("dev-set metrics …", flush=True)
    reports = {}
    for name, s in (("fp32", fp32), ("int8", int8)):
        _, reps = evaluate(suite, s, retrievals=["dense", "bm25", "hybrid"], llms=["extractive"],
                           out=work / f"eval_{name}", progress=False)
        reports[name] = {r["config"]["retrieval"]: r["retrieval"] for r in reps}
    worst, met = 0.0, []
    for mode in ("dense", "bm25", "hybrid"):
        f, q = reports["fp32"][mode], reports["int8"][mode]
        for key in ("hit@1", "hit@5", "hit@10", "mrr@10"):
            worst = max(worst, abs((f[key] or 0) - (q[key] or 0)))
        met.append([mode] + [f"{f[k]:.3f} / {q[k]:.3f}" for k in ("hit@1", "hit@5", "hit@10", "mrr@10")])
    return ["", f"Dev-set retrieval ({Path(suite).name}, {reps[0]['n']} cases), fp32 / int8, on the two indexes of "
                "this corpus:", "", table(["mode", "hit@1", "hit@5", "hit@10", "mrr@10"], met), "",
            f"Largest |fp32 − int8| difference: {worst:.3f} (goal ≤ 0.01)"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paragraphs", type=int, default=5000)
    ap.add_argument("--ablation", type=int, default=600, help="texts for the sorting / thread-count rows")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--no-metrics", action="store_true")
    ap.add_argument("--metrics-only", action="store_true",
                    help="no timings: build the fp32 and int8 indexes and compare their dev-set metrics "
                         "(safe on a busy machine)")
    ap.add_argument("--suite", default=str(DEV), help="evaluation cases for the fp32 / int8 metrics")
    ap.add_argument("--max-cables", type=int, default=0, help="smoke test: only this many cables")
    ap.add_argument("--work", default=None, help="scratch directory (default: a new one under /tmp)")
    args = ap.parse_args()

    from rag.index.ingest import ingest
    from rag.settings import Settings

    started_load = load()
    work = Path(args.work or tempfile.mkdtemp(prefix="ingest_bench_"))
    corpus_dir = work / "cables"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    files = pick_corpus(args.paragraphs)
    if args.max_cables:
        files = files[: args.max_cables]
    for f in files:
        shutil.copy(f, corpus_dir / f.name)
    cables = [read_cable_file(f) for f in sorted(corpus_dir.glob("*.txt"))]
    n_par = sum(len(c.paragraphs) for c in cables)
    par_chars = sum(len(p.text) for c in cables for p in c.paragraphs)
    file_chars = sum(len(f.read_text(encoding="utf-8")) for f in corpus_dir.glob("*.txt"))
    print(f"corpus: {len(cables)} cables, {n_par} paragraphs, {par_chars:,} paragraph characters "
          f"({file_chars:,} in the files), scratch {work}", flush=True)

    if args.metrics_only:
        indexes = [Settings(index_dir=work / "index_fp32", encoder=MINILM),
                   Settings(index_dir=work / "index_int8", encoder=MINILM_INT8)]
        for settings in indexes:
            print(f"indexing with {settings.encoder} …", flush=True)
            ingest([corpus_dir], settings, progress=True)
        body = [f"Corpus: {len(cables)} cables ({n_par:,} paragraphs): the demo corpus (all dev-set gold cables) "
                "+ random ../shared cables. Metrics only (--metrics-only), no timings."]
        record("ingest", header(), "\n".join(body + compare_metrics(args.suite, *indexes, work)))
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        return 0

    enc = get_encoder(MINILM, 64)
    st = enc.model  # load now, untimed
    tok = enc.tokenizer
    chunks = chunk_cables(cables, enc.count_tokens, enc.max_tokens)
    texts = [c.embed_text for c in chunks]
    starts = [len(c.embed_text) - len(c.text) for c in chunks]
    chunk_emb = embedded_chars(tok, texts, starts, [len(t) for t in texts])
    chunk_share = sum(chunk_emb) / max(1, sum(len(c.text) for c in chunks))
    chunk_tok_share = token_share(tok, texts)
    rows = []

    def row(name, seconds, embedded_share, emb_chars, note=""):
        rows.append([name, n_par / seconds, par_chars / seconds, f"{embedded_share:.1%}", emb_chars / seconds, seconds, note])
        print("  ", rows[-1], flush=True)
        return emb_chars / seconds

    print("(a) SentenceTransformer.encode …", flush=True)
    with Timer() as ta:
        st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    emb_par_chars = par_chars * chunk_share
    a_rate = row("(a) SentenceTransformer.encode, fp32 (encoder limit)", ta.seconds, chunk_tok_share, emb_par_chars,
                 f"{len(texts)} texts = what (b) embeds")

    print("(a2) rag.index.embed encoder …", flush=True)
    with Timer() as ta2:
        enc.encode_documents(texts)
    row("(a2) rag.index.embed Encoder.encode_documents, fp32 (token batches)", ta2.seconds, chunk_tok_share, emb_par_chars,
        "the same texts, the encoder call rag ingest makes")

    def timed_ingest(encoder: str):
        """`rag ingest` of the corpus into a fresh index: (settings, seconds, report)."""
        settings = Settings(index_dir=work / f"index_{encoder}", encoder=encoder)
        with Timer() as t:
            report = ingest([corpus_dir], settings, progress=False)
        return settings, t.seconds, report

    print("(b) rag ingest …", flush=True)
    settings_b, tb_seconds, rep = timed_ingest(MINILM)
    b_rate = row("(b) rag ingest, fp32", tb_seconds, chunk_tok_share, emb_par_chars,
                 f"embed {rep.embed_seconds:.0f} s of {tb_seconds:.0f} s; {rep.chunks} chunks")

    c = None
    if not args.no_llama:
        print("(c) llama-index pipeline …", flush=True)
        try:
            c = run_llama(corpus_dir, work, tok)
            c_rate = row("(c) llama-index SimpleDirectoryReader→SentenceSplitter→HuggingFaceEmbedding→Chroma",
                         c["seconds"], c["token_share"], c["embedded_chars"],
                         f"{c['chunks']} chunks; embeds {c['embedded_chars'] / c['doc_chars']:.0%} of the files' "
                         f"{c['doc_chars']:,} chars")
        except ImportError as exc:
            print(f"   skipped: {exc} (pip install llama-index-embeddings-huggingface)")

    int8 = None
    if not args.no_int8:
        try:
            minilm_int8_path()
            import onnxruntime  # noqa: F401
            int8 = get_encoder(MINILM_INT8, 64)
            int8.model  # load, untimed
        except Exception as exc:  # noqa: BLE001
            print(f"int8 skipped: {exc}")
            int8 = None
    if int8 is not None:
        print("(a') int8 encode …", flush=True)
        with Timer() as ta8:
            int8.encode_documents(texts)
        row("(a') int8 ONNX encode (minilm-int8)", ta8.seconds, chunk_tok_share, emb_par_chars)
        print("(b') rag ingest int8 …", flush=True)
        settings_b8, tb8_seconds, rep8 = timed_ingest(MINILM_INT8)
        b8_rate = row("(b') rag ingest --encoder minilm-int8", tb8_seconds, chunk_tok_share, emb_par_chars,
                      f"embed {rep8.embed_seconds:.0f} s of {tb8_seconds:.0f} s")

    head = ["pipeline", "paragraphs/s", "chars/s", "text embedded", "embedded chars/s", "seconds", "note"]
    body = [f"Corpus: {len(cables)} cables ({n_par:,} paragraphs, {par_chars:,} characters of paragraph text; "
            f"{file_chars:,} in the files): the demo corpus (all dev-set gold cables) + random ../shared cables. "
            f"Load average at start {started_load}, at end {load()}.", "",
            "chars/s = paragraph characters per second (same corpus for all). 'text embedded' = share of the word "
            "pieces inside the 256 window. For (c) 'embedded chars/s' counts the files' characters (routing "
            "headers included, which favours (c)) that some chunk embeds inside its window.", "",
            table(head, rows), ""]
    ratio = [f"- b/a = {b_rate / a_rate:.2f} (goal ≥ 0.85, with {chunk_tok_share:.1%} of the text embedded); "
             f"a2/a = {ta.seconds / ta2.seconds:.2f} (token batching alone); b/a2 = {ta2.seconds / tb_seconds:.2f} "
             "(b over its own encoder call: what parsing, chunking, Chroma and BM25 cost)"]
    if c:
        ratio.append(f"- b/c on characters actually embedded = {b_rate / c_rate:.2f} (goal ≥ 1.5); "
                     f"on raw chars/s b/c = {(par_chars / tb_seconds) / (par_chars / c['seconds']):.2f}")
    if int8 is not None:
        ratio.append(f"- int8 speed-up: encoder {ta.seconds / ta8.seconds:.2f}×, rag ingest {tb_seconds / tb8_seconds:.2f}×; "
                     f"b'/a = {b8_rate / a_rate:.2f}")
    body += ratio

    # Ablations: length-sorted batching and threads, on a random subset of the same texts.
    import torch

    sub = random.Random(1).sample(texts, min(args.ablation, len(texts)))
    abl = []

    def fp32_corpus_order(xs):  # one encode call per 64 texts: no sorting across them
        for i in range(0, len(xs), 64):
            st.encode(xs[i : i + 64], batch_size=64, normalize_embeddings=True, show_progress_bar=False)

    def fp32_sorted64(xs):  # sentence-transformers' own length sort, 64 texts per pass (the old default)
        st.encode(xs, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

    fp32_variants = [("token batches (≤ 2048 padded pieces, ≤ 64 texts): rag.index.embed", enc.encode_documents),
                     ("length-sorted, 64 texts per pass", fp32_sorted64),
                     ("corpus order, 64 texts per pass", fp32_corpus_order)]
    threads0 = torch.get_num_threads()
    for threads in sorted({1, threads0}, reverse=True):
        torch.set_num_threads(threads)
        for name, fn in fp32_variants if threads == threads0 else fp32_variants[:1]:
            abl.append(["fp32 torch", threads, name, encode_rate(fn, sub)])
            print("  ", abl[-1], flush=True)
    torch.set_num_threads(threads0)
    if int8 is not None:
        tok_file = minilm_path() / "tokenizer.json"
        for threads in sorted({1, threads0}, reverse=True):
            m = OnnxMiniLM(minilm_int8_path(), tok_file, threads=threads)
            variants = [("token batches (≤ 2048 padded pieces, ≤ 64 texts): rag.index.embed", lambda xs: m.encode(xs, 64)),
                        ("token batches (≤ 1024 padded pieces)", lambda xs: m.encode(xs, 64, 1024)),
                        ("length-sorted, 64 texts per pass", lambda xs: m.encode(xs, 64, 10**9)),
                        ("corpus order, 64 texts per pass",
                         lambda xs: [m.encode(xs[i:i + 64], 64, 10**9) for i in range(0, len(xs), 64)])]
            for name, fn in variants if threads == threads0 else variants[:1]:
                abl.append(["int8 onnxruntime", threads, name, encode_rate(fn, sub)])
                print("  ", abl[-1], flush=True)
    body += ["", f"Encoder ablation on {len(sub)} of the same texts (paragraphs/s):", "",
             table(["encoder", "threads", "batching", "texts/s"], abl)]

    if int8 is not None and not args.no_metrics:
        body += compare_metrics(args.suite, settings_b, settings_b8, work)

    record("ingest", header(), "\n".join(body))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
