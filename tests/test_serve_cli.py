"""`rag serve`'s login, hosts and limits as the command line and the environment give them: the
password never on argv (it shows in `ps`), from RAG_AUTH or --auth-file. The server itself is
tested in test_api.py."""

from __future__ import annotations

import pytest

import rag.serve.web
from rag.cli import main
from rag.errors import RagError
from rag.serve.hosts import allowed_hosts
from rag.serve.web import login


@pytest.fixture
def served(monkeypatch) -> list:
    """The settings and host `rag serve` would start the server with (the server is not started)."""
    calls = []
    monkeypatch.setattr(rag.serve.web, "serve", lambda settings, host, port: calls.append((settings, host)) or 0)
    for name in ("RAG_AUTH", "RAG_ALLOWED_HOSTS", "RAG_MAX_BODY", "RAG_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.mark.parametrize("argv", [["--auth", "reader:s3cret"], ["--auth=reader:s3cret"], ["--auth"]])
def test_a_password_on_argv_is_refused_in_one_line(served, capsys, argv):
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "RAG_AUTH" in err and "--auth-file" in err
    assert "s3cret" not in err and not served


def test_rag_auth_is_the_login(served, monkeypatch):
    monkeypatch.setenv("RAG_AUTH", "reader:s3cret")
    assert main(["serve"]) == 0
    settings, _ = served[0]
    assert login(settings) == ("reader", "s3cret")
    assert "s3cret" not in repr(settings)


def test_auth_file_is_the_login_and_wins_over_rag_auth(served, monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_AUTH", "other:pw")
    path = tmp_path / "login"
    path.write_text("reader:s3cr:et\n", encoding="utf-8")
    assert main(["serve", "--auth-file", str(path)]) == 0
    assert login(served[0][0]) == ("reader", "s3cr:et")


def test_no_login_by_default(served):
    assert main(["serve"]) == 0 and login(served[0][0]) is None


@pytest.mark.parametrize("content", [None, "", "\n", "nocolon\n", ":pw\n", "reader:\n"])
def test_a_bad_auth_file_is_one_line(served, capsys, tmp_path, content):
    path = tmp_path / "login"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code = main(["serve", "--auth-file", str(path)])
    if code == 0:  # the file was read; its value is checked when the server starts
        with pytest.raises(RagError, match="USER:PASSWORD"):
            login(served[0][0])
    else:
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1 and str(path) in err


def test_allowed_hosts(served, monkeypatch):
    assert allowed_hosts() == ["localhost", "127.0.0.1", "[::1]"]
    assert main(["serve", "--host", "0.0.0.0", "--allowed-hosts", "cables.example, Reader.Example"]) == 0
    settings, host = served[0]
    assert allowed_hosts(host, settings.allowed_hosts) == ["localhost", "127.0.0.1", "[::1]", "0.0.0.0",
                                                           "cables.example", "reader.example"]
    monkeypatch.setenv("RAG_ALLOWED_HOSTS", "cables.example")
    assert main(["serve", "--host", "::"]) == 0
    settings, host = served[1]
    assert allowed_hosts(host, settings.allowed_hosts) == ["localhost", "127.0.0.1", "[::1]", "[::]", "cables.example"]


def test_max_body_from_the_environment(served, monkeypatch):
    monkeypatch.setenv("RAG_MAX_BODY", "2048")
    assert main(["serve"]) == 0 and served[0][0].max_body == 2048


def test_cors_origins_are_the_servers_own_and_the_operators(served, monkeypatch):
    from rag.serve.web import cors_origins, own_origins

    assert main(["serve", "--cors-origins", "http://localhost:3000/, HTTPS://Reader.Example"]) == 0
    own = own_origins(allowed_hosts(), 7860)
    assert "http://localhost:7860" in own and "http://127.0.0.1:7860" in own
    assert cors_origins(served[0][0].cors_origins, own) == [*own, "http://localhost:3000", "https://reader.example"]
    monkeypatch.setenv("RAG_CORS_ORIGINS", "http://cables.example:8080")
    assert main(["serve"]) == 0 and served[1][0].cors_origins == "http://cables.example:8080"
