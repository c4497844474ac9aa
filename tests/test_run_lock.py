"""Two processes on one run folder lose nothing: the run-folder lock, with real processes.

A holder is stopped with SIGSTOP at a known point (after its first checkpoint, or once
it holds the lock), so the second writer meets a live run every time, however loaded
the machine is; it must exit 1 with one line naming the holder's PID and touch nothing.
The holder then goes on (SIGCONT), and its run must end bit-identical (weights and
metrics.jsonl, minus the timing fields) to an uninterrupted run of the same command.
A SIGKILLed holder leaves a lock file that blocks nobody. A takeover of a dead-end
folder deletes only what gankit wrote, at any depth.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import FP32, run_cli, shared_mnist
from gankit.errors import UsageError
from gankit.training.persist import lock, runlog

STEPS = 40
ARGS = ["--steps", str(STEPS), "--checkpoint-every", "10", "--log-every", "5", "--sample-every", "20",
        "--keep-checkpoints", "2", "--seed", "5", "--ema", "0.9", "-b", "16", "--g-hidden", "16,32",
        "--d-hidden", "32,16", "--quiet", *FP32]
TIMING = ("steps_per_s", "elapsed_s")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """256 real MNIST training images as an IDX folder: quick to load."""
    from gankit.data.idx import read_idx, write_idx

    mnist = shared_mnist()
    folder = tmp_path_factory.mktemp("data")
    write_idx(folder / "train-images-idx3-ubyte.gz",
              np.ascontiguousarray(read_idx(mnist / "train-images-idx3-ubyte.gz")[:256]))
    write_idx(folder / "train-labels-idx1-ubyte.gz",
              np.ascontiguousarray(read_idx(mnist / "train-labels-idx1-ubyte.gz")[:256]))
    return folder


def train_argv(data: Path, runs: Path, name: str, steps: int = STEPS) -> list[str]:
    args = list(ARGS)
    args[1] = str(steps)
    return ["train", "--data", str(data), "--runs-dir", str(runs), "--name", name, *args]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gankit.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Path:
    """The uninterrupted run every other run must equal."""
    runs = tmp_path_factory.mktemp("reference")
    run_cli(*train_argv(data, runs, "ref"), check=True)
    return runs / "ref"


def committed(run: Path) -> list[int]:
    return sorted(int(p.parent.name[5:]) for p in (run / "checkpoints").glob("step-*/manifest.json"))


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the holder ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def holds_lock(run: Path, proc: subprocess.Popen) -> bool:
    try:
        return (run / lock.LOCK_NAME).read_text().split()[:1] == [str(proc.pid)]
    except OSError:
        return False


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file under ``run`` (but the lock) with its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != lock.LOCK_NAME}


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / runlog.METRICS).read_text().splitlines()]


def assert_same_as(reference: Path, run: Path) -> None:
    """Bit-identical final weights (and RNG and optimizer state) and the same metrics rows."""
    want = load_file(str(reference / "checkpoints" / f"step-{STEPS:09d}" / "tensors.safetensors"))
    got = load_file(str(run / "checkpoints" / f"step-{STEPS:09d}" / "tensors.safetensors"))
    assert want.keys() == got.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []
    assert rows(reference) == rows(run)


def assert_refused_naming(proc: subprocess.CompletedProcess | tuple[int, str], holder_pid: int) -> None:
    code, err = (proc.returncode, proc.stderr) if isinstance(proc, subprocess.CompletedProcess) else proc
    assert code == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "in use by another gankit process" in lines[0] and f"pid {holder_pid}" in lines[0], err


# ----- with real processes ----------------------------------------------------------------------
def second_writer_changes_nothing(first, run: Path, second_argv, reference) -> None:
    """With ``first`` paused mid-run, ``gankit second_argv`` is refused naming its PID and changes
    no byte of ``run``; ``first`` then finishes as the uninterrupted reference run did."""
    try:
        first.send_signal(signal.SIGSTOP)
        before = snapshot(run)
        second = run_cli(*second_argv, timeout=300)
        assert_refused_naming(second, first.pid)
        assert snapshot(run) == before
    finally:
        first.send_signal(signal.SIGCONT)
    code, err = finish(first)
    assert code == 0, err
    assert_same_as(reference, run)


@pytest.mark.slow
def test_two_trains_on_one_name(reference, data, tmp_path):
    first = start(*train_argv(data, tmp_path, "x"))
    run = tmp_path / "x"
    try:
        wait_until(lambda: committed(run), first, "its first checkpoint")
    except BaseException:
        first.kill()
        finish(first, 30)
        raise
    # Not a byte changed: the live run's config.json and metrics.jsonl are kept.
    second_writer_changes_nothing(first, run, train_argv(data, tmp_path, "x"), reference)


@pytest.mark.slow
def test_two_resumes(reference, data, tmp_path):
    run = tmp_path / "x"
    run_cli(*train_argv(data, tmp_path, "x", steps=20), check=True)
    first = start("train", "--resume", run, "--steps", STEPS, "--quiet")
    try:
        wait_until(lambda: committed(run)[-1] > 20, first, "a checkpoint after the resume")
    except BaseException:
        first.kill()
        finish(first, 30)
        raise
    # The live run's metrics.jsonl is not rewritten under it.
    second_writer_changes_nothing(first, run, ("train", "--resume", run, "--steps", STEPS, "--quiet"), reference)


@pytest.mark.slow
def test_a_resume_during_an_export_into_the_run_folder(reference, data, tmp_path):
    run = tmp_path / "x"
    run_cli(*train_argv(data, tmp_path, "x", steps=20), check=True)
    model = run / "model.onnx"
    export = start("export", run, "-o", model)
    try:
        wait_until(lambda: holds_lock(run, export), export, "the export to hold the lock")
        export.send_signal(signal.SIGSTOP)
        before = snapshot(run)
        resume = run_cli("train", "--resume", run, "--steps", STEPS, "--quiet", timeout=300)
        assert_refused_naming(resume, export.pid)
        assert snapshot(run) == before
    finally:
        export.send_signal(signal.SIGCONT)
    code, err = finish(export)
    assert code == 0, err
    exported = model.read_bytes()
    resumed = run_cli("train", "--resume", run, "--steps", STEPS, "--quiet", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as(reference, run)
    assert model.read_bytes() == exported  # the export's file, inside the run folder, survived the resume


@pytest.mark.slow
def test_a_resume_beside_an_export_elsewhere(reference, data, tmp_path):
    """An export that writes outside the run only reads it: both run at once and both succeed."""
    run = tmp_path / "x"
    run_cli(*train_argv(data, tmp_path, "x", steps=20), check=True)
    export = start("export", run, "-o", tmp_path / "elsewhere.onnx")
    resume = start("train", "--resume", run, "--steps", STEPS, "--quiet")
    (code_e, err_e), (code_r, err_r) = finish(export), finish(resume)
    assert code_e == 0, err_e
    assert code_r == 0, err_r
    assert_same_as(reference, run)
    from gankit.runtime import load_generator

    assert load_generator(tmp_path / "elsewhere.onnx").card.training_steps >= 20


@pytest.mark.slow
def test_kill_9_of_the_holder_then_resume(reference, data, tmp_path):
    run = tmp_path / "x"
    first = start(*train_argv(data, tmp_path, "x"))
    wait_until(lambda: committed(run), first, "its first checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (run / lock.LOCK_NAME).read_text().split()[0] == str(first.pid)  # the stale lock file is there
    resumed = run_cli("train", "--resume", run, "--quiet", timeout=600)
    assert resumed.returncode == 0, resumed.stderr  # a dead holder's lock blocks nobody
    assert_same_as(reference, run)


@pytest.mark.slow
def test_launcher_of_nproc_2_holds_the_lock(data, tmp_path):
    """`--nproc 2`: the launcher holds the lock for its ranks (they do not take it themselves)."""
    run = tmp_path / "x"
    launcher = start(*train_argv(data, tmp_path, "x"), "--nproc", "2")
    try:
        wait_until(lambda: holds_lock(run, launcher), launcher, "the launcher to hold the lock")
        launcher.send_signal(signal.SIGSTOP)
        second = run_cli(*train_argv(data, tmp_path, "x"), timeout=300)
        assert_refused_naming(second, launcher.pid)
    finally:
        launcher.send_signal(signal.SIGCONT)
    code, err = finish(launcher)
    assert code == 0, err
    assert committed(run)[-1] == STEPS


# ----- takeover keeps what gankit did not write --------------------------------------------------
def _dead_end(run: Path) -> None:
    """What a run killed before its first checkpoint leaves (PNG and metrics markers included)."""
    (run / "samples").mkdir(parents=True)
    (run / "checkpoints" / ".tmp-step-000000010-99").mkdir(parents=True)
    (run / "checkpoints" / ".tmp-step-000000010-99" / "tensors.safetensors").write_bytes(b"\x08\x00")
    (run / "config.json").write_text(json.dumps({"plugin": "unconditional", "steps": 10, "net": {}}))
    (run / "metrics.jsonl").write_text('{"step": 5, "d_loss": 1.0}\n{"step": 1')
    (run / "samples" / "step-000000005.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (run / "loss_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (run / ".metrics.jsonl.123.tmp").write_text("")


@pytest.mark.parametrize("user_file", ["samples/notes.txt", "checkpoints/README", "tb/mine.txt", "notes.txt",
                                       "checkpoints/.tmp-step-000000010-99/extra.bin", "samples/step-000000001.png"])
def test_takeover_refuses_and_deletes_nothing_when_a_user_file_is_inside(tmp_path, user_file):
    run = tmp_path / "run"
    _dead_end(run)
    (run / "tb").mkdir()
    target = run / user_file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"precious, not a PNG")  # also under a name gankit uses: its content says whose it is
    before = snapshot(run)
    with pytest.raises(UsageError, match=f"did not write .*{user_file.split('/')[-1]}"):
        runlog.claim_folder(run)
    assert snapshot(run) == before


def test_takeover_clears_what_gankit_wrote_and_keeps_the_lock(tmp_path):
    run = tmp_path / "run"
    _dead_end(run)
    (run / lock.LOCK_NAME).write_text("")
    assert "starting it over" in runlog.claim_folder(run)
    assert [p.name for p in run.iterdir()] == [lock.LOCK_NAME]


def test_takeover_refuses_symlinks_and_foreign_configs(tmp_path):
    run = tmp_path / "run"
    _dead_end(run)
    (tmp_path / "outside.txt").write_text("x")
    (run / "samples" / "link.png").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(UsageError, match="link.png"):
        runlog.claim_folder(run)
    (run / "samples" / "link.png").unlink()
    (run / "config.json").write_text(json.dumps({"my": "own config"}))
    with pytest.raises(UsageError, match="config.json"):
        runlog.claim_folder(run)
    assert (tmp_path / "outside.txt").read_text() == "x"


@pytest.mark.slow
def test_cli_takeover_keeps_a_user_file_in_samples(data, tmp_path):
    run = tmp_path / "x"
    _dead_end(run)
    (run / "samples" / "notes.txt").write_text("precious")
    proc = run_cli(*train_argv(data, tmp_path, "x"), timeout=300)
    assert proc.returncode == 2 and "samples/notes.txt" in proc.stderr, proc.stderr
    assert (run / "samples" / "notes.txt").read_text() == "precious"
    (run / "samples" / "notes.txt").unlink()
    proc = run_cli(*train_argv(data, tmp_path, "x", steps=10), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "stopped before its first checkpoint" in proc.stderr


# ----- the lock itself ------------------------------------------------------------------------------
HOLD = ("import sys, time\n"
        "from gankit.training.persist.lock import acquire\n"
        "acquire(sys.argv[1], 'holder')\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")


def test_lock_names_the_holder_and_a_killed_holder_blocks_nobody(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.RunFolderBusy, match=f"pid {holder.pid}, gankit holder"):
            lock.acquire(run, "second")
    finally:
        holder.kill()
        holder.wait()
    key = lock.acquire(run, "third")  # the file is still there; the kernel dropped the dead holder's lock
    assert (run / lock.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    again = lock.acquire(run, "re-entrant")  # this process already holds it
    lock.release(again)
    assert lock.held_by_this_process(run)
    lock.release(key)
    assert not lock.held_by_this_process(run)
    assert not (run / lock.LOCK_NAME).exists()  # the holder removes it when done


def test_lock_of_a_new_folder_that_stays_empty_leaves_nothing(tmp_path):
    with lock.run_folder_lock(tmp_path / "runs" / "new", "train"):
        assert (tmp_path / "runs" / "new" / lock.LOCK_NAME).is_file()
    assert not (tmp_path / "runs").exists()  # and the parent it made for it
    with pytest.raises(UsageError, match="not a folder"):
        (tmp_path / "file").write_text("x")
        lock.acquire(tmp_path / "file", "train")


def test_lock_file_that_is_a_fifo_or_symlink_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / lock.LOCK_NAME)
    with pytest.raises(lock.RunLockError, match="not a regular file"):
        lock.acquire(run, "train")
    (run / lock.LOCK_NAME).unlink()
    (run / lock.LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(lock.RunLockError):
        lock.acquire(run, "train")
    assert not (tmp_path / "elsewhere").exists()


RACE = ("import sys, time\n"
        "from gankit.training.persist.lock import acquire, RunFolderBusy\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "try:\n"
        "    acquire(sys.argv[1], 'racer')\n"
        "    print('won', flush=True)\n"
        "    time.sleep(8)\n"
        "except RunFolderBusy as exc:\n"
        "    print('lost', exc, flush=True)\n")


@pytest.mark.slow
def test_racers_on_a_new_folder_get_one_lock(tmp_path):
    """Processes that lock the same new folder at the same instant: exactly one wins, each time."""
    for attempt in range(2):
        folder = tmp_path / f"runs{attempt}" / "new"
        at = time.time() + 4.0  # after every interpreter has started
        racers = [subprocess.Popen([sys.executable, "-c", RACE, str(folder), str(at)], stdout=subprocess.PIPE,
                                   text=True) for _ in range(4)]
        outcomes = [r.communicate(timeout=60)[0].split()[0] for r in racers]
        assert sorted(outcomes) == ["lost", "lost", "lost", "won"], outcomes
