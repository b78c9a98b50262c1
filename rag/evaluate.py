"""`rag eval`: run a suite of questions through `Pipeline.ask` and report how well it did.

Every case goes through the same code path as `rag ask` (history and filters included).
Several retrieval modes and answer backends are run side by side in one process, on one
index, so their figures compare fairly. Suite files are read by `rag.suite`, metrics live in
`rag.metrics` and the reports are written by `rag.report`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from rag.metrics import CaseScore, Paragraph, facts_found, score_case, summarize, summarize_by_kind
from rag.report import summary_table, write_reports
from rag.settings import Settings
from rag.suite import Case, check_index, load_suite
from rag.types import Citation


@dataclass
class CaseResult:
    case: Case
    config: str
    answer: object  # rag.pipeline.Answer
    score: CaseScore

    def to_json(self, gold_texts: dict[Paragraph, str]) -> dict:
        """Everything needed to debug one case of one configuration."""
        a, case = self.answer, self.case
        retrieved = {(h.cable_id, h.paragraph) for h in a.hits}
        return {
            "id": case.id, "kind": case.kind, "line": case.line, "config": self.config,
            "question": case.question, "standalone_question": a.standalone,
            "history": list(case.history), "filters": case.filters.to_json(),
            "answer": a.text, "one_line": a.short_answer, "refused": a.refused, "backend": a.backend, "reference_answer": case.answer,
            "citations": [
                {"cable_id": c.citation.cable_id, "paragraph": c.citation.paragraph, "supported": c.supported,
                 "score": round(c.score, 4), "gold": _key(c.citation) in case.gold,
                 "retrieved": _key(c.citation) in retrieved, **({"replaced": c.replaced} if c.replaced else {})}
                for c in a.citations
            ],
            "unsupported": a.unsupported,
            "retrieved": [
                {"rank": rank, "cable_id": h.cable_id, "paragraph": h.paragraph, "chunk_id": h.chunk_id,
                 "score": round(h.score, 5), "source": h.source, "gold": (h.cable_id, h.paragraph) in case.gold}
                for rank, h in enumerate(a.hits, 1)
            ],
            "gold": [{"cable_id": c, "paragraph": p, "text": gold_texts.get((c, p))} for c, p in case.citations],
            "facts": [{"spellings": list(f), "found": found}
                      for f, found in zip(case.facts, facts_found(answer_text(a.text), case.facts))],
            "metrics": self.score.to_json(),
            "timings_ms": {k: round(v, 1) for k, v in a.timings_ms.items()},
        }


def _key(citation: Citation) -> Paragraph:
    return (citation.cable_id, citation.paragraph)


def answer_text(text: str) -> str:
    """The answer without its citation tags: a fact like "20" must not match a cable id."""
    return Citation.PATTERN.sub("", text)


def score_answer(case: Case, answer) -> CaseScore:
    return score_case(
        case.kind,
        ranked=[(h.cable_id, h.paragraph) for h in answer.hits],
        gold=case.gold,
        text=answer_text(answer.text),
        facts=case.facts,
        cited=[_key(c.citation) for c in answer.citations],
        refused=answer.refused,
        timings_ms=answer.timings_ms,
        one_line=answer.short_answer,
    )


def build_pipelines(settings: Settings, retrievals: Sequence[str], llms: Sequence[str]) -> dict:
    """name → Pipeline for every (retrieval, llm) pair, all on one store, BM25 index and encoder."""
    from rag.pipeline import Pipeline

    pipelines, first = {}, None
    for retrieval in dict.fromkeys(retrievals):
        for llm in dict.fromkeys(llms):
            config = settings.with_(retrieval=retrieval, llm=llm)
            retriever = replace(first.retriever, mode=retrieval) if first else None
            pipeline = Pipeline(config, retriever=retriever)
            first = first or pipeline
            pipelines[f"{retrieval}+{llm}"] = pipeline
    return pipelines


def run_suite(cases: Sequence[Case], pipelines: dict, progress: bool = True) -> dict[str, list[CaseResult]]:
    """Every case through every pipeline: config name → one result per case, in suite order."""
    results: dict[str, list[CaseResult]] = {}
    with tqdm(total=len(cases) * len(pipelines), desc="eval", unit="case", disable=not progress) as bar:
        for name, pipeline in pipelines.items():
            bar.set_postfix_str(name)
            # One untimed search first, so lazy loading (BM25 index, reranker) is not billed to case 1.
            pipeline.retriever.search(cases[0].question, pipeline.settings.top_k)
            results[name] = []
            for case in cases:
                answer = pipeline.ask(case.question, history=list(case.history) or None, filters=case.filters)
                results[name].append(CaseResult(case, name, answer, score_answer(case, answer)))
                bar.update()
    return results


# ---------------------------------------------------------------------------------------------
# Summaries: one report.json object per configuration


def config_of(name: str, pipeline, suite: Path | str) -> dict:
    s = pipeline.settings
    return {
        "name": name, "retrieval": s.retrieval, "llm": s.llm, "llm_model": s.llm_model if s.llm != "extractive" else "",
        "top_k": s.top_k, "rank": s.rank, "refuse": s.refuse, "reranker": s.reranker, "encoder": s.encoder,
        "index": s.chroma_url or str(s.index_dir), "suite": str(suite),
    }


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def build_report(config: dict, results: Sequence[CaseResult]) -> dict:
    """One configuration's report.json object, under the fixed keys."""
    scores = [r.score for r in results]
    overall = summarize(scores)
    return _rounded({
        "n": overall["n"], "config": config, "retrieval": overall["retrieval"], "answer": overall["answer"],
        "latency_ms": overall["latency_ms"], "by_kind": summarize_by_kind(scores),
    })


def default_out() -> Path:
    return Path("evals") / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")


def evaluate(suite: Path | str, settings: Settings, retrievals: Sequence[str] | None = None,
             llms: Sequence[str] | None = None, out: Path | str | None = None, limit: int | None = None,
             progress: bool = True) -> tuple[Path, list[dict]]:
    """Run a suite for every (retrieval, llm) configuration and write the reports.

    The suite is checked, and its cables looked up in the index, before any case runs.
    Returns the report directory and the report of each configuration.
    """
    from rag.demo import ensure_index

    cases = load_suite(suite)
    cases = cases[:limit] if limit else cases
    ensure_index(settings, progress=progress)
    pipelines = build_pipelines(settings, retrievals or [settings.retrieval], llms or [settings.llm])
    gold_texts = check_index(cases, next(iter(pipelines.values())).retriever.store, suite)
    results = run_suite(cases, pipelines, progress=progress)
    reports = [build_report(config_of(name, p, suite), results[name]) for name, p in pipelines.items()]
    out = Path(out) if out else default_out()
    write_reports(out, reports, results, gold_texts)
    return out, reports


def main(args, settings: Settings) -> int:
    """`rag eval`: arguments as parsed by rag.cli."""
    out, reports = evaluate(args.questions, settings, args.retrieval, args.llm, args.out, args.limit)
    print(summary_table(reports))
    print(f"\nReports in {out}/ (report.md, report.json, cases.jsonl, report.png)")
    return 0
