"""The `fastbptt` command, run in-process through fastbptt.cli.main (and once as a subprocess)."""

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbptt as fb
from fastbptt.cli import build_parser, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SRC = Path(__file__).resolve().parents[1] / "src"


def run(capsys, *argv):
    """(exit code, stdout, stderr) of `fastbptt argv...`."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_as_a_subprocess():
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastbptt.cli", "--help"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "adder", "demo", "bench", "gradcheck", "config"):
        assert command in proc.stdout


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "COMMAND" in out


# -- train -----------------------------------------------------------------------------------------

def test_train_addition_prints_progress_and_writes_plot_and_json(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png, js = tmp_path / "add.png", tmp_path / "add.json"
    code, out, _ = run(capsys, "train", "addition", "--iterations", "2500", "--stop-at-perfect",
                       "--test-pairs", "512", "--plot", str(png), "--json", str(js))
    assert code == 0
    assert "iteration     100" in out  # progress
    assert "final held-out accuracy 100.00 % of 512 pairs" in out
    assert png.read_bytes()[:8] == PNG_MAGIC
    doc = json.loads(js.read_text())
    (result,) = doc["results"]
    assert doc["command"] == "train addition"
    assert result["accuracy"] == 1.0 and result["config"]["n_bits"] == 8
    assert result["curves"]["step"][-1] == result["iterations_to_perfect"]
    assert doc["summary"]["init=fan_in"]["reached"] == 1


def test_plot_redraws_a_json_file(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "count.json", tmp_path / "count.png"
    code, _, _ = run(capsys, "train", "counting", "--recipe", "seed003", "clip-T10",
                     "--iterations", "30", "-q", "--json", str(js))
    assert code == 0
    code, out, _ = run(capsys, "plot", str(js), str(png), "--title", "again")
    assert code == 0 and png.read_bytes()[:8] == PNG_MAGIC and str(png) in out
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run(capsys, "plot", str(bad), str(png))
    assert code == 1 and "not a results file" in err


def test_train_addition_compares_inits_in_a_table(capsys):
    code, out, _ = run(capsys, "train", "addition", "--init", "fan_in", "uniform_positive",
                       "--bits", "4", "--iterations", "200", "--test-pairs", "16", "--seeds", "2")
    assert code == 0
    lines = out.splitlines()
    assert sum(line.startswith("init=fan_in ") for line in lines) == 3  # two runs and the summary
    summary = [line for line in lines if line.startswith("init=uniform_positive") and "/2" in line]
    assert len(summary) == 1 and "0/2" in summary[0]


def test_train_counting_recipe_and_overrides(capsys, tmp_path):
    js = tmp_path / "count.json"
    code, out, _ = run(capsys, "train", "counting", "--recipe", "clip-T10", "--seeds", "2",
                       "--json", str(js))
    assert code == 0 and "2/2" in out
    doc = json.loads(js.read_text())
    assert [r["accuracy"] for r in doc["results"]] == [1.0, 1.0]
    assert {r["config"]["seed"] for r in doc["results"]} == {0, 1}

    code, out, _ = run(capsys, "train", "counting", "--recipe", "adam-T50", "--iterations", "40",
                       "-q", "--json", str(js))
    (result,) = json.loads(js.read_text())["results"]
    assert code == 0 and "iteration" not in out.split("final")[0]  # quiet: no progress lines
    assert result["config"]["iterations"] == 40 and result["config"]["optimizer"] == "adam"
    assert result["config"]["T"] == 50


def test_train_counting_defaults_are_the_report(capsys, tmp_path):
    js = tmp_path / "count.json"
    code, out, _ = run(capsys, "train", "counting", "--json", str(js))
    assert code == 0 and "final test accuracy 100.00 %" in out and "b = 0" in out
    cfg = json.loads(js.read_text())["results"][0]["config"]
    assert (cfg["T"], cfg["lr"], cfg["optimizer"], cfg["init"], cfg["n_train"]) == \
        (5, 0.001, "sgd", "report", 4)


def test_train_digits(capsys):
    pytest.importorskip("sklearn")
    code, out, _ = run(capsys, "train", "digits", "--target", "last", "--epochs", "4",
                       "--hidden", "32")
    assert code == 0
    assert "epoch    4" in out and "loss on the last step: final test accuracy" in out


def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, out, err = run(capsys, "train", "addition", "--plot", str(tmp_path / "x.png"))
    assert code == 1 and "fastbptt[plot]" in err
    assert out == ""  # no training ran


def test_digits_without_scikit_learn_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code, _, err = run(capsys, "train", "digits")
    assert code == 1 and "fastbptt[data]" in err


def test_train_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "counting", "--recipe", "nope"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["train"])
    code, _, err = run(capsys, "train", "addition", "--seeds", "0")
    assert code == 1 and "--seeds" in err


# -- adder, demo -----------------------------------------------------------------------------------

def test_adder_check(capsys):
    code, out, _ = run(capsys, "adder", "--check")
    assert code == 0 and "65,536 of 65,536 pairs of 8-bit numbers added exactly" in out
    code, out, _ = run(capsys, "adder", "--check", "--as-written")
    assert code == 1 and "0 + 1 gave 511, not 1" in out


def test_adder_shows_weights_and_sums(capsys):
    code, out, _ = run(capsys, "adder", "--examples", "3")
    assert code == 0 and "W = [[0., 1., 0.]," in out
    sums = [line for line in out.splitlines() if " + " in line]
    assert len(sums) == 3 and not any("wrong" in line for line in sums)
    for line in sums:
        left, total = line.split(" = ")
        a, b = left.split(" + ")
        assert int(a) + int(b) == int(total)


def test_demo(capsys):
    code, out, _ = run(capsys, "demo", "--steps", "2000", "--repeats", "1", "-q")
    assert code == 0
    assert "final held-out accuracy 100.00 %" in out
    assert "numpy" in out and "python" in out
    if fb.HAVE_CYTHON:
        assert "faster than NumPy" in out and "faster than pure Python" in out


# -- the commands that were there before -----------------------------------------------------------

def test_bench_gradcheck_config_still_work(capsys, tmp_path):
    js = tmp_path / "bench.json"
    backends = ["numpy", "python"] + (["cython"] if fb.HAVE_CYTHON else [])
    code, out, _ = run(capsys, "bench", "--steps", "300", "--repeats", "1", "--backends",
                       *backends, "--json", str(js))
    assert code == 0 and "us/step" in out and set(json.loads(js.read_text())) == set(backends)
    code, out, _ = run(capsys, "gradcheck")
    assert code == 0 and "ok" in out
    code, out, _ = run(capsys, "config")
    assert code == 0 and out


# -- every command: --help, and help that tells the truth ------------------------------------------

def _subparsers(parser, path=()):
    """(argv prefix, parser) for every command and sub-command."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, path + (name,))


COMMANDS = [path for path, _ in _subparsers(build_parser())]


def test_every_command_is_listed():
    assert {" ".join(p) for p in COMMANDS} >= {
        "", "train", "train addition", "train counting", "train digits", "train mnist", "adder",
        "plot", "demo", "bench", "gradcheck", "config"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "fastbptt")
def test_help(capsys, path):
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: fastbptt")


def _as_number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "fastbptt")
def test_help_states_the_real_defaults(path):
    """Every "(default X)" in a help line is the value the option takes when it is left out."""
    parser = dict(_subparsers(build_parser()))[path]
    checked = 0
    for action in parser._actions:
        text = parser._get_formatter()._expand_help(action) if action.help else ""
        match = re.search(r"default:? ([^;),]+(?:,\d{3})*)", text)
        if not match or action.default is None:
            continue
        stated, real = match.group(1).strip(), parser.get_default(action.dest)
        number = _as_number(stated)
        if number is not None:
            assert number == pytest.approx(float(real)), (action.dest, stated, real)
        elif isinstance(real, list):
            assert stated.split() == real, (action.dest, stated, real)
        else:
            assert stated == str(real), (action.dest, stated, real)
        checked += 1
    if path in {("gradcheck",), ("bench",), ("train", "mnist")}:
        assert checked >= 5


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastbptt {fb.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc|\.dev)?\d*", fb.__version__)


def test_version_is_single_sourced():
    import tomllib

    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"] and "version" not in pyproject["project"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, _, name = attr.rpartition(".")
    assert getattr(importlib.import_module(module), name) == fb.__version__


# -- gradcheck's flags take effect or are refused --------------------------------------------------

def test_gradcheck_flags(capsys):
    code, out, _ = run(capsys, "gradcheck", "--cell", "gru", "--threads", "2", "--backend", "numpy",
                       "--hidden", "3", "-T", "4")
    assert code == 0 and "gru RNN(2, 3, 3), T=4, B=2, numpy backend, 2 thread(s)" in out
    assert "Wh:" in out and "ok" in out
    code, out, err = run(capsys, "gradcheck", "--dtype", "float32")
    assert code == 1 and "--dtype float32" in err and "float64" in err and out == ""
    code, _, err = run(capsys, "gradcheck", "--threads", "0")
    assert code == 1 and "n_threads" in err
    code, out, _ = run(capsys, "gradcheck", "--tol", "1e-30")
    assert code == 1 and "FAILED" in out


# -- train mnist on IDX files written here ---------------------------------------------------------

def _write_mnist(folder, n_train, n_test, rng):
    """Images whose bright row is the label: learnable in a few epochs."""
    from fastbptt.tasks import write_idx

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        images[np.arange(n), 2 * labels + 3] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, compress=True)


def test_train_mnist_from_idx_files(capsys, tmp_path):
    _write_mnist(tmp_path, 200, 50, np.random.default_rng(0))
    js = tmp_path / "mnist.json"
    code, out, _ = run(capsys, "train", "mnist", "--idx-dir", str(tmp_path), "--hidden", "16",
                       "--epochs", "6", "--batch", "20", "--lr", "0.02", "--json", str(js))
    assert code == 0, out
    assert "epoch    6" in out and "of 50 images" in out
    (result,) = json.loads(js.read_text())["results"]
    assert result["task"] == "mnist" and result["n_train"] == 200 and result["n_test"] == 50
    assert result["config"]["dtype"] == "float32" and len(result["accuracy_by_step"]) == 28
    assert result["accuracy"] >= 0.8  # the label's row is bright: a model that reads learns it
    code, out, _ = run(capsys, "train", "mnist", "--idx-dir", str(tmp_path), "--max-train", "30",
                       "--max-test", "10", "--epochs", "1", "--hidden", "4", "-q")
    assert code == 0 and "of 10 images" in out


def test_train_mnist_missing_files(capsys, tmp_path):
    code, out, err = run(capsys, "train", "mnist", "--idx-dir", str(tmp_path))
    assert code == 1 and "train images" in err and out == ""
    with pytest.raises(SystemExit):
        main(["train", "mnist"])  # --idx-dir is required
