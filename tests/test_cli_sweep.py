"""Every command and every option of the real CLI, with hostile values, in subprocesses.

The commands and options are read from the Typer app itself, so an option added later is
swept without editing this file. Each option gets values chosen by its type (negative,
zero, huge, NaN, wrong type, empty; for paths a missing path, a folder, a regular file,
/dev/null, an unwritable place). Every call must end in exit 0, 1 or 2, and a failure
must say why on stderr; "Traceback" may never appear, and nothing may hang.

Values that are wrong for the type itself (``abc`` for a number, ``nan`` for a float, an
unknown choice) must fail with exit 2 or 1. Others may be legitimate for some options
(``--beta1 0``, ``--seed 0``), so there the test demands no traceback, not failure. A base
command line (tiny data, 2 steps, tiny nets) keeps an accepted value quick.

By default each option gets one wrong-type value (it fails before torch loads, so CI
stays short); ``GANKIT_SWEEP=full`` runs the whole table, which bench/reliability.py
does. GANKIT_RELIABILITY_LOG=path appends the counts for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_mnist

FULL = os.environ.get("GANKIT_SWEEP", "") == "full"
TIMEOUT = 180  # seconds; a call still running then counts as a hang
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "gankit" / "assets" / "conditional.onnx"

# (value, must_fail): must_fail values are wrong for the type itself.
INT_VALUES = [("abc", True), ("1.5", True), ("", True), ("-1", False), ("0", False),
              (str(10**12), False), (str(2**70), False)]
FLOAT_VALUES = [("abc", True), ("nan", True), ("", True), ("-1", False), ("0", False),
                ("inf", False), ("1e308", False)]
STR_VALUES = [("", False), (" ", False), ("../../etc", False), ("-1", False), ("x" * 300, False),
              ("\x1b[31mred", False)]
CHOICE_VALUES = [("no-such-choice", True), ("", True)]


def path_values(tmp: Path) -> list[tuple[str, bool]]:
    garbage = tmp / "garbage.bin"
    garbage.write_bytes(b"\x00\xffnot a model" * 10)
    (tmp / "empty_dir").mkdir(exist_ok=True)
    return [(str(tmp / "missing" / "x"), False), (str(tmp / "empty_dir"), False), (str(garbage), False),
            ("/dev/null", False), ("/proc/gankit-unwritable/x", False), ("", False)]


def _strip_optional(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _strip_optional(args[0])
    if typing.get_origin(annotation) is list and args:
        return _strip_optional(args[0])
    return annotation


def values_for(param, tmp: Path) -> list[tuple[str, bool]]:
    annotation = _strip_optional(getattr(getattr(param, "type_descriptor", None), "annotation", str))
    if typing.get_origin(annotation) is typing.Literal:
        return CHOICE_VALUES
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return []
        if issubclass(annotation, int):
            return INT_VALUES
        if issubclass(annotation, float):
            return FLOAT_VALUES
        if issubclass(annotation, os.PathLike):
            return path_values(tmp)
    return STR_VALUES + [(v, False) for v, _ in path_values(tmp)[:3]]


def commands() -> dict[str, list]:
    """{command name: its parameters}, from the app's own command tree."""
    import typer.main

    from gankit.cli import app

    if hasattr(app, "load"):  # the lazy app registers every command only when asked
        from gankit.cli import COMMANDS

        app.load(list(COMMANDS))
    root = typer.main.get_command(app)
    ctx = type(root).context_class(root)
    return {name: list(root.get_command(ctx, name).params) for name in root.list_commands(ctx)}


def tiny_idx(folder: Path) -> Path:
    """64 real MNIST training images as an IDX folder: quick to load for accepted values."""
    from gankit.data.idx import read_idx, write_idx

    mnist = shared_mnist()
    folder.mkdir(parents=True, exist_ok=True)
    images = read_idx(mnist / "train-images-idx3-ubyte.gz")[:64]
    labels = read_idx(mnist / "train-labels-idx1-ubyte.gz")[:64]
    write_idx(folder / "train-images-idx3-ubyte.gz", np.ascontiguousarray(images))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.ascontiguousarray(labels))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    data = tiny_idx(tmp / "data")
    run_dir = None
    if FULL:  # export's options need a run to export
        proc = _call(["train", "--data", str(data), "--runs-dir", str(tmp / "runs"), "--name", "base",
                      "--steps", "2", "--g-hidden", "8", "--d-hidden", "8", "-b", "4", "--quiet"], tmp)
        assert proc.returncode == 0, proc.stderr
        run_dir = tmp / "runs" / "base"
    return {"tmp": tmp, "data": data, "run": run_dir}


def base_args(command: str, param_name: str, world, case: int) -> tuple[list[str], list[str]]:
    """(arguments before the tested option, positional arguments) for one call."""
    tmp = world["tmp"]
    if command == "train":
        if param_name == "resume":
            return [], []
        return ["--data", str(world["data"]), "--runs-dir", str(tmp / "runs"), "--name", f"case{case}",
                "--steps", "2", "--g-hidden", "8", "--d-hidden", "8", "-b", "4", "--sample-every", "1000",
                "--checkpoint-every", "1000", "--log-every", "1", "--max-seconds", "20", "--quiet"], []
    if command == "export":
        return ["-o", str(tmp / f"out{case}.onnx")], [str(world["run"] or tmp / "no-run")]
    if command == "generate":
        return ["-d", "3", "-n", "2", "-o", str(tmp / f"out{case}.png")], []
    if command == "evaluate":
        return ["--samples", "2000"], [str(SHIPPED_MODEL)]
    return [], [str(SHIPPED_MODEL)]


# `gankit serve` runs until stopped: a call still up this long after printing where it
# serves is a server that started, not a hang.
SERVE_TIMEOUT = 30
SERVING = "page http://"


def _text(data) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


def _call(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "GANKIT_OFFLINE": "1"}
    timeout = SERVE_TIMEOUT if args[:1] == ["serve"] else TIMEOUT
    try:
        return subprocess.run([sys.executable, "-m", "gankit.cli", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=tmp, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out, err = _text(exc.stdout), _text(exc.stderr)  # TimeoutExpired keeps bytes, even with text=True
        if args[:1] == ["serve"] and SERVING in out + err:
            return subprocess.CompletedProcess(args, 0, out, err)
        return subprocess.CompletedProcess(args, -999, out, f"HANG after {timeout}s")


def cases(world) -> list[tuple[str, str, str, bool, list[str]]]:
    """(command, option, value, must_fail, argv) for every swept combination."""
    out = []
    found = commands()
    for command, params in sorted(found.items(), key=lambda kv: kv[0] == "train"):
        for param in params:
            if getattr(param, "is_flag", False) or getattr(param, "hidden", False):
                continue
            table = values_for(param, world["tmp"])
            if not FULL:  # CI: the first wrong-type value of each option (it fails before torch loads)
                table = [v for v in table if v[1]][:1]
            for value, must_fail in table:
                before, positional = base_args(command, param.name, world, len(out))
                if type(param).__name__.endswith("Argument"):
                    argv = [command, *before, value]
                    label = f"<{param.name}>"
                else:
                    argv = [command, *positional, *before, param.opts[0], value]
                    label = param.opts[0]
                out.append((command, label, value, must_fail, argv))
    return out


def verdict(proc: subprocess.CompletedProcess, must_fail: bool) -> str | None:
    """None when the call behaved, else what went wrong."""
    output = proc.stdout + proc.stderr
    if proc.returncode == -999:
        return "hang"
    if "Traceback" in output:
        return "traceback: " + output.strip().splitlines()[-1][:200]
    if proc.returncode not in (0, 1, 2):
        return f"exit {proc.returncode}"
    if proc.returncode != 0 and not proc.stderr.strip():
        return f"exit {proc.returncode} without a message"
    if must_fail and proc.returncode == 0:
        return "accepted a value that is wrong for its type"
    return None


def test_every_option_with_bad_values_fails_cleanly(world):
    todo = cases(world)
    progress = os.environ.get("GANKIT_SWEEP_PROGRESS")  # one line per finished call, for long runs

    def one(case):
        command, option, value, must_fail, argv = case
        problem = verdict(_call(argv, world["tmp"]), must_fail)
        if progress:
            with open(progress, "a") as f:
                f.write(json.dumps({"command": command, "option": option, "value": value, "problem": problem}) + "\n")
        return f"gankit {command} {option} {value[:40]!r}: {problem}" if problem else None

    with ThreadPoolExecutor(max_workers=2) as pool:
        bad = [b for b in pool.map(one, todo) if b]
    out = os.environ.get("GANKIT_RELIABILITY_LOG")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"check": f"CLI sweep ({'full table' if FULL else 'wrong-type values'}): "
                                         f"{len({(c[0], c[1]) for c in todo})} options of "
                                         f"{len({c[0] for c in todo})} commands",
                                "tried": len(todo), "failed": len(bad),
                                "must_hold": "exit 0/1/2, a message on failure, no traceback, no hang",
                                "failures": bad}) + "\n")
    assert not bad, f"{len(bad)} of {len(todo)} calls misbehaved:\n" + "\n".join(bad)


def test_the_sweep_sees_every_command_and_option():
    found = commands()
    assert {"train", "export", "generate", "evaluate", "info"} <= set(found)
    train = {p.name for p in found["train"]}
    assert {"steps", "lr", "resume", "runs_dir", "max_seconds"} <= train
