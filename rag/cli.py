"""`rag`: ingest cables, ask questions with verified citations, run evaluations, serve the app.

Example usage:
    rag ask "Who leads Cambodia's police TIP response?"     # builds the demo index on first use
    rag ingest ../shared/cables --index ~/.cache/cablerag/shared
    rag stats --index ~/.cache/cablerag/shared
    rag show "09PHNOMPENH637 ¶6"
    rag check draft.md
    rag eval --questions evals/smoke.jsonl
    rag mcp                                                   # MCP tools over stdio, for agents
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import RagError, require_extra
from rag.settings import BACKENDS, DEVICES, PRECISIONS, RETRIEVALS, STORES, Settings, env_names

if TYPE_CHECKING:  # the annotation only: the CLI imports rag.filters when a command filters
    from rag.filters import Filters

# What `rag serve` imports beyond a plain install: the serve extra.
SERVE_MODULES = ("gradio", "fastapi", "starlette", "uvicorn", "limits")

EPILOG = ("Environment (described by 'python -m rag.settings'; an option given here wins): "
          + ", ".join(n for name in Settings.model_fields for n in env_names(name)) + ".")


def _default(name: str) -> str:
    """A setting's default and the variable that changes it, for --help."""
    return f"default: {Settings.model_fields[name].default}, or ${env_names(name)[0]}"


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR", help="index directory (default: ./index or $RAG_INDEX_DIR)")
    p.add_argument("--chroma-url", metavar="URL", help="use a Chroma server (chroma run) instead of the embedded store")
    p.add_argument("--store", choices=STORES,
                   help=f"chroma (with the BM25 sidecar in --index) or lance (LanceDB at --lance-uri) ({_default('store')})")
    p.add_argument("--lance-uri", metavar="URI", help="the LanceDB database of --store lance: a folder or s3://bucket/path")


def _index_args(p: argparse.ArgumentParser) -> None:
    _store_args(p)
    p.add_argument("--encoder", help=f"minilm, minilm-int8, or a local sentence-transformers model path ({_default('encoder')})")
    p.add_argument("--device", choices=DEVICES,
                   help=f"where the encoder runs; auto takes a CUDA GPU when torch sees one ({_default('device')})")


def _answer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", choices=BACKENDS, help=f"answer backend ({_default('llm')})")
    p.add_argument("--base-url", help="OpenAI-compatible server for --llm openai, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--model", help="model name (openai) or GGUF path (llamacpp)")
    p.add_argument("--retrieval", choices=RETRIEVALS, help=f"retrieval mode ({_default('retrieval')})")
    p.add_argument("--top-k", type=int, help=f"paragraphs retrieved per question ({_default('top_k')})")
    p.add_argument("--reranker", metavar="PATH", help="local cross-encoder model directory to rerank with")


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--origin", help='only cables from this post, e.g. "Embassy Phnom Penh"')
    p.add_argument("--date-from", metavar="YYYY-MM-DD")
    p.add_argument("--date-to", metavar="YYYY-MM-DD")
    p.add_argument("--classification", help='e.g. "CONFIDENTIAL" (matched exactly)')
    p.add_argument("--tag", help="a TAGS code, e.g. KTIP")


def _refresh_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refresh", type=float, metavar="SECONDS",
                   help="answer from a newer generation of the index at most this long after it is committed "
                   f"({_default('refresh')})")


def _positive(value: str) -> int:
    """A whole number of at least 1, for options that count something."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not at least 1")
    return number


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings().with_(
        index_dir=Path(args.index).expanduser() if getattr(args, "index", None) else None,
        chroma_url=getattr(args, "chroma_url", None),
        store=getattr(args, "store", None),
        lance_uri=getattr(args, "lance_uri", None),
        encoder=getattr(args, "encoder", None),
        device=getattr(args, "device", None),
        precision=getattr(args, "precision", None),
        llm=getattr(args, "llm", None),
        llm_base_url=getattr(args, "base_url", None),
        llm_model=getattr(args, "model", None),
        retrieval=getattr(args, "retrieval", None),
        top_k=getattr(args, "top_k", None),
        reranker=getattr(args, "reranker", None),
    )


def filters_from(args: argparse.Namespace) -> Filters:
    from rag.filters import FILTER_KEYS, Filters

    return Filters.parse({k: getattr(args, k) for k in FILTER_KEYS})


def cmd_ingest(args) -> int:
    from rag.index.index import index_for

    settings = settings_from(args)
    if args.vectors_from and settings.store != "lance":
        raise RagError("--vectors-from moves an index into the lance store: give --store lance and --lance-uri too")
    spread = {k: v for k, v in (("workers", args.workers), ("ray_address", args.ray_address)) if v is not None}
    if spread and settings.store != "lance":
        raise RagError("--workers and --ray-address spread an ingest into the lance store: give --store lance and "
                       "--lance-uri too")
    extra = {"vectors_from": args.vectors_from} if args.vectors_from else {}
    extra.update(spread)
    report = index_for(settings).ingest(args.paths, progress=not args.quiet, rebuild=args.rebuild, **extra)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_stats(args) -> int:
    from rag.index.health import require_directory

    settings = settings_from(args)
    require_directory(settings.index_dir)
    from rag.index.index import index_for

    index = index_for(settings)
    if args.verify:
        parts = index.verify()
        for part in parts:
            print(part.line)
        return 1 if any(part.problem for part in parts) else 0
    from rag.index.embed import get_encoder

    encoder = get_encoder(settings.encoder, settings.embed_batch_size, settings.device, precision=settings.precision)
    stats = index.stats(lambda: index.store(encoder.model_id, encoder.dimension))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, value in stats.items():
        if key == "top_origins":
            value = ", ".join(f"{o} ({n})" for o, n in value)
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        print(f"{key:>16}: {value}")
    return 0


def print_answer(answer) -> None:
    if answer.refused:
        print(answer.text)
        if answer.refusal_reason:
            print(f"Why: {answer.refusal_reason.rstrip('.?!')}{'?' if answer.refusal_reason.endswith('?') else '.'}")
    else:
        if answer.short_answer:
            print(f"Answer: {answer.short_answer}\n")
        print(textwrap.fill(answer.text, 100))
    if answer.unsupported and not answer.refused:
        print("\n(no supporting paragraph found for: " + " | ".join(answer.unsupported) + ")")
    status = {c.citation: c.status for c in answer.citations}
    for hit in answer.paragraphs:
        m = hit.metadata
        print(f"\n── {hit.citation} [{status.get(hit.citation, '')}] — {m.get('subject', '')}")
        print(f"   {m.get('date', '')} · {m.get('origin', '')} · {m.get('classification', '')}")
        print(textwrap.indent(textwrap.fill(hit.text, 96), "   "))
    t = answer.timings_ms
    print(f"\n[{answer.backend}; retrieve {t['retrieve']:.0f} ms, rank {t.get('rank', 0):.0f} ms, "
          f"answer {t['answer']:.0f} ms, verify {t['verify']:.0f} ms]")


def cmd_ask(args) -> int:
    from rag.validate import check_question

    # Bad input stops here, before the pipeline's imports.
    question = check_question(args.question)
    settings = settings_from(args)
    filters = filters_from(args)
    from rag.answer.pipeline import Pipeline
    from rag.index.index import index_for

    index_for(settings).ensure()
    answer = Pipeline(settings).ask(question, filters=filters)
    if args.json:
        print(json.dumps(answer.to_json(), indent=2, ensure_ascii=False))
    else:
        print_answer(answer)
    return 0


def cmd_show(args) -> int:
    from rag.render.terminal import format_text, show

    cable = show(" ".join(args.reference), settings_from(args))
    print(json.dumps(cable, indent=2, ensure_ascii=False) if args.json else format_text(cable), flush=True)
    return 0


def cmd_check(args) -> int:
    from rag.answer.retrieve import open_retriever
    from rag.check.checker import MAX_BYTES, Checker, Report, annotate, format_claim, format_summary, read_text
    from rag.check.claims import split_text
    from rag.index.index import index_for

    # Exit 1 means "a citation does not hold": a text or an index that cannot be read is a 2.
    try:
        text = read_text(args.file, args.max_bytes or MAX_BYTES)
        settings = settings_from(args)
        index_for(settings).ensure()
        checker = Checker(open_retriever(settings))
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    drafts = split_text(text)
    claims = []
    # The plain report is printed claim by claim as they are checked; a bar on a terminal
    # shows how far a long text has got (--json and --markdown print once, at the end).
    with tqdm(total=len(drafts), unit="claim", desc="check", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty()) as bar:
        for claim in checker.claims(drafts):
            claims.append(claim)
            bar.update()
            if not (args.json or args.markdown):
                tqdm.write(format_claim(claim, text), file=sys.stdout)
    report = Report(claims)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    elif args.markdown:
        print(annotate(report, text), end="" if text.endswith("\n") else "\n")
    else:
        print(format_summary(report))
    return 0 if report.ok else 1


def cmd_eval(args) -> int:
    require_extra("eval", "rag eval", "matplotlib")
    from rag.evaluation.evaluate import main as eval_main

    return eval_main(args, settings_from(args))


def cmd_serve(args) -> int:
    if args.auth is not None:  # a password on the command line shows in `ps`
        print("rag serve: error: --auth on the command line is not accepted (it shows in ps): "
              "set RAG_AUTH=USER:PASSWORD or use --auth-file PATH", file=sys.stderr)
        return 2
    require_extra("serve", "rag serve", *SERVE_MODULES)
    from rag.serve.web import read_auth_file, serve

    settings = settings_from(args).with_(allowed_hosts=args.allowed_hosts, cors_origins=args.cors_origins,
                                         refresh=args.refresh)
    if args.auth_file:
        settings = settings.with_(auth=read_auth_file(args.auth_file))
    return serve(settings, host=args.host, port=args.port)


def cmd_mcp(args) -> int:
    require_extra("mcp", "rag mcp", "mcp", "anyio")
    from rag.index.index import index_for

    settings = settings_from(args).with_(allowed_hosts=args.allowed_hosts, refresh=args.refresh)
    # A bad index stops here, before the MCP SDK's imports (seconds).
    index = index_for(settings)
    if not settings.chroma_url:  # a replica's sidecar is built from the store when the service opens
        index.check_in_step()
    index.require()
    from rag.serve.mcp_server import run

    return run(settings, http=args.http, host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag", description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="index cables: directories of cable files, single files, cables.csv",
                       description="Parse cables into paragraphs, embed what changed, store it. Safe to re-run "
                       "and to interrupt: the same command again finishes the job.", epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH")
    _index_args(p)
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"the encoder's arithmetic on the CPU; auto is bf16 where the CPU has bf16 units "
                        f"({_default('precision')})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rebuild", action="store_true",
                   help="discard the index first (a damaged one too) and build it again from PATH alone")
    p.add_argument("--vectors-from", type=Path, metavar="DIR",
                   help="with --store lance: take the paragraph and sentence vectors that the index at DIR (the "
                        "Chroma store, built by the same encoder) holds instead of encoding them again")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --store lance: spread the ingest over N workers on a local Ray, each with its share "
                        "of the cores (pip install 'cablerag[ray]')")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --store lance: join the Ray cluster at ADDR instead (every node must reach PATH and "
                        "--lance-uri); --workers defaults to one per CPU of the cluster")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("stats", help="what the index holds", epilog=EPILOG)
    _index_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true",
                   help="check every part of the index (SQLite, HNSW, BM25 sidecar, sentence vectors) in full, "
                   "one line each; exit 1 when one is damaged")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("ask", help="answer a question with verified paragraph citations",
                       description="Answer QUESTION from the index, citing [CABLEID ¶N] after each claim, then "
                       "print every cited paragraph so you can check it.", epilog=EPILOG)
    p.add_argument("question")
    _index_args(p)
    _answer_args(p)
    _filter_args(p)
    p.add_argument("--json", action="store_true", help="answer, citations with scores, retrieved paragraphs, timings")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("show", help="print a cable, or one paragraph with its neighbours",
                       description="Print a cable as a reader sees it: its metadata, then each paragraph "
                       "under its printed number and heading. Given a paragraph, print only that one "
                       "and the paragraphs before and after it.",
                       epilog='examples:\n  rag show 09PHNOMPENH637\n  rag show "09PHNOMPENH637 ¶6"   '
                       '# also 09PHNOMPENH637:6 or "09PHNOMPENH637 para 6"\n  rag show 09PHNOMPENH637:6 --json\n\n'
                       + textwrap.fill(EPILOG, 78), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", nargs="+", metavar="CABLE",
                   help="a cable id, optionally with a paragraph: 09PHNOMPENH637, '09PHNOMPENH637 ¶6', 09PHNOMPENH637:6")
    _store_args(p)
    p.add_argument("--json", action="store_true", help="the cable view's JSON, with 'focus': the paragraph asked for")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="check a text's citations against the cables",
                       description=textwrap.fill("Check the cable citations of a text (plain text or Markdown): each claim "
                       "(a sentence, or the sentences a citation closing a paragraph covers) is scored against "
                       "the paragraph it cites, like the citations of 'rag ask'. Each citation is supported, weak, "
                       "unsupported, unknown_cable (not in the index) or unknown_paragraph (the cable prints no "
                       "such paragraph), with the paragraph to cite instead when another backs the claim "
                       "better; an uncited claim gets one it could cite. Citations are read as people write "
                       "them: [ID ¶6], ID ¶6, ID ¶¶4-6, 'ID, para. 6', (ID para 6), ID:6, a bare ID (the "
                       "cable's best paragraph) and WikiLeaks cable links.", 78),
                       epilog=textwrap.fill("exit status: 0 every citation is supported, 1 one is not, 2 the text "
                       "(or the index) cannot be read: empty, binary, over --max-bytes, missing.", 78) + "\n\nexamples:\n  rag check draft.md\n"
                       "  rag check --markdown draft.md > checked.md\n  pbpaste | rag check - --json\n\n"
                       + textwrap.fill(EPILOG, 78), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default="-", metavar="FILE",
                   help="the text to check, plain text or Markdown; - or nothing reads stdin")
    _index_args(p)
    p.add_argument("--max-bytes", type=_positive, default=None, metavar="N",
                   help="read at most N bytes of FILE or stdin; a longer text is refused unchecked "
                   "(default: 2 MB = 2097152, some 300 pages)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="each claim with its offsets, status, citations (status, score, suggested) and a summary")
    output.add_argument("--markdown", action="store_true",
                        help="the text back with each citation followed by its status and what to cite instead")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("eval", help="run an evaluation suite (JSONL) and write a report",
                       description="Run every case of a suite through the same code path as 'rag ask' and "
                       "report retrieval, answer and citation metrics. Several --retrieval/--llm values "
                       "are compared side by side.", epilog=EPILOG)
    p.add_argument("--questions", required=True, metavar="FILE", help="suite file (JSONL), e.g. evals/dev.jsonl")
    _index_args(p)
    p.add_argument("--llm", nargs="+", choices=BACKENDS, help=f"backends to compare ({_default('llm')})")
    p.add_argument("--retrieval", nargs="+", choices=RETRIEVALS, help=f"modes to compare ({_default('retrieval')})")
    p.add_argument("--base-url")
    p.add_argument("--model")
    p.add_argument("--top-k", type=int)
    p.add_argument("--reranker", metavar="PATH")
    p.add_argument("--out", metavar="DIR", help="report directory (default evals/runs/<timestamp>)")
    p.add_argument("--limit", type=int, help="run only the first N cases")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="start the chat app and JSON API", epilog=EPILOG)
    _index_args(p)
    _answer_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth-file", metavar="PATH",
                   help="require a login: the file holds USER:PASSWORD (or set RAG_AUTH=USER:PASSWORD)")
    p.add_argument("--auth", nargs="?", const="", help=argparse.SUPPRESS)  # refused: it would show in ps
    p.add_argument("--allowed-hosts", metavar="NAMES",
                   help="comma-separated host names to answer besides localhost, 127.0.0.1, ::1 and --host "
                   "(or $RAG_ALLOWED_HOSTS); any other Host header is refused")
    p.add_argument("--cors-origins", metavar="ORIGINS",
                   help="comma-separated origins (scheme://host:port) whose pages may call the server from a "
                   "browser besides its own page (or $RAG_CORS_ORIGINS); any other origin is refused")
    _refresh_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("mcp", help="serve search, ask, get_cable and get_paragraph as MCP tools for agents",
                       description="Serve the cables as MCP (Model Context Protocol) tools: search, ask, "
                       "get_cable, get_paragraph. Over stdio by default, for a client that starts this "
                       "command itself; --http serves streamable HTTP at http://HOST:PORT/mcp.", epilog=EPILOG)
    _index_args(p)
    _answer_args(p)
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="with --http: address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7861, help="with --http: port (default 7861)")
    p.add_argument("--allowed-hosts", metavar="NAMES",
                   help="with --http: comma-separated host names to answer besides localhost, 127.0.0.1, ::1 "
                   "and --host (or $RAG_ALLOWED_HOSTS)")
    _refresh_arg(p)
    p.set_defaults(func=cmd_mcp)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rag stats | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
