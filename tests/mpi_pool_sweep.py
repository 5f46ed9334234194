"""Run by tests/test_run_many.py under `mpiexec -n 3 python -m mpi4py.futures`: run_many on an
MPIPoolExecutor (rank 0 runs this, the two others are its workers); writes the results' figures."""

import json
import sys

from mpi4py.futures import MPIPoolExecutor

from fastbptt import experiments as ex

RUNS = [(ex.addition, dict(iterations=it, eval_every=50, n_test=128, seed=seed))
        for seed, it in ((0, 200), (1, 50), (2, 100))]

if __name__ == "__main__":
    with MPIPoolExecutor() as pool:
        results = ex.run_many(ex.call, RUNS, pool)
    with open(sys.argv[1], "w") as f:
        json.dump([ex.to_json(r)["curves"] for r in results], f)
