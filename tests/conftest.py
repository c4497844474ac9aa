"""Shared test helpers: the real MNIST folder and a runner for the real `gankit` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# This project's dev machines keep real MNIST beside the checkout. gankit itself does not
# know that layout: tests reach the folder through shared_mnist() (a path) or
# mnist_data_root() (a $GANKIT_DATA root, for `--data mnist`), and bench/common.py does
# the same for the benchmarks.
MNIST = Path(os.environ.get("GANKIT_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist"))

# Small nets keep CLI training tests to seconds; the maths is the same as the defaults.
SMALL_NETS = ["--g-hidden", "64,128", "--d-hidden", "128,64"]
# Tests that compare two separately started runs pin the precision: `--precision auto`
# times fp32 against bf16 on a CPU with native bf16, and under load two runs of the same
# command may choose differently (which is why the README says to pin it for reruns).
FP32 = ["--precision", "fp32"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m gankit.cli ARGS` for real and capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"gankit {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# Runs `gankit ARGS` through gankit.cli.main in a fresh interpreter, then prints its exit
# code and the top-level packages it imported (the light-tier promises are about those).
_CLI_IMPORTS_PROBE = """
import json, sys
sys.argv = ["gankit"] + sys.argv[1:]
from gankit.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def cli_imports(*args: str, timeout: float = 120) -> tuple[int, set[str], str]:
    """Run the CLI for real; its exit code, the top-level packages it imported, and its stderr."""
    proc = subprocess.run([sys.executable, "-c", _CLI_IMPORTS_PROBE, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], set(result["modules"]), proc.stderr


def shared_mnist() -> Path:
    """The real MNIST folder beside the repo (../shared/data/mnist); skip where it is absent."""
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found at {MNIST}")
    return MNIST


def mnist_data_root(tmp_path: Path) -> Path:
    """A $GANKIT_DATA root under `tmp_path` whose `mnist` is the real MNIST folder (a symlink)."""
    root = tmp_path / "gankit-data"
    root.mkdir(exist_ok=True)
    link = root / "mnist"
    if not link.exists():
        link.symlink_to(shared_mnist(), target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return shared_mnist()
