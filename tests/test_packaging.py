"""Packaging: the wheel built from this checkout holds gankit and the built-in plugins, nothing else;
its metadata declares floors, not pins; `python -m gankit` and `gankit --version` work."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # Built from a clean copy: a stale build/ folder in the checkout would leak old files into the wheel.
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in ("gankit", "plugins"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("gankit-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_string(wheel.read(name).decode())


@pytest.mark.slow
def test_wheel_holds_gankit_and_the_builtin_plugins_only(wheel):
    names = wheel.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"gankit", "gankit_plugins", "gankit-0.1.0.dist-info"}, tops
    assert not [n for n in names if "hinge" in n or "/tests/" in n or n.startswith("tests/")]
    # Every module of the source tree is there, and the shipped assets as package data.
    for package in ("gankit", "plugins/gankit_plugins"):
        root = REPO / package
        for module in root.rglob("*.py"):
            if "__pycache__" not in module.parts:
                assert f"{root.name}/{module.relative_to(root).as_posix()}" in names, module
    assert "gankit/assets/digit_classifier.onnx" in names
    assert "gankit-0.1.0.dist-info/licenses/LICENSE" in names
    assert wheel.read("gankit-0.1.0.dist-info/licenses/LICENSE").decode().startswith("MIT License")


@pytest.mark.slow
def test_wheel_metadata_declares_floors_and_tiers(wheel):
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    requires = meta.get_all("Requires-Dist")
    base = [r for r in requires if "extra ==" not in r]
    train = [r.split(";")[0].strip() for r in requires if 'extra == "train"' in r]
    names = lambda reqs: {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower() for r in reqs}  # noqa: E731
    assert names(base) == {"numpy", "onnxruntime", "typer", "rich", "pillow"}  # the light tier
    assert {"torch", "onnx", "onnxscript", "safetensors", "matplotlib"} <= names(train)
    specs = [r.split(";")[0] for r in requires]
    assert not [r for r in specs if "==" in r or "<" in r], "floors only; exact pins live in constraints.txt"
    (torch_req,) = [r for r in train if r.startswith("torch")]
    assert re.fullmatch(r"torch>=2\.\d+", torch_req), torch_req
    entry_points = wheel.read("gankit-0.1.0.dist-info/entry_points.txt").decode()
    assert "gankit = gankit.cli:main" in entry_points
    for plugin in ("unconditional", "per-digit", "conditional"):
        assert re.search(rf"^{plugin} = gankit_plugins\.", entry_points, re.M), plugin


def test_constraints_pin_the_tested_torch_and_ci_uses_them():
    pins = [line.strip() for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert "torch==2.13.0" in pins
    ci = (REPO / ".ci" / "run").read_text()
    assert "-c constraints.txt" in ci and ".venv/bin/python -m pytest -q" in ci
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [r for r in extras["train"] if "==" in r]


def _gankit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gankit", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_python_dash_m_gankit_and_version():
    proc = _gankit("--version")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    import gankit
    import onnxruntime

    assert lines["gankit"] == gankit.__version__
    assert lines["onnxruntime"] == onnxruntime.__version__
    assert "torch" in lines  # a version here; "not installed" in the light venv (tests/test_no_torch.py)
    help_text = _gankit("--help").stdout
    assert "--install-completion" in help_text and "generate" in help_text and "train" in help_text


def test_training_public_names_resolve_lazily():
    code = ("import sys, gankit.training as t\n"
            "assert 'torch' not in sys.modules, 'importing gankit.training must stay cheap'\n"
            "missing = [n for n in t.__all__ if getattr(t, n, None) is None]\n"
            "assert not missing, missing\n"
            "from gankit.training import standard_step, build_nets\nfrom gankit.training.persist import checkpoint\n"
            "print(len(t.__all__))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) >= 10
