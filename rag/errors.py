"""Errors that reach the user as one line: the CLI prints `str(error)` and exits 1."""


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
