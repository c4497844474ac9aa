"""The light tier in a real torch-free virtualenv: `gankit generate` works there, `gankit train` says what to install.

The venv holds only the base dependencies from pyproject.toml (installed from PyPI, no
torch) and is cached under a path keyed by pyproject's hash, so only the first run pays
for it. The project itself is installed editable (no deps) into it on every test session,
so the venv always runs this checkout's code (tests/light_venv.py, which
bench/bench_generate.py uses too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gankit.images import grid_shape
from gankit.runtime import load_generator
from helpers_models import exported_models
from light_venv import run_pip, ensure_light_venv

REPO = Path(__file__).resolve().parents[1]
def imported_modules(stderr: str) -> set[str]:
    """Module names from PYTHONPROFILEIMPORTTIME output ('import time: self | cumulative | name')."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture(scope="module")
def light_venv() -> Path:
    venv = ensure_light_venv()
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "True", "torch must not be installed in the light venv"
    return venv


@pytest.mark.slow
def test_generate_in_a_torch_free_venv(light_venv, tmp_path_factory, tmp_path):
    model = exported_models(tmp_path_factory.mktemp("models"))["conditional"]
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run([str(light_venv / "bin" / "gankit"), "generate", "--digit", "7", "-o", "x.png",
                           "--model", str(model)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = imported_modules(proc.stderr)
    assert "onnxruntime" in modules and "gankit.runtime" in modules  # the probe works
    assert not {m for m in modules if m.split(".")[0] in ("torch", "onnx", "onnxscript")}

    image = Image.open(tmp_path / "x.png")
    assert image.format == "PNG" and image.mode == "L"
    height, width = grid_shape(8, 28, 28, 8)  # default --count 8, one row for digit 7
    assert image.height == height and image.width > width  # the row label sits left of the grid
    grid = np.asarray(image)[:, image.width - width:]
    first = grid[2:30, 2:30]
    assert np.array_equal(first, load_generator(model).generate(7, n=8, seed=0)[0])


@pytest.mark.slow
def test_shipped_model_travels_in_the_wheel(light_venv, tmp_path_factory, tmp_path):
    """A model at gankit/assets/conditional.onnx is package data: it is in the wheel and is the default."""
    model = exported_models(tmp_path_factory.mktemp("models"))["conditional"]
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("gankit", "plugins"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src / name)
    (src / "gankit" / "assets").mkdir(exist_ok=True)
    shutil.copy(model, src / "gankit" / "assets" / "conditional.onnx")
    run_pip(light_venv, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("gankit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert "gankit/assets/conditional.onnx" in zf.namelist()
        zf.extractall(tmp_path / "site")
    # The unpacked wheel comes first on sys.path, ahead of the venv's editable install.
    probe = ("import gankit; g = gankit.load(); print(gankit.__file__); print(g.path); "
             "print(g.generate(7, n=2).shape)")
    proc = subprocess.run([str(light_venv / "bin" / "python"), "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pkg_file, model_path, shape = proc.stdout.split("\n")[:3]
    assert Path(pkg_file).parent == tmp_path / "site" / "gankit"
    assert Path(model_path) == tmp_path / "site" / "gankit" / "assets" / "conditional.onnx"
    assert shape == "(2, 28, 28)"


@pytest.mark.slow
def test_train_without_torch_says_how_to_install_it(light_venv, tmp_path):
    proc = subprocess.run([str(light_venv / "bin" / "gankit"), "train", "--data", "synthetic", "--steps", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    # The hint names this clone (gankit is not on PyPI, so 'gankit[train]' alone would find nothing).
    assert "pip install -e" in proc.stderr and "[train]'" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no run folder


# Imports every light-tier module (all of gankit but gankit.training and the `python -m`
# entry modules, plus the built-in plugins' entry-point modules) in one torch-free process.
LIGHT_IMPORTS = r"""
import importlib, json, pkgutil, sys, tomllib
import gankit
pyproject = tomllib.load(open(sys.argv[1], "rb"))
entry = sorted({v.split(":")[0] for v in pyproject["project"]["entry-points"]["gankit.plugins"].values()})
names = [m.name for m in pkgutil.walk_packages(gankit.__path__, "gankit.")
         if not m.name.startswith("gankit.training") and not m.name.endswith("__main__")]
failed = {}
for name in ["gankit", *names, *entry]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript", "matplotlib", "safetensors"))
print(json.dumps({"imported": ["gankit", *names, *entry], "failed": failed, "heavy": heavy}))
"""


@pytest.mark.slow
def test_every_light_tier_module_imports_without_torch(light_venv, tmp_path):
    import json

    proc = subprocess.run([str(light_venv / "bin" / "python"), "-c", LIGHT_IMPORTS, str(REPO / "pyproject.toml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    imported = set(result["imported"])
    # The probe really walked the package: the CLI, data, eval, runtime and the plugin entry modules.
    assert {"gankit.cli.train", "gankit.data.sources", "gankit.eval.maths", "gankit.runtime", "gankit.atomic",
            "gankit_plugins.conditional"} <= imported
    assert not [m for m in imported if m.startswith("gankit.training")]
    assert result["failed"] == {}, result["failed"]
    assert result["heavy"] == [], result["heavy"]


@pytest.mark.slow
def test_version_in_the_light_tier_says_torch_is_absent(light_venv, tmp_path):
    proc = subprocess.run([str(light_venv / "bin" / "gankit"), "--version"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert lines["torch"].startswith("not installed") and lines["gankit"] and lines["onnxruntime"]
