"""`gankit serve` never needs torch: in this venv it never imports it, and a torch-free venv serves.

The torch-free venv holds gankit's base dependencies plus the ``serve`` extra, from
pyproject.toml, and is cached like tests/light_venv.py's (whose helpers it reuses) under
a path keyed by pyproject's hash; this checkout is installed into it editable.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

import gankit
from light_venv import ensure_light_venv
from serve_helpers import start_server, shipped_models

MODELS = shipped_models()

# Builds the app, runs requests through it in process, and lists the heavy modules imported.
PROBE = r"""
import sys, json
from starlette.testclient import TestClient
from gankit.serve.app import create_app
from gankit.serve.config import ServeConfig
from gankit.serve.models import load_models
with TestClient(create_app(load_models([sys.argv[1]]), ServeConfig())) as client:
    r = client.get("/v1/generate?digit=7&n=2&seed=1&format=json")
    v2 = client.post("/v2/models/per-digit/infer", json={"inputs": [
        {"name": "z", "datatype": "FP32", "shape": [1, 100], "data": [0.0] * 100},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]}]})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript", "matplotlib"))
print(json.dumps({"status": [r.status_code, v2.status_code], "images": r.json()["images"], "heavy": heavy}))
"""


def test_the_server_imports_no_torch_here():
    proc = subprocess.run([sys.executable, "-c", PROBE, str(MODELS["per-digit"])], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == [200, 200] and result["heavy"] == []
    assert np.array_equal(np.asarray(result["images"], np.uint8), gankit.load(MODELS["per-digit"]).generate(7, 2, 1))


def ensure_serve_venv():
    """The torch-free venv with the serve extra added."""
    return ensure_light_venv(extras=("serve",))


@pytest.mark.slow
def test_serve_in_a_torch_free_venv(tmp_path):
    venv = ensure_serve_venv()
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "True", "torch must not be installed in this venv"

    srv = start_server(MODELS["conditional"], python=python, env={"PYTHONPROFILEIMPORTTIME": "1"}, cwd=tmp_path)
    try:
        with urllib.request.urlopen(srv.url + "/v1/generate?digit=7&n=4&seed=2&format=npy", timeout=30) as r:
            images = np.load(io.BytesIO(r.read()))
        assert np.array_equal(images, gankit.load(MODELS["conditional"]).generate(7, n=4, seed=2))
        with urllib.request.urlopen(srv.url + "/metrics", timeout=30) as r:
            assert b"gankit_images_generated_total" in r.read()
    finally:
        assert srv.stop() == 0
    imported = {line.rsplit("|", 1)[1].strip() for line in srv.stderr.splitlines() if line.startswith("import time:")}
    assert {"starlette", "uvicorn", "onnxruntime", "gankit.serve.app"} <= imported
    assert not [m for m in imported if re.match(r"(torch|onnx|onnxscript)(\.|$)", m)]
