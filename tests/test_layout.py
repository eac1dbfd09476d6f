"""The package's shape (issue 15): layers import only downward, no import cycles, no import inside a
function between our own modules (except where a comment says why), no module over 400 lines."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "saliencylab"
# Lowest first: a module may import its own layer and the layers before it.
LAYERS = ["core", "data", "models", "attribution", "removal", "training", "evaluation", "runs",
          "protocols", "api", "cli"]
TOP_LEVEL = {"__init__": "api"}  # the package root re-exports the API
ALLOWED_LAZY = "# lazy:"  # a function-level import of ours must say why on its line


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    head = TOP_LEVEL.get(head, head)
    return LAYERS.index(head)


def resolve(module: str, is_package: bool, node: ast.ImportFrom, modules) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    # `from a import b` imports the module a.b when there is one, else a name from a
    names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
             for alias in node.names]
    return [n for n in names if n.startswith("saliencylab")]


def own_imports():
    """(module, imported module, line, inside a function, source line) for every import of ours."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = []
    for module, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        functions = [n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inner = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = resolve(module, path.name == "__init__.py", node, modules)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("saliencylab")]
            else:
                continue
            targets = [t for t in targets if t in modules]
            for target in targets:
                found.append((module, target, node.lineno, id(node) in inner,
                              lines[node.lineno - 1]))
    return modules, found


def test_layers_import_only_downward_and_nothing_imports_in_a_function():
    modules, found = own_imports()
    upward, lazy = [], []
    for module, target, line, inside, text in found:
        if layer_of(target) > layer_of(module):
            upward.append(f"{module} imports {target} (line {line})")
        if inside and ALLOWED_LAZY not in text:
            lazy.append(f"{module} imports {target} inside a function (line {line})")
    assert not upward, upward
    assert not lazy, lazy


def test_there_is_no_import_cycle():
    modules, found = own_imports()
    graph = {m: set() for m in modules}
    for module, target, *_ in found:
        if target != module and not module.startswith(target + "."):  # a package's own __init__
            graph[module].add(target)
    # a module importing its package imports the package's __init__, which is a module too
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, path + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if state.get(start) is None and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
