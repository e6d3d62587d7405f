"""The package's shape: imports point down one layer order (docs/ARCHITECTURE.md), no import cycles, modules
and functions within the size rules, and commands import torch only when they run."""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gcpo_lite"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """gcpo_lite modules that `path` imports, at any depth of its code (late imports count too)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            names = [n for n in subs if n in modules]  # submodules imported by name
            if len(names) < len(subs):  # names defined in base itself: base (its __init__) runs
                names.append(base)
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(files)
    return {m: imports_of(p, modules) for m, p in files.items()}


def find_cycle(edges):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(edges):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    # the package root as a target is `import gcpo_lite._C` (the compiled extension): its __init__ imports
    # nothing at import time (its names load on first use), so no cycle runs through it
    edges = {m: {t for t in targets if t != "gcpo_lite"} for m, targets in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_finds_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_help_and_plan_do_not_import_torch():
    code = (  # through cli.main, which has no shortcut for plan: the parser loads only the chosen command
        "import sys\nfrom gcpo_lite.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "main(['plan', '--memory-budget', '8GiB', '--json'])\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "False"


ARCHITECTURE = PKG.parent / "docs" / "ARCHITECTURE.md"


def layer_order() -> list[str]:
    """The layers, bottom first, as docs/ARCHITECTURE.md states them (the block after "Layer order")."""
    text = ARCHITECTURE.read_text()
    block = text.split("<!-- layer order: bottom first -->", 1)[1].split("```", 2)[1]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def layer_of(module: str, order: list[str]) -> int:
    """A module's layer: its package under gcpo_lite (gcpo_lite.train.trainer -> train), or itself for a
    top-level module (gcpo_lite.cli -> cli); the package's own __init__ is the top."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "gcpo_lite"
    assert name in order, f"{module} belongs to no layer: add {name!r} to docs/ARCHITECTURE.md's layer order"
    return order.index(name)


def upward_imports(edges: dict[str, set[str]], order: list[str]) -> list[str]:
    """Imports that point up the order. The package root is skipped as a target: `import gcpo_lite._C` (the
    compiled extension) resolves to it, and its __init__ runs first on any import anyway."""
    edges = {m: {t for t in targets if t != "gcpo_lite"} for m, targets in edges.items()}
    return sorted(
        f"{m} imports {t}"
        for m, targets in edges.items()
        for t in targets
        if layer_of(t, order) > layer_of(m, order)
    )


def test_imports_point_down_the_layer_order():
    assert upward_imports(graph(), layer_order()) == []


def test_an_upward_import_is_caught():
    order = ["config", "models", "train", "gcpo_lite"]
    edges = {"gcpo_lite.models.loading": {"gcpo_lite.train.trainer", "gcpo_lite.config.schema"}}
    assert upward_imports(edges, order) == ["gcpo_lite.models.loading imports gcpo_lite.train.trainer"]


# Sizes: ~400 lines a module, 40 a function (signature and docstring included). Each exception, with its reason.
MODULE_LINES, FUNCTION_LINES = 400, 40
LONG_MODULES: dict[str, str] = {}
LONG_FUNCTIONS: dict[str, str] = {}


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules, functions = {}, {}
    for path in PKG.rglob("*.py"):
        name = module_name(path)
        text = path.read_text()
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[f"{name}:{node.name}:{node.lineno}"] = node.end_lineno - node.lineno + 1
    return modules, functions


def test_modules_and_functions_are_within_the_size_rules():
    modules, functions = sizes()
    long_modules = {m: n for m, n in modules.items() if n > MODULE_LINES and m not in LONG_MODULES}
    long_functions = {
        f: n for f, n in functions.items() if n > FUNCTION_LINES and f.rsplit(":", 1)[0] not in LONG_FUNCTIONS
    }
    assert long_modules == {}, "split these modules, or list each in LONG_MODULES with its reason"
    assert long_functions == {}, "split these functions, or list each in LONG_FUNCTIONS with its reason"


def test_listed_exceptions_are_still_needed():
    """An exception that no longer applies is removed from the list, so the list stays the truth."""
    modules, functions = sizes()
    long_function_names = {f.rsplit(":", 1)[0] for f, n in functions.items() if n > FUNCTION_LINES}
    assert [m for m in LONG_MODULES if modules.get(m, 0) <= MODULE_LINES] == []
    assert [f for f in LONG_FUNCTIONS if f not in long_function_names] == []
