"""Fault injection on real `gankit train` subprocesses: SIGKILLs at random moments and at
named points (mid-checkpoint, before a commit, mid-prune, mid-rewrite of the log), a full
disk (RLIMIT_FSIZE everywhere, a small tmpfs where root may mount one) and NaN losses.

Each fault ends one of two ways, both checked: the run, resumed, finishes with weights
bit-identical to an uninterrupted run's and the same metrics.jsonl (minus the timing
fields steps_per_s and elapsed_s, which measure the wall clock); or gankit stops with one
clear error line (exit 1, no traceback), the last committed checkpoint intact and no
debris (no 0-byte config.json, no temporary files or folders).

The random-kill loop makes GANKIT_FAULTS kills (default 3, so CI stays short; the long run
is ``GANKIT_FAULTS=20``, which bench/reliability.py runs). GANKIT_RELIABILITY_LOG=path makes
each test append what it tried to that JSONL file, for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import FP32
from gankit.training.persist import runlog
from gankit.training.persist.checkpoint import load_checkpoint

KILLS = int(os.environ.get("GANKIT_FAULTS", "3"))
STEPS = 10 * KILLS + 30
# log_every does not divide checkpoint_every, so most checkpoints hold pending losses.
ARGS = ["--checkpoint-every", "3", "--log-every", "2", "--sample-every", "1000", "--keep-checkpoints", "2",
        "--seed", "11", "--ema", "0.9", "-b", "16", "--g-hidden", "16,32", "--d-hidden", "32,16", "--quiet", *FP32]
LEFTOVER_PREFIXES = (".tmp-", ".del-", ".old-")


def record(check: str, tried: int, failed: int, must_hold: str) -> None:
    """Append one line for bench/reliability.py (only when it asked for it)."""
    out = os.environ.get("GANKIT_RELIABILITY_LOG")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"check": check, "tried": tried, "failed": failed, "must_hold": must_hold}) + "\n")


def train_cmd(data: Path, runs: Path, name: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "gankit.cli", "train", "--data", str(data), "--runs-dir", str(runs),
            "--name", name, "--steps", str(steps), *ARGS]


def resume_cmd(run: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "gankit.cli", "train", "--resume", str(run), "--steps", str(steps), "--quiet"]


def run(cmd: list[str], *, env: dict | None = None, fsize: int | None = None,
        timeout: float = 1800) -> subprocess.CompletedProcess:
    def limit_file_size():  # runs in the child: writes past `fsize` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    return subprocess.run(cmd, env={**os.environ, "COLUMNS": "200", **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit_file_size if fsize else None)


def committed_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.parent.name[len("step-"):]) for p in (run_dir / "checkpoints").glob("step-*/manifest.json"))


def final_tensors(run_dir: Path, steps: int) -> dict[str, torch.Tensor]:
    assert committed_steps(run_dir)[-1] == steps
    return load_file(str(run_dir / "checkpoints" / f"step-{steps:09d}" / "tensors.safetensors"))


def logged(run_dir: Path, up_to: int | None = None) -> list[dict]:
    rows = runlog.without_timing(runlog.read_rows(run_dir / runlog.METRICS))
    return [r for r in rows if up_to is None or r["step"] <= up_to]


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}: {out[-2000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert "error:" in proc.stderr, out[-2000:]
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in: {proc.stderr[-1500:]}"


def debris(run_dir: Path) -> list[str]:
    """Temporary files and folders, half-deleted checkpoints, empty config files."""
    found = []
    for p in run_dir.rglob("*"):
        rel = str(p.relative_to(run_dir))
        if p.name.startswith(LEFTOVER_PREFIXES) or p.name.endswith(".tmp"):
            found.append(rel)
        elif p.is_dir() and p.parent.name == "checkpoints" and not (p / "manifest.json").is_file():
            found.append(rel)
    config = run_dir / runlog.CONFIG
    if config.exists() and config.stat().st_size == 0:
        found.append("config.json (0 bytes)")
    return found


def half_deleted(run_dir: Path) -> list[str]:
    """step-* folders without a manifest: what a kill mid-delete used to leave."""
    folder = run_dir / "checkpoints"
    return [p.name for p in folder.glob("step-*") if not (p / "manifest.json").is_file()]


def assert_no_data_lost(run_dir: Path, reference: Path) -> None:
    """Every row logged up to the newest committed checkpoint is still in metrics.jsonl."""
    steps = committed_steps(run_dir)
    if steps:
        assert logged(run_dir, steps[-1]) == logged(reference, steps[-1]), "metrics rows were lost"


def assert_matches(run_dir: Path, reference: Path, steps: int) -> None:
    a, b = final_tensors(reference, steps), final_tensors(run_dir, steps)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ from the uninterrupted run: {different[:5]}"
    assert logged(run_dir) == logged(reference), "metrics.jsonl differs from the uninterrupted run's"
    assert debris(run_dir) == []


@pytest.fixture(scope="module")
def data(mnist_dir) -> Path:
    return mnist_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Path:
    """The uninterrupted run every faulty one must end up identical to."""
    runs = tmp_path_factory.mktemp("reference")
    proc = run(train_cmd(data, runs, "straight", STEPS))
    assert proc.returncode == 0, proc.stderr
    return runs / "straight"


def _wait(cond, proc: subprocess.Popen, timeout: float = 1200, expire_ok: bool = False) -> bool:
    """Wait until cond(), the process ends or the timeout; True when cond() held.

    A timeout is a failure ("no progress") unless expire_ok, where it is the point."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    if expire_ok:
        return False
    raise AssertionError("training made no progress")


def test_random_sigkills_then_resume_end_bit_identical(reference, tmp_path, data):
    rng = random.Random(20261201)  # fixed: the kill times are the same on every run of the test
    runs, run_dir = tmp_path, tmp_path / "killed"
    kills = launches = mid_checkpoint = mid_prune = before_first = 0
    while True:
        steps = committed_steps(run_dir) if run_dir.exists() else []
        # With no committed checkpoint the same command is run again; it takes the folder over.
        cmd = resume_cmd(run_dir, STEPS) if steps else train_cmd(data, runs, "killed", STEPS)
        env = {**os.environ, "COLUMNS": "200"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        launches += 1
        if kills < KILLS:
            before = steps[-1] if steps else 0
            if kills == 0:  # the first kill may land before the first checkpoint
                ready = _wait(lambda: (run_dir / runlog.CONFIG).exists(), proc)
            else:
                ready = _wait(lambda: (committed_steps(run_dir) or [0])[-1] > before, proc)
            if ready:
                # A random delay, cut short once the run nears this kill's last step: a fast CPU
                # runs the whole tail within 0.3 s, and a kill that misses the run tests nothing.
                latest = STEPS - 10 * (KILLS - kills)
                _wait(lambda: (committed_steps(run_dir) or [0])[-1] >= latest, proc,
                      timeout=rng.uniform(0.0, 0.3), expire_ok=True)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
                kills += 1
                names = [p.name for p in (run_dir / "checkpoints").glob(".*")] if run_dir.exists() else []
                mid_checkpoint += any(n.startswith(".tmp-") for n in names)
                mid_prune += any(n.startswith(".del-") for n in names)
                before_first += not committed_steps(run_dir)
                assert half_deleted(run_dir) == [], f"kill {kills} left a half-deleted checkpoint"
                assert_no_data_lost(run_dir, reference)
                if os.environ.get("GANKIT_FAULTS_PROGRESS"):  # long runs: what has held so far
                    with open(os.environ["GANKIT_FAULTS_PROGRESS"], "a") as f:
                        f.write(json.dumps({"kill": kills, "committed": committed_steps(run_dir),
                                            "mid_checkpoint": mid_checkpoint, "mid_prune": mid_prune}) + "\n")
                continue
        out, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, f"launch {launches} failed ({proc.returncode}): {err[-2000:]}"
        assert "Traceback" not in out + err
        break
    assert kills == KILLS, f"only {kills} of {KILLS} kills landed before the run finished; raise STEPS"
    assert_matches(run_dir, reference, STEPS)
    record(f"SIGKILL at random moments, each followed by a resume ({launches} launches; {mid_checkpoint} kills "
           f"landed mid-checkpoint, {mid_prune} mid-prune, {before_first} before the first checkpoint)", kills, 0,
           "no row lost, no half-deleted checkpoint after any kill; at the end bit-exact weights and "
           "identical metrics.jsonl vs an uninterrupted run")


# (fault point armed through GANKIT_FAULT_KILL_AT, fresh run or resume, what the kill interrupts)
FAULT_SEQUENCE = [
    ("before-replace:1", "fresh", "the first write of config.json"),
    ("mid-checkpoint:2", "fresh", "writing the second checkpoint (the folder is taken over first)"),
    ("before-replace:2", "resume", "the atomic rewrite of metrics.jsonl on resume"),
    ("before-commit:2", "resume", "the rename that commits a checkpoint"),
    ("mid-prune:1", "resume", "deleting an old checkpoint"),
]


def test_kills_at_named_points_then_resume_end_bit_identical(reference, tmp_path, data):
    run_dir = tmp_path / "pointed"
    for point, kind, what in FAULT_SEQUENCE:
        cmd = train_cmd(data, tmp_path, "pointed", STEPS) if kind == "fresh" else resume_cmd(run_dir, STEPS)
        proc = run(cmd, env={"GANKIT_FAULT_KILL_AT": point})
        assert proc.returncode == -signal.SIGKILL, f"{point} ({what}) was never reached: {proc.stderr[-1500:]}"
        assert half_deleted(run_dir) == [], f"a kill at {point} left a half-deleted checkpoint"
        assert (run_dir / runlog.CONFIG).exists() == (point != "before-replace:1")
        if (run_dir / runlog.CONFIG).exists():
            json.loads((run_dir / runlog.CONFIG).read_text())  # never empty or cut
        assert_no_data_lost(run_dir, reference)
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert any(n.startswith(".del-") for n in leftovers), "the mid-prune kill should leave a .del-* folder"
    done = run(resume_cmd(run_dir, STEPS))
    assert done.returncode == 0, done.stderr
    assert_matches(run_dir, reference, STEPS)
    record("SIGKILL at named points: config.json write, mid-checkpoint, metrics.jsonl rewrite, checkpoint "
           "commit, mid-prune", len(FAULT_SEQUENCE), 0,
           "each resumable, nothing lost; bit-exact weights and identical metrics.jsonl at the end")


# ----- a full disk ------------------------------------------------------------------------
def test_file_size_limit_at_each_write_is_a_clean_error_and_resumable(reference, tmp_path, data):
    """RLIMIT_FSIZE makes the first write past N bytes fail with EFBIG, as a full disk would."""
    run_dir = tmp_path / "full"
    # 1. config.json cannot be written: clear error, and no config.json at all (not 0 bytes).
    proc = run(train_cmd(data, tmp_path, "full", 24), fsize=200)
    assert_clean_error(proc, "config.json")
    assert not (run_dir / runlog.CONFIG).exists() and debris(run_dir) == []
    # 2. The same command again takes the dead-end folder over and runs to step 24.
    proc = run(train_cmd(data, tmp_path, "full", 24))
    assert proc.returncode == 0, proc.stderr
    config_before = (run_dir / runlog.CONFIG).read_bytes()
    # 3. A checkpoint cannot be written: clear error, the step-24 checkpoint intact, no temp folder.
    proc = run(resume_cmd(run_dir, STEPS), fsize=8192)
    assert_clean_error(proc, "cannot write the checkpoint for step 27", "step-000000024", "intact")
    assert committed_steps(run_dir)[-1] == 24 and debris(run_dir) == []
    load_checkpoint(run_dir)  # still loads, hashes and all
    # 4. The metrics log cannot grow: clear error; the cut row is dropped on the next resume.
    kept = [r for r in runlog.read_rows(run_dir / runlog.METRICS) if r["step"] <= 24]  # what the resume keeps
    size = len(runlog.rows_to_text(kept).encode())
    proc = run(resume_cmd(run_dir, STEPS), fsize=max(size, len(config_before)) + 30)
    assert_clean_error(proc, "metrics")
    assert committed_steps(run_dir)[-1] == 24 and debris(run_dir) == []
    # 5. config.json cannot be rewritten on resume: the old one stays, whole.
    proc = run(resume_cmd(run_dir, STEPS), fsize=200)
    assert_clean_error(proc, "config.json")
    assert json.loads((run_dir / runlog.CONFIG).read_text())["seed"] == 11 and debris(run_dir) == []
    # 6. With room again, the run finishes exactly as if nothing had happened.
    proc = run(resume_cmd(run_dir, STEPS))
    assert proc.returncode == 0, proc.stderr
    assert_matches(run_dir, reference, STEPS)
    record("file too large (RLIMIT_FSIZE, EFBIG) writing config.json, a checkpoint, metrics.jsonl, "
           "config.json on resume", 4, 0,
           "exit 1 with one message, last checkpoint intact, no debris; then bit-exact on resume")


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


def test_full_tmpfs_is_a_clean_error_with_the_last_checkpoint_intact(tmp_path, data):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers the write paths")
    try:
        # ~0.77 MB per checkpoint: the third one (two must be kept) no longer fits in 2 MB.
        cmd = train_cmd(data, disk, "full", 60)
        proc = run(cmd)
        assert_clean_error(proc, "No space left on device")
        run_dir = disk / "full"
        assert committed_steps(run_dir), "the disk filled before the first checkpoint; shrink the nets"
        assert debris(run_dir) == []
        state = load_checkpoint(run_dir)
        assert state.step == committed_steps(run_dir)[-1]
        record("full disk (tmpfs, ENOSPC) mid-run", 1, 0, "exit 1, last checkpoint loads, no debris")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# ----- NaN --------------------------------------------------------------------------------
def test_nan_losses_stop_cleanly_and_the_folder_can_be_reused(tmp_path, data):
    cmd = train_cmd(data, tmp_path, "nan", 30)
    cmd += ["--lr", "1e10"]
    proc = run(cmd)
    assert_clean_error(proc, "non-finite")
    run_dir = tmp_path / "nan"
    assert debris(run_dir) == []
    steps = committed_steps(run_dir)
    if steps:
        load_checkpoint(run_dir)  # the last checkpoint before the NaN is intact and finite
    else:
        # No checkpoint: --resume says why, and the same command (fixed) takes the folder over.
        proc = run(resume_cmd(run_dir, 30))
        assert proc.returncode == 1 and "stopped before its first checkpoint" in proc.stderr
        assert "Traceback" not in proc.stderr
    fixed = train_cmd(data, tmp_path, "nan", 6)
    proc = run(fixed)
    if steps:
        assert proc.returncode == 2 and "--resume" in proc.stderr
    else:
        assert proc.returncode == 0 and "starting it over from step 0" in proc.stderr, proc.stderr
    record("NaN losses (--lr 1e10)", 1, 0, "exit 1 naming the step; last checkpoint intact; folder reusable")
