"""A real torch-free virtualenv for the light tier: gankit's base dependencies only, this checkout editable.

Test and bench helper (standard library). The venv is cached under a path keyed by
pyproject.toml's hash and the Python version, so only the first run pays for installing
numpy, onnxruntime, typer, rich and Pillow; this checkout is (re)installed into it, without
dependencies, once per process. Used by tests/test_no_torch.py and bench/bench_generate.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("GANKIT_TEST_CACHE", Path.home() / ".cache" / "gankit-tests"))

_installed: dict[str, Path] = {}


def run_pip(venv: Path, *args: str) -> None:
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def ensure_light_venv(repo: Path = REPO, extras: tuple[str, ...] = ()) -> Path:
    """A venv with gankit's base dependencies and ``extras`` only (cached), this checkout installed editable.

    None of the extras given may pull in torch (the tests check that it stays absent).
    """
    tag = "+".join((str(repo), *extras))
    if tag in _installed:
        return _installed[tag]
    pyproject = (repo / "pyproject.toml").read_bytes()
    meta = tomllib.loads(pyproject.decode())["project"]
    deps = meta["dependencies"] + [d for extra in extras for d in meta["optional-dependencies"][extra]]
    key = hashlib.sha256(pyproject + sys.version.encode() + "+".join(extras).encode()).hexdigest()[:16]
    venv = CACHE / f"{'-'.join(('light', *extras))}-venv-{key}"
    if not (venv / ".ready").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        # setuptools only so the editable install below can build without isolation.
        run_pip(venv, "install", *deps, "setuptools>=77")
        (venv / ".ready").write_text("\n".join(deps))
    run_pip(venv, "install", "--no-deps", "--no-build-isolation", "-e", str(repo))
    _installed[tag] = venv
    return venv
