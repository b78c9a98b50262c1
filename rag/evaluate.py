"""`rag eval`: run a suite of questions through `Pipeline.ask` and report how well it did.

Every case goes through the same code path as `rag ask` (history and filters included).
Several retrieval modes and answer backends are run side by side in one process, on one
index, so their figures compare fairly. Metrics themselves live in `rag.metrics`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from rag.errors import RagError
from rag.metrics import KS, STAGES, CaseScore, Paragraph, facts_found, score_case, summarize, summarize_by_kind
from rag.settings import Settings
from rag.types import Citation
from rag.validate import validate_filters

KINDS = ("factoid", "numeric", "multi", "unanswerable", "filtered", "followup")
REQUIRED = ("id", "kind", "question", "facts", "citations")
ROLES = ("user", "assistant")
WORST = 10


class SuiteError(RagError):
    """A suite file that cannot be run; the message lists every problem by line."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))


@dataclass
class Case:
    """One line of a suite file."""

    id: str
    kind: str
    question: str
    line: int
    facts: tuple[tuple[str, ...], ...] = ()
    citations: tuple[Paragraph, ...] = ()
    filters: dict = field(default_factory=dict)
    history: tuple[dict, ...] = ()
    answer: str = ""
    notes: str = ""

    @property
    def gold(self) -> set[Paragraph]:
        return set(self.citations)


# ---------------------------------------------------------------------------------------------
# Loading and checking suites


def _problems_of(obj) -> list[str]:
    """What is wrong with one parsed line, as messages without the line number."""
    if not isinstance(obj, dict):
        return ["expected a JSON object"]
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        return [f"missing field(s) {', '.join(missing)}"]
    problems = []
    if not isinstance(obj["id"], str) or not obj["id"].strip():
        problems.append("id must be a non-empty string")
    if obj["kind"] not in KINDS:
        problems.append(f"unknown kind {obj['kind']!r} (expected one of {', '.join(KINDS)})")
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        problems.append("question must be a non-empty string")
    facts = obj["facts"]
    if not isinstance(facts, list) or not all(
        isinstance(f, list) and f and all(isinstance(s, str) and s.strip() for s in f) for f in facts
    ):
        problems.append('facts must be a list of lists of spellings, e.g. [["Kang Sokhorn"]]')
    cites = obj["citations"]
    if not isinstance(cites, list) or not all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and type(c[1]) is int for c in cites
    ):
        problems.append('citations must be a list of [cable id, paragraph number], e.g. [["09PHNOMPENH637", 1]]')
    elif obj["kind"] == "unanswerable" and (cites or facts):
        problems.append("an unanswerable case has no citations and no facts")
    elif obj["kind"] in KINDS and obj["kind"] != "unanswerable" and not cites:
        problems.append(f"a {obj['kind']} case needs at least one gold citation")
    problems += _filter_problems(obj)
    problems += _history_problems(obj)
    return problems


def _filter_problems(obj: dict) -> list[str]:
    filters = obj.get("filters") or {}
    if not isinstance(filters, dict):
        return ["filters must be an object"]
    try:
        valid = validate_filters(filters)
    except RagError as exc:
        return [str(exc)]
    return ["a filtered case needs filters"] if obj["kind"] == "filtered" and not valid else []


def _history_problems(obj: dict) -> list[str]:
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str) for t in history
    ):
        return ['history must be a list of {"role": "user"|"assistant", "content": "..."}']
    return ["a followup case needs a history"] if obj["kind"] == "followup" and not history else []


def _case(obj: dict, line: int) -> Case:
    return Case(
        id=obj["id"], kind=obj["kind"], question=obj["question"], line=line,
        facts=tuple(tuple(f) for f in obj["facts"]),
        citations=tuple((c.upper(), p) for c, p in obj["citations"]),
        filters=validate_filters(obj.get("filters")), history=tuple(obj.get("history") or ()),
        answer=obj.get("answer", ""), notes=obj.get("notes", ""),
    )


def load_suite(path: Path | str) -> list[Case]:
    """The cases of a JSONL suite file; every problem in it is reported at once, by line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"cannot read suite {path}: {exc}") from None
    cases, problems, first_line = [], [], {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        found = _problems_of(obj)
        if not found and obj["id"] in first_line:
            found = [f"duplicate id {obj['id']!r} (first on line {first_line[obj['id']]})"]
        if found:
            problems += [f"line {number}: {p}" for p in found]
            continue
        first_line[obj["id"]] = number
        cases.append(_case(obj, number))
    if not problems and not cases:
        problems.append("no cases")
    if problems:
        raise SuiteError(path, problems)
    return cases


def check_index(cases: Sequence[Case], store, path: Path | str) -> dict[Paragraph, str]:
    """Gold paragraph texts; raises SuiteError naming the lines whose cables the index lacks.

    A gold paragraph missing from a cable that is there is only warned about: it points at the
    cable parser, and the case still scores on its other gold paragraphs.
    """
    texts = store.paragraph_texts([cable for case in cases for cable, _ in case.citations])
    cables = {cable for cable, _ in texts}
    problems = []
    for case in cases:
        missing = sorted({c for c, _ in case.citations} - cables)
        if missing:
            problems.append(f"line {case.line}: cable(s) not in the index: {', '.join(missing)}")
        for cable, number in case.citations:
            if cable in cables and (cable, number) not in texts:
                print(f"rag eval: warning: line {case.line}: {cable} ¶{number} is not a paragraph in the index",
                      file=sys.stderr)
    if problems:
        raise SuiteError(path, problems)
    return texts


# ---------------------------------------------------------------------------------------------
# Running


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
            "history": list(case.history), "filters": case.filters,
            "answer": a.text, "refused": a.refused, "backend": a.backend, "reference_answer": case.answer,
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
                answer = pipeline.ask(case.question, history=list(case.history) or None, filters=case.filters or None)
                results[name].append(CaseResult(case, name, answer, score_answer(case, answer)))
                bar.update()
    return results


# ---------------------------------------------------------------------------------------------
# Reports


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


ROWS: list[tuple[str, Callable[[dict], object]]] = [
    *[(f"hit@{k}", lambda r, k=k: r["retrieval"][f"hit@{k}"]) for k in KS],
    ("mrr@10", lambda r: r["retrieval"]["mrr@10"]),
    ("multi: all cables in top 10", lambda r: r["retrieval"]["multi_all_cables"]),
    *[(name.replace("_", " "), lambda r, name=name: r["answer"][name])
      for name in ("fact_recall", "citation_precision", "citation_recall", "refusal_accuracy",
                   "false_refusal_rate", "unretrieved_citations")],
    *[(f"{stage} ms (median / p95)", lambda r, stage=stage: r["latency_ms"][stage]) for stage in STAGES],
]


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):  # a latency: whole milliseconds
        return " / ".join("–" if value[k] is None else f"{value[k]:.0f}" for k in ("median", "p95"))
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def metric_rows(reports: Sequence[dict]) -> list[list[str]]:
    return [[label] + [_cell(get(r)) for r in reports] for label, get in ROWS]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] + ["---:"] * (len(header) - 1), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    )


def summary_table(reports: Sequence[dict]) -> str:
    """What `rag eval` prints at the end: metrics down, configurations across."""
    return text_table(["metric"] + [r["config"]["name"] for r in reports], metric_rows(reports))


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def worst_cases_md(results: Sequence[CaseResult], gold_texts: dict[Paragraph, str], n: int = WORST) -> str:
    """The n lowest-quality imperfect cases: question, gold paragraph, top 3 retrieved, answer."""
    worst = sorted((r for r in results if r.score.quality < 1), key=lambda r: (r.score.quality, r.case.line))[:n]
    if not worst:
        return "Every case scored full marks."
    blocks = []
    for i, r in enumerate(worst, 1):
        case, a = r.case, r.answer
        gold = next((p for p in case.citations if p in gold_texts), None)
        gold_line = (f"**Gold** {Citation(*gold).tag} (of {len(case.citations)}): {_short(gold_texts[gold])}"
                     if gold else "**Gold**: none (the right answer is a refusal)")
        top = ", ".join(f"{h.citation.tag} {h.score:.3f}" for h in a.hits[:3]) or "nothing"
        rank = r.score.gold_rank
        blocks.append("\n\n".join([
            f"### {i}. {case.id} ({case.kind}, line {case.line}) — quality {r.score.quality:.2f}",
            f"**Question**: {case.question}" + (f"  \n**Standalone**: {a.standalone}" if a.standalone != case.question else ""),
            gold_line,
            f"**Retrieved** (top 3): {top}; first gold at rank {rank if rank else '–'}",
            f"**Answered**{' (refused)' if a.refused else ''}: {_short(a.text, 600)}",
        ]))
    return "\n\n".join(blocks)


def report_markdown(reports: Sequence[dict], results: dict[str, list[CaseResult]], gold_texts: dict[Paragraph, str]) -> str:
    header = ["metric"] + [r["config"]["name"] for r in reports]
    first = reports[0]["config"]
    parts = [
        f"# Evaluation of {first['suite']}",
        f"{reports[0]['n']} cases · index {first['index']} · top {first['top_k']} · encoder {first['encoder']}"
        + (f" · reranker {first['reranker']}" if first["reranker"] else ""),
        "## Overall", markdown_table(header, metric_rows(reports)),
        "## By kind",
    ]
    kinds = list(dict.fromkeys(k for r in reports for k in r["by_kind"]))
    for kind in kinds:
        per_kind = [{**r["by_kind"].get(kind, {}), "config": r["config"]} for r in reports]
        parts += [f"### {kind} (n={per_kind[0].get('n', 0)})", markdown_table(header, metric_rows(per_kind))]
    for r in reports:
        name = r["config"]["name"]
        parts += [f"## Worst cases — {name}", worst_cases_md(results[name], gold_texts)]
    return "\n\n".join(parts) + "\n"


PLOT_METRICS = [("hit@1", "retrieval"), ("hit@5", "retrieval"), ("hit@10", "retrieval"), ("mrr@10", "retrieval"),
                ("fact_recall", "answer"), ("citation_precision", "answer"), ("citation_recall", "answer"),
                ("refusal_accuracy", "answer"), ("false_refusal_rate", "answer")]
LOWER_IS_BETTER = {"false_refusal_rate"}


def _value(report: dict, metric: str, section: str) -> float:
    value = report.get(section, {}).get(metric)
    return float("nan") if value is None else value


def write_plot(path: Path, reports: Sequence[dict]) -> None:
    """Bars of the main metrics per configuration, and one kind × metric heatmap per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [m + (" ↓" if m in LOWER_IS_BETTER else "") for m, _ in PLOT_METRICS]
    flip = np.array([m in LOWER_IS_BETTER for m, _ in PLOT_METRICS])
    kinds = list(dict.fromkeys(k for r in reports for k in r["by_kind"]))
    fig = plt.figure(figsize=(max(10, 4.5 * len(reports)), 9), constrained_layout=True)
    grid = fig.add_gridspec(2, len(reports))
    bars = fig.add_subplot(grid[0, :])
    width = 0.8 / len(reports)
    x = np.arange(len(labels))
    for i, r in enumerate(reports):
        values = [_value(r, m, s) for m, s in PLOT_METRICS]
        drawn = bars.bar(x + i * width - 0.4 + width / 2, values, width, label=r["config"]["name"])
        # Labelled, so that a 0 shows as a number rather than as a missing bar.
        bars.bar_label(drawn, ["" if np.isnan(v) else f"{v:.2f}" for v in values], fontsize=6)
    bars.set_xticks(x, [label.replace("_", "\n") for label in labels])
    bars.set_ylim(0, 1.1)
    bars.set_title(f"Overall (n={reports[0]['n']})")
    bars.legend(loc="upper right", fontsize="small")
    bars.grid(axis="y", alpha=0.3)
    for i, r in enumerate(reports):
        ax = fig.add_subplot(grid[1, i])
        values = np.array([[_value(r["by_kind"].get(k, {}), m, s) for m, s in PLOT_METRICS] for k in kinds])
        # Green is good: lower-is-better metrics are coloured by 1 - value, and labelled by value.
        colours = np.where(flip, 1 - values, values)
        ax.imshow(np.ma.masked_invalid(colours), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        for (row, col), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(col, row, f"{v:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(kinds)), [f"{k} ({r['by_kind'].get(k, {}).get('n', 0)})" for k in kinds], fontsize=8)
        ax.set_title(f"By kind — {r['config']['name']}", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(out: Path, reports: list[dict], results: dict[str, list[CaseResult]],
                  gold_texts: dict[Paragraph, str]) -> None:
    """report.json, report.md, cases.jsonl and report.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(reports, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / "cases.jsonl").open("w", encoding="utf-8") as f:
        for name in results:
            for r in results[name]:
                f.write(json.dumps(r.to_json(gold_texts), ensure_ascii=False) + "\n")
    (out / "report.md").write_text(report_markdown(reports, results, gold_texts), encoding="utf-8")
    write_plot(out / "report.png", reports)


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
