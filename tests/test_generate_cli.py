"""`gankit generate` and `gankit info` through real subprocesses: files, pixels, exit codes, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

import hostile_models as hostile
from conftest import cli_imports, run_cli
from gankit.images import grid_shape
from gankit.runtime import load_generator
from helpers_models import exported_models, make_bad_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def bad_models(models, tmp_path_factory):
    bad = make_bad_models(tmp_path_factory.mktemp("bad"), models["conditional"])
    folder = tmp_path_factory.mktemp("hostile")

    def good():
        return onnx.load(str(models["conditional"]))

    bad["utf8"] = (hostile.write(folder / "utf8.onnx", hostile.invalid_utf8_metadata(good())),
                   "metadata is not valid UTF-8")
    bad["run_fails"] = (hostile.write(folder / "run_fails.onnx", hostile.fails_at_run_time(good())),
                        "fails when run on a batch of 2")
    bad["bit_flip"] = (hostile.write(folder / "bit_flip.onnx", hostile.flip_weight_bit(models["conditional"].read_bytes())),
                       "do not match the gankit.weights_sha256")
    bad["classes"] = (hostile.write(folder / "classes.onnx", hostile.restamp(
        hostile.set_meta(good(), classes=json.dumps(list(range(100_000)))))), "claims 100,000 classes")
    return bad


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
    (["--digit", "7", "-o", "x.gif"], "use a .png, .jpg or .webp file"),
    (["--digit", "5", "--per-class"], "cannot draw 5"),
    (["--digit", "5", "-n", "257"], "at most 256 images per digit"),
    # the request cap comes before any array is built (issue 9.6)
    (["--digit", "5", "-n", "200000000", "-o", "x.npy"], "asks for 200,000,000 images; at most 1,000,000"),
    (["-n", str(10**12), "-o", "x.npy"], "at most 1,000,000 per call"),
    (["-n", str(2**64), "-o", "x.npy"], "at most 1,000,000 per call"),
    (["--all", "-n", "200000", "-o", "x.npy"], "2000000 images asked for; at most 1000000"),
    (["--all", "-n", "256", "--scale", "32"], "that grid would be 245,824 x 9,664 pixels; at most 100,000,000"),
    (["--digit", "1", "-d", "2", "-n", "256", "--scale", "32", "-o", "x.webp"], "that grid would be"),
    (["--seed", "-1"], "--seed: a seed must be from 0 to 2**64 - 1, got -1"),
    (["--seed", str(2**70)], "--seed: a seed must be from 0 to 2**64 - 1"),
    (["--digit", "7", "-o", ""], "--output is empty"),
    (["--digit", "7", "-o", "  "], "--output is empty"),
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
                                  "fixed_batch", "utf8", "run_fails", "bit_flip", "classes"])
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


@pytest.mark.parametrize("args", [
    ["generate", "--digit", "7", "-n", "4", "-o", "{tmp}/x.png", "--model", "{model}"],
    ["info", "{model}"],
    ["--help"],
])
def test_generate_and_info_never_import_torch(models, tmp_path, args):
    args = [a.format(tmp=tmp_path, model=models["conditional"]) for a in args]
    code, modules, stderr = cli_imports(*args)
    assert code == 0, stderr
    assert not {"torch", "onnx", "onnxscript"} & modules


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



@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP")])
def test_jpeg_and_webp_grids(models, tmp_path, suffix, fmt):
    out = tmp_path / f"g{suffix}"
    proc = run_cli("generate", "--digit", 7, "--digit", 2, "-n", 5, "--seed", 4, "-o", out,
                   "--model", models["conditional"])
    assert proc.returncode == 0, proc.stderr
    image = Image.open(out)
    height, width = grid_shape(10, 28, 28, 5)
    assert image.format == fmt and image.height == height and image.width > width
    # lossy, but the digits are still there: close to the PNG's pixels on average
    png = tmp_path / "g.png"
    run_cli("generate", "--digit", 7, "--digit", 2, "-n", 5, "--seed", 4, "-o", png, "--model", models["conditional"],
            check=True)
    diff = np.abs(np.asarray(image.convert("L"), dtype=int) - np.asarray(Image.open(png), dtype=int))
    assert diff.mean() < 12


def _peak_rss_mb(args: list[str], cwd) -> tuple[int, str, float]:
    """Exit code, stderr and peak RSS of one `gankit` run.

    A small Python process starts it and reads its rusage with os.wait4: a child forked
    straight from pytest would count pytest's own (torch-sized) memory before its exec.
    """
    probe = ("import json, os, subprocess, sys\n"
             "p = subprocess.Popen([sys.executable, '-m', 'gankit.cli', *sys.argv[1:]], stdout=subprocess.DEVNULL,"
             " stderr=subprocess.PIPE)\n"
             "err = p.stderr.read().decode()\n"
             "_, status, usage = os.wait4(p.pid, 0)\n"
             "print(json.dumps([os.waitstatus_to_exitcode(status), err, usage.ru_maxrss / 1024]))\n")
    proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    code, err, peak = json.loads(proc.stdout)
    return code, err, peak


@pytest.mark.parametrize("count", ["200000000", str(10**12), str(2**64)])
def test_huge_counts_cost_no_memory(models, tmp_path, count):
    code, err, peak = _peak_rss_mb(["generate", "-n", count, "-o", "x.npy", "--model", str(models["conditional"])],
                                   tmp_path)
    assert code == 2 and "at most 1,000,000" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert peak < 400, f"{peak:.0f} MB"  # the old code built 1.6 GB of labels first


@pytest.mark.parametrize("module, args", [("typer", ["--help"]), ("gankit.cli.generate", []), ("numpy", [])])
def test_ctrl_c_while_the_cli_starts_prints_no_traceback(tmp_path, module, args):
    """SIGINT while typer imports (any call it parses), the command module or numpy (a plain generate, no typer)."""
    script = (
        "import os, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hook())\n"
        f"sys.argv = ['gankit', 'generate', '-o', 'x.png', *{args!r}]\n"
        "from gankit.cli import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and proc.stderr == "interrupted\n", proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_python_handles_ctrl_c_again_once_the_cli_is_imported():
    proc = subprocess.run([sys.executable, "-c", "import signal, gankit.cli; "
                           "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "True", proc.stderr


def test_control_characters_never_reach_the_terminal(models, tmp_path):
    model = hostile.set_meta(onnx.load(str(models["conditional"])), dataset="mnist\x1b[31mRED\x1b[0m\x07")
    path = hostile.write(tmp_path / "ctl.onnx", hostile.restamp(model))
    for args in (["info", path], ["info", path, "--json"]):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "mnist[31mRED[0m" in proc.stdout
