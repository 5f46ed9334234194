"""The ragged-batch bench runs end to end on a tiny size (so it cannot rot) and writes its JSON."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _script():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_script_ragged", BENCH / "bench_ragged.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bench_ragged_tiny_writes_json(cell, tmp_path, capsys):
    out = tmp_path / "ragged.json"
    payload = _script().main(["--cell", cell, "--batch", "5", "--input", "3", "--hidden", "8",
                              "--output", "2", "--min-length", "2", "--max-length", "30",
                              "--repeats", "2", "--seed", "3", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["workload"]["cell"] == cell and saved["workload"]["batch"] == 5
    lengths = np.array(saved["lengths"]["values"])
    assert len(lengths) == 5 and lengths.min() >= 2 and lengths.max() <= 30
    assert saved["lengths"]["longest"] == lengths.max()
    res = saved["results"]
    assert res["ragged"]["valid_steps"] == res["padded"]["valid_steps"] == lengths.sum()
    # the dense batch: 5 sequences of the mean length, so about the same number of valid steps
    assert res["dense"]["valid_steps"] == 5 * round(lengths.sum() / 5)
    for name in ("ragged", "dense", "padded"):
        r = res[name]
        assert r["repeats"] == 2 and 0 < r["min"] <= r["median"]
        assert r["us_per_valid_step"] == pytest.approx(r["median"] / r["valid_steps"] * 1e6)
    ratio = res["ragged"]["us_per_valid_step"] / res["dense"]["us_per_valid_step"]
    assert saved["ratio_ragged_vs_dense"] == pytest.approx(ratio)
    assert saved["within_bound"] == (ratio <= saved["bound"]) and saved["bound"] == 1.2
    assert saved["backend"] == "cython" and "fastbptt" in saved["machine"]
    assert payload["ratio_ragged_vs_dense"] == saved["ratio_ragged_vs_dense"]
    printed = capsys.readouterr().out
    assert "ragged / dense per valid step" in printed and str(out) in printed


def test_bench_ragged_refuses_bad_lengths():
    with pytest.raises(SystemExit):
        _script().main(["--min-length", "0"])
    with pytest.raises(SystemExit):
        _script().main(["--min-length", "20", "--max-length", "10"])
