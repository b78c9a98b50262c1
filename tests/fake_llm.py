"""An LLM for tests (as llm's MockModel), apart from tests/fakes.py so that the CLI those tests run
in a process of their own does not import llama-index."""

import re

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import Field


class FakeLLM(MockLLM):
    """A llama-index LLM that replies, in order, what the test queued (streamed word by word), and
    records each prompt it was sent: the LLM backends' path without a server or a model."""

    replies: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)

    def __init__(self, *replies: str):
        super().__init__()
        self.replies = list(replies)

    def _reply(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies.pop(0)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponse:
        return CompletionResponse(text=self._reply(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponseGen:
        reply = self._reply(prompt)
        words = re.findall(r"\S+\s*", reply)
        return (CompletionResponse(text="".join(words[:i + 1]), delta=w) for i, w in enumerate(words))
