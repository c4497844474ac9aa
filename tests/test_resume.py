"""Exact resume: a run killed with a real SIGKILL (or stopped with Ctrl-C) and resumed ends
bit-for-bit where an uninterrupted run ends, on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import FP32, SMALL_NETS, run_cli

STEPS = 160
ARGS = ["--steps", STEPS, "--checkpoint-every", 20, "--sample-every", 40, "--log-every", 10, "--seed", 3,
        "--ema", 0.9, *SMALL_NETS, *FP32, "--quiet"]


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    ckpt = sorted((run / "checkpoints").glob("step-*"))[-1]
    assert ckpt.name == f"step-{STEPS:09d}"
    return load_file(str(ckpt / "tensors.safetensors"))


def start_training(runs: Path, name: str, data: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gankit.cli", "train", "--data", str(data), "--runs-dir", str(runs), "--name", name,
         *map(str, ARGS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((run / "checkpoints").glob("step-*/manifest.json")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended before its first checkpoint: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, mnist_dir) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_cli("train", "--data", mnist_dir, "--runs-dir", runs, "--name", "straight", *ARGS, check=True)
    return runs / "straight"


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ after resume: {different[:5]}"


def test_sigkill_then_resume_is_bitwise_identical(straight_run, tmp_path, mnist_dir):
    proc = start_training(tmp_path, "killed", mnist_dir)
    run = tmp_path / "killed"
    wait_for_checkpoint(proc, run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = sorted((run / "checkpoints").glob("step-*/manifest.json"))
    killed_at = json.loads(done[-1].read_text())["step"]
    assert 0 < killed_at < STEPS, "the kill must land mid-run for this test to mean anything"

    resumed = run_cli("train", "--resume", run, "--quiet", check=True)
    assert resumed.returncode == 0
    # The summary counts what this invocation ran, not the whole run.
    assert f"done: {STEPS - killed_at} steps in " in resumed.stderr
    assert f"resumed at step {killed_at}; now at {STEPS}" in resumed.stderr
    assert_same(final_tensors(straight_run), final_tensors(run))
    # The logged losses after the resume point are the uninterrupted run's too.
    rows = lambda p: [json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("steps_per_s", "elapsed_s")} for r in rs]  # noqa: E731
    assert strip(rows(run)) == strip(rows(straight_run))


def test_ctrl_c_commits_a_checkpoint_and_says_how_to_resume(straight_run, tmp_path, mnist_dir):
    proc = start_training(tmp_path, "interrupted", mnist_dir)
    run = tmp_path / "interrupted"
    wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert proc.returncode == 1, err
    assert "gankit train --resume" in err and "Traceback" not in err
    steps = [json.loads(p.read_text())["step"] for p in (run / "checkpoints").glob("step-*/manifest.json")]
    assert max(steps) < STEPS
    assert (run / "loss_curve.png").stat().st_size > 0  # drawn on interruption too
    run_cli("train", "--resume", run, "--quiet", check=True)
    assert_same(final_tensors(straight_run), final_tensors(run))


def test_resume_refuses_changed_config(straight_run):
    proc = run_cli("train", "--resume", straight_run, "--lr", "0.1")
    assert proc.returncode == 2 and "only --steps" in proc.stderr
    proc = run_cli("train", "--resume", straight_run, "--steps", STEPS - 1)
    assert proc.returncode == 2 and "already at step" in proc.stderr


def test_resuming_a_finished_run_again_finishes_it_off_and_changes_nothing(straight_run, tmp_path):
    """The same command after a kill that landed past the last checkpoint: exit 0, same weights and log."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(straight_run, run)
    (run / "loss_curve.png").unlink()  # what the kill kept from being drawn
    before = final_tensors(run), (run / "metrics.jsonl").read_bytes()
    proc = run_cli("train", "--resume", run)
    assert proc.returncode == 0, proc.stderr
    assert f"now at {STEPS}" in proc.stdout + proc.stderr
    assert_same(before[0], final_tensors(run))
    assert (run / "metrics.jsonl").read_bytes() == before[1]
    assert (run / "loss_curve.png").stat().st_size > 0


def _rewrite_checkpoint(ckpt: Path, edit) -> None:
    """Edit a checkpoint's state.json and re-seal its manifest, as an older gankit would have written it."""
    import hashlib

    state = json.loads((ckpt / "state.json").read_text())
    edit(state)
    (ckpt / "state.json").write_text(json.dumps(state, indent=1))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (ckpt / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / "manifest.json").write_text(json.dumps(manifest, indent=1))


def test_a_checkpoint_with_the_old_flat_config_resumes(straight_run, tmp_path, mnist_dir):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(straight_run, run)
    for ckpt in (run / "checkpoints").glob("step-*"):
        shutil.rmtree(ckpt) if ckpt.name != f"step-{STEPS - 20:09d}" else None

    def flatten(state):
        cfg = state["config"]
        cfg.update(cfg.pop("net"))  # nets at the top level, as before they were nested
        for key in ("tb_histograms", "tb_graph"):
            cfg.pop(key)  # settings an older gankit did not have
        cfg["options"] = {}

    _rewrite_checkpoint(run / "checkpoints" / f"step-{STEPS - 20:09d}", flatten)
    run_cli("train", "--resume", run, "--quiet", check=True)
    assert_same(final_tensors(straight_run), final_tensors(run))


def test_tensorboard_keeps_every_logged_step_across_a_resume(tmp_path, mnist_dir):
    # A run that died after logging steps 15 and 20 but before checkpointing 20: the resume
    # from step 10 logs 15 and 20 again, and the events must hold 5, 10, 15, 20 once each.
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    common = ["--data", mnist_dir, "--runs-dir", tmp_path, "--name", "tb", "--checkpoint-every", 10,
              "--log-every", 5, "--sample-every", 100, "--seed", 1, *SMALL_NETS, "--quiet"]
    run_cli("train", *common, "--steps", 20, check=True)
    run = tmp_path / "tb"
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-000000020")
    run_cli("train", "--resume", run, "--quiet", check=True)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    logged = [e.step for e in events.Scalars("d_loss")]
    assert logged == [5, 10, 15, 20], logged
    rows = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    for e in events.Scalars("d_loss"):
        assert abs(e.value - rows[e.step]["d_loss"]) <= 1e-6 * max(1.0, abs(e.value))  # float32 in the event file


def test_tensorboard_histograms_and_graph_on_request(tmp_path, mnist_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "h", "--steps", 4,
            "--checkpoint-every", 2, "--tb-histograms", "--tb-graph", *SMALL_NETS, "--quiet", check=True)
    events = EventAccumulator(str(tmp_path / "h" / "tb"), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert any(t.startswith("generator/") for t in tags["histograms"])
    assert any(t.startswith("discriminator/") for t in tags["histograms"])
    assert [e.step for e in events.Histograms(tags["histograms"][0])] == [2, 4]
    assert tags["graph"] is True
