"""The layering the design fixes: imports flow retrieval_service -> tools -> agent -> evals, never back,
and no module imports itself through a cycle. Also: every module stays readable (about 400 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("retrieval_service", "tools", "agent", "evals")  # each may import only those before it
MAX_LINES = 400


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of the file, TYPE_CHECKING blocks aside)."""
    modules = {_module_name(root, p): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def back_edges(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Imports from a layer into a later one (e.g. retrieval_service -> agent)."""
    rank = {pkg: i for i, pkg in enumerate(layers)}
    return sorted(
        f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts if rank[dst.split(".")[0]] > rank[src.split(".")[0]]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_project_has_no_back_edge_and_no_cycle():
    graph = import_graph(REPO, LAYERS)
    assert len(graph) > 50 and any(graph.values())
    assert back_edges(graph) == []
    assert cycles(graph) == []


def test_no_package_imports_the_tests():
    """Benchmarks and library code build their own fixtures; tests/ is never imported."""
    offenders = []
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                )
                if any(n == "tests" or n.startswith("tests.") for n in names) or (
                    isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path"
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_the_checker_catches_a_back_edge(tmp_path):
    _write(
        tmp_path,
        {
            "retrieval_service/__init__.py": "",
            "retrieval_service/core.py": "def f():\n    from agent.api import g\n",  # lazy, still a back-edge
            "tools/__init__.py": "from retrieval_service.core import f\n",
            "agent/__init__.py": "",
            "agent/api.py": "import tools\ndef g(): ...\n",
            "evals/__init__.py": "from agent.api import g\n",
        },
    )
    graph = import_graph(tmp_path, LAYERS)
    assert back_edges(graph) == ["retrieval_service.core -> agent.api"]


def test_the_checker_catches_a_cycle_and_ignores_type_checking_imports(tmp_path):
    _write(
        tmp_path,
        {
            "retrieval_service/__init__.py": "",
            "tools/__init__.py": "",
            "evals/__init__.py": "",
            "agent/__init__.py": "",
            "agent/a.py": "from agent.b import x\n",
            "agent/b.py": "import agent.c\nx = 1\n",
            "agent/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent.b import x\nfrom agent import a\n",
            "agent/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent.e import y\n",
            "agent/e.py": "from agent.d import z\n",
        },
    )
    graph = import_graph(tmp_path, LAYERS)
    assert back_edges(graph) == []
    assert cycles(graph) == [["agent.a", "agent.b", "agent.c"]]


@pytest.mark.parametrize("package", LAYERS)
def test_modules_stay_readable(package):
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / package).rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_exports_its_public_api(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__doc__ and getattr(module, "__all__", None), f"{package}/__init__.py exports nothing"
    for name in module.__all__:
        assert getattr(module, name) is not None


def _entry_points(pyproject: Path) -> dict[str, dict[str, str]]:
    import tomllib

    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {group: dict(points) for group, points in (project.get("entry-points") or {}).items()}


def runtime_back_edges(entry_points: dict[str, dict[str, str]], consumers: dict[str, str]) -> list[str]:
    """Entry points that make a lower layer run a higher one's code at run time (an import the graph
    above cannot see): a group read by ``consumers[group]`` whose target lies in a later layer.
    ``geoagent.commands`` is the CLI's sub-command hook: the shell mounting a command, no data path."""
    rank = {pkg: i for i, pkg in enumerate(LAYERS)}
    found = []
    for group, points in entry_points.items():
        if group == "geoagent.commands":
            continue
        reader = consumers.get(group, "retrieval_service")  # an unknown group: assume the lowest reader
        for name, target in points.items():
            package = target.split(":")[0].split(".")[0]
            if package in rank and rank[package] > rank[reader]:
                found.append(f"{group}:{name} -> {target} (read by {reader})")
    return sorted(found)


def test_no_entry_point_makes_a_runtime_loop():
    """The retrieval baselines are graphs of the agent; no plugin group lets the agent run evals code."""
    points = _entry_points(REPO / "pyproject.toml")
    assert "geoagent.predictors" not in points
    assert runtime_back_edges(points, {"geoagent.commands": "agent"}) == []
    for path in (REPO / "agent").rglob("*.py"):
        assert "geoagent.predictors" not in path.read_text(encoding="utf-8"), path


def test_the_entry_point_checker_catches_a_loop():
    points = {"geoagent.predictors": {"rerank": "evals.baselines:RerankBaseline"}, "geoagent.commands": {"eval": "evals.cli:app"}}
    assert runtime_back_edges(points, {"geoagent.predictors": "agent"}) == [
        "geoagent.predictors:rerank -> evals.baselines:RerankBaseline (read by agent)"
    ]
