"""The Host names a server answers, shared by `rag serve` and `rag mcp --http`: loopback,
the address it binds, and the names the user adds, so a DNS-rebinding page cannot drive either."""

from __future__ import annotations

LOOPBACK = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(host: str = "127.0.0.1", extra: str = "") -> list[str]:
    """The Host names the server answers: loopback, the address it binds, and `extra` (comma-separated)."""
    names = (n.strip().strip("[]").lower() for n in [*LOOPBACK, host, *extra.split(",")])
    # An IPv6 address arrives bracketed: Host: [::1]:7860
    return list(dict.fromkeys(f"[{n}]" if ":" in n else n for n in names if n))
