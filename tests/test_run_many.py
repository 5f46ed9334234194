"""fastbptt.experiments.run_many on a local process pool and on a Dask cluster, and the command
line's --workers and --dask: results in the order of the configs, bitwise equal to a serial run."""

import importlib.util
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastbptt import cli
from fastbptt import experiments as ex

# the first runs are the longest, so they finish last on two workers
RUNS = [(ex.addition, dict(iterations=it, eval_every=50, n_test=256, seed=seed))
        for seed, it in ((0, 400), (1, 100), (2, 150))]


def blas_threads():
    """What a worker runs with: its BLAS pools' thread counts and OMP_NUM_THREADS."""
    from threadpoolctl import threadpool_info

    return ([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
            os.environ.get("OMP_NUM_THREADS"))


def fails_on_two(config):
    if config == 2:
        raise ValueError("config 2 is bad")
    return config


def _same(results, serial):
    assert [r["config"] for r in results] == [r["config"] for r in serial]
    for got, want in zip(results, serial, strict=True):
        assert got["curves"] == want["curves"]
        for key, value in want["model"].params.items():
            np.testing.assert_array_equal(got["model"].params[key], value)
        assert got["history"].steps["loss"] == want["history"].steps["loss"]


@pytest.fixture(scope="module")
def serial():
    return [ex.call(run) for run in RUNS]


def test_local_pool_keeps_order_and_equals_serial_bitwise(serial):
    *results, (threads, omp) = ex.run_many(ex.call, RUNS + [(blas_threads, {})], workers=2)
    _same(results, serial)
    # every worker runs with one BLAS thread
    assert omp == "1" and threads and all(n == 1 for n in threads)


def test_any_executor_fits_and_a_failing_run_raises_its_error():
    with ThreadPoolExecutor(2) as pool:
        assert ex.run_many(fails_on_two, [5, 4, 3], pool) == [5, 4, 3]
        with pytest.raises(ValueError, match="config 2 is bad"):
            ex.run_many(fails_on_two, range(4), pool)


def test_cli_workers_equal_serial(tmp_path, capsys):
    args = ["train", "counting", "--seeds", "3", "--iterations", "60", "-q"]
    assert cli.main(args + ["--json", str(tmp_path / "serial.json")]) == 0
    assert cli.main(args + ["--workers", "2", "--json", str(tmp_path / "pool.json")]) == 0
    assert _figures(tmp_path / "pool.json") == _figures(tmp_path / "serial.json")


def _figures(path):
    """A results file without its timings."""
    doc = json.loads(path.read_text())
    for r in doc["results"]:
        r.pop("seconds"), r.pop("eval_seconds")
    for row in doc["summary"].values():
        row.pop("seconds_median")
    return doc


needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="needs the dask extra: pip install '.[dask]'")


@needs_dask
def test_dask_cluster_equals_serial(tmp_path, serial):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=None) as cluster:
        with Client(cluster) as client:
            _same(ex.run_many(ex.call, RUNS, client.get_executor()), serial)
        args = ["train", "addition", "--seeds", "2", "--iterations", "100", "--eval-every", "50",
                "--test-pairs", "128", "-q"]
        assert cli.main(args + ["--dask", cluster.scheduler_address,
                                "--json", str(tmp_path / "dask.json")]) == 0
    assert cli.main(args + ["--json", str(tmp_path / "serial.json")]) == 0
    assert _figures(tmp_path / "dask.json") == _figures(tmp_path / "serial.json")


def test_without_distributed_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what the import finds when missing
    with pytest.raises(ImportError, match=r"fastbptt\[dask\]"):
        ex.dask_executor("tcp://127.0.0.1:8786")
    assert cli.main(["train", "addition", "--seeds", "2", "--dask", "tcp://127.0.0.1:8786"]) == 1
    assert "fastbptt[dask]" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                    reason="needs the mpi extra: pip install '.[mpi]'")
def test_mpi_pool_executor_equals_serial(tmp_path):
    import mpi_pool_sweep
    from mpi_launch import launch

    out = tmp_path / "curves.json"
    launch(3, out, Path(__file__).resolve().parent / "mpi_pool_sweep.py", module="mpi4py.futures")
    serial = [ex.to_json(ex.call(run))["curves"] for run in mpi_pool_sweep.RUNS]
    assert json.loads(out.read_text()) == serial
