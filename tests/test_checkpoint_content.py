"""Hostile or damaged checkpoint content (with recomputed hashes, so the manifest check passes)
must give one ModelFileError (exit 1, one line, no traceback) on load, `--resume`, `export`
and `evaluate`; metrics.jsonl damage is skipped; old checkpoints are pruned without
leaving empty folders; files follow the umask; a dead-end run folder is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_cli
from gankit.errors import GankitError, ModelFileError, UsageError
from gankit.training.persist import checkpoint as ckpt
from gankit.training.persist import runlog

ARGS = ["--steps", "6", "--checkpoint-every", "3", "--log-every", "2", "--sample-every", "1000", "--seed", "2",
        "--ema", "0.9", "-b", "16", "--g-hidden", "16", "--d-hidden", "16", "--quiet"]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, mnist_dir) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_cli("train", "--data", mnist_dir, "--runs-dir", runs, "--name", "good", *ARGS, check=True)
    return runs / "good"


def copy_run(good_run: Path, where: Path) -> tuple[Path, Path]:
    run = where / "run"
    shutil.copytree(good_run, run)
    return run, ckpt.committed(run / "checkpoints")[-1]


def rehash(ck: Path) -> None:
    """Recompute the manifest so only the content check can catch the edit."""
    manifest = json.loads((ck / ckpt.MANIFEST).read_text())
    for name in manifest["files"]:
        data = (ck / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ck / ckpt.MANIFEST).write_text(json.dumps(manifest))


def edit_state(ck: Path, change) -> None:
    state = json.loads((ck / ckpt.STATE).read_text())
    change(state)
    (ck / ckpt.STATE).write_text(json.dumps(state))
    rehash(ck)


def edit_tensors(ck: Path, change) -> None:
    tensors = load_file(str(ck / ckpt.TENSORS))
    change(tensors)
    save_file(tensors, str(ck / ckpt.TENSORS))
    rehash(ck)


def _set(path: list, value):
    def change(obj):
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return change


STATE_EDITS = {
    "step abc": _set(["step"], "abc"),
    "step -5": _set(["step"], -5),
    "step 12.5": _set(["step"], 12.5),
    "step true": _set(["step"], True),
    "format 2": _set(["format_version"], 2),
    "state is a number": None,  # handled below: the whole file is `7`
    "config steps abc": _set(["config", "steps"], "abc"),
    "config unknown key": _set(["config", "bogus"], 1),
    "config hidden widths a string": _set(["config", "g_hidden"], "abc"),
    "no param groups": _set(["optimizers", "g", "param_groups"], []),
    "param index a string": _set(["optimizers", "d", "param_groups", 0, "params"], ["x"]),
    "lr NaN": _set(["optimizers", "g", "param_groups", 0, "lr"], float("nan")),
    "scalars key": _set(["optimizers", "g", "scalars"], {"x": {}}),
    "python rng short": _set(["rng", "python", 1], [1, 2, 3]),
    "python rng huge word": _set(["rng", "python", 1, 0], 2**70),
    "numpy rng name": _set(["rng", "numpy", 0], "PCG64"),
    "numpy rng pos": _set(["rng", "numpy", 2], 10**9),
    "sampler empty": _set(["sampler", "streams"], []),
    "sampler epoch string": _set(["sampler", "streams", 0], ["a", 0]),
    "sampler negative": _set(["sampler", "streams", 0], [0, -3]),
    "has_ema string": _set(["has_ema"], "yes"),
    "best_score string": _set(["extra", "best_score"], "high"),
    "pending losses garbage": _set(["extra", ckpt.PENDING], [{"d_loss": ["t", "x"]}]),
    "missing sampler": lambda s: s.pop("sampler"),
}


@pytest.mark.parametrize("case", sorted(STATE_EDITS))
def test_bad_state_json_is_one_model_file_error(good_run, tmp_path, case):
    run, ck = copy_run(good_run, tmp_path)
    if STATE_EDITS[case] is None:
        (ck / ckpt.STATE).write_text("7")
        rehash(ck)
    else:
        edit_state(ck, STATE_EDITS[case])
    with pytest.raises(ModelFileError, match="invalid checkpoint|unreadable checkpoint"):
        ckpt.load_checkpoint(run)


MANIFEST_EDITS = {
    "files empty list": lambda m: m.update(files=[]),
    "files empty": lambda m: m.update(files={}),
    "extra file": lambda m: m["files"].update({"../../etc/passwd": {"bytes": 1, "sha256": "0" * 64}}),
    "bytes string": lambda m: m["files"][ckpt.STATE].update(bytes="many"),
    "step -1": lambda m: m.update(step=-1),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_EDITS))
def test_bad_manifest_is_one_model_file_error(good_run, tmp_path, case):
    run, ck = copy_run(good_run, tmp_path)
    manifest = json.loads((ck / ckpt.MANIFEST).read_text())
    MANIFEST_EDITS[case](manifest)
    (ck / ckpt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError):
        ckpt.load_checkpoint(run)


def test_safetensors_header_claiming_2_to_the_60_bytes(good_run, tmp_path):
    run, ck = copy_run(good_run, tmp_path)
    data = bytearray((ck / ckpt.TENSORS).read_bytes())
    data[:8] = struct.pack("<Q", 2**60)
    (ck / ckpt.TENSORS).write_bytes(bytes(data))
    rehash(ck)
    with pytest.raises(ModelFileError, match="header"):
        ckpt.load_checkpoint(run)


def test_tensors_file_garbage(good_run, tmp_path):
    run, ck = copy_run(good_run, tmp_path)
    (ck / ckpt.TENSORS).write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 50)
    rehash(ck)
    with pytest.raises(ModelFileError):
        ckpt.load_checkpoint(run)


def _first(tensors, prefix):
    return next(k for k in sorted(tensors) if k.startswith(prefix))


# Each loads (the schema is fine) but does not fit the nets: caught on --resume, before torch sees it.
RESUME_EDITS = {
    "missing generator key": lambda t: t.pop(_first(t, "g.")),
    "wrong generator shape": lambda t: t.update({_first(t, "g."): torch.zeros(3, 3)}),
    "wrong Adam moment shape": lambda t: t.update({_first(t, "opt_d.state.0.exp_avg"): torch.zeros(2)}),
    "wrong torch RNG size": lambda t: t.update({"rng.torch_cpu": torch.zeros(7, dtype=torch.uint8)}),
}


@pytest.mark.parametrize("case", sorted(RESUME_EDITS))
def test_resume_from_a_checkpoint_that_does_not_fit_is_a_clean_error(good_run, tmp_path, case):
    run, ck = copy_run(good_run, tmp_path)
    edit_tensors(ck, RESUME_EDITS[case])
    proc = run_cli("train", "--resume", run, "--steps", "9", "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr
    assert "checkpoint" in proc.stderr


def test_nan_weights_refused_by_load_export_and_evaluate(good_run, tmp_path):
    run, ck = copy_run(good_run, tmp_path)

    def poison(t):
        key = _first(t, "ema.")
        t[key] = torch.full_like(t[key], float("nan"))
    edit_tensors(ck, poison)
    with pytest.raises(ModelFileError, match="NaN"):
        ckpt.load_checkpoint(run)
    for args in (("export", run, "-o", tmp_path / "x.onnx"), ("evaluate", run, "--samples", "2000")):
        proc = run_cli(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "NaN" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.onnx").exists()


# ----- metrics.jsonl ------------------------------------------------------------------------
def test_metrics_reader_skips_cut_and_non_object_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "d_loss": 1.0}\n7\n[1, 2]\n"text"\nnull\n{"step": "abc"}\n{"step": -1}\n'
                    '{"no_step": 1}\n\xff\n{"step": 4, "d_loss": 0.5}\n{"step": 6, "d_lo')
    assert runlog.read_rows(path) == [{"step": 2, "d_loss": 1.0}, {"step": 4, "d_loss": 0.5}]
    assert runlog.truncate_to(path, 4) == [{"step": 2, "d_loss": 1.0}, {"step": 4, "d_loss": 0.5}]
    assert path.read_text() == '{"step": 2, "d_loss": 1.0}\n{"step": 4, "d_loss": 0.5}\n'
    assert not list(tmp_path.glob(".*.tmp"))


def test_metrics_truncation_leaves_a_clean_log_untouched(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2}\n')
    before = path.stat().st_ino
    runlog.truncate_to(path, 10)
    assert path.stat().st_ino == before  # no rewrite at all when nothing changes


def test_resume_with_damaged_metrics_lines(good_run, tmp_path):
    run, _ = copy_run(good_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('7\n[1]\n{"step": "x"}\n{"step": 5, "d_lo')
    proc = run_cli("train", "--resume", run, "--steps", "9", "--quiet")
    assert proc.returncode == 0, proc.stderr
    steps = [r["step"] for r in runlog.read_rows(run / "metrics.jsonl")]
    assert steps == [2, 4, 6, 8, 9]


def test_write_atomic_failure_leaves_no_temp_and_the_old_file(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes; tests/test_faults.py uses RLIMIT_FSIZE")
        with pytest.raises(runlog.RunFileError, match="config.json"):
            runlog.write_config(tmp_path, "new")
    finally:
        os.chmod(tmp_path, 0o700)
    assert target.read_text() == "old" and not list(tmp_path.glob(".*"))


# ----- pruning and modes ---------------------------------------------------------------------
def _fake_checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"step-{step:09d}"
    path.mkdir(parents=True)
    (path / ckpt.MANIFEST).write_text("{}")
    return path


def test_prune_renames_before_deleting_and_cleans_leftovers(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        _fake_checkpoint(folder, step)
    (folder / "step-000000000").mkdir()  # half-deleted by an old-style prune: no manifest
    (folder / ".del-step-000000007-999999").mkdir()
    (folder / ".tmp-step-000000008-999999").mkdir()
    (folder / ".old-best-999999").mkdir()
    ckpt.prune(folder, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000002", "step-000000003"]


def test_checkpoint_files_follow_the_umask(good_run):
    ck = ckpt.committed(good_run / "checkpoints")[-1]
    for name in (ckpt.TENSORS, ckpt.STATE, ckpt.MANIFEST):
        mode = stat.S_IMODE((ck / name).stat().st_mode)
        assert mode & 0o044 == 0o044, f"{name} is {oct(mode)}; it should be readable like other files"
    for name in ("config.json", "metrics.jsonl"):
        assert stat.S_IMODE((good_run / name).stat().st_mode) & 0o044 == 0o044


def test_write_atomic_uses_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        runlog.write_config(tmp_path, "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644


def test_a_run_start_removes_picture_temporaries_a_kill_left(tmp_path):
    """A SIGKILL during a sample grid or loss curve write leaves `.NAME.<hex>.tmp`; the next start removes it."""
    (tmp_path / "samples").mkdir()
    dead = [tmp_path / "samples" / ".step-000000060.png.52a2d180.tmp", tmp_path / ".loss_curve.png.0badf00d.tmp"]
    kept = [tmp_path / "samples" / "step-000000040.png", tmp_path / "loss_curve.png", tmp_path / "notes.tmp"]
    for f in dead + kept:
        f.write_bytes(b"x")
    runlog.write_config(tmp_path, "{}")
    assert [f for f in dead if f.exists()] == []
    assert all(f.exists() for f in kept)


# ----- dead-end run folders ------------------------------------------------------------------
def test_claim_folder_takes_over_a_run_without_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / ".tmp-step-000000003-1").mkdir(parents=True)
    (run / "samples").mkdir()
    (run / "config.json").write_text("")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    note = runlog.claim_folder(run)
    assert note and "starting it over from step 0" in note
    assert list(run.iterdir()) == []


def test_claim_folder_refuses_a_committed_run_and_foreign_files(tmp_path, good_run):
    with pytest.raises(UsageError, match="--resume"):
        runlog.claim_folder(good_run)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="did not write"):
        runlog.claim_folder(run)
    assert (run / "thesis.tex").read_text() == "precious"
    (tmp_path / "plain").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        runlog.claim_folder(tmp_path / "plain")


def test_resume_of_a_dead_end_folder_says_to_rerun(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    proc = run_cli("train", "--resume", run, "--quiet")
    assert proc.returncode == 1 and "stopped before its first checkpoint" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_errors_are_gankit_errors():
    assert issubclass(ckpt.CheckpointWriteError, GankitError) and issubclass(runlog.RunFileError, GankitError)
