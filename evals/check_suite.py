"""How well `rag check` tells a right citation from a wrong one, measured on a suite's cases.

For each answerable case with a reference answer, three texts are checked (rag.check.checker.Checker,
the code path of `rag check`):

1. the true claim: the answer with a gold tag (the case's first gold paragraph);
2. the false claim: the same answer with the tag of a paragraph that is not gold: of the same
   cable, or, for every fourth case (and where the cable has no other paragraph), of another
   case's gold cable; chosen at random with a fixed seed;
3. the answer with no tag;
4. a near miss, harder than the false claim: the answer citing the paragraph, not of a gold
   cable, that retrieval over the answer ranks first (another cable on the same subject).

Reported: the share of true claims marked `supported` (target ≥ 0.90), of false claims marked
`weak` or `unsupported` (≥ 0.85), and of the untagged answers' claims whose `suggested`
paragraph is gold (≥ 0.80), each by kind of case; and the share of near misses flagged (no
target: it shows what a lenient decision costs).

    python evals/check_suite.py --questions evals/dev.jsonl --index ~/.cache/cablerag/shared
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rag.answer.retrieve import open_retriever
from rag.check.checker import Checker
from rag.evaluation.suite import check_index, load_suite
from rag.settings import Settings

SEED = 2010
# Every fourth false claim cites another cable.
OTHER_CABLE_EVERY = 4
TARGETS = {"true_supported": 0.90, "false_flagged": 0.85, "suggested_gold": 0.80, "near_miss_flagged": 0.0}


def tagged(answer: str, cable_id: str, paragraph: int) -> str:
    """The answer with the tag before its final stop, as a writer places it."""
    body = answer.rstrip()
    stop = body[-1] if body[-1] in ".!?" else ""
    return f"{body[:len(body) - len(stop)]} [{cable_id} ¶{paragraph}]{stop or '.'}"


def false_paragraph(case, index: int, numbers: dict[str, list[int]], rng: random.Random,
                    other_cables: list[str]) -> tuple[str, int]:
    cable = case.citations[0][0]
    same = [n for n in numbers.get(cable, []) if (cable, n) not in case.gold]
    if index % OTHER_CABLE_EVERY == OTHER_CABLE_EVERY - 1 or not same:
        other = rng.choice([c for c in other_cables if c not in {g for g, _ in case.gold}])
        return other, rng.choice(numbers[other])
    return cable, rng.choice(same)


def share(values: list[bool]) -> str:
    return f"{sum(values) / len(values):.3f} ({sum(values)}/{len(values)})" if values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", default="evals/dev.jsonl", metavar="FILE")
    parser.add_argument("--index", default="~/.cache/cablerag/shared", metavar="DIR")
    parser.add_argument("--limit", type=int, help="only the first N answerable cases")
    parser.add_argument("--out", metavar="FILE", help="write each case's results here (JSONL)")
    args = parser.parse_args()

    cases = [c for c in load_suite(args.questions) if c.kind != "unanswerable" and c.answer and c.citations]
    cases = cases[: args.limit] if args.limit else cases
    retriever = open_retriever(Settings(index_dir=Path(args.index).expanduser()))
    texts = check_index(cases, retriever.store, args.questions)
    numbers: dict[str, list[int]] = {}
    for cable, n in sorted(texts):
        numbers.setdefault(cable, []).append(n)
    other_cables = sorted(numbers)
    checker = Checker(retriever)
    rng = random.Random(SEED)

    rows, started = [], time.perf_counter()
    for i, case in enumerate(cases):
        gold_cable, gold_n = case.citations[0]
        wrong = false_paragraph(case, i, numbers, rng, other_cables)
        true = checker.check(tagged(case.answer, gold_cable, gold_n)).citations[0]
        false = checker.check(tagged(case.answer, *wrong)).citations[0]
        plain = checker.check(case.answer).claims
        gold_cables = {c for c, _ in case.gold}
        near = next((h for h in retriever.search(case.answer, 50) if h.cable_id not in gold_cables), None)
        miss = near and checker.check(tagged(case.answer, near.cable_id, near.paragraph)).citations[0]
        rows.append({
            "id": case.id, "kind": case.kind, "gold": [list(g) for g in case.citations],
            "true": {"cited": [gold_cable, gold_n], "status": true.status, "score": true.score},
            "false": {"cited": list(wrong), "status": false.status, "score": false.score,
                      "other_cable": wrong[0] != gold_cable},
            "near_miss": miss and {"cited": [miss.cable_id, miss.paragraph], "status": miss.status, "score": miss.score},
            "plain": [{"text": c.text, "suggested": c.suggested.to_json() if c.suggested else None,
                       "gold": bool(c.suggested and (c.suggested.cable_id, c.suggested.paragraph) in case.gold)}
                      for c in plain],
        })
    elapsed = time.perf_counter() - started

    def measures(selected: list[dict]) -> dict[str, list[bool]]:
        return {"true_supported": [r["true"]["status"] == "supported" for r in selected],
                "false_flagged": [r["false"]["status"] in ("weak", "unsupported") for r in selected],
                "suggested_gold": [p["gold"] for r in selected for p in r["plain"]],
                "near_miss_flagged": [r["near_miss"]["status"] in ("weak", "unsupported")
                                      for r in selected if r["near_miss"]]}

    overall = measures(rows)
    print(f"{len(rows)} cases of {args.questions} on {args.index}; {4 * len(rows)} texts checked in "
          f"{elapsed:.0f} s ({elapsed / (4 * len(rows)) * 1000:.0f} ms a text)\n")
    print(f"{'':<24}{'all':<22}" + "".join(f"{k:<20}" for k in sorted({r['kind'] for r in rows})))
    for name, target in TARGETS.items():
        by_kind = [share(measures([r for r in rows if r["kind"] == k])[name]) for k in sorted({r["kind"] for r in rows})]
        print(f"{name + (f' (≥{target:.2f})' if target else ''):<24}{share(overall[name]):<22}" + "".join(f"{v:<20}" for v in by_kind))
    same = [r for r in rows if not r["false"]["other_cable"]]
    print(f"\nfalse claims citing a paragraph of the gold cable: {share(measures(same)['false_flagged'])} flagged; "
          f"of another cable: {share(measures([r for r in rows if r['false']['other_cable']])['false_flagged'])}")
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
