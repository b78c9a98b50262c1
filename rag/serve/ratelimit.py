"""RAG_RATE_LIMIT: how many questions one client address may ask the server, whichever way it
asks. One `Limiter` per server is shared by the middleware that guards the JSON and OpenAI APIs
(`rag.serve.web`) and the chat page's handlers (`rag.serve.ui`), which gradio also serves as an API
(/gradio_api/call/respond): counted apart, each route would grant the limit again.
"""

from __future__ import annotations

import math
import time


class RateLimited(Exception):
    """A client asked more than its limit; `retry_after` seconds until it may ask again."""

    def __init__(self, limit: str, retry_after: int):
        super().__init__(f"rate limit of {limit} exceeded; retry in {retry_after} s")
        self.retry_after = retry_after


class Limiter:
    """At most `limit` ("30/minute", in the `limits` package's notation) questions per client
    address in any moving window of that length."""

    def __init__(self, limit: str):
        from limits import parse, storage, strategies

        self.text = limit
        self.limit = parse(limit)
        self.window = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def hit(self, client: str) -> None:
        """Count one question of `client`; `RateLimited` when it is one too many."""
        if not self.window.hit(self.limit, client):
            reset = self.window.get_window_stats(self.limit, client).reset_time
            raise RateLimited(self.text, max(1, math.ceil(reset - time.time())))
