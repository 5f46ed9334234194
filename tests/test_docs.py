"""The API reference (docs/, Sphinx autodoc) builds without a single warning: -W makes any an error."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sphinx_builds_without_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    pages = {p.stem for p in (tmp_path / "html" / "api").glob("*.html")}
    assert {"model", "train", "optim", "io", "sampling", "experiments"} <= pages
    optim_page = (tmp_path / "html" / "api" / "optim.html").read_text()
    # autodoc found the docstrings, and napoleon turned their numpydoc sections into fields
    assert "RMSprop" in optim_page and "weight_decay" in optim_page and "Parameters" in optim_page
