"""The reproducers of the reliability report, each in its own process under a 3 GiB address-space
limit: each must end in a Python exception or a result, never die by a signal or an OpenMP abort."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")

PRELUDE = """
import resource, tempfile, os, json
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import numpy as np
import fastbptt as fb
from fastbptt._backend import kernels
X = np.zeros((3, 2, 2))


# a saved model whose config says key = value, as an edited file would
def crafted_checkpoint(key, value):
    path = os.path.join(tempfile.mkdtemp(), "k.npz")
    fb.RNN(2, 8, 1).save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    cfg = json.loads(arrays["config"].tobytes())
    cfg[key] = value
    arrays["config"] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return path
"""

REPRODUCERS = {
    "n_threads 2**31 - 1": ("refused", "fb.RNN(2, 8, 1, n_threads=2**31 - 1).predict(X)"),
    "n_threads 2**31": ("refused", "fb.RNN(2, 8, 1, n_threads=2**31).predict(X)"),
    "n_threads 1000, B = 3": ("refused", "fb.RNN(2, 8, 1, n_threads=1000).predict(np.zeros((3, 3, 2)))"),
    "n_threads 100000": ("refused", "fb.RNN(2, 8, 1, n_threads=100000).predict(X)"),
    "largest n_threads, every cell": ("ran", """
        for cell in ("tanh", "relu", "step", "lstm", "gru"):
            m = fb.RNN(2, 8, 1, cell=cell, n_threads=256)
            m.predict(np.zeros((3, 3, 2)))
            if cell != "step":
                m.loss_and_grad(np.zeros((3, 3, 2)), np.zeros((3, 3, 1)))
    """),
    "elman kernels, n_threads 100000": ("ran", """
        k = kernels("elman", "cython")
        W, U, b = np.eye(8) * 0.5, np.ones((8, 2)), np.zeros(8)
        H = np.empty((4, 3, 8))
        for act in (0, 1, 2):
            k.forward_fused(act, U, b, W, np.ones((3, 3, 2)), np.zeros((3, 8)), H, 100000)
            k.forward(act, W, np.ones((3, 3, 8)), np.zeros((3, 8)), H, 2**31 - 1)
        for act in (0, 1):
            k.backward(act, W, H, np.ones((3, 3, 8)), np.zeros((3, 8)), np.empty((3, 3, 8)),
                       np.empty((3, 8)), 2**31 - 1)
            k.backward_fused(act, W, np.ones((3, 3, 2)), H, np.ones((3, 3, 8)), np.zeros((3, 8)),
                             np.empty((3, 8)), np.empty((8, 2)), np.empty((8, 8)), np.empty(8),
                             100000)
    """),
    "checkpoint with n_threads 2**31 - 1": (
        "refused", 'fb.load(crafted_checkpoint("n_threads", 2**31 - 1)).predict(X)'),
    "checkpoint with hidden_size 40000": (
        "refused", 'fb.load(crafted_checkpoint("hidden_size", 40000))'),
    "hidden_size 10**9": ("refused", "fb.RNN(2, 10**9, 1)"),
}


def _script():
    """One process running every reproducer in turn, printing "name<TAB>outcome" after each (the
    last line then names the one that killed it)."""
    parts = [PRELUDE]
    for name, (_, body) in REPRODUCERS.items():
        body = textwrap.indent(textwrap.dedent(body).strip(), "    ")
        parts.append(f"try:\n{body}\nexcept (ValueError, TypeError) as exc:\n"
                     f"    print({name!r}, 'refused', sep='\\t', flush=True)\n"
                     f"else:\n    print({name!r}, 'ran', sep='\\t', flush=True)\n")
    return "\n".join(parts)


def test_no_reproducer_kills_the_process():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", _script()], env=env, capture_output=True,
                          text=True, timeout=300)
    done = dict(line.split("\t") for line in proc.stdout.splitlines() if "\t" in line)
    names = list(REPRODUCERS)
    running = names[len(done)] if len(done) < len(names) else None
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode} in {running!r}"
    assert "libgomp" not in proc.stderr and "OMP:" not in proc.stderr, proc.stderr[-500:]
    assert proc.returncode == 0, f"failed in {running!r}: {proc.stderr[-500:]}"
    assert done == {name: outcome for name, (outcome, _) in REPRODUCERS.items()}
