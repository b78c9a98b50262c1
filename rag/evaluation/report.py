"""Reports of a `rag eval` run: the summary table it prints, report.json, report.md (tables by
kind and the worst cases), cases.jsonl and report.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from rag.citation import Citation
from rag.evaluation.metrics import KS, STAGES, Paragraph
from rag.evaluation.results import CaseResult

WORST = 10

ROWS: list[tuple[str, Callable[[dict], object]]] = [
    *[(f"hit@{k}", lambda r, k=k: r["retrieval"][f"hit@{k}"]) for k in KS],
    ("mrr@10", lambda r: r["retrieval"]["mrr@10"]),
    ("multi: all cables in top 10", lambda r: r["retrieval"]["multi_all_cables"]),
    *[(name.replace("_", " "), lambda r, name=name: r["answer"][name])
      for name in ("fact_recall", "citation_precision", "citation_recall", "refusal_accuracy",
                   "false_refusal_rate", "unretrieved_citations", "one_line_shown", "one_line_right")],
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
            f"**Answered**{' (refused)' if a.refused else ''}: "
            + (f"**{a.short_answer}** " if a.short_answer else "") + _short(a.text, 600),
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
                ("refusal_accuracy", "answer"), ("false_refusal_rate", "answer"), ("one_line_shown", "answer"),
                ("one_line_right", "answer")]
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
