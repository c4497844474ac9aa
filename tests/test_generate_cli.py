"""`gankit generate` and `gankit info` through real subprocesses: files, pixels, exit codes, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from gankit.images import grid_shape
from gankit.runtime import load_generator
from helpers_models import exported_models, make_bad_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def bad_models(models, tmp_path_factory):
    return make_bad_models(tmp_path_factory.mktemp("bad"), models["conditional"])


def tiles(png, n: int, nrow: int) -> np.ndarray:
    """Cut a grid PNG (labels, if any, on the left) back into its n 28x28 tiles."""
    grid = np.asarray(Image.open(png))
    height, width = grid_shape(n, 28, 28, nrow)
    assert grid.shape[0] == height and grid.shape[1] >= width
    grid = grid[:, grid.shape[1] - width:]
    return np.stack([grid[2 + r * 30: 30 + r * 30, 2 + c * 30: 30 + c * 30]
                     for r, c in (divmod(i, nrow) for i in range(n))])


def test_png_grid_has_one_row_per_digit_with_the_runtime_pixels(models, tmp_path):
    out = tmp_path / "g.png"
    proc = run_cli("generate", "--digit", 7, "--digit", 2, "-n", 5, "--seed", 4, "-o", out,
                   "--model", models["conditional"])
    assert proc.returncode == 0, proc.stderr
    assert "wrote 10 images (digit 7, 2, seed 4)" in proc.stdout
    want = load_generator(models["conditional"]).generate([7, 2], n=5, seed=4)
    assert np.array_equal(tiles(out, 10, 5), want)
    image = Image.open(out)
    assert image.format == "PNG" and image.mode == "L" and image.width > grid_shape(10, 28, 28, 5)[1]  # labels


def test_npy_output_is_uint8_n_by_28_by_28(models, tmp_path):
    out = tmp_path / "d.npy"
    proc = run_cli("generate", "--digit", 3, "--count", 6, "--seed", 9, "-o", out, "--model", models["per_class"])
    assert proc.returncode == 0, proc.stderr
    arr = np.load(out, allow_pickle=False)
    assert arr.dtype == np.uint8 and arr.shape == (6, 28, 28)
    assert np.array_equal(arr, load_generator(models["per_class"]).generate(3, n=6, seed=9))


def test_folder_output_one_png_per_image(models, tmp_path):
    out = tmp_path / "pngs"
    proc = run_cli("generate", "--all", "-n", 2, "-o", out, "--model", models["per_class"])
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0000_digit3.png", "0001_digit3.png", "0002_digit7.png", "0003_digit7.png"]
    want = load_generator(models["per_class"]).generate([3, 7], n=2, seed=0)
    got = np.stack([np.asarray(Image.open(out / name)) for name in names])
    assert np.array_equal(got, want)


def test_default_is_every_class_and_scale_enlarges(models, tmp_path):
    proc = run_cli("generate", "-n", 3, "-o", tmp_path / "all.png", "--scale", 2, "--model", models["conditional"])
    assert proc.returncode == 0, proc.stderr
    assert "digit 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in proc.stdout
    height, _ = grid_shape(30, 28, 28, 3)
    assert Image.open(tmp_path / "all.png").height == 2 * height


def test_unconditional_model_draws_without_digits(models, tmp_path):
    proc = run_cli("generate", "-n", 12, "-o", tmp_path / "u.png", "--model", models["unconditional"])
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(tiles(tmp_path / "u.png", 12, 8), load_generator(models["unconditional"]).generate(None, 12))
    proc = run_cli("generate", "--digit", 4, "-o", tmp_path / "v.png", "--model", models["unconditional"])
    assert proc.returncode == 2 and "unconditional model" in proc.stderr
    proc = run_cli("generate", "--all", "-o", tmp_path / "v.png", "--model", models["unconditional"])
    assert proc.returncode == 2 and "drop --all" in proc.stderr
    assert not (tmp_path / "v.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--digit", "10"], "--digit takes a whole number from 0 to 9, got 10"),
    (["--digit", "-1"], "--digit takes a whole number from 0 to 9, got -1"),
    (["--digit", "seven"], "--digit takes a whole number from 0 to 9, got 'seven'"),
    (["--digit", "7", "--count", "0"], "--count must be at least 1, got 0"),
    (["--digit", "7", "--all"], "either --digit or --all"),
    (["--digit", "7", "-o", "x.jpg"], "use a .png file"),
    (["--digit", "5", "--per-class"], "cannot draw 5"),
    (["--digit", "5", "-n", "257"], "at most 256 images per digit"),
])
def test_usage_errors_exit_2_without_output(models, tmp_path, args, message):
    if "--per-class" in args:
        args = [a for a in args if a != "--per-class"] + ["--model", str(models["per_class"])]
    else:
        args = args + ["--model", str(models["conditional"])]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "x.png")]
    proc = run_cli("generate", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["missing", "text", "truncated", "no_metadata", "wrong_inputs", "external_outside",
                                  "fixed_batch"])
def test_bad_model_files_exit_1_with_a_message(bad_models, tmp_path, name):
    path, pattern = bad_models[name]
    proc = run_cli("generate", "--digit", 7, "-o", tmp_path / "x.png", "--model", path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and path.name in proc.stderr and "Traceback" not in proc.stderr
    import re

    assert re.search(pattern, " ".join(proc.stderr.split())), proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_unwritable_output_exits_1_and_leaves_nothing(models, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "taken.png").mkdir()  # a folder where the grid file should go
    before = sorted(p.name for p in tmp_path.iterdir())
    for target in ("afile/x.png", "afile/x.npy", "afile/pngs", "taken.png", "afile"):
        proc = run_cli("generate", "--digit", 1, "-o", tmp_path / target, "--model", models["conditional"])
        assert proc.returncode == 1, (target, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, target
        assert list((tmp_path / "taken.png").iterdir()) == []
        assert (tmp_path / "afile").read_text() == "x"


TORCH_PROBE = """
import json, sys
sys.argv = ["gankit"] + sys.argv[1:]
from gankit.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript"))
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("args", [
    ["generate", "--digit", "7", "-n", "4", "-o", "{tmp}/x.png", "--model", "{model}"],
    ["info", "{model}"],
    ["--help"],
])
def test_generate_and_info_never_import_torch(models, tmp_path, args):
    args = [a.format(tmp=tmp_path, model=models["conditional"]) for a in args]
    proc = subprocess.run([sys.executable, "-c", TORCH_PROBE, *args], capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}, proc.stderr


def test_info_table_and_json(models):
    proc = run_cli("info", models["per_class"])
    assert proc.returncode == 0, proc.stderr
    for text in ("gankit.label_mode", "per-class", "gankit.weights_sha256", "[batch, 8]", "[batch, 1, 28, 28]",
                 "tensor(int64)"):
        assert text in proc.stdout, text
    proc = run_cli("info", models["per_class"], "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(models["per_class"])).metadata_props}
    assert info["metadata"] == meta and info["card"]["classes"] == [3, 7]
    assert info["size_bytes"] == models["per_class"].stat().st_size
    assert [i["name"] for i in info["inputs"]] == ["z", "label"] and info["inputs"][0]["shape"] == ["batch", 8]
    assert info["outputs"] == [{"name": "image", "type": "tensor(float)", "shape": ["batch", 1, 28, 28]}]


def test_info_on_bad_models_exits_1(bad_models):
    for name in ("text", "no_metadata", "external_outside"):
        proc = run_cli("info", bad_models[name][0], "--json")
        assert proc.returncode == 1 and proc.stdout == "" and "error: " in proc.stderr, name

