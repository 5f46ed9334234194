"""Every ```python block of README.md runs as written, each in a fresh namespace and folder."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    """(id, code) of each python block: the id is the section heading and the block's number."""
    section, count, out = "top", {}, []
    for match in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```$", README.read_text(),
                             re.MULTILINE | re.DOTALL):
        if match.group(1):
            section = match.group(1).strip()
            continue
        count[section] = count.get(section, 0) + 1
        out.append((f"{section} {count[section]}", match.group(2)))
    return out


BLOCKS = _blocks()


def test_the_readme_has_snippets():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_snippet_runs(code, tmp_path, monkeypatch, capsys):
    if re.search(r"^import torch$", code, re.MULTILINE):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # snippets that save files write them here
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_sampling_snippet_prints_what_it_says():
    (code,) = [c for name, c in BLOCKS if "fb.sample" in c and "abcabc" in c]
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    promised = re.search(r"# (\w+)$", code.strip()).group(1)
    got = "a" + "".join(namespace["alphabet"][i] for i in namespace["drawn"])
    assert got == promised
