"""bench/bench_distributed.py end to end on a tiny model (seconds): it launches 1 and 2 ranks,
measures, projects and writes the JSON and the PNG its README section describes."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                    reason="needs the mpi extra: pip install '.[mpi]'")
def test_bench_distributed_tiny(tmp_path):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_distributed", BENCH / "bench_distributed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # PyTorch's DDP is left out: importing torch in two more processes takes longer than the rest
    payload = bench.main(["--tiny", "--no-ddp", "--out", str(tmp_path)])
    measured = payload["measured"]
    for n in (1, 2):
        assert measured["ms"][n] > 0 and 0 <= measured["comm_share"][n] < 1
    assert measured["fit_ms"] > 0 and measured["efficiency_2"] > 0
    assert measured["independent_ms_2"] > 0 and measured["efficiency_2_vs_independent"] > 0
    sizes = [r["bytes"] for r in measured["allreduce"]]
    assert sizes == sorted(sizes) and all(r["us"] > 0 for r in measured["allreduce"])
    projected = payload["projected_efficiency"]
    for row in projected.values():
        values = [row[n] for n in (2, 8, 64, 512)]
        assert all(0 < v <= 1 for v in values) and values == sorted(values, reverse=True)
    written = json.loads(Path(payload["json"]).read_text())
    assert written["measured"]["buffer_bytes"] == measured["buffer_bytes"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert Path(payload["png"]).stat().st_size > 10_000
