"""Shared by the bench scripts: workloads, timing, thread settings, the machine, output."""

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# The named workloads: forward + full BPTT with every gradient, linear head, mse, sum.
# `target` is the bound in microseconds per time step (None where the bound is a ratio).
WORKLOADS = {
    "W1": dict(cell="tanh", I=2, H=16, O=1, B=1, T=100_000,
               dtypes={"float64": 0.5, "float32": 0.4}),
    "W2": dict(cell="tanh", I=32, H=128, O=10, B=32, T=1_000, dtypes={"float32": 60.0}),
    "W3": dict(cell="tanh", I=256, H=512, O=10, B=64, T=200,
               dtypes={"float32": None, "float64": None}),
    "L1": dict(cell="lstm", I=2, H=16, O=1, B=1, T=20_000, dtypes={"float64": 1.5, "float32": 1.2}),
    "L2": dict(cell="lstm", I=32, H=128, O=10, B=32, T=1_000,
               dtypes={"float32": 120.0, "float64": 250.0}),
}
# Steps the slow baselines are timed on (cost is linear in T, so they are compared per step).
BASELINE_STEPS = {"numpy": 10_000, "python": 2_000}
PEER_STEPS = 5_000


def gates(cell):
    return {"lstm": 4, "gru": 3}.get(cell, 1)


def flops_per_step(cell, I, H, O, B):
    """Multiply-adds x 2 of one step of forward + full BPTT, GEMM-shaped work only (elementwise work
    left out): projection, recurrent product, head; then the head's two gradients, the recurrent
    product backward and the three weight-gradient products."""
    G = gates(cell) * H
    forward = I * G + H * G + H * O
    backward = 2 * H * O + H * G + H * G + I * G
    return 2 * B * (forward + backward)


def data(spec, dtype, seed=0, T=None):
    rng = np.random.default_rng(seed)
    T = spec["T"] if T is None else T
    X = rng.normal(size=(T, spec["B"], spec["I"])).astype(dtype)
    Y = rng.normal(size=(T, spec["B"], spec["O"])).astype(dtype)
    return X, Y


def model(spec, dtype, backend, n_threads, seed=0):
    import fastbptt as fb

    return fb.RNN(spec["I"], spec["H"], spec["O"], cell=spec["cell"], output="linear", loss="mse",
                  reduction="sum", dtype=dtype, backend=backend, n_threads=n_threads, seed=seed)


def time_call(fn, repeats, warmup=1):
    """Median and minimum wall time of fn() over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "repeats": repeats}


def time_interleaved(fns, repeats, warmup=1, settle=0.0, rewarm_below=0.0):
    """time_call for several callables (name -> callable), taking turns repeat by repeat, so a
    change in the machine's load during the run touches all of them alike: fair ratios.

    `settle` seconds of sleep before each turn let the previous library's worker threads go idle:
    XLA's keep a core busy for 50-100 ms after a JAX call returns, which slowed the next library's
    two-thread LSTM time by a quarter. A callable whose calls take under `rewarm_below` seconds
    is called once more, untimed, at the start of each of its turns, so every library is timed in
    the steady state of back-to-back calls (as in a training loop): on this virtual machine, after
    0.4 s of single-threaded work the next two-thread L2 call took 114-128 us/step, against 109-113
    back to back."""
    last = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            start = time.perf_counter()
            fn()
            last[name] = time.perf_counter() - start
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if settle:
                time.sleep(settle)
            if last.get(name, float("inf")) < rewarm_below:
                fn()
            start = time.perf_counter()
            fn()
            last[name] = time.perf_counter() - start
            times[name].append(last[name])
    return {name: {"median": statistics.median(t), "min": min(t), "repeats": repeats}
            for name, t in times.items()}


@contextlib.contextmanager
def blas_threads(n):
    """Limit the BLAS pools to n threads for the block, when threadpoolctl is there (fastbptt's
    kernels take n_threads explicitly, the peers their own settings)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True


def pin_to_cores(n):
    """Keep the process on n of the cores it may use (Linux), so no library in it, however it
    sizes its own thread pool, runs on more than n: one-thread comparisons stay fair."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cores)
    return cores


def gemm_call(dtype, size=1536):
    """(fn, flops): one large square NumPy matmul, whose speed is the machine's GEMM peak."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(size, size)).astype(dtype)
    b = rng.normal(size=(size, size)).astype(dtype)
    out = np.empty_like(a)
    return (lambda: np.matmul(a, b, out=out)), 2 * size**3


def gemm_peak(dtype, threads, size=1536, repeats=5):
    """GFLOP/s of one large square NumPy matmul: the GEMM peak under these thread settings."""
    fn, flops = gemm_call(dtype, size)
    with blas_threads(threads):
        t = time_call(fn, repeats)
    return flops / t["min"] / 1e9


def machine():
    """What the figures were measured on: CPU, cores, threads, BLAS, fastbptt's build, peers."""
    import fastbptt

    info = {"platform": platform.platform(), "processor": _cpu_name(), "cores": os.cpu_count(),
            "python": sys.version.split()[0], "numpy": np.__version__,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    info["fastbptt"] = {k: v for k, v in fastbptt._backend.config().items() if k != "platform"}
    for name in ("torch", "jax"):
        mod = sys.modules.get(name)
        if mod is not None:
            info[name] = getattr(mod, "__version__", "?")
    return info


def _cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_json(name, payload, out=None):
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install matplotlib)")
        return None
    return plt
