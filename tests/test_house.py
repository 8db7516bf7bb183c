"""The shape of the code base: no import cycle inside the package, short modules, a thin command line, and a
public API that imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tf_symbolic_l2o"
MAX_MODULE_LINES = 500
MAX_COMMAND_BODY_LINES = 25


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The tf_symbolic_l2o modules that ``path`` imports, at module level or inside a function. ``from pkg import
    name`` is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg`` (its ``__init__``)."""
    out = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.update(f"{name}.{a.name}" if f"{name}.{a.name}" in modules else name for a in node.names)
    return {n for n in out if n in modules and n != module}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, m, set(files)) for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (as paths), by depth-first search; parent packages' ``__init__`` are not followed
    implicitly (an edge is an import statement naming the module)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_the_import_graph_is_read():
    graph = _graph()
    assert "tf_symbolic_l2o.meta.trainer" in graph["tf_symbolic_l2o.tune.tuner"]
    assert "tf_symbolic_l2o.seeds" in graph["tf_symbolic_l2o.meta.trainer"]
    # a planted cycle is found
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_import_cycle_inside_the_package():
    graph = _graph()
    # the package root re-exports the public API; modules never import the root, so it cannot close a cycle
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("path", sorted([*PACKAGE.rglob("*.py"), *(ROOT / "cli").glob("*.py")]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_500_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {n} lines"


def _registered_commands() -> list[str]:
    """The command functions ``cli/main.py`` registers (the tuple of its registration loop)."""
    tree = ast.parse((ROOT / "cli" / "main.py").read_text())
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For) and isinstance(n.iter, ast.Tuple)]
    assert len(loops) == 1
    return [e.id for e in loops[0].iter.elts]


def test_every_command_body_is_short():
    commands = _registered_commands()
    assert commands == ["pipeline", "train", "evaluate", "record", "distill", "show", "tune", "tune_gain", "export",
                        "benchmark"]
    bodies = {}
    for path in (ROOT / "cli").glob("*_cmd.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name in commands:
                body = node.body[1:] if isinstance(node.body[0], ast.Expr) and \
                    isinstance(node.body[0].value, ast.Constant) else node.body
                bodies[node.name] = body[-1].end_lineno - body[0].lineno + 1
    assert sorted(bodies) == sorted(commands)
    long = {k: v for k, v in bodies.items() if v > MAX_COMMAND_BODY_LINES}
    assert not long, f"command bodies over {MAX_COMMAND_BODY_LINES} lines: {long}"


def test_public_api_imports():
    import tf_symbolic_l2o

    for name in tf_symbolic_l2o.__all__:
        assert getattr(tf_symbolic_l2o, name) is not None, name
