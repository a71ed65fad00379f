"""The code's shape, as docs/architecture.md states it: no import cycles in rq or rollingq, the model
package independent of the tool, short modules, and every method name backed by a registry entry."""
import ast
from pathlib import Path

from rollingq.config import METHODS
from rollingq.factory import METHOD_FUSION

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"rq": ROOT, "rollingq": ROOT / "rollingq"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the two installed packages (tests and benchmarks excluded)."""
    found = {"rq": ROOT / "__init__.py", "rq.cli": ROOT / "cli.py"}
    for folder in ("pipeline", "train", "manifests"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = ("rq", *path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in (ROOT / "rollingq").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that `name` imports (statically, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        edges |= {t for t in targets if t in modules and t != name}
    return edges


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}   # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_model_package_imports_nothing_of_the_tool():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("rollingq"):
            bad = {m for m in _imports(name, path, modules) if m.startswith("rq")}
            assert not bad, f"{name} imports {bad}"


def test_modules_are_short():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_method_has_a_fusion_part():
    assert set(METHOD_FUSION) == set(METHODS)
