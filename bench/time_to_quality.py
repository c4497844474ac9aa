"""Time to quality: how many minutes of CPU training each built-in plugin needs, with its defaults.

Heavy tier (runs the real ``gankit train`` in subprocesses). Run::

    python bench/time_to_quality.py [--minutes 10] [--plugins conditional,per-digit,unconditional] [--baseline]

Each plugin trains with its own defaults (``gankit train --plugin NAME``, nothing else
but the data) on the 10k-image MNIST subset for ``--minutes`` of wall time
(``--max-seconds``), committing a checkpoint every K steps (all kept). K is picked so
that a checkpoint comes every ``--eval-seconds`` (default 25 s): a short calibration run
of the same command measures its steps per second first (``--eval-every K`` skips it).
Training runs with no evaluation inside it, as a user's bare command does; afterwards
every checkpoint is scored by the real ``gankit evaluate CHECKPOINT -n N`` (digit accuracy
for plugins that take a digit, Fréchet distance on classifier features for all, each
beside the real-data value). ``--rescore`` scores the runs kept in ``--work-dir`` again
(after the classifier or protocol changed) without training.

Each checkpoint is placed on the time axis at the training process's elapsed wall time
at its step (from the loss rows logged around it; checkpoint writes included). The
targets (issue 8): digit accuracy >= ``--target`` (95%) and FD within ``--fd-factor`` (3x)
of the real-data reference. The summary gives where each run stands at 1, 3 and 10
minutes and when each target was first met. ``bench/results/time_to_quality.png``
draws accuracy and FD against minutes.

``--baseline`` also trains a plain cGAN, the PyTorch seed's recipe made conditional:
its MLPs (G 256-512-1024, D 1024-512-256 with dropout 0.3, LeakyReLU 0.2), BCE, Adam 2e-4
and batch 32 (``--preset pytorch-mlp``), the label concatenated to z and to the
flattened image (``--option d_cond=concat``, ``embed_dim=10``: a one-hot vector times a
learned 10x10 matrix feeding the first layer, the same family of functions).

The runs are sequential, each with the whole machine; on a shared machine other load
slows them, so the result records the load average before and after each run.

Outputs (``--out``, default bench/results): ``time_to_quality.png`` and
``time_to_quality.json`` (the curves, K, the commands, the machine), and each run's last
sample grid as ``time_to_quality_<plugin>.png``. ``--work-dir`` keeps the run folders.
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

from common import cli, machine_info, shared_mnist as default_mnist, train_images  # noqa: E402  (bench/ is on sys.path as the script's folder)

# Each plugin's defaults, nothing else: what `gankit train --plugin NAME` does for a user.
PLUGINS = {"conditional": ["--plugin", "conditional"], "per-digit": ["--plugin", "per-digit"],
           "unconditional": ["--plugin", "unconditional"]}
BASELINE_ARGS = ["--plugin", "conditional", "--preset", "pytorch-mlp", "--option", "d_cond=concat",
                 "--option", "embed_dim=10"]
UNREACHABLE_STEPS = 1_000_000_000
LOG_EVERY = 50
CALIBRATION_SECONDS = 15.0
MARKS_MIN = (1.0, 3.0, 10.0)


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


def chosen_precision(run: Path) -> str | None:
    """The precision the run trained at, as its config.json records it (``auto`` resolved)."""
    try:
        return json.loads((run / "config.json").read_text()).get("precision")
    except (OSError, json.JSONDecodeError):
        return None


def seconds_at(rows: list[dict], step: int) -> float | None:
    """Training wall time at ``step``, interpolated between the loss rows logged around it."""
    loss = [(r["step"], r["elapsed_s"]) for r in rows if "elapsed_s" in r]
    before = [p for p in loss if p[0] <= step]
    after = [p for p in loss if p[0] >= step]
    if not before and not after:
        return None
    if before and (before[-1][0] == step or not after):
        return before[-1][1]
    if not before:
        return after[0][1] * step / max(after[0][0], 1)
    (s0, t0), (s1, t1) = before[-1], after[0]
    return t0 + (t1 - t0) * (step - s0) / (s1 - s0)


def score_run(run: Path, samples: int, seed: int) -> list[dict]:
    """Every kept checkpoint of ``run`` scored by `gankit evaluate`, placed on the time axis."""
    rows = read_rows(run)
    points = []
    for ckpt in sorted((run / "checkpoints").glob("step-*")):
        step = int(ckpt.name.split("-")[-1])
        seconds = seconds_at(rows, step)
        if step == 0 or seconds is None:
            continue
        proc = subprocess.run(cli("evaluate", ckpt, "-n", samples, "--seed", seed, "--json", "-"), cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"gankit evaluate {ckpt} failed (exit {proc.returncode}): {proc.stderr[-800:]}")
        report = json.loads(proc.stdout)
        metrics = report["metrics"]
        acc = metrics.get("digit_accuracy")
        points.append({"step": step, "seconds": round(seconds, 2), "accuracy": acc and acc["value"],
                       "frechet_distance": metrics["frechet_distance"]["value"],
                       "real_fd": metrics["frechet_distance"]["reference"],
                       "not_a_digit": report.get("not_a_digit_count")})
        print(f"[{run.name}] {seconds / 60:5.2f} min  step {step:>7}  "
              + (f"digit accuracy {100 * acc['value']:5.1f}%  " if acc else "")
              + f"FD {points[-1]['frechet_distance']:.2f}", flush=True)
    return points


def first_reaching(points: list[dict], key: str, ok) -> dict | None:
    """The first evaluation whose ``key`` passes ``ok``."""
    return next((p for p in points if p.get(key) is not None and ok(p[key])), None)


def standing_at(points: list[dict], minutes: float) -> dict | None:
    """The last evaluation at or before ``minutes`` of training."""
    done = [p for p in points if p["seconds"] <= minutes * 60 + 1e-6]
    return done[-1] if done else None


def train_command(args: list[str], run: Path, seconds: float, seed: int, data: str, every: int) -> list[str]:
    """The user's bare training command plus the budget, and a kept checkpoint every ``every`` steps."""
    cmd = cli("train", *args, "--data", data, "--steps", UNREACHABLE_STEPS, "--max-seconds", seconds,
              "--seed", seed, "--device", "cpu", "--log-every", LOG_EVERY, "--name", run.name,
              "--runs-dir", run.parent, "-q")
    if every:
        cmd += ["--checkpoint-every", str(every), "--keep-checkpoints", "100000"]
    return cmd


def calibrate(args: list[str], work: Path, seed: int, data: str) -> float:
    """Steps per second of ``args`` on this machine now, from a short run (first log interval skipped)."""
    run = work / "calibration"
    shutil.rmtree(run, ignore_errors=True)
    cmd = train_command(args, run, CALIBRATION_SECONDS, seed, data, 0)
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
    """Run the training, printing its step count now and then; fail loudly if it fails."""
    log = run.parent / f"{run.name}.log"
    print(f"[{label}] gankit {' '.join(shlex.quote(c) for c in cmd[3:])}", flush=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + seconds * 2 + 300
        shown = time.monotonic()
        while proc.poll() is None:
            time.sleep(5)
            if time.monotonic() - shown >= 60:
                rows = [r for r in read_rows(run) if "elapsed_s" in r]
                if rows:
                    print(f"[{label}] {rows[-1]['elapsed_s'] / 60:5.2f} min  step {rows[-1]['step']:>7}", flush=True)
                shown = time.monotonic()
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                sys.exit(f"[{label}] training did not stop on its budget; killed (log: {log})")
    if proc.returncode != 0:
        sys.exit(f"[{label}] training failed (exit {proc.returncode}); last lines of {log}:\n"
                 + "\n".join(log.read_text(errors="replace").splitlines()[-10:]))


def summary(label: str, points: list[dict], target: float, fd_limit: float) -> dict:
    """Where a run stands at each mark, and when each target was first met."""
    out: dict = {"label": label, "at": {}}
    lasted = max((p["seconds"] for p in points), default=0.0)
    for m in MARKS_MIN:
        # A mark past the end of a shorter run has no standing (the run never got there).
        p = standing_at(points, m) if m * 60 <= lasted + 30 else None
        out["at"][f"{m:g}"] = p and {"step": p["step"], "accuracy": p["accuracy"], "frechet_distance": p["frechet_distance"]}
    acc = first_reaching(points, "accuracy", lambda v: v >= target)
    fd = first_reaching(points, "frechet_distance", lambda v: v <= fd_limit)
    out["accuracy_target_at_min"] = acc and round(acc["seconds"] / 60, 2)
    out["fd_target_at_min"] = fd and round(fd["seconds"] / 60, 2)
    return out


def summary_text(s: dict, target: float, fd_limit: float, has_digits: bool) -> str:
    parts = []
    for m, p in s["at"].items():
        if p is None:
            parts.append(f"{m} min: -")
        else:
            acc = f"{100 * p['accuracy']:.1f}%, " if p["accuracy"] is not None else ""
            parts.append(f"{m} min: {acc}FD {p['frechet_distance']:.2f} (step {p['step']:,})")
    hits = []
    if has_digits:
        a = s["accuracy_target_at_min"]
        hits.append(f"{100 * target:.0f}% accuracy " + (f"at {a:.2f} min" if a is not None else "not reached"))
    f = s["fd_target_at_min"]
    hits.append(f"FD <= {fd_limit:.2f} " + (f"at {f:.2f} min" if f is not None else "not reached"))
    return f"{s['label']}: " + "; ".join(parts) + " | " + ", ".join(hits)


def plot(curves: dict[str, list[dict]], target: float, fd_limit: float, path: Path, minutes: float,
         machine: str) -> None:
    """Two panels against minutes: digit accuracy (plugins that take a digit) and FD (log scale, all)."""
    from common import quality_figure, save_quality_figure

    fig, ax_acc, ax_fd = quality_figure()
    for label, pts in curves.items():
        xs = [p["seconds"] / 60 for p in pts]
        if any(p["accuracy"] is not None for p in pts):
            ax_acc.plot(xs, [100 * p["accuracy"] for p in pts], marker=".", label=label)
        ax_fd.plot(xs, [p["frechet_distance"] for p in pts], marker=".", label=label)
    ax_acc.axhline(100 * target, color="grey", linestyle="--", label=f"{100 * target:.0f}% target")
    ax_fd.axhline(fd_limit, color="grey", linestyle="--", label=f"3x real-data FD ({fd_limit:.2f})")
    for m in MARKS_MIN:
        for ax in (ax_acc, ax_fd):
            ax.axvline(m, color="0.85", linewidth=0.8, zorder=0)
    ax_acc.set(xlabel="wall time (minutes)", ylabel="digit accuracy (%)", ylim=(0, 100), xlim=(0, minutes),
               title="digit accuracy (images read as the digit asked for)")
    ax_fd.set(xlabel="wall time (minutes)", ylabel="Fréchet distance (classifier features)", yscale="log",
              xlim=(0, minutes), title="Fréchet distance (lower is better)")
    save_quality_figure(fig, ax_acc, ax_fd, f"gankit defaults on a CPU: time to quality ({machine})", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall time per run (default 10)")
    ap.add_argument("--plugins", default=",".join(PLUGINS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--eval-seconds", type=float, default=25.0, help="aim for one scored checkpoint per this many seconds")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between scored checkpoints (skips calibration)")
    ap.add_argument("--eval-samples", type=int, default=2000, help="images per scored checkpoint (default 2000)")
    ap.add_argument("--target", type=float, default=0.95, help="digit accuracy to reach (default 0.95)")
    ap.add_argument("--fd-factor", type=float, default=3.0, help="FD target as a multiple of the real-data FD")
    ap.add_argument("--baseline", action="store_true", help="also train the plain cGAN baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=default_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work-dir", type=Path, help="keep the run folders here")
    ap.add_argument("--rescore", action="store_true", help="score the runs in --work-dir again; no training")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                    help="add --precision to every run (default: leave it out, as a user's bare command does)")
    ap.add_argument("--match", type=Path,
                    help="take each plugin's --eval-every from this earlier result JSON, so both score the same steps")
    ap.add_argument("--tag", default="", help="suffix for the output files (time_to_quality_TAG.json ...)")
    ap.add_argument("--train-args", default="",
                    help="more `gankit train` options for every run, to time a candidate against the defaults "
                         "(e.g. \"--lr 4e-4\"); use with --tag")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.plugins.split(",") if n.strip()]
    unknown = [n for n in names if n not in PLUGINS]
    if unknown or not names:
        ap.error(f"--plugins takes names from {', '.join(PLUGINS)}; got {args.plugins!r}")
    if not args.minutes > 0 or not 0 < args.target <= 1 or args.eval_samples < 129 or args.eval_every < 0:
        ap.error("need --minutes > 0, 0 < --target <= 1, --eval-samples >= 129, --eval-every >= 0")
    if args.rescore and not args.work_dir:
        ap.error("--rescore reads the runs in --work-dir; name it")
    if not args.rescore and not (Path(args.data) / "train-images-idx3-ubyte.gz").is_file():
        ap.error(f"no MNIST training images in {args.data}")

    runs = {name: (name, PLUGINS[name]) for name in names}
    if args.baseline:
        runs["baseline"] = ("plain cGAN baseline", BASELINE_ARGS)
    # --precision and --train-args add the same options to every run, and say so in its label.
    extra = (["--precision", args.precision] if args.precision else []) + shlex.split(args.train_args)
    note = (f" ({args.precision})" if args.precision else "") + (f" {args.train_args}" if args.train_args else "")
    runs = {k: (label + note, [*a, *extra]) for k, (label, a) in runs.items()}
    suffix = f"_{args.tag}" if args.tag else ""
    matched_every = {}
    if args.match:
        try:
            matched_every = {k: int(v["eval_every"]) for k, v in json.loads(args.match.read_text())["runs"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            ap.error(f"--match {args.match}: not a time-to-quality result with eval_every per run ({exc})")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gankit-ttq-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    record: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "runs": {}}
    try:
        for key, (label, train_args) in runs.items():
            run = work / key
            info: dict = {"label": label, "train_args": train_args}
            if not args.rescore:
                info["load_before"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
                every = matched_every.get(key) or args.eval_every
                if not every:
                    rate = calibrate(train_args, work, args.seed, args.data)
                    every = pick_eval_every(rate, args.eval_seconds)
                    info["calibrated_steps_per_s"] = round(rate, 2)
                    print(f"[{key}] calibration: {rate:.1f} steps/s -> --eval-every {every} "
                          f"(one evaluation per ~{every / rate:.0f} s of training)", flush=True)
                shutil.rmtree(run, ignore_errors=True)
                cmd = train_command(train_args, run, seconds, args.seed, args.data, every)
                info["command"] = "gankit " + " ".join(shlex.quote(c) for c in cmd[3:])
                info["eval_every"] = every
                info["eval_samples"] = args.eval_samples
                train_with_progress(key, cmd, run, seconds)
                info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
                info["precision"] = chosen_precision(run)
                (run / "ttq_info.json").write_text(json.dumps(info, indent=1))
            else:
                try:
                    info = json.loads((run / "ttq_info.json").read_text())
                except (OSError, json.JSONDecodeError):
                    ap.error(f"--rescore: no finished run in {run}")
            info["points"] = score_run(run, args.eval_samples, args.seed)
            info["eval_samples"] = args.eval_samples
            grids = sorted((run / "samples").glob("step-*.png"))
            if grids:
                args.out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(grids[-1], args.out / f"time_to_quality_{key}{suffix}.png")
            record["runs"][key] = info
        real = [p["real_fd"] for info in record["runs"].values() for p in info["points"]]
        fd_limit = args.fd_factor * real[0]
        record.update(real_fd=real[0], fd_limit=fd_limit)
        for info in record["runs"].values():
            info["summary"] = summary(info["label"], info["points"], args.target, fd_limit)

        args.out.mkdir(parents=True, exist_ok=True)
        png = args.out / f"time_to_quality{suffix}.png"
        machine = machine_info()
        plot({info["label"]: info["points"] for info in record["runs"].values()}, args.target, fd_limit, png,
             args.minutes, f"{machine['cpu']}, {machine['cpus']} CPUs")
        record.update(machine=machine, train_images=train_images(args.data),
                      finished=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                      note="time axis: wall time of the training process, evaluations and checkpoint writes included")
        (args.out / f"time_to_quality{suffix}.json").write_text(json.dumps(record, indent=1))
        for key, info in record["runs"].items():
            has_digits = any(p["accuracy"] is not None for p in info["points"])
            print(summary_text(info["summary"], args.target, fd_limit, has_digits)
                  + f" [{len(info['points'])} evaluations of {info.get('eval_samples', '?')} images; "
                  f"precision {info.get('precision', '?')}; load {info.get('load_before', '?')} before]")
        print(f"wrote {png} and time_to_quality{suffix}.json (machine: {machine['cpu']}, {machine['cpus']} CPUs, "
              f"{platform.python_version()}; real-data FD {fd_limit / args.fd_factor:.3f})")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
