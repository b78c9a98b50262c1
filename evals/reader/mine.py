"""Mine reader training groups from the cables' own paraphrases (issue 20).

Sources, all from /work/shared/cables minus every cable evals/dev.jsonl cites:
  summary  a sentence of a cable's SUMMARY ... END SUMMARY block -> the body paragraph of the same
           cable that states it in other words (MiniLM cosine, clear margin over the runner-up,
           BM25 agreeing); near copies (most of the words shared with one body sentence) are
           mostly dropped, so the pairs teach paraphrase rather than lexical match.
  question the same pair with an answer-like span (a figure with its unit, a date, a titled name,
           an organisation's acronym) cut out of the summary sentence and a wh-phrase put in its
           place; kept only when the span also appears in the stating paragraph.
  heading  a section heading (3+ words) -> the paragraph under it.
Hard negatives per group: the near miss (the stating paragraph with its stating sentence, or the
sentences holding the answer span, removed: same names, the detail gone), the same cable's other
body paragraphs (hardest by cosine first), BM25 neighbours from other cables.

Writes CACHE/groups.jsonl (one group a line: query, pos, negs, source, cable) and stats.json.

    python -m evals.reader.mine [--seed 13]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time

import numpy as np

from evals.reader.common import CABLES, CACHE, dev_cables, offline, passage, strip_marking

offline()

SUMMARY_START = re.compile(r"\bSUMMARY\b\s*(?:AND\s+COMMENT\s*)?[:.\-]*\s*", re.I)
SUMMARY_END = re.compile(r"\(?\bEND\s+(?:OF\s+)?SUMMARY\b(?:\s+AND\s+COMMENT)?\)?[.:]?", re.I)
WORD = re.compile(r"[a-z][a-z'-]+|\d[\d,.]*\d|\d")
STOP = frozenset("""the a an of to in and or for on at by with from that this is was were be been are as it its
he she they his her their them we our us has have had not but which who will would could should may also
said says say after before into than then there these those about over more most some any such all other""".split())

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
NUMWORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|hundreds|dozens|thousands"
TITLES = ("President|Prime Minister|Deputy Prime Minister|Foreign Minister|Minister|Deputy Minister|Vice Minister|"
          "Ambassador|General|Gen\\.|Governor|Senator|Secretary|Chairman|Director|Speaker|King|Prince|Colonel|Col\\.|"
          "Judge|Mayor|Commissioner|Chief")
# Answer-like spans, most specific first: (kind, regex, wh-phrase maker).
SPANS = [
    ("money", re.compile(r"(?:US)?\$\s?\d[\d,.]*(?:\s(?:million|billion|thousand))?|\b\d[\d,.]*\s(?:million|billion)\s"
                         r"(?:dollars|euros|USD|usd)\b", re.I), lambda m: "how much money"),
    ("percent", re.compile(r"\b\d[\d,.]*\s?(?:percent|per cent|%)", re.I), lambda m: "what percentage"),
    ("count", re.compile(rf"\b(?:\d[\d,]*|{NUMWORDS})(?:\s(?:of\s)?)((?:[a-z]+\s)?(?:people|persons|victims|soldiers|troops|"
                         rf"deaths|members|cases|prisoners|detainees|refugees|seats|votes|candidates|parties|districts|"
                         rf"provinces|years|months|days|weeks|officials|workers|children|women|men|students|police|"
                         rf"policemen|officers|companies|families|villages|countries|projects|tons|tonnes|hectares|"
                         rf"kilometers|km|civilians|militants|insurgents|rebels|journalists|cabinet\s\w+|ministers))\b",
                         re.I), lambda m: f"how many {m.group(1)}"),
    ("date", re.compile(rf"\b(?:on|in|by|since|until|from)?\s?(?:(?:{MONTHS})\s\d{{1,2}}(?:,?\s(?:19|20)\d\d)?|\d{{1,2}}\s(?:{MONTHS})"
                        rf"(?:\s(?:19|20)\d\d)?|(?:{MONTHS})\s(?:19|20)\d\d|(?:in\s)?(?:19|20)\d\d)\b", re.I),
     lambda m: "when"),
    ("person", re.compile(rf"\b(?:{TITLES})\s(?:[A-Z][a-z]+\s){{0,2}}[A-Z][a-z'-]+\b"), lambda m: "who"),
]


def words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if w not in STOP]


def sentences(text: str) -> list[str]:
    from rag.text import split_sentences

    return [s for s in split_sentences(text) if len(s.split()) >= 4]


def overlap(a: str, b: str) -> float:
    """Share of a's content words that b also holds."""
    wa, wb = set(words(a)), set(words(b))
    return len(wa & wb) / max(1, len(wa))


def load_cables(exclude: set[str]):
    from rag.cables import CableError, read_cable_file

    out = []
    for path in sorted(CABLES.glob("*.txt")):
        if path.stem in exclude:
            continue
        try:
            out.append(read_cable_file(path))
        except CableError:
            continue
    return out


def summary_block(cable) -> tuple[list[str], set[int]] | None:
    """The summary's sentences and the indices of the paragraphs it spans, when the cable has a
    SUMMARY ... END SUMMARY block."""
    paras = cable.paragraphs
    start = None
    for i, p in enumerate(paras[:6]):
        head = p.heading.upper()
        text = strip_marking(p.text)
        if "SUMMARY" in head or SUMMARY_START.match(text) or re.match(r"^\W*(?:\w+\s){0,3}SUMMARY\b", text, re.I):
            start = i
            break
    if start is None:
        return None
    chunks, span = [], set()
    for i in range(start, min(len(paras), start + 6)):
        text = strip_marking(paras[i].text)
        if i == start:
            m = SUMMARY_START.search(text[:80])
            text = text[m.end():] if m else text
        span.add(i)
        end = SUMMARY_END.search(text)
        if end:
            chunks.append(text[: end.start()])
            break
        chunks.append(text)
    else:
        return None
    return [s for c in chunks for s in sentences(c) if 6 <= len(s.split()) <= 70], span


def find_span(sentence: str, paragraph: str):
    """The first answer-like span of `sentence` that `paragraph` also holds: (kind, span, phrase)."""
    low_par = paragraph.lower()
    for kind, pattern, phrase in SPANS:
        if kind in ("person", "org") and sentence.isupper():
            continue
        for m in pattern.finditer(sentence):
            span = m.group(0).strip()
            core = re.sub(r"^(?:on|in|by|since|until|from)\s", "", span, flags=re.I)
            if len(core) < 2 or core.lower() not in low_par:
                continue
            if kind == "count":
                core = re.match(r"\S+", core).group(0)
                if core.lower() not in low_par:
                    continue
            return kind, m, phrase(m), core
    return None


def make_question(sentence: str, kind: str, m: re.Match, phrase: str) -> str:
    """Cut the span out and put a wh-phrase in its place (an echo question: "X arrested how many
    people?"); a date span at the front gives "When ...?". A long sentence keeps only the clauses
    around the span, so the question reads like a question rather than a copied sentence."""
    s = sentence.strip().rstrip(".;:")
    start, end = m.start(), m.end()
    if kind == "date" and start < 3:
        rest = s[end:].strip(" ,;")
        q = f"When {rest}"
    else:
        q = s[:start] + ("when" if kind == "date" else phrase) + s[end:]
    q = re.sub(r"\s+", " ", q).strip(" ,;")
    if len(q.split()) > 28:
        clauses = re.split(r"(?<=[,;])\s|\s--?\s", q)
        at = next((i for i, c in enumerate(clauses) if re.search(r"\b(?:when|who|how (?:many|much)|what percentage)\b", c, re.I)), 0)
        lo = hi = at
        while sum(len(c.split()) for c in clauses[lo:hi + 1]) < 10 and (lo > 0 or hi < len(clauses) - 1):
            if lo > 0:
                lo -= 1
            if hi < len(clauses) - 1 and sum(len(c.split()) for c in clauses[lo:hi + 1]) < 10:
                hi += 1
        q = " ".join(clauses[lo:hi + 1]).strip(" ,;")
    return q[0].upper() + q[1:] + "?"


def remove_sentences(text: str, drop) -> str | None:
    """`text` without the sentences `drop(sentence)` is true for; None when nothing or everything
    would go."""
    sents = sentences(text)
    kept = [s for s in sents if not drop(s)]
    if not kept or len(kept) == len(sents):
        return None
    return " ".join(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--min-cos", type=float, default=0.45)
    ap.add_argument("--margin", type=float, default=0.06)
    ap.add_argument("--copy", type=float, default=0.8, help="overlap with one body sentence that marks a near copy")
    ap.add_argument("--copy-keep", type=float, default=0.2, help="share of near copies kept")
    ap.add_argument("--headings", type=int, default=2500)
    ap.add_argument("--limit", type=int, default=0, help="cables (smoke tests)")
    ap.add_argument("--summary-cables", type=int, default=1500,
                    help="summary cables matched (a seeded sample; encoding them is the slow part)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()
    CACHE.mkdir(parents=True, exist_ok=True)
    exclude = dev_cables()
    cables = load_cables(exclude)
    if args.limit:
        cables = cables[: args.limit]
    print(f"{len(cables)} cables (excluded {len(exclude)} dev-cited) in {time.time() - t0:.0f}s", flush=True)

    # Corpus-wide BM25 over every paragraph passage, for negatives from other cables.
    import bm25s
    import Stemmer

    keys, texts = [], []
    for c in cables:
        for p in c.paragraphs:
            if len(p.text.split()) >= 12:
                keys.append((c.id, p.number, p.occurrence))
                texts.append(passage(c.subject, p.heading, p.text))
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    print(f"bm25 over {len(texts)} paragraphs, {time.time() - t0:.0f}s", flush=True)

    def bm25_negs(query: str, cable_id: str, n: int = 3) -> list[str]:
        docs, _ = retriever.retrieve(bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False),
                                     k=n + 12, show_progress=False)
        out = [texts[i] for i in docs[0] if keys[i][0] != cable_id]
        return out[:n]

    # Summary cables: encode summary sentences and body paragraphs with the packaged MiniLM (bf16).
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.index.embed import minilm_path

    torch.set_num_threads(2)
    encoder = SentenceTransformer(str(minilm_path()), device="cpu")
    encoder.max_seq_length = 128  # matching needs the gist of a paragraph, not all of it
    work = []
    for c in cables:
        found = summary_block(c)
        if not found:
            continue
        sents, span = found
        body = [(i, p) for i, p in enumerate(c.paragraphs) if i not in span and len(p.text.split()) >= 12]
        if sents and len(body) >= 2:
            work.append((c, sents, body))
    stats_summary_cables = len(work)
    if args.summary_cables and len(work) > args.summary_cables:
        work = random.Random(args.seed).sample(work, args.summary_cables)
        work.sort(key=lambda w: w[0].id)
    all_s = [s for _, sents, _ in work for s in sents]
    all_b = [strip_marking(p.text) for _, _, body in work for _, p in body]
    print(f"{len(work)} summary cables, {len(all_s)} summary sentences, {len(all_b)} body paragraphs", flush=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        es = encoder.encode(all_s, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        eb = encoder.encode(all_b, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    print(f"encoded, {time.time() - t0:.0f}s", flush=True)

    groups, stats = [], {"summary_cables_found": stats_summary_cables, "summary_cables": len(work), "summary_sentences": len(all_s), "matched": 0,
                         "rejected_cos": 0, "rejected_margin": 0, "near_copy_dropped": 0, "questions": 0,
                         "near_miss": 0}
    si = bi = 0
    for c, sents, body in work:
        S, B = es[si: si + len(sents)], eb[bi: bi + len(body)]
        si += len(sents)
        bi += len(body)
        cos = S @ B.T
        passages = [passage(c.subject, p.heading, p.text) for _, p in body]
        for k, sent in enumerate(sents):
            order = np.argsort(-cos[k])
            best, second = cos[k, order[0]], cos[k, order[1]]
            if best < args.min_cos:
                stats["rejected_cos"] += 1
                continue
            if best - second < args.margin:
                stats["rejected_margin"] += 1
                continue
            j = int(order[0])
            p = body[j][1]
            psents = sentences(strip_marking(p.text))
            if not psents:
                continue
            ov = [overlap(sent, x) for x in psents]
            copy = max(ov) >= args.copy
            if copy and rng.random() > args.copy_keep:
                stats["near_copy_dropped"] += 1
                continue
            stats["matched"] += 1
            same = [passages[int(o)] for o in order[1:] if cos[k, o] < best - args.margin][:4]
            stating = psents[int(np.argmax(ov))]
            near = remove_sentences(strip_marking(p.text), lambda s: s == stating)
            negs = []
            if near:
                negs.append(passage(c.subject, p.heading, near))
                stats["near_miss"] += 1
            negs += same + bm25_negs(sent, c.id)
            groups.append({"query": sent, "pos": passages[j], "negs": negs, "source": "summary", "cable": c.id,
                           "near": bool(near), "copy": copy})
            found = find_span(sent, strip_marking(p.text))
            if found:
                kind, m, phrase, core = found
                question = make_question(sent, kind, m, phrase)
                near_q = remove_sentences(strip_marking(p.text), lambda s: core.lower() in s.lower())
                qnegs = ([passage(c.subject, p.heading, near_q)] if near_q else []) + same + bm25_negs(question, c.id)
                groups.append({"query": question, "pos": passages[j], "negs": qnegs, "source": f"question-{kind}",
                               "cable": c.id, "near": bool(near_q), "copy": copy})
                stats["questions"] += 1

    # Headings -> the paragraph under them.
    heads = []
    for c in cables:
        body = [p for p in c.paragraphs if len(p.text.split()) >= 20]
        for p in body:
            h = p.heading.strip()
            if len(h.split()) >= 3 and not re.search(r"summary|comment|background", h, re.I):
                heads.append((c, p, body))
    rng.shuffle(heads)
    for c, p, body in heads[: args.headings]:
        # The heading is the query, so no passage of the group carries its heading.
        negs = [passage(c.subject, "", q.text) for q in body if q is not p]
        rng.shuffle(negs)
        if negs:
            groups.append({"query": p.heading.strip().rstrip(".:"), "pos": passage(c.subject, "", p.text),
                           "negs": negs[:5], "source": "heading", "cable": c.id,
                           "near": False, "copy": False})
    groups = [g for g in groups if g["negs"]]
    rng.shuffle(groups)
    by_source: dict[str, int] = {}
    for g in groups:
        by_source[g["source"]] = by_source.get(g["source"], 0) + 1
    stats.update(groups=len(groups), by_source=by_source, cables=len(cables), excluded_dev_cables=len(exclude),
                 seconds=round(time.time() - t0), seed=args.seed, args=vars(args))
    with open(CACHE / "groups.jsonl", "w") as f:
        for g in groups:
            f.write(json.dumps(g) + "\n")
    (CACHE / "mine_stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    sys.exit(main())
