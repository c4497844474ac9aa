"""Time to quality: how many minutes of CPU training the conditional plugin needs to draw the digit asked for.

Heavy tier (runs the real ``gankit train`` in a subprocess). Run::

    python bench/time_to_quality.py [--minutes 10] [--baseline] [--train-args "..."]

It trains the conditional plugin's recommended configuration (`MAIN_ARGS`, or
``--train-args``) on the 10k-image MNIST subset for ``--minutes`` of wall time
(``--max-seconds``) with ``--eval-every K``: every K steps the trainer generates
``--eval-samples`` images spread evenly over the ten digits from fixed noise and the
shipped digit classifier scores them (``eval/digit_accuracy`` rows in metrics.jsonl).
K is picked so that an evaluation comes every ``--eval-seconds`` (default 25 s): a short
calibration run of the same command measures its steps per second first (pass
``--eval-every K`` to skip it).

Each evaluation is placed on the time axis at the training process's elapsed wall time
when it ran (the ``elapsed_s`` of the loss rows logged at or around its step). That time
includes the evaluations themselves (a few seconds each) and checkpoint writes, as a
user running the same command would see; the summary says how many evaluations there
were. ``bench/results/time_to_quality.png`` draws digit accuracy (%) against minutes,
with the ``--target`` line (95%), and the script prints when the target was first
reached.

``--baseline`` also trains a plain cGAN, the PyTorch seed's recipe made conditional:
its MLPs (G 256-512-1024, D 1024-512-256 with dropout 0.3, LeakyReLU 0.2), BCE, Adam 2e-4
and batch 32 (``--preset pytorch-mlp``), the label concatenated to z and to the
flattened image (``--option d_cond=concat``). gankit feeds labels through a learned
embedding rather than a fixed one-hot vector; with ``embed_dim=10`` that is a one-hot
vector times a learned 10x10 matrix feeding the first layer, the same family of
functions. Both curves go in one PNG. The runs are sequential, each with the whole
machine; on a shared machine other load slows both, so the header records the load.

Outputs (``--out``, default bench/results): ``time_to_quality.png`` and
``time_to_quality.json`` (the curves, K, the commands, the machine). ``--work-dir`` keeps
the run folders; ``--replot`` redraws from runs already in ``--work-dir`` without training.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from leaderboard import default_mnist, machine_info  # noqa: E402  (bench/ is on sys.path as the script's folder)

# The conditional plugin's recommended training command (see the docstring of
# plugins/gankit_plugins/conditional.py); --train-args replaces it.
MAIN_ARGS = ["--plugin", "conditional"]
BASELINE_ARGS = ["--plugin", "conditional", "--preset", "pytorch-mlp", "--option", "d_cond=concat",
                 "--option", "embed_dim=10"]
UNREACHABLE_STEPS = 1_000_000_000
LOG_EVERY = 50
CALIBRATION_SECONDS = 15.0


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "gankit.cli", *map(str, args)]


def read_rows(run: Path) -> list[dict]:
    rows = []
    try:
        text = (run / "metrics.jsonl").read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written
    return rows


def eval_curve(rows: list[dict]) -> list[dict]:
    """Eval rows as {step, seconds, accuracy}, each timed from the loss rows around its step."""
    loss = [(r["step"], r["elapsed_s"]) for r in rows if "elapsed_s" in r]
    points = []
    for r in rows:
        if "eval/digit_accuracy" not in r:
            continue
        step = r["step"]
        before = [p for p in loss if p[0] <= step]
        after = [p for p in loss if p[0] >= step]
        if not before and not after:
            continue
        if before and (before[-1][0] == step or not after):
            seconds = before[-1][1]
        elif not before:
            seconds = after[0][1] * step / max(after[0][0], 1)
        else:  # between two log rows: interpolate on steps
            (s0, t0), (s1, t1) = before[-1], after[0]
            seconds = t0 + (t1 - t0) * (step - s0) / (s1 - s0)
        points.append({"step": step, "seconds": round(seconds, 2), "accuracy": r["eval/digit_accuracy"],
                       "frechet_distance": r.get("eval/frechet_distance")})
    return points


def first_reaching(points: list[dict], target: float) -> dict | None:
    return next((p for p in points if p["accuracy"] >= target), None)


def train_command(args: list[str], run: Path, seconds: float, seed: int, data: str, eval_every: int,
                  eval_samples: int) -> list[str]:
    cmd = cli("train", *args, "--data", data, "--steps", UNREACHABLE_STEPS, "--max-seconds", seconds,
              "--seed", seed, "--device", "cpu", "--log-every", LOG_EVERY, "--name", run.name,
              "--runs-dir", run.parent, "-q")
    if eval_every:
        cmd += ["--eval-every", str(eval_every), "--eval-samples", str(eval_samples)]
    return cmd


def calibrate(args: list[str], work: Path, seed: int, data: str) -> float:
    """Steps per second of ``args`` on this machine now, from a short run (first log interval skipped)."""
    run = work / "calibration"
    shutil.rmtree(run, ignore_errors=True)
    cmd = train_command(args, run, CALIBRATION_SECONDS, seed, data, 0, 0)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"calibration run failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    rows = [r for r in read_rows(run) if "elapsed_s" in r]
    shutil.rmtree(run, ignore_errors=True)
    if len(rows) >= 3:  # rate over everything after the first interval (warm-up)
        (s0, t0), (s1, t1) = (rows[0]["step"], rows[0]["elapsed_s"]), (rows[-1]["step"], rows[-1]["elapsed_s"])
        return (s1 - s0) / max(t1 - t0, 1e-9)
    return rows[-1]["step"] / max(rows[-1]["elapsed_s"], 1e-9)


def pick_eval_every(steps_per_s: float, eval_seconds: float) -> int:
    """Steps between evaluations for one every ``eval_seconds``, on a log row when that is long enough."""
    k = max(1, round(steps_per_s * eval_seconds))
    return max(LOG_EVERY, round(k / LOG_EVERY) * LOG_EVERY) if k >= LOG_EVERY else k


def train_with_progress(label: str, cmd: list[str], run: Path, seconds: float) -> None:
    """Run the training, printing each evaluation as it lands in metrics.jsonl."""
    log = run.parent / f"{run.name}.log"
    print(f"[{label}] gankit {' '.join(shlex.quote(c) for c in cmd[3:])}", flush=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        shown = 0
        deadline = time.monotonic() + seconds * 2 + 300
        while proc.poll() is None:
            time.sleep(5)
            points = eval_curve(read_rows(run))
            for p in points[shown:]:
                print(f"[{label}] {p['seconds'] / 60:5.2f} min  step {p['step']:>7}  "
                      f"digit accuracy {100 * p['accuracy']:5.1f}%", flush=True)
            shown = len(points)
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                sys.exit(f"[{label}] training did not stop on its budget; killed (log: {log})")
    if proc.returncode != 0:
        sys.exit(f"[{label}] training failed (exit {proc.returncode}); last lines of {log}:\n"
                 + "\n".join(log.read_text(errors="replace").splitlines()[-10:]))


def summary_line(label: str, points: list[dict], target: float) -> str:
    if not points:
        return f"{label}: no evaluations"
    hit = first_reaching(points, target)
    if hit:
        return (f"{label}: {100 * target:.0f}% digit accuracy first reached at {hit['seconds'] / 60:.2f} min "
                f"(step {hit['step']}, {100 * hit['accuracy']:.1f}%)")
    best = max(points, key=lambda p: p["accuracy"])
    return (f"{label}: {100 * target:.0f}% not reached in {points[-1]['seconds'] / 60:.1f} min; best "
            f"{100 * best['accuracy']:.1f}% at {best['seconds'] / 60:.2f} min (step {best['step']})")


PLOT_SIZE = (900, 540)


def plot(curves: dict[str, list[dict]], target: float, path: Path, minutes: float) -> None:
    """Accuracy (%) against minutes, one line per run, and the target line.

    `save_line_plot` puts its legend in the top-right corner, right where accuracy curves
    end up; so the target line runs on past the curves' end, and the legend sits over
    that empty stretch instead of over the data. Its width is estimated from the label
    lengths (about 7 px a character at the plot's font size, plus the colour swatch).
    """
    from gankit.images import save_line_plot

    series = {label: ([p["seconds"] / 60 for p in pts], [100 * p["accuracy"] for p in pts])
              for label, pts in curves.items() if pts}
    target_label = f"{100 * target:.0f}% target"
    end = max([minutes] + [xs[-1] for xs, _ in series.values() if xs])
    plot_width = PLOT_SIZE[0] - 90
    legend = (7 * max(len(label) for label in [*series, target_label]) + 60) / plot_width
    series[target_label] = ([0.0, end / (1.0 - min(legend, 0.5))], [100 * target, 100 * target])
    save_line_plot(series, path, title="conditional GAN on CPU: digit accuracy vs training time",
                   xlabel="wall time (minutes)", ylabel="digit accuracy (%)", size=PLOT_SIZE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall time per run (default 10)")
    ap.add_argument("--eval-seconds", type=float, default=25.0, help="aim for one evaluation this often")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (skips calibration)")
    ap.add_argument("--eval-samples", type=int, default=2000, help="images per evaluation (default 2000)")
    ap.add_argument("--target", type=float, default=0.95, help="digit accuracy to reach (default 0.95)")
    ap.add_argument("--train-args", help=f"gankit train options for the main run (default: {' '.join(MAIN_ARGS)})")
    ap.add_argument("--baseline", action="store_true", help="also train the plain cGAN baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=default_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work-dir", type=Path, help="keep the run folders here")
    ap.add_argument("--replot", action="store_true", help="redraw from the runs in --work-dir; no training")
    args = ap.parse_args(argv)
    if not args.minutes > 0 or not 0 < args.target <= 1 or args.eval_samples < 129 or args.eval_every < 0:
        ap.error("need --minutes > 0, 0 < --target <= 1, --eval-samples >= 129, --eval-every >= 0")
    if args.replot and not args.work_dir:
        ap.error("--replot reads the runs in --work-dir; name it")
    if not args.replot and not (Path(args.data) / "train-images-idx3-ubyte.gz").is_file():
        ap.error(f"no MNIST training images in {args.data}")
    main_args = shlex.split(args.train_args) if args.train_args else MAIN_ARGS
    for forbidden in ("--steps", "--max-seconds", "--eval-every", "--eval-samples", "--name", "--runs-dir"):
        if forbidden in main_args:
            ap.error(f"--train-args must not set {forbidden}; this script sets it")

    # Short legend labels (the full commands go in the JSON and the printout).
    runs = {"main": ("conditional" if main_args == MAIN_ARGS else "conditional (custom)", main_args)}
    if args.baseline:
        runs["baseline"] = ("plain cGAN baseline", BASELINE_ARGS)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gankit-ttq-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    record: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "runs": {}}
    try:
        for key, (label, train_args) in runs.items():
            run = work / key
            info: dict = {"label": label, "train_args": train_args}
            if not args.replot:
                every = args.eval_every
                if not every:
                    rate = calibrate(train_args, work, args.seed, args.data)
                    every = pick_eval_every(rate, args.eval_seconds)
                    info["calibrated_steps_per_s"] = round(rate, 2)
                    print(f"[{key}] calibration: {rate:.1f} steps/s -> --eval-every {every} "
                          f"(one evaluation per ~{every / rate:.0f} s of training)", flush=True)
                shutil.rmtree(run, ignore_errors=True)
                cmd = train_command(train_args, run, seconds, args.seed, args.data, every, args.eval_samples)
                info["command"] = "gankit " + " ".join(shlex.quote(c) for c in cmd[3:])
                info["eval_every"] = every
                info["eval_samples"] = args.eval_samples
                train_with_progress(key, cmd, run, seconds)
                (run / "ttq_info.json").write_text(json.dumps(info, indent=1))
            else:
                try:
                    info = json.loads((run / "ttq_info.json").read_text())
                except (OSError, json.JSONDecodeError):
                    ap.error(f"--replot: no finished run in {run}")
            points = eval_curve(read_rows(run))
            info["points"] = points
            info["first_reached"] = first_reaching(points, args.target)
            info["summary"] = summary_line(info["label"], points, args.target)
            record["runs"][key] = info

        args.out.mkdir(parents=True, exist_ok=True)
        png = args.out / "time_to_quality.png"
        plot({info["label"]: info["points"] for info in record["runs"].values()}, args.target, png, args.minutes)
        from leaderboard import train_images

        record.update(machine=machine_info(), load_before=load_before, train_images=train_images(args.data),
                      load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()),
                      finished=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                      note="time axis: wall time of the training process, evaluations and checkpoint writes included")
        (args.out / "time_to_quality.json").write_text(json.dumps(record, indent=1))
        for info in record["runs"].values():
            print(info["summary"] + f" [{len(info['points'])} evaluations of {info.get('eval_samples', '?')} images]")
        print(f"wrote {png} and time_to_quality.json (machine: {record['machine']['cpu']}, "
              f"{record['machine']['cpus']} CPUs, {platform.python_version()}; load {load_before} before)")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
