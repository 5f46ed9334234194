"""Shared by the bench scripts: timing, the machine's description, JSON output."""

import json
import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine():
    """What the figures were measured on: CPU, cores, thread settings, BLAS, fastbptt's build."""
    import fastbptt

    info = {"platform": platform.platform(), "processor": _cpu_name(), "cores": os.cpu_count()}
    info["fastbptt"] = {k: v for k, v in fastbptt._backend.config().items() if k != "platform"}
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
