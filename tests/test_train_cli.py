"""`gankit train` through the real CLI: outputs of a run, presets, and bad input (exit codes, nothing written)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FP32, SMALL_NETS, run_cli
from gankit.presets import PRESETS


def test_run_folder_has_config_metrics_checkpoint_grids_and_curve(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "r", "--steps", 60,
                   "--sample-every", 30, "--log-every", 10, *SMALL_NETS, check=True)
    run = tmp_path / "r"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["steps"] == 60 and cfg["net"]["g_hidden"] == [64, 128]
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
                *SMALL_NETS, *FP32, "--quiet", check=True)
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
    # 8 columns of 32-pixel images at scale 2 with 2-pixel padding (rows may carry a caption)
    assert grid.shape[1] == 2 * (8 * 32 + 9 * 2)


@pytest.mark.parametrize("args, needle", [
    (["--steps", "0"], "--steps"),
    (["--steps", "-5"], "--steps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--preset", "nosuch"], "'nosuch' is not one of 'dl4j-mlp'"),
    (["--arch", "resnet"], "unknown arch 'resnet' for plugin 'unconditional'"),
    (["--loss", "wgan"], "'wgan' is not one of 'bce', 'ls'"),
    (["--digits", "3,11"], "--digits"),
    (["--digits", "x"], "--digits"),
    (["--plugin", "nosuch"], "nosuch"),
    (["--lr", "-1"], "--lr"),
    (["--option", "novalue"], "key=value"),
    (["--option", "width=3"], "has no option width"),
    (["--g-hidden", ""], "--g-hidden is empty"),
    (["--digits", ""], "--digits is empty"),
    (["--max-seconds", "nan"], "--max-seconds must be a finite number"),
    (["--z-dim", str(10**12)], "--z-dim must be at most 65536"),
    (["--g-hidden", f"64,{10**12}"], "from 1 to 65536"),
    (["--seed", str(2**70)], "--seed must be at most"),
    (["--name", "../../etc"], "--name must be a plain folder name"),
    (["--name", ""], "--name must be a plain folder name"),
    (["--eval-every", "1", "--eval-samples", "10"], "--eval-samples 10 is too few"),
    (["--ls-sigmoid", "yes"], "unexpected extra argument"),
    (["--config", "nope.toml"], "cannot read it"),
])
def test_impossible_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, needle, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path / "runs", *args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()
    assert not list(tmp_path.iterdir())  # nor anything beside it


@pytest.mark.parametrize("runs_dir, needle", [
    ("/dev/null", "is not a folder"),
    ("a-file", "is not a folder"),
    ("/proc", "cannot create the run folder"),
    ("", "--runs-dir is empty"),
])
def test_unusable_runs_dir_exits_2(tmp_path, runs_dir, needle, mnist_dir):
    (tmp_path / "a-file").write_text("x")
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", runs_dir, "--steps", 1, *SMALL_NETS, "-q",
                   cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


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
    (tmp_path / "runs" / "x" / "notes.txt").write_text("mine")
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path / "runs", "--name", "x", "--steps", 5)
    assert proc.returncode == 2 and "did not write" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "runs" / "x").iterdir()) == ["notes.txt"]


def test_non_finite_loss_stops_with_a_message(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "nan", "--steps", 50,
                   "--optimizer", "sgd", "--lr", "1e30", "--log-every", 1, *SMALL_NETS, "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "non-finite" in proc.stderr and "Traceback" not in proc.stderr
    # The run got going (its config is written) but stopped before any checkpoint.
    assert (tmp_path / "nan" / "config.json").is_file()
    assert not list((tmp_path / "nan").glob("checkpoints/step-*"))


def test_help_shows_the_effective_defaults_choices_and_plain_flags():
    plain = run_cli("train", "--help", check=True).stdout
    assert "[bce|ls]" in plain and "[auto|cpu|cuda]" in plain  # fixed choices shown as choices
    assert "<bool>" not in plain and "--no-ls-sigmoid" in plain  # flags take no value
    assert "[default: 32]" in plain and "[default: 256,512,1024]" in plain and "(" + "32)" not in plain
    cond = run_cli("train", "--plugin", "conditional", "--help", check=True).stdout
    assert "[default: 64]" in cond and "[default: 0.999]" in cond  # the plugin's train_defaults
    assert "d_cond=projection" in cond and "Plugin 'conditional' sets: batch_size=64" in cond
    paddle = run_cli("train", "--preset", "paddle-lsgan", "--help", check=True).stdout
    assert "[default: 256,512]" in paddle and "preset paddle-lsgan" in paddle


def test_plain_progress_lines_when_not_a_terminal(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "r", "--steps", 10,
                   "--log-every", 5, "--progress-seconds", "0.001", *SMALL_NETS, check=True)
    lines = proc.stderr.splitlines()
    steps = [line for line in lines if " step " in line and "steps/s" in line]
    assert [line.split(" step ")[1].split()[0] for line in steps] == ["5/10", "10/10"]
    assert not re.search(r"\w+\.py:\d+", proc.stderr)  # no rich "file.py:123" suffix
    assert any(line.startswith("done: 10 steps in ") and "steps/s" in line for line in lines)


def test_toml_config_file_sets_any_option_and_the_command_line_wins(tmp_path, mnist_dir):
    (tmp_path / "run.toml").write_text(
        f'data = "{mnist_dir}"\nsteps = 6\nlog_every = 3\nname = "fromtoml"\nrunstuff = 1\n')
    bad = run_cli("train", "--config", tmp_path / "run.toml", "--runs-dir", tmp_path / "runs")
    assert bad.returncode == 2 and "no setting named runstuff" in bad.stderr
    (tmp_path / "run.toml").write_text(
        f'data = "{mnist_dir}"\nsteps = 6\nlog_every = 3\nname = "fromtoml"\nquiet = true\n'
        'digits = "3,8"\n[net]\ng_hidden = [64]\nd_hidden = [64]\n')
    run_cli("train", "--config", tmp_path / "run.toml", "--runs-dir", tmp_path / "runs", "--steps", 4, check=True)
    cfg = json.loads((tmp_path / "runs/fromtoml/config.json").read_text())
    assert cfg["steps"] == 4 and cfg["log_every"] == 3 and cfg["classes"] == [3, 8]
    assert cfg["net"]["g_hidden"] == [64] and cfg["net"]["d_hidden"] == [64]


def test_a_runs_config_json_reproduces_it(tmp_path, mnist_dir):
    from safetensors.torch import load_file
    import torch

    run_cli("train", "--plugin", "conditional", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "a",
            "--steps", 6, "--seed", 4, "--g-hidden", "32", "--d-hidden", "32", "-b", "8", "-q", check=True)
    cfg_a = json.loads((tmp_path / "a/config.json").read_text())
    # The merged plugin options are stored, not {}: a later default change cannot alter the rebuild.
    assert cfg_a["options"] == {"ac_fake": False, "ac_weight": 1.0, "d_cond": "projection", "embed_dim": 32}
    run_cli("train", "--config", tmp_path / "a/config.json", "--runs-dir", tmp_path, "--name", "b", "-q",
            check=True)
    assert json.loads((tmp_path / "b/config.json").read_text()) == cfg_a
    a = load_file(str(tmp_path / "a/checkpoints/step-000000006/tensors.safetensors"))
    b = load_file(str(tmp_path / "b/checkpoints/step-000000006/tensors.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
