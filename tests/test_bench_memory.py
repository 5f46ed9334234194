"""The TBPTT memory bench runs (so it cannot rot), and TBPTT's memory does not grow with T."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_memory_tbptt.py"
SRC = Path(__file__).resolve().parent.parent / "src"


def _run(tmp_path, *args):
    out = tmp_path / "memory.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(BENCH), *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "peak RSS" in proc.stdout and "wrote" in proc.stdout
    return json.loads(out.read_text())


def test_bench_tiny_run_writes_json(tmp_path):
    payload = _run(tmp_path, "-T", "3000", "--hidden", "8", "--k", "100", "--k2", "150")
    result = payload["result"]
    assert payload["workload"]["T"] == 3000 and payload["workload"]["k2"] == 150
    assert result["updates"] == 30
    assert result["peak_rss_bytes"] >= result["rss_before_training_bytes"] > 0
    assert result["full_bptt_states_bytes"] == 8 * 3001 * 8
    assert "machine" in payload


def test_tbptt_memory_stays_far_below_full_bptt(tmp_path):
    # T = 200,000, H = 32: full BPTT would hold ~195 MB (49 MB of states); TBPTT k = 100 a few KB
    result = _run(tmp_path, "-T", "200000", "--hidden", "32", "--k", "100")["result"]
    assert result["updates"] == 2000
    assert result["training_overhead_bytes"] < result["full_bptt_states_bytes"] / 4, result
