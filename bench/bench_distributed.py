"""Data-parallel training over MPI: measured here at 1 and 2 ranks, projected to 8, 64 and 512.

The update: an L2-sized LSTM (I=32, H=128, O=10, float32, linear head, mse averaged), 64 sequences
per rank (weak scaling: the global batch grows with the ranks), truncated BPTT windows of T=100
steps (each update forwards and backpropagates one window, the state carried), Adam. One thread
per rank, so a rank is a core here as it would be a node in a cluster.

Measured (medians over the updates of --repeats launches, the configurations taking turns):
- fastbptt.distributed.fit under `mpiexec -n 1` and `-n 2`: ms per update, and the part spent in
  its reduction rounds (communication, waiting for the other rank included); the plain `fit` in
  one process on the same update;
- PyTorch DistributedDataParallel (gloo, CPU) on the same update at 1 and 2 processes, when torch
  is installed;
- the ring allreduce (fastbptt.distributed.ring_allreduce) at 2 ranks against the buffer's size,
  and the per-round header Allgather.

Projected: weak-scaling efficiency t(1) / t(N) with t(N) = t_compute + header(N) + ring(N),
ring(N) = 2 (N - 1) alpha + 2 (N - 1) / N * S / beta (S = the gradient buffer's bytes),
header(N) = ceil(log2 N) alpha + (N - 1) * 64 B / beta, alpha = the link's latency plus the
software cost per message measured here, no overlap of communication with computation (as the
code runs). Links: 10 Gbit/s Ethernet (TCP, 20 us) and 100 Gbit/s (RDMA class, 2 us).

    python bench/bench_distributed.py                    # about a minute
    python bench/bench_distributed.py --tiny --out /tmp/b  # seconds: what the tests run
"""

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, pyplot, write_json  # noqa: E402

from fastbptt.train import Callback  # noqa: E402

SPEC = dict(I=32, H=128, O=10, B=64, T=100)
TINY = dict(I=4, H=8, O=2, B=4, T=5)
LINKS = {"10 Gbit/s, 20 us": (10e9 / 8, 20e-6), "100 Gbit/s, 2 us": (100e9 / 8, 2e-6)}
PROJECT_TO = (2, 8, 64, 512)


# -- the workers (one process per rank) ------------------------------------------------------------

def _data(spec, ranks, updates, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(spec["T"] * updates, spec["B"] * ranks, spec["I"])).astype(np.float32)
    Y = rng.normal(size=(spec["T"] * updates, spec["B"] * ranks, spec["O"])).astype(np.float32)
    return X, Y


def _model(spec):
    import fastbptt as fb

    return fb.RNN(spec["I"], spec["H"], spec["O"], cell="lstm", output="linear", loss="mse",
                  reduction="mean", dtype=np.float32, seed=0)


class _Clock(Callback):
    """fit callback: the wall time of every update."""

    def __init__(self):
        self.marks = [time.perf_counter()]

    def on_step(self, step, logs, model):
        self.marks.append(time.perf_counter())

    def per_update(self, skip):
        return np.diff(self.marks)[skip:]


def worker_fastbptt(args, spec):
    from mpi4py import MPI

    import fastbptt as fb

    comm = MPI.COMM_WORLD
    ranks, rank = comm.Get_size(), comm.Get_rank()
    X, Y = _data(spec, ranks, args.updates + args.warmup)
    kwargs = dict(optimizer="adam", lr=1e-3, tbptt=spec["T"], progress=False, shuffle=False)
    out = {"ranks": ranks}
    clock = _Clock()
    model = _model(spec)
    fb.distributed.fit(model, X[:spec["T"] * args.warmup], Y[:spec["T"] * args.warmup], **kwargs)
    history = fb.distributed.fit(model, X, Y, callbacks=[clock], **kwargs)
    out["ms_per_update"] = 1e3 * float(np.median(clock.per_update(args.warmup)))
    # the rounds' share of the whole fit (all its updates), applied to the median update
    out["comm_share"] = history.communication_seconds / (clock.marks[-1] - clock.marks[0])
    out["comm_ms_per_update"] = out["comm_share"] * out["ms_per_update"]
    out["updates"] = len(history.steps["step"])
    out["buffer_bytes"] = 4 * (1 + sum(v.size for v in model.params.values()))
    out["threads_per_rank"] = history.config["threads_per_rank"]
    if ranks == 1:  # the same update by the plain fit, in one process
        clock = _Clock()
        _model(spec).fit(X, Y, callbacks=[clock], **kwargs)
        out["fit_ms_per_update"] = 1e3 * float(np.median(clock.per_update(args.warmup)))
    else:
        # the same work with no communication, the ranks at once: what the machine allows 2 ranks
        rows = slice(rank * spec["B"], (rank + 1) * spec["B"])
        Xr, Yr = np.ascontiguousarray(X[:, rows]), np.ascontiguousarray(Y[:, rows])
        clock = _Clock()
        comm.Barrier()
        _model(spec).fit(Xr, Yr, callbacks=[clock], **kwargs)
        mine = 1e3 * float(np.median(clock.per_update(args.warmup)))
        out["independent_ms_per_update"] = max(comm.allgather(mine))
        out["allreduce"] = _time_allreduce(comm, args)
        head = np.zeros((ranks, 8))
        out["header_us"] = 1e6 * statistics.median(
            _times(lambda: comm.Allgather(np.zeros(8), head), comm, args.reps))
    if rank == 0:
        Path(args.worker_out).write_text(json.dumps(out))


def _times(fn, comm, reps):
    times = []
    for _ in range(reps):
        comm.Barrier()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _time_allreduce(comm, args):
    from fastbptt.distributed import ring_allreduce

    rows = []
    for exponent in range(8, 25 if not args.tiny else 14, 2):  # 256 B to 16 MiB of float32
        buf = np.ones(2 ** exponent // 4, dtype=np.float32)
        scratch = np.empty(len(buf) // comm.Get_size() + 1, dtype=np.float32)
        times = _times(lambda b=buf, s=scratch: ring_allreduce(comm, b, s), comm, args.reps)
        rows.append({"bytes": buf.nbytes, "us": 1e6 * statistics.median(times),
                     "us_min": 1e6 * min(times)})
    return rows


def worker_ddp(args, spec):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=args.rank, world_size=args.world,
                            init_method=f"tcp://127.0.0.1:{args.port}")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(spec["I"], spec["H"])
            self.head = torch.nn.Linear(spec["H"], spec["O"])

        def forward(self, x, state):
            h, state = self.lstm(x, state)
            return self.head(h), state

    net = torch.nn.parallel.DistributedDataParallel(Net())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    X, Y = _data(spec, args.world, args.updates + args.warmup)
    rows = slice(args.rank * spec["B"], (args.rank + 1) * spec["B"])
    X = torch.from_numpy(np.ascontiguousarray(X[:, rows]))
    Y = torch.from_numpy(np.ascontiguousarray(Y[:, rows]))
    state, marks = None, []
    for u in range(args.updates + args.warmup):
        window = slice(u * spec["T"], (u + 1) * spec["T"])
        marks.append(time.perf_counter())
        out, state = net(X[window], state)
        loss = 0.5 * ((out - Y[window]) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = tuple(s.detach() for s in state)
    marks.append(time.perf_counter())
    if args.rank == 0:
        ms = 1e3 * float(np.median(np.diff(marks)[args.warmup:]))
        Path(args.worker_out).write_text(json.dumps({"ranks": args.world, "ms_per_update": ms}))
    dist.destroy_process_group()


# -- the driver ------------------------------------------------------------------------------------

def _mpiexec():
    local = Path(sysconfig.get_path("scripts")) / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def _env():
    import fastbptt

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(fastbptt.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _worker_args(args, out):
    flags = ["--updates", str(args.updates), "--warmup", str(args.warmup), "--reps",
             str(args.reps), "--worker-out", out]
    return flags + (["--tiny"] if args.tiny else [])


def launch_fastbptt(args, ranks, tmp):
    out = str(Path(tmp) / f"fastbptt{ranks}.json")
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__,
           "--worker", "fastbptt"] + _worker_args(args, out)
    subprocess.run(cmd, env=_env(), check=True, timeout=args.timeout)
    return json.loads(Path(out).read_text())


def launch_ddp(args, ranks, tmp):
    out = str(Path(tmp) / f"ddp{ranks}.json")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "ddp", "--rank", str(r),
                               "--world", str(ranks), "--port", str(port)]
                              + _worker_args(args, out), env=_env())
             for r in range(ranks)]
    try:
        codes = [p.wait(timeout=args.timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(codes):
        raise RuntimeError(f"the DDP workers exited {codes}")
    return json.loads(Path(out).read_text())


def project(compute_s, buffer_bytes, software_alpha):
    """Weak-scaling efficiency per link and rank count, from the cost model above."""
    table = {}
    for link, (beta, latency) in LINKS.items():
        alpha = latency + software_alpha
        row = {}
        for n in PROJECT_TO:
            ring = 2 * (n - 1) * alpha + 2 * (n - 1) / n * buffer_bytes / beta
            header = math.ceil(math.log2(n)) * alpha + (n - 1) * 64 / beta
            row[n] = compute_s / (compute_s + ring + header)
        table[link] = row
    return table


def _link_here(rows):
    """(seconds per message, bytes per second) of the ring at 2 ranks, from the measured times:
    the smallest buffer's best time is two messages' fixed cost (the best, because on a shared
    machine the median of a 10 us operation measures the scheduler); the two largest buffers'
    medians give the bandwidth."""
    per_message = rows[0]["us_min"] * 1e-6 / 2
    a, b = rows[-2], rows[-1]
    # buffer bytes reduced per second (each rank sends and receives that much, in halves)
    bandwidth = (b["bytes"] - a["bytes"]) / max((b["us"] - a["us"]) * 1e-6, 1e-12)
    return per_message, bandwidth


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a tiny model and few updates (seconds)")
    p.add_argument("--updates", type=int, default=20, help="timed updates per launch")
    p.add_argument("--warmup", type=int, default=3, help="untimed updates first")
    p.add_argument("--repeats", type=int, default=3, help="launches per configuration")
    p.add_argument("--reps", type=int, default=30, help="timings per allreduce size")
    p.add_argument("--no-ddp", action="store_true", help="skip PyTorch DDP")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--out", help="directory for the JSON and PNG (default bench/results)")
    p.add_argument("--worker", choices=["fastbptt", "ddp"], help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    spec = TINY if args.tiny else SPEC
    if args.tiny:
        args.updates, args.warmup, args.repeats, args.reps = 3, 1, 1, 3
    if args.worker == "fastbptt":
        return worker_fastbptt(args, spec)
    if args.worker == "ddp":
        return worker_ddp(args, spec)

    import importlib.util

    ddp = not args.no_ddp and importlib.util.find_spec("torch") is not None
    runs = {"fastbptt": {1: [], 2: []}, "ddp": {1: [], 2: []}}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # the configurations take turns, so load touches them alike
            for ranks in (1, 2):
                runs["fastbptt"][ranks].append(launch_fastbptt(args, ranks, tmp))
                if ddp:
                    runs["ddp"][ranks].append(launch_ddp(args, ranks, tmp))

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    one, two = runs["fastbptt"][1], runs["fastbptt"][2]
    measured = {
        "fit_ms": med(one, "fit_ms_per_update"),
        "ms": {1: med(one, "ms_per_update"), 2: med(two, "ms_per_update")},
        "comm_ms": {1: med(one, "comm_ms_per_update"), 2: med(two, "comm_ms_per_update")},
        "buffer_bytes": one[0]["buffer_bytes"],
        "threads_per_rank": two[0]["threads_per_rank"],
        "header_us": med(two, "header_us"),
        "allreduce": [{"bytes": r["bytes"],
                       "us": statistics.median(run["allreduce"][i]["us"] for run in two),
                       "us_min": min(run["allreduce"][i]["us_min"] for run in two)}
                      for i, r in enumerate(two[0]["allreduce"])],
    }
    measured["efficiency_2"] = measured["ms"][1] / measured["ms"][2]
    # 2 independent fits at once (no communication), the slower one: the machine's own limit
    measured["independent_ms_2"] = med(two, "independent_ms_per_update")
    measured["efficiency_2_vs_independent"] = measured["independent_ms_2"] / measured["ms"][2]
    measured["comm_share"] = {n: med(runs["fastbptt"][n], "comm_share") for n in (1, 2)}
    if ddp:
        measured["ddp_ms"] = {n: med(runs["ddp"][n], "ms_per_update") for n in (1, 2)}
        measured["ddp_efficiency_2"] = measured["ddp_ms"][1] / measured["ddp_ms"][2]
    software_alpha, local_bandwidth = _link_here(measured["allreduce"])
    compute_s = (measured["ms"][1] - measured["comm_ms"][1]) * 1e-3
    projected = project(compute_s, measured["buffer_bytes"], software_alpha)
    payload = {"spec": spec, "tiny": args.tiny, "updates": args.updates,
               "repeats": args.repeats, "machine": machine(), "measured": measured,
               "model": {"links": {k: {"bandwidth_bytes_per_s": b, "latency_s": a}
                                   for k, (b, a) in LINKS.items()},
                         "software_alpha_s": software_alpha,
                         "local_bandwidth_bytes_per_s": local_bandwidth,
                         "compute_s": compute_s},
               "projected_efficiency": projected, "runs": runs}
    name = "distributed_" + ("tiny" if args.tiny else "L2_float32")
    out_dir = Path(args.out) if args.out else None
    path = write_json(name, payload, out_dir / f"{name}.json" if out_dir else None)
    _report(measured, projected, software_alpha)
    png = _plot(payload, path.with_suffix(".png"))
    payload["json"], payload["png"] = str(path), png and str(png)
    return payload


def _report(measured, projected, software_alpha):
    ms, comm = measured["ms"], measured["comm_ms"]
    print(f"fit, one process:           {measured['fit_ms']:8.2f} ms/update")
    for n in (1, 2):
        line = (f"distributed.fit, {n} rank{'s' if n > 1 else ' '}:  {ms[n]:8.2f} ms/update, "
                f"{comm[n]:6.2f} ms in the rounds ({100 * measured['comm_share'][n]:.1f} %)")
        if "ddp_ms" in measured:
            line += f";  DDP {measured['ddp_ms'][n]:8.2f} ms/update"
        print(line)
    print(f"weak-scaling efficiency at 2 ranks: {100 * measured['efficiency_2']:.1f} %"
          + (f" (DDP {100 * measured['ddp_efficiency_2']:.1f} %)" if "ddp_ms" in measured else ""))
    print(f"two independent fits at once, no communication: {measured['independent_ms_2']:.2f} "
          f"ms/update (the slower); 2 ranks reach {100 * measured['efficiency_2_vs_independent']:.1f}"
          " % of that")
    print(f"gradient buffer {measured['buffer_bytes'] / 1e6:.2f} MB; software cost per message "
          f"{1e6 * software_alpha:.1f} us")
    print("projected weak-scaling efficiency (" + ", ".join(str(n) for n in PROJECT_TO)
          + " ranks):")
    for link, row in projected.items():
        print(f"  {link:<18} " + "  ".join(f"{100 * e:5.1f} %" for e in row.values()))


def _plot(payload, path):
    plt = pyplot()
    if plt is None:
        return None
    m = payload["measured"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    ax = axes[0]
    labels = ["fit\n1 process", "2 fits at once\n(no comm.)"]
    values, comm = [m["fit_ms"], m["independent_ms_2"]], [0.0, 0.0]
    for n in (1, 2):
        labels.append(f"distributed\n{n} rank{'s' if n > 1 else ''}")
        values.append(m["ms"][n])
        comm.append(m["comm_ms"][n])
    if "ddp_ms" in m:
        for n in (1, 2):
            labels.append(f"torch DDP\n{n} rank{'s' if n > 1 else ''}")
            values.append(m["ddp_ms"][n])
            comm.append(0.0)
    x = np.arange(len(values))
    ax.bar(x, values, color=["C7"] * 2 + ["C0"] * 2 + ["C3"] * (len(values) - 4))
    ax.bar(x, comm, color="k", alpha=0.5, label="fastbptt's reduction rounds")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("ms per update (median)")
    ax.set_title(f"measured: LSTM I={payload['spec']['I']} H={payload['spec']['H']}, "
                 f"{payload['spec']['B']} seq./rank, T={payload['spec']['T']}", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = m["allreduce"]
    ax.loglog([r["bytes"] for r in rows], [r["us"] for r in rows], "o-",
              label="ring, 2 ranks (median)")
    ax.loglog([r["bytes"] for r in rows], [r["us_min"] for r in rows], ".:", color="C0",
              label="ring, 2 ranks (best)")
    ax.axvline(m["buffer_bytes"], color="0.5", ls=":", label="the LSTM's gradient buffer")
    ax.set_xlabel("buffer (bytes)")
    ax.set_ylabel("allreduce time (us, median)")
    ax.set_title("measured: ring allreduce on this machine", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[2]
    for link, row in payload["projected_efficiency"].items():
        ax.semilogx(list(row), [100 * e for e in row.values()], "o-", base=2,
                    label=f"projected, {link}")
    ax.plot([2], [100 * m["efficiency_2"]], "k*", ms=12, label="measured here (shared memory)")
    ax.set_xlabel("ranks")
    ax.set_ylabel("weak-scaling efficiency (%)")
    ax.set_ylim(0, 105)
    ax.set_title("projected by the ring-allreduce cost model", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
