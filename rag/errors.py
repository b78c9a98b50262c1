"""Errors that reach the user as one line: the CLI prints `str(error)` and exits 1."""

from importlib.util import find_spec


class RagError(Exception):
    """Base of every error the CLI shows as one line, saying what to do next."""


class IndexMismatch(RagError):
    """The index was built with another embedding model or dimension."""


class NoIndex(RagError):
    """No index where one was expected."""


class StaleIndex(RagError):
    """The BM25 sidecar was built from another state of the store than the one it holds now
    (an ingest was interrupted, or is running)."""


class DamagedIndex(RagError):
    """A file of the index cannot be what it claims to be (truncated, overwritten, missing): the
    message names it and the command that rebuilds it."""


class ParagraphNotFound(RagError):
    """A paragraph number the cable does not print."""


class CableNotFound(RagError):
    """A well-formed cable id that the index does not hold."""


class MissingExtra(RagError):
    """A command needs packages of an extra that is not installed."""


def require_extra(extra: str, what: str, *modules: str) -> None:
    """MissingExtra, naming the pip command, unless every module of `modules` is installed: a
    plain `pip install cablerag` has what `rag ask` needs, the faces and tools come as extras."""
    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise MissingExtra(f"{what} needs the {extra} extra ({', '.join(missing)} is not installed): "
                           f"pip install 'cablerag[{extra}]'")
