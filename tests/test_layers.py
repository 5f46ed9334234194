"""The package's layers depend one way (docs/architecture.md): no import cycles, the model imports the
modules that depend on it only through one lazy helper, and training reaches no private member of
the model."""

import ast
from pathlib import Path

import fastbptt

SRC = Path(fastbptt.__file__).parent
FRONTED = {"train", "io", "interop", "tbptt", "distributed"}  # depend on the model


def _modules():
    return {p.stem: ast.parse(p.read_text()) for p in SRC.glob("*.py") if p.stem != "__init__"}


def _package_imports(node, top_level_only):
    """Names of fastbptt modules imported by `from .x import ...` (or `from . import x`)."""
    nodes = node.body if top_level_only else list(ast.walk(node))
    names = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.level == 1:
            if n.module:
                names.add(n.module.split(".")[0])
            else:
                names.update(a.name for a in n.names)
    return names


def _all_modules():
    """Every module of the package, subpackages included, by dotted name below fastbptt, with
    whether it is a package's __init__."""
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_package else parts)] = (ast.parse(path.read_text()),
                                                              is_package)
    for stub in SRC.glob("*.pyi"):  # the compiled modules: they import nothing of the package
        mods.setdefault(stub.stem, (ast.Module(body=[], type_ignores=[]), False))
    return mods


def _imported(name, is_package, node, mods):
    """The package's modules an import statement inside module `name` loads."""
    if isinstance(node, ast.Import):
        return {a.name.removeprefix("fastbptt.") for a in node.names
                if a.name.startswith("fastbptt.")} & set(mods)
    if node.level == 0:
        if not (node.module or "").startswith("fastbptt"):
            return set()
        base = node.module.removeprefix("fastbptt").lstrip(".")
    else:
        here = name.split(".") if is_package else name.split(".")[:-1]
        here = here[:len(here) - (node.level - 1)] if name else []
        base = ".".join(here + ([node.module] if node.module else []))
    subs = {f"{base}.{a.name}".lstrip(".") for a in node.names} & set(mods)
    # `from .x import f` loads x; `from . import x` (or `from .p import m`) loads those submodules
    return subs | ({base} if len(subs) < len(node.names) and base in mods else set())


def test_no_import_cycles_counting_every_import():
    """Module-level, function-level and type-checking imports alike, in every subpackage. The one
    way back up, the model's fronts of train, io and interop, goes through importlib in
    model._front, which the next test confines."""
    mods = _all_modules()
    graph = {}
    for name, (tree, is_package) in mods.items():
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _imported(name, is_package, node, mods)
        graph[name] = deps - {name}
    assert {"model", "experiments.runner", "tasks", "reference.lstm_pure"} <= set(graph)
    assert "model" in graph["experiments.binary_addition"] and "tasks" in graph["cli.training"]
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import cycle: {' -> '.join(path + [name])}"
        state[name] = "open"
        for dep in sorted(graph[name]):
            visit(dep, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_imports_by_name_only_where_expected():
    """importlib is used in two places: model._front (the fronts, the one lazy pattern) and
    _backend (the kernel modules of the chosen backend, all below it)."""
    users = set()
    for name, (tree, _) in _all_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "import_module" or \
                    isinstance(node, ast.Name) and node.id == "__import__":
                users.add(name)
    assert users == {"model", "_backend"}
    model = _all_modules()["model"][0]
    callers = {f.name for f in ast.walk(model) if isinstance(f, ast.FunctionDef)
               and any(isinstance(n, ast.Attribute) and n.attr == "import_module"
                       for n in ast.walk(f))}
    assert callers == {"_front"}


def test_the_model_reaches_the_modules_above_it_only_through_front():
    mods = _modules()
    below = {"model", "settings", "params", "calls", "graph", "stack", "cells", "heads", "init",
             "_checks", "_backend"}
    for name in below:
        imported = _package_imports(mods[name], top_level_only=False)
        assert not imported & FRONTED, f"{name}.py imports {imported & FRONTED}"
    lazy = [n for n in ast.walk(mods["model"]) if isinstance(n, ast.FunctionDef)
            and any(isinstance(c, (ast.Import, ast.ImportFrom)) for c in ast.walk(n))]
    assert lazy == [], "model.py imports inside functions; use _front"
    fronts = {"fit": "train", "save": "io", "to_torch_state_dict": "interop",
              "from_torch_state_dict": "interop"}
    text = (SRC / "model.py").read_text()
    for method, module in fronts.items():
        assert getattr(fastbptt.RNN, method).__doc__, method
        # a method written out, or one that is the module's function itself (_FrontedMethod,
        # which looks the module up through _front)
        node = next(n for n in ast.walk(mods["model"])
                    if (isinstance(n, ast.FunctionDef) and n.name == method)
                    or (isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets]
                        == [method]))
        src = ast.get_source_segment(text, node)
        assert f'_front("{module}")' in src or f'_FrontedMethod("{module}", ' in src, method
    fronted = next(n for n in ast.walk(mods["model"])
                   if isinstance(n, ast.ClassDef) and n.name == "_FrontedMethod")
    assert "_front(" in ast.get_source_segment(text, fronted)


def test_training_touches_no_private_member_of_the_model():
    mods = _modules()
    for name in ("train", "tbptt", "metrics", "callbacks", "history", "io", "interop"):
        for n in ast.walk(mods[name]):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and \
                    n.value.id in ("m", "model") and n.attr.startswith("_"):
                raise AssertionError(f"{name}.py line {n.lineno} reads {n.value.id}.{n.attr}")


def test_every_function_reads_on_one_screen():
    """No function of the package runs over 60 lines, its docstring aside (issue 14: rooms a
    newcomer can read); a longer one wants splitting along what it mixes."""
    long = []
    for name, (tree, _) in _all_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr) and \
                        isinstance(body[0].value, ast.Constant):
                    body = body[1:]
                lines = node.end_lineno - body[0].lineno + 1
                if lines > 60:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []
