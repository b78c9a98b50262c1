"""cablerag: question answering over US diplomatic cables, every claim cited to its paragraph.

The public API, for use from Python (the CLI, the web app and the evals are built on it):

    from rag import Index, Pipeline, Settings, Filters
    settings = Settings(index_dir="index")
    Index(settings).ensure()                     # the bundled demo at ./index when none is there
    answer = Pipeline(settings).ask("Who leads Cambodia's police TIP response?", filters=Filters())
    print(answer.short_answer, answer.text, [str(c.citation) for c in answer.citations])

Names are imported on first use, so `import rag` loads neither Chroma nor a model.
"""

from __future__ import annotations

from importlib import import_module

# name → module that defines it
_PUBLIC = {
    "Index": "rag.index.index",
    "Pipeline": "rag.answer.pipeline",
    "Answer": "rag.answer.pipeline",
    "Citation": "rag.citation",
    "Settings": "rag.settings",
    "Filters": "rag.filters",
    "RagError": "rag.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
