"""`rag eval`: run a suite of questions through `Pipeline.ask` and report how well it did.

Every case goes through the same code path as `rag ask` (history and filters included).
Several retrieval modes and answer backends are run side by side in one process, on one
index, so their figures compare fairly. Suite files are read by `rag.evaluation.suite`, metrics live in
`rag.evaluation.metrics` and the reports are written by `rag.evaluation.report`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from rag.evaluation.metrics import CaseScore, score_case, summarize, summarize_by_kind
from rag.evaluation.report import summary_table, write_reports
from rag.evaluation.results import CaseResult, answer_text, key
from rag.evaluation.suite import Case, check_index, load_suite
from rag.settings import Settings


def score_answer(case: Case, answer) -> CaseScore:
    return score_case(
        case.kind,
        ranked=[(h.cable_id, h.paragraph) for h in answer.hits],
        gold=case.gold,
        text=answer_text(answer.text),
        facts=case.facts,
        cited=[key(c.citation) for c in answer.citations],
        refused=answer.refused,
        timings_ms=answer.timings_ms,
        one_line=answer.short_answer,
    )


def build_pipelines(settings: Settings, retrievals: Sequence[str], llms: Sequence[str]) -> dict:
    """name → Pipeline for every (retrieval, llm) pair, all on one store, BM25 index and encoder."""
    from rag.answer.pipeline import Pipeline

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
    from rag.index.index import index_for

    cases = load_suite(suite)
    cases = cases[:limit] if limit else cases
    index_for(settings).ensure(progress=progress)
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
