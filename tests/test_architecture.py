"""The layout holds: no import circle anywhere in rag/, and the core never imports a face.

Read from the source with `ast` (imports inside functions count: they are dependencies too), so
a new module or a moved one is checked without being listed here. docs/ARCHITECTURE.md explains
the layers.
"""

import ast
from pathlib import Path

import pytest

from rag.answer.backends import REGISTRY
from rag.settings import BACKENDS

RAG = Path(__file__).resolve().parents[1] / "rag"
# The faces: what a user or another program talks to. Everything else is the core.
FACES = ("rag.serve", "rag.render", "rag.cli", "rag.__main__")
# The core's layers, bottom up: a module may import its own layer and those below it.
LAYERS = (
    ("rag.errors", "rag.text", "rag.spelling", "rag.citation", "rag.types", "rag.settings", "rag.filters",
     "rag.validate", "rag.cables", "rag.chunk", "rag.models"),
    ("rag.index",),
    # The support score of a sentence against a paragraph: answers and the checker share it.
    ("rag.check.cite",),
    ("rag.answer",),
    # The checker searches for the paragraph a claim should cite with the answer layer's retriever.
    ("rag.check",),
    ("rag.evaluation",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(RAG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in RAG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in modules and t != name)
        graph[name] = deps
    return graph


GRAPH = import_graph()


def layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_real_tree():
    assert {"rag.answer.pipeline", "rag.index.store", "rag.serve.web", "rag.cli"} <= set(GRAPH)
    assert "rag.index.store" in GRAPH["rag.answer.retrieve"]


def test_no_import_circle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if not m.startswith(FACES)))
def test_the_core_never_imports_a_face(module):
    faces = sorted(d for d in GRAPH[module] if d.startswith(FACES))
    assert faces == [], f"{module} imports {faces}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) is not None))
def test_a_core_module_imports_only_its_layer_and_those_below(module):
    above = sorted(d for d in GRAPH[module] if (layer(d) or 0) > layer(module))
    assert above == [], f"{module} (layer {layer(module)}) imports {above} from a layer above"


def test_every_module_has_a_place():
    placed = [m for m in GRAPH if m == "rag" or m.startswith(FACES) or layer(m) is not None]
    assert sorted(set(GRAPH) - set(placed)) == []


def test_the_backend_registry_names_what_settings_accept():
    assert list(REGISTRY) == list(BACKENDS)


def test_import_rag_loads_no_store_and_exports_the_public_api():
    import subprocess
    import sys

    code = ("import sys, rag; heavy = [m for m in ('chromadb', 'torch', 'gradio') if m in sys.modules]; "
            "from rag import Index, Pipeline, Answer, Citation, Settings, Filters, RagError; "
            "print(heavy, Citation.parse('09PHNOMPENH637 para 6'), Index.__module__, Pipeline.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "09PHNOMPENH637", "¶6", "rag.index.index", "rag.answer.pipeline"]


def test_an_unknown_name_is_an_attribute_error():
    import rag

    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        rag.Nothing  # noqa: B018
