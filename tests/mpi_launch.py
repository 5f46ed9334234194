"""Start a script under the mpiexec of this Python's environment, for the MPI tests."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import fastbptt as fb


def mpiexec():
    """The mpiexec of this Python's environment (the mpich wheel puts it beside python), else
    the one on PATH."""
    local = Path(sysconfig.get_path("scripts")) / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def launch(n, out, script, *args, timeout=120, module="mpi4py"):
    env = dict(os.environ)
    package_root = str(Path(fb.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", module, str(script), str(out), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc
