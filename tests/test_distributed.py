"""Multi-process training on CPU: two real gloo ranks (`gankit train --nproc 2`), tiny nets, real MNIST.

What is checked, each against a one-process run with the same seed and global batch:
* DDP (unconditional and per-digit) gives the same weights within the tolerance below;
* --shard-digits gives every digit the same weights, and one checkpoint for all digits;
* a SIGKILL of one rank stops the other within seconds (exit 1, naming the rank), the last
  committed checkpoint survives, and a resume ends bit-identical to an uninterrupted run;
* bad --nproc / --shard-digits / resume combinations exit 2 with one line.

Tolerance, from the arithmetic rather than from one machine's rounding. DDP computes each
weight gradient as (1/N) * sum over ranks of per-rank batch means: the same fp32 sum as one
process, re-associated. With unit roundoff u = 2**-24 and reduction lengths n of at most
the fan-in plus the batch (here <= 800), an element's gradient differs by at most about
n*u ~ 5e-5 of the sum of the absolute terms. Adam divides the gradient by its own running
magnitude, so for an element whose terms do not cancel (|g| comparable to the sum of |terms|)
the update moves by at most ~5e-5*lr per step, and the G<->D coupling at most doubles that
per step: well under 1e-2 * lr * steps, the elementwise bound used. Where the terms nearly
cancel (|g| close to zero but above Adam's eps), the re-association can flip the update's
sign, up to 2*lr on that element. Such elements are rare, so the test allows them in at most
0.1% of the elements, and bounds each tensor's total change by 1e-3 of its norm, which a few
flipped elements stay within and a missing or misaligned all-reduce (O(lr) on most
elements, ~1e-1 of the norm here) does not. A resume, by contrast, repeats the very same
sums in the same order, so kill-and-resume is compared bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FP32, run_cli

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPU cores for 2 ranks")

STEPS, LR = 12, 2e-4
TINY = ["--g-hidden", "16", "--d-hidden", "16", "--z-dim", "8", "--d-dropout", "0", "--device", "cpu",
        "--steps", str(STEPS), "--lr", str(LR), "--log-every", "3", "--checkpoint-every", "4",
        "--sample-every", "1000", "--quiet", *FP32]
RUNS = {
    "unconditional": ["--plugin", "unconditional", "--batch-size", "8"],
    # Three digits over two ranks: an uneven split (2 + 1) for --shard-digits.
    "per-digit": ["--plugin", "per-digit", "--digits", "0,1,2", "--batch-size", "4"],
}
TIMING = ("steps_per_s", "elapsed_s")


class Runs:
    """Training runs made once per module, on demand: (plugin, variant) -> run folder."""

    def __init__(self, root: Path, mnist: Path):
        self.root, self.mnist, self.done = root, mnist, {}

    def get(self, plugin: str, *extra: str, env: dict | None = None, expect: int = 0):
        key = (plugin, extra, tuple(sorted((env or {}).items())))
        if key not in self.done:
            name = f"{plugin}-{len(self.done)}"
            proc = run_cli("train", "--data", self.mnist, *RUNS[plugin], *TINY, *extra, "--runs-dir", self.root,
                           "--name", name, env=env, timeout=600)
            assert proc.returncode == expect, proc.stderr
            self.done[key] = (self.root / name, proc)
        return self.done[key]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_dir) -> Runs:
    return Runs(tmp_path_factory.mktemp("dist-runs"), mnist_dir)


def checkpoint(run: Path, step: int = STEPS) -> tuple[dict, dict]:
    folder = run / "checkpoints" / f"step-{step:09d}"
    return load_file(str(folder / "tensors.safetensors")), json.loads((folder / "state.json").read_text())


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_equivalent(a: dict, b: dict) -> None:
    """Float tensors within the tolerance of the module docstring; integer ones (RNG states) equal."""
    assert a.keys() == b.keys()
    diffs = []
    for key in sorted(a):
        if not a[key].dtype.is_floating_point:
            assert torch.equal(a[key], b[key]), key
            continue
        x, y = a[key].double(), b[key].double()
        assert (x - y).norm() <= 1e-3 * x.norm() + 1e-12, f"{key}: |diff| {(x - y).norm():.3g} vs |x| {x.norm():.3g}"
        diffs.append((x - y).abs().flatten())
    every = torch.cat(diffs)
    over = (every > 1e-2 * LR * STEPS).double().mean().item()
    assert over <= 1e-3, f"{over:.2%} of elements differ by more than 1e-2*lr*steps (max {every.max():.3g})"


def assert_same_rows(one: list[dict], two: list[dict]) -> None:
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for r1, r2 in zip(one, two):
        assert r1.keys() == r2.keys()
        for key in r1:
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), (r1["step"], key)


@pytest.mark.parametrize("plugin", sorted(RUNS))
def test_ddp_matches_one_process(runs, plugin):
    one, _ = runs.get(plugin)
    two, _ = runs.get(plugin, "--nproc", "2")
    (t1, s1), (t2, s2) = checkpoint(one), checkpoint(two)
    assert_equivalent(t1, t2)
    # Same data and noise streams as one process: the sampler position and the noise RNG match exactly.
    assert s1["sampler"] == s2["sampler"]
    assert torch.equal(t1["rng.noise"], t2["rng.noise"])
    assert s2["extra"]["world_size"] == 2 and s2["extra"]["parallel"] == "ddp"
    assert_same_rows(rows(one), rows(two))
    # Only rank 0 wrote: one metrics file, one checkpoint series, no stray temporary folders.
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-000000008", "step-000000012"]


def test_shard_digits_matches_one_process_per_digit(runs):
    one, _ = runs.get("per-digit")
    shard, _ = runs.get("per-digit", "--nproc", "2", "--shard-digits")
    (t1, s1), (t2, s2) = checkpoint(one), checkpoint(shard)
    assert_equivalent(t1, t2)
    assert s2["config"]["classes"] == [0, 1, 2]  # one checkpoint for all digits, as one process writes
    assert s1["sampler"] == s2["sampler"]
    assert s2["extra"]["parallel"] == "shard-digits"
    assert_same_rows(rows(one), rows(shard))
    assert json.loads((shard / "config.json").read_text())["classes"] == [0, 1, 2]


def test_kill_one_rank_then_resume_equals_uninterrupted(runs):
    full, _ = runs.get("unconditional", "--nproc", "2")
    started = time.monotonic()
    killed, proc = runs.get("unconditional", "--nproc", "2", env={"GANKIT_FAULT_KILL_AT": "rank1-step:7"}, expect=1)
    assert "rank 1 of 2 was killed by SIGKILL" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 120  # includes start-up; the stop itself takes seconds
    kept = sorted(p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert kept == ["step-000000004"]  # the step-8 checkpoint never happened; step 4 is intact
    resumed = run_cli("train", "--resume", killed, "--nproc", "2", "--quiet", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    (ta, sa), (tb, sb) = checkpoint(full), checkpoint(killed)
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert sa["sampler"] == sb["sampler"]
    assert rows(full) == rows(killed)


def test_torchrun_gives_the_same_run_as_nproc(runs):
    """torchrun's own launcher (its rendezvous, the standard variables) runs the very same training."""
    two, _ = runs.get("unconditional", "--nproc", "2")
    name = "torchrun"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "gankit", "train",
         "--data", str(runs.mnist), *RUNS["unconditional"], *TINY, "--runs-dir", str(runs.root), "--name", name],
        capture_output=True, text=True, timeout=600,
        # The thread count `--nproc` gives each rank: matmul blocking, so the rounding, follows it.
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // 2)))})
    assert proc.returncode == 0, proc.stderr
    (ta, _), (tb, sb) = checkpoint(two), checkpoint(runs.root / name)
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert sb["extra"]["world_size"] == 2
    assert rows(two) == rows(runs.root / name)


def test_resume_with_another_world_size_is_a_usage_error(runs):
    two, _ = runs.get("unconditional", "--nproc", "2")
    proc = run_cli("train", "--resume", two, "--steps", str(STEPS + 4), timeout=300)
    assert proc.returncode == 2
    assert "trained with --nproc 2; resume it the same way" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc must be at least 1"),
    (["--nproc", "100000"], "more processes than this machine's"),
    (["--nproc", "2", "--batch-size", "7"], "does not split evenly over 2 processes"),
    (["--nproc", "2", "--shard-digits"], "--shard-digits needs a plugin"),
    (["--plugin", "per-digit", "--digits", "3", "--nproc", "2", "--shard-digits"], "needs at least 2 digits"),
])
def test_bad_parallel_options_exit_2(tmp_path, mnist_dir, args, message):
    proc = run_cli("train", "--data", mnist_dir, "--steps", "2", "--device", "cpu", "--runs-dir", tmp_path, *args,
                   timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_exits_2(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--steps", "2", "--device", "cuda", "--nproc", "2",
                   "--runs-dir", tmp_path, timeout=300)
    assert proc.returncode == 2
    assert "--device cuda" in proc.stderr and "Traceback" not in proc.stderr
