"""A stand-in for the encoder, for tests of what is built around it (as llm's MockModel): an index
of real cables builds in seconds with no model loaded (tests/fake_llm.py stands in for an LLM).

`FakeEncoder` (registered as the encoder "fake-words" by conftest) hashes each word into MiniLM's
384 dimensions: deterministic, lexical (a question finds the paragraphs that share its words), and
recorded under its own model id, so an index it built refuses the real encoder and the other way
round. Chunking still counts MiniLM's word pieces, so the chunks are the ones a real index holds.

Run as a script, this module is the `rag` command with the fake encoder registered and chosen
(unless RAG_ENCODER says otherwise), for tests that run the CLI in a process of its own over an
index the fake encoder built."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from rag.index.embed import ENCODER_TYPES, Encoder, minilm_path
from rag.index.onnx import MINILM_DIMENSION

FAKE_ENCODER = "fake-words"
WORD = re.compile(r"[a-z0-9]+")


def word_vector(text: str) -> np.ndarray:
    vector = np.zeros(MINILM_DIMENSION, dtype=np.float32)
    for word in WORD.findall(text.lower()):
        h = zlib.crc32(word.encode())
        vector[h % MINILM_DIMENSION] += 1.0 if h & 0x8000_0000 else -1.0
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # a text with no word: any unit vector, as a model gives
        vector[0], norm = 1.0, 1.0
    return vector / norm


class FakeEncoder(Encoder):
    model_id = "tests/fake-words"
    dimension = MINILM_DIMENSION
    max_tokens = 254  # MiniLM's window and word pieces, so chunks are cut where a real index cuts them

    @property
    def on_gpu(self) -> bool:
        # It computes in numpy wherever it is told to run; `auto` does not look for a GPU, which
        # would import torch (seconds in every process that ingests).
        return self.device == "cuda"

    @property
    def tokenizer_dir(self):
        return minilm_path()

    def encode_documents(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        vectors = np.stack([word_vector(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        if progress:
            progress(len(texts))
        return vectors


def register() -> None:
    ENCODER_TYPES[FAKE_ENCODER] = FakeEncoder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(args: list[str], log: Path, env: dict) -> Iterator[tuple[subprocess.Popen, int]]:
    """`rag serve ARGS` with this encoder, in a process of its own on a free port (its output in
    `log`), stopped when the block ends."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, "serve", *args, "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    from rag.cli import main

    register()
    os.environ.setdefault("RAG_ENCODER", FAKE_ENCODER)
    sys.exit(main())
