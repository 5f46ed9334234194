"""Each bench script runs end to end on a tiny size and writes what its README promises.

(bench_memory_tbptt.py has its own test, test_bench_memory.py.)
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _script(name):
    """Import bench/<name>.py as a module (the scripts import their helpers from bench/)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has(module):
    return importlib.util.find_spec(module) is not None


def test_bench_workloads_tiny_writes_json_and_png(tmp_path):
    payload = _script("bench_workloads").main(
        ["--tiny", "--rows", "W1", "W2", "W3", "--repeats", "1", "--peers", "--no-pin",
         "--out", str(tmp_path)])
    rows = payload["rows"]
    assert [(r["row"], r["dtype"]) for r in rows] == [
        ("W1", "float64"), ("W1", "float32"), ("W2", "float32"), ("W3", "float32"),
        ("W3", "float64")]
    for r in rows:
        assert r["fastbptt_us"] > 0 and np.isfinite(r["fastbptt_us"])
    w1 = rows[0]
    assert w1["ratio_numpy"] > 0 and w1["ratio_python"] > 0
    assert "ratio_numpy" in rows[2] and "ratio_python" not in rows[2]
    w3 = rows[3]
    assert w3["gflop_per_step"] == pytest.approx(136.2e6 / 1e9, rel=1e-3)
    assert 0 < w3["pct_of_peak"] == pytest.approx(100 * w3["gflops"] / w3["gemm_peak_gflops"])
    saved = json.loads((tmp_path / "workloads_t1_tiny.json").read_text())
    assert len(saved["rows"]) == 5 and "fastbptt" in saved["machine"]
    assert saved["machine"]["fastbptt"]["compiled_kernels"]
    if _has("matplotlib"):
        assert (tmp_path / "workloads_t1_tiny.png").stat().st_size > 1000
    text = _script("table").main([str(tmp_path / "workloads_t1_tiny.json")])
    lines = text.splitlines()
    assert len(lines) == 2 + 5 and lines[2].startswith("| W1 | float64 | 0.5 |")
    assert "% of" in lines[5]


def test_bench_workloads_lstm_rows_run(tmp_path):
    payload = _script("bench_workloads").main(
        ["--tiny", "--rows", "L1", "--dtypes", "float64", "--repeats", "1", "--peers", "--no-pin",
         "--out", str(tmp_path)])
    assert payload["rows"][0]["cell"] == "lstm" and payload["rows"][0]["fastbptt_us"] > 0


@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_bench_workloads_peer_agrees_and_is_timed(peer, tmp_path):
    if not _has(peer):
        pytest.skip(f"{peer} is not installed (the bench extra's optional peer)")
    payload = _script("bench_workloads").main(
        ["--tiny", "--rows", "W1", "--dtypes", "float64", "--repeats", "1", "--no-baselines",
         "--peers", peer, "--no-pin", "--out", str(tmp_path)])
    row = payload["rows"][0]
    assert f"{peer}_error" not in row
    assert row[f"{peer}_max_rel_diff"] < 1e-7
    assert row[f"{peer}_us"] > 0


def test_bench_scaling_tiny_fits_a_slope(tmp_path):
    payload = _script("bench_scaling").main(
        ["--tiny", "--peers", "--no-pin", "--out", str(tmp_path)])
    series = payload["series"]
    assert set(series) == {"cython", "numpy", "python"}
    assert series["cython"]["T"] == [10, 30, 100, 300]
    assert all(s > 0 for s in series["cython"]["seconds"])
    assert (tmp_path / "scaling_W1_float64_t1_tiny.json").exists()
    if _has("matplotlib"):
        assert (tmp_path / "scaling_W1_float64_t1_tiny.png").stat().st_size > 1000


def test_scaling_slope_and_grid():
    mod = _script("bench_scaling")
    assert mod.grid(100, 1_000_000) == [100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000,
                                        1_000_000]
    Ts = [1000, 10_000, 100_000]
    assert mod.slope(Ts, [1e-3 * T for T in Ts]) == pytest.approx(1.0)
    assert mod.slope(Ts, [1e-3 * T**2 for T in Ts]) == pytest.approx(2.0)
    assert mod.slope([100, 300], [1.0, 2.0]) is None


def test_bench_elman_tiny(tmp_path):
    out = tmp_path / "elman.json"
    rows = _script("bench_elman").main(
        ["-T", "50", "--t-numpy", "20", "--t-python", "10", "--repeats", "1", "--out", str(out)])
    assert set(rows) == {"cython", "numpy", "python"}
    assert rows["cython"]["speedup_vs_python"] > 0
    assert json.loads(out.read_text())["results"]["cython"]["T"] == 50


def test_bench_simd_times_every_supported_set(tmp_path):
    """bench_simd.py: one row per workload and dtype, a time and a % of the GEMM peak for every set
    this CPU runs, and the process left on its default set."""
    import fastbptt
    payload = _script("bench_simd").main(
        ["--tiny", "--rows", "W3", "--dtypes", "float32", "--repeats", "1", "--out", str(tmp_path)])
    (row,) = payload["rows"]
    assert list(row["sets"]) == fastbptt.config()["simd_supported"]
    for v in row["sets"].values():
        assert v["us_per_step"] > 0 and v["pct_of_peak"] == pytest.approx(
            100 * v["gflops"] / row["gemm_peak_gflops"])
    assert json.loads((tmp_path / "simd_1t.json").read_text())["rows"][0]["row"] == "W3"
    assert fastbptt.config()["simd"] == fastbptt.config()["simd_supported"][0]


def test_bench_windows_tiny_writes_json(tmp_path):
    """bench_windows.py: a row per cell and window with fastbptt, NumPy and (when installed, after it
    agreed on the loss and every gradient, the GRU's two biases included) PyTorch per step."""
    peers = ["torch"] if _has("torch") else []
    payload = _script("bench_windows").main(
        ["--cells", "lstm", "gru", "--windows", "4", "--threads", "1", "--repeats", "1",
         "--peers", *peers, "--out", str(tmp_path / "w.json")])
    assert [(r["cell"], r["T"]) for r in payload["rows"]] == [("lstm", 4), ("gru", 4)]
    for r in payload["rows"]:
        assert r["fastbptt_us"] > 0 and r["speedup_vs_numpy"] > 0
        assert ("torch_us" in r) == bool(peers)
    saved = json.loads((tmp_path / "w.json").read_text())
    assert saved["simd"] in saved["machine"]["fastbptt"]["simd_supported"]


def test_bench_call_writes_every_row(tmp_path):
    payload = _script("bench_call").main(["--calls", "2", "--repeats", "1", "--hidden", "8",
                                          "--out", str(tmp_path / "call.json")])
    rows = payload["rows"]
    assert {"loss_and_grad", "evaluate", "stage: backward", "fit update, adam",
            "forward step gru H=8"} <= set(rows)
    assert all(v > 0 for v in rows.values())
    assert json.loads((tmp_path / "call.json").read_text())["rows"] == rows


def test_bench_tokens_tiny(tmp_path):
    out = tmp_path / "tokens.json"
    payload = _script("bench_tokens").main(["--tiny", "--out", str(out)])
    assert [r["cell"] for r in payload["rows"]] == ["lstm", "tanh"]
    for r in payload["rows"]:
        assert r["tokens_ms"] > 0 and r["one_hot_ms"] > 0
        assert r["tokens_input_bytes"] < r["one_hot_input_bytes"]
        assert r["max_rel_grad_diff"] < 1e-4  # float32: the two inputs give the same gradients
    assert json.loads(out.read_text())["rows"] == payload["rows"]
