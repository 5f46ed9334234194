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


def test_no_import_cycles_at_module_level():
    mods = _modules()
    graph = {name: _package_imports(tree, True) & set(mods) for name, tree in mods.items()}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import cycle: {' -> '.join(path + [name])}"
        state[name] = "open"
        for dep in graph[name]:
            visit(dep, path + [name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


def test_the_model_reaches_the_modules_above_it_only_through_front():
    mods = _modules()
    below = {"model", "calls", "graph", "stack", "cells", "heads", "init", "_checks", "_backend"}
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
