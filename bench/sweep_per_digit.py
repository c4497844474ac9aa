"""Sweep of per-digit training settings on the time-to-quality protocol: which defaults draw digits soonest on a CPU.

Heavy tier (runs the real ``gankit train`` in subprocesses). Run::

    python bench/sweep_per_digit.py [--steps 8000] [--precision fp32|bf16] [--only NAME ...]
    python bench/sweep_per_digit.py --speed      # then the ten-digit steps/s, on a quiet machine

Each candidate is a set of ``gankit train --plugin per-digit`` options. It trains for a
fixed number of ``--steps`` (not wall time: the quality reached after S steps does not
depend on how loaded the machine is) on the 10k MNIST subset, with ``--eval-every``
evaluations (digit accuracy and within-digit diversity of ``--eval-samples`` generated
images, scored by the shipped classifier), in one pinned ``--precision``. The per-digit GANs are independent and seeded per digit, so digit c trained
in a two-digit run is exactly digit c of a ten-digit run: the sweep trains only the
hardest digits (``--digits``, default 2 and 5) at a fifth of the cost. A separate
``--speed`` pass times each candidate's full ten-digit step (steps/s over a short run),
which turns steps-to-quality into minutes-to-quality.
The winner became the plugin's ``train_defaults``; the table is kept in
``bench/results/sweep_per_digit.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gankit.eval.protocol import PROTOCOL_VERSION  # noqa: E402
from time_to_quality import REPO, cli, default_mnist, machine_info, read_rows, train_with_progress  # noqa: E402

BASE = ["--plugin", "per-digit"]
MLP = ["--g-hidden", "128,256", "--d-hidden", "256,128"]
WINNER = [*MLP, "-b", "32", "--beta1", "0.5", "--ema", "0.999"]  # the plugin's train_defaults
# The first is the plugin's train_defaults; each other changes one thing, except the last (gankit's base
# defaults). Each spells out every setting it tests: the plugin's defaults would fill in the rest.
CANDIDATES: dict[str, list[str]] = {
    "mlp 128-256/256-128 b32 beta1 .5 ema .999 (defaults)": WINNER,
    "mlp 128-256/256-128 b32 beta1 .5, no EMA": [*MLP, "-b", "32", "--beta1", "0.5", "--ema", "0"],
    "mlp 64-128/128-64 b32 beta1 .5 ema .999": [
        "--g-hidden", "64,128", "--d-hidden", "128,64", "-b", "32", "--beta1", "0.5", "--ema", "0.999"],
    "mlp 256-512/512-256 b32 beta1 .5 ema .999": [
        "--g-hidden", "256,512", "--d-hidden", "512,256", "-b", "32", "--beta1", "0.5", "--ema", "0.999"],
    "mlp 128-256/256-128 b16 beta1 .5 ema .999": [*MLP, "-b", "16", "--beta1", "0.5", "--ema", "0.999"],
    "mlp 128-256/256-128 b64 beta1 .5 ema .999 (the GPU recipe)": [
        *MLP, "-b", "64", "--beta1", "0.5", "--ema", "0.999"],
    "mlp 128-256/256-128 b32 beta1 .5 ema .999 lr 4e-4": [*WINNER, "--lr", "4e-4"],
    "dcgan 32-16/16-32-32-32 b32 beta1 .5 ema .999": [
        "--arch", "dcgan", "--g-hidden", "32,16", "--d-hidden", "16,32,32,32", "-b", "32", "--beta1", "0.5",
        "--ema", "0.999"],
    "gankit's base defaults (256-512-1024 / 1024-512-256, b32, beta1 0.9, no EMA)": [
        "--g-hidden", "256,512,1024", "--d-hidden", "1024,512,256", "-b", "32", "--beta1", "0.9", "--ema", "0"],
}
MARKS = (1000, 2000, 4000, 6000, 8000)


def quality_run(name: str, extra: list[str], work: Path, args) -> dict:
    """Train ``args.steps`` steps on ``args.digits`` with evaluations; the eval points."""
    run = work / f"q{abs(hash(name)) % 10**8}"
    cmd = cli("train", *BASE, *extra, "--digits", args.digits, "--data", args.data, "--steps", args.steps,
              "--precision", args.precision,
              "--seed", args.seed, "--device", "cpu", "--log-every", 50, "--name", run.name,
              "--runs-dir", run.parent, "-q", "--eval-every", args.eval_every, "--eval-samples", args.eval_samples,
              "--checkpoint-every", args.steps)
    train_with_progress(name[:24], cmd, run, 3600 * 3)
    rows = read_rows(run)
    points = [{"step": r["step"], "accuracy": r["eval/digit_accuracy"], "fd": r.get("eval/frechet_distance"),
               "diversity": r.get("eval/diversity_ratio"),
               "per_digit": {k.rsplit("_", 1)[-1]: v for k, v in r.items() if k.startswith("eval/digit_accuracy_")}}
              for r in rows if "eval/digit_accuracy" in r]
    shutil.rmtree(run, ignore_errors=True)
    return {"points": points, "digits": args.digits, "steps": args.steps}


def speed_run(extra: list[str], work: Path, args) -> float:
    """Steps/s of the full ten-digit step (no evaluations), from the log rows after the first."""
    run = work / "speed"
    shutil.rmtree(run, ignore_errors=True)
    cmd = cli("train", *BASE, *extra, "--data", args.data, "--steps", 10**9, "--max-seconds", args.speed_seconds,
              "--seed", args.seed, "--device", "cpu", "--log-every", 20, "--name", run.name, "--runs-dir", run.parent,
              "-q", "--checkpoint-every", 10**8, "--sample-every", 10**8)
    subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
    rows = [r for r in read_rows(run) if "elapsed_s" in r]
    shutil.rmtree(run, ignore_errors=True)
    (s0, t0), (s1, t1) = (rows[0]["step"], rows[0]["elapsed_s"]), (rows[-2]["step"], rows[-2]["elapsed_s"])
    return (s1 - s0) / max(t1 - t0, 1e-9)


def first_step(points: list[dict], target: float) -> int | None:
    hit = next((p for p in points if p["accuracy"] >= target), None)
    return hit["step"] if hit else None


def table(record: dict, target: float) -> str:
    lines = ["| candidate | " + " | ".join(f"acc / div @ {m:,}" for m in MARKS) +
             f" | first step >= {100 * target:.0f}% | 10-digit steps/s | est. minutes to {100 * target:.0f}% |",
             "|---|" + "---:|" * len(MARKS) + "---:|---:|---:|"]
    for name, r in record["runs"].items():
        pts = {p["step"]: p for p in r.get("points", [])}
        cells = [(f"{100 * pts[m]['accuracy']:.1f}%" + (f" / {pts[m]['diversity']:.2f}" if pts[m].get("diversity") is not None
                                                           else "")) if m in pts else "" for m in MARKS]
        hit = first_step(r.get("points", []), target)
        rate = r.get("steps_per_s")
        minutes = f"{hit / rate / 60:.1f}" if hit and rate else ("not reached" if rate else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {hit if hit else '-'} | "
                     f"{f'{rate:.1f}' if rate else ''} | {minutes} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--digits", default="2,5")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--speed", action="store_true", help="only (re)time the ten-digit step of each candidate")
    ap.add_argument("--speed-seconds", type=float, default=25.0)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="of the quality runs (pinned, so every candidate trains the same maths; "
                         "the --speed pass uses the default, auto)")
    ap.add_argument("--only", nargs="*", help="substrings of candidate names to run")
    ap.add_argument("--data", default=default_mnist())
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gankit-sweep-"))
    picked = {k: v for k, v in CANDIDATES.items() if not args.only or any(s in k for s in args.only)}
    args.out.mkdir(parents=True, exist_ok=True)
    result_path = args.out / "sweep_per_digit.json"
    record = json.loads(result_path.read_text()) if result_path.exists() else {"runs": {}}
    try:
        for name, extra in picked.items():
            entry = record["runs"].setdefault(name, {"args": BASE + extra})
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            if args.speed:
                entry["steps_per_s"] = round(speed_run(extra, work, args), 2)
                entry["speed_load_before"] = load
                print(f"[{name}] {entry['steps_per_s']} steps/s (load {load})", flush=True)
            else:
                entry.update(quality_run(name, extra, work, args))
            record["machine"] = machine_info()
            record["protocol"] = PROTOCOL_VERSION
            if not args.speed:
                record["precision"] = args.precision
            result_path.write_text(json.dumps(record, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(record, args.target)
    m = record["machine"]
    (args.out / "sweep_per_digit.md").write_text(
        "# per-digit settings sweep\n\n`python bench/sweep_per_digit.py` then `--speed`. Digit accuracy and "
        "within-digit diversity ratio (mean pairwise classifier-feature distance within a digit over the "
        "same for real digits: 1 = as varied as real, near 0 = one image repeated; evaluation protocol "
        f"v{record.get('protocol', '?')}; quality runs in {record.get('precision', '?')}) of "
        f"{args.eval_samples} generated images of digits {args.digits} (the hardest two) after S steps, from the "
        "training-time evaluator; steps/s of the full ten-digit step timed separately, on a quiet machine; "
        f"estimated minutes = first step at the target / steps/s.\n\n{text}\n\nMachine: {m}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
