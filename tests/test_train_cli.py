"""`gankit train` through the real CLI: outputs of a run, presets, and bad input (exit codes, nothing written)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SMALL_NETS, run_cli
from gankit.presets import PRESETS


def test_run_folder_has_config_metrics_checkpoint_grids_and_curve(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "r", "--steps", 60,
                   "--sample-every", 30, "--log-every", 10, *SMALL_NETS, check=True)
    run = tmp_path / "r"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["steps"] == 60 and cfg["g_hidden"] == [64, 128]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) and r["steps_per_s"] > 0 for r in rows)
    grids = sorted((run / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step-000000030.png", "step-000000060.png"]
    grid = np.asarray(Image.open(grids[-1]))
    assert grid.ndim == 2 and grid.shape[0] >= 8 * 28 and grid.std() > 0
    curve = Image.open(run / "loss_curve.png")
    assert curve.size[0] > 200
    assert (run / "checkpoints" / "step-000000060" / "manifest.json").is_file()
    assert "gankit export" in proc.stderr


def test_same_seed_same_weights(tmp_path, mnist_dir):
    from safetensors.torch import load_file
    import torch

    for name in ("a", "b"):
        run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", name, "--steps", 15, "--seed", 5,
                *SMALL_NETS, "--quiet", check=True)
    a = load_file(str(tmp_path / "a/checkpoints/step-000000015/tensors.safetensors"))
    b = load_file(str(tmp_path / "b/checkpoints/step-000000015/tensors.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_seed_recipe_trains_as_a_preset(tmp_path, mnist_dir, preset):
    proc = run_cli("train", "--preset", preset, "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "p",
                   "--steps", 4, "--log-every", 2, "--quiet")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["preset"] == preset
    rows = [json.loads(line) for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and np.isfinite(rows[-1]["d_loss"])


def test_paddle_preset_works_at_32x32_and_grid_shows_it(tmp_path, mnist_dir):
    run_cli("train", "--preset", "paddle-lsgan", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "p",
            "--steps", 2, "--quiet", check=True)
    grid = np.asarray(Image.open(tmp_path / "p/samples/step-000000002.png"))
    # 8 rows of 32-pixel images at scale 2 with 2-pixel padding
    assert grid.shape[0] == 2 * (8 * 32 + 9 * 2)


@pytest.mark.parametrize("args, needle", [
    (["--steps", "0"], "--steps"),
    (["--steps", "-5"], "--steps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--preset", "nosuch"], "unknown preset"),
    (["--arch", "resnet"], "unknown arch"),
    (["--loss", "wgan"], "unknown loss"),
    (["--digits", "3,11"], "--digits"),
    (["--digits", "x"], "--digits"),
    (["--plugin", "nosuch"], "nosuch"),
    (["--lr", "-1"], "--lr"),
    (["--option", "novalue"], "key=value"),
])
def test_impossible_options_exit_2_and_write_nothing(tmp_path, args, needle, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path / "runs", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def _corrupt_copies(src: Path, dst: Path, kind: str) -> Path:
    shutil.copytree(src, dst)
    images = dst / "train-images-idx3-ubyte.gz"
    if kind == "truncated-gzip":
        images.write_bytes(images.read_bytes()[:5000])
    elif kind == "not-idx":
        images.write_bytes(gzip.compress(b"<html>not an idx file</html>" * 10))
    elif kind == "unequal-counts":
        labels = dst / "train-labels-idx1-ubyte.gz"
        raw = gzip.decompress(labels.read_bytes())
        count = int.from_bytes(raw[4:8], "big") - 1
        labels.write_bytes(gzip.compress(raw[:4] + count.to_bytes(4, "big") + raw[8:8 + count]))
    elif kind == "missing-file":
        images.unlink()
    return dst


@pytest.mark.parametrize("kind", ["truncated-gzip", "not-idx", "unequal-counts", "missing-file"])
def test_bad_data_exits_1_naming_the_file_and_writes_nothing(tmp_path, mnist_dir, kind):
    data = _corrupt_copies(mnist_dir, tmp_path / "data", kind)
    proc = run_cli("train", "--data", data, "--runs-dir", tmp_path / "runs", "--steps", 5)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "train-" in proc.stderr  # names the file
    assert not (tmp_path / "runs").exists()


def test_missing_data_folder(tmp_path):
    proc = run_cli("train", "--data", tmp_path / "nope", "--runs-dir", tmp_path / "runs", "--steps", 5)
    assert proc.returncode == 1 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_existing_run_folder_is_not_overwritten(tmp_path, mnist_dir):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path / "runs", "--name", "x", "--steps", 5)
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_non_finite_loss_stops_with_a_message(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "nan", "--steps", 50,
                   "--optimizer", "sgd", "--lr", "1e30", "--log-every", 1, *SMALL_NETS, "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "non-finite" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "nan" / "checkpoints").glob("step-*")) if (tmp_path / "nan" / "checkpoints").exists() else True
