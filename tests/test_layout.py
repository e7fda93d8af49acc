"""The package's layout: no import cycle between its modules, and flows.py only wires jobs."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "crysal_flows"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every crysal_flows module and the crysal_flows modules it imports, anywhere in it."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        # a package's own __init__ is imported with each of its modules, not a dependency here
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def test_no_import_cycle():
    graph = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d) :], d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_flows_only_wires_jobs():
    """flows.py builds jobs and flows; clustering, statistics and the stopping rule live in
    analysis/, and no flow maker iterates a job's output."""
    tree = ast.parse((PACKAGE / "flows.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not imported & {"cluster_low_energy", "space_group", "StoppingRule", "fingerprint"}
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert len(functions["analyse"].body) <= 6  # docstring, import, summary, log, return
