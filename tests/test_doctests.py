"""The examples in the public docstrings run as written."""

import doctest
import importlib
import pkgutil

import pytest

import fastbptt

MODULES = sorted(m.name for m in pkgutil.walk_packages(fastbptt.__path__, "fastbptt.")
                 if not m.name.rsplit(".", 1)[-1].startswith("_"))


def test_some_docstrings_have_examples():
    # a rename that dropped every example would otherwise pass the test below silently
    finder = doctest.DocTestFinder()
    found = sum(len(test.examples) for name in ("fastbptt.model", "fastbptt.sampling")
                for test in finder.find(importlib.import_module(name)))
    assert found >= 5


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
