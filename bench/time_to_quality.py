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

**Defaults against candidates, at equal steps, over seeds** (``--steps N --seeds 0,1,2``)::

    python bench/time_to_quality.py --plugins per-digit --steps 6000 --seeds 0,1,2 \
        --candidate "old defaults=--lr 2e-4 --no-ema-warmup" --precision fp32 --threads 1

trains the plugin's defaults and each ``--candidate LABEL=OPTIONS`` (``LABEL@STEPS=...``
stops that one earlier) to exactly N steps at every seed, keeping a checkpoint at each of
``--score-steps``, and scores them with ``gankit evaluate CHECKPOINT -n --eval-samples``
(one evaluation seed for all, so runs differ only by their weights). Steps, not wall time,
are the axis: on a shared machine a step's quality does not depend on the load, its
duration does. ``--threads`` sets ``OMP_NUM_THREADS`` for the training processes (on a
loaded machine one thread each avoids oversubscription). With ``--work-dir``, each
scored run is kept there, and a rerun of the same command skips it. ``--jobs N`` trains
and scores N runs at once, for a machine with cores to spare. Each run's ``picked``
checkpoint is the one the trainer's ``--eval-every`` would keep as ``best``: the highest
`gankit.training.engine.evaluation.selection_score` (FD divided by accuracy), which sees
diversity. Writes ``time_to_quality_defaults.json`` / ``.md`` (``--tag`` renames them):
mean ± sample standard deviation over seeds of accuracy, weakest digit and FD at each
scored step, the per-seed values, the commands, the CPU and the load average.

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


# ----- defaults against candidates at equal steps, over seeds (--steps) -----------------------

DEFAULT_SCORE_STEPS = (250, 500, 1000, 2000, 3000, 4000, 5000, 6000)


def parse_candidate(text: str) -> tuple[str, int | None, list[str]]:
    """``LABEL=OPTIONS`` or ``LABEL@STEPS=OPTIONS`` -> (label, steps or None, option list)."""
    label, sep, options = text.partition("=")
    if not sep or not label.strip():
        raise ValueError(f"--candidate takes LABEL=OPTIONS, got {text!r}")
    label, at, steps = label.partition("@")
    return label.strip(), int(steps) if at else None, shlex.split(options)


def evaluate_checkpoint(ckpt: Path, samples: int) -> dict:
    """`gankit evaluate CKPT -n samples` (evaluation seed 0): accuracy, weakest digit, FD and the pick score."""
    from gankit.training.engine.evaluation import selection_score

    proc = subprocess.run(cli("evaluate", ckpt, "-n", samples, "--seed", 0, "--json", "-"), cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"gankit evaluate {ckpt} failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    report = json.loads(proc.stdout)
    values = {name: m["value"] for name, m in report["metrics"].items()}
    per_digit = report.get("per_digit_accuracy") or {}
    weakest = min(per_digit.items(), key=lambda kv: kv[1]) if per_digit else (None, None)
    return {"accuracy": values.get("digit_accuracy"), "weakest_digit": weakest[0], "weakest_accuracy": weakest[1],
            "frechet_distance": values["frechet_distance"], "real_fd": report["metrics"]["frechet_distance"]["reference"],
            "score": selection_score(values)}


def train_to_steps(label: str, train_args: list[str], run: Path, steps: int, seed: int, data: str,
                   score_steps: list[int], threads: int) -> dict:
    """Train ``steps`` steps with a checkpoint kept at every score step; return the run's facts."""
    import math

    every = math.gcd(*score_steps)
    cmd = cli("train", *train_args, "--data", data, "--steps", steps, "--seed", seed, "--device", "cpu",
              "--log-every", LOG_EVERY, "--checkpoint-every", every, "--keep-checkpoints", 100000,
              "--sample-every", steps, "--name", run.name, "--runs-dir", run.parent, "-q")
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    shutil.rmtree(run, ignore_errors=True)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"[{label} seed {seed}] gankit {' '.join(shlex.quote(c) for c in cmd[3:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"[{label} seed {seed}] training failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    rows = read_rows(run)
    return {"seed": seed, "steps": steps, "command": "gankit " + " ".join(shlex.quote(c) for c in cmd[3:]),
            "wall_s": round(time.perf_counter() - start, 1), "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()), "precision": chosen_precision(run),
            "seconds_at": {str(k): seconds_at(rows, k) for k in score_steps if k <= steps}}


def score_to_steps(label: str, run: Path, info: dict, score_steps: list[int], samples: int) -> None:
    """Score the kept checkpoints at ``score_steps``; pick the one `selection_score` prefers; drop the rest."""
    info["points"] = []
    for step in [k for k in score_steps if k <= info["steps"]]:
        point = {"step": step, **evaluate_checkpoint(run / "checkpoints" / f"step-{step:09d}", samples)}
        info["points"].append(point)
        acc = "" if point["accuracy"] is None else f"accuracy {100 * point['accuracy']:5.1f}%  " \
            f"weakest {point['weakest_digit']}: {100 * point['weakest_accuracy']:5.1f}%  "
        print(f"[{label} seed {info['seed']}] step {step:>6}  {acc}FD {point['frechet_distance']:.2f}", flush=True)
    info["picked"] = max(info["points"], key=lambda p: p["score"])
    grids = sorted((run / "samples").glob("step-*.png"))
    info["last_grid"] = grids[-1].name if grids else None
    shutil.rmtree(run / "checkpoints", ignore_errors=True)  # 65 MB each for per-digit


def mean_spread(values: list[float]) -> tuple[float, float]:
    import statistics

    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def equal_steps_table(record: dict) -> str:
    """Markdown: one row per candidate and scored step, mean ± sample std over seeds; then the picks."""
    def cell(runs: list[dict], key: str, pct: bool) -> str:
        vals = [r[key] for r in runs if r.get(key) is not None]
        if not vals:
            return "-"
        m, sd = mean_spread([100 * v if pct else v for v in vals])
        return f"{m:.1f}{'%' if pct else ''} ± {sd:.1f}" if pct else f"{m:.2f} ± {sd:.2f}"

    lines = ["| candidate | step | seeds | accuracy | weakest digit | FD | minutes (mean) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, cand in record["candidates"].items():
        steps = sorted({p["step"] for run in cand["runs"] for p in run["points"]})
        for step in steps:
            pts = [p for run in cand["runs"] for p in run["points"] if p["step"] == step]
            mins = [run["seconds_at"].get(str(step)) for run in cand["runs"]]
            mins = [m / 60 for m in mins if m is not None]
            minutes = f"{sum(mins) / len(mins):.1f}" if mins else "-"
            lines.append(f"| {label} | {step:,} | {len(pts)} | {cell(pts, 'accuracy', True)} | "
                         f"{cell(pts, 'weakest_accuracy', True)} | {cell(pts, 'frechet_distance', False)} | "
                         f"{minutes} |")
    lines += ["", "Picked checkpoint per run (highest selection score, -FD / accuracy; what `--eval-every` keeps "
              "as `best`):", "", "| candidate | seed | step | accuracy | weakest digit | FD |", "|---|---:|---:|---:|---:|---:|"]
    for label, cand in record["candidates"].items():
        for run in cand["runs"]:
            p = run["picked"]
            acc = "-" if p["accuracy"] is None else f"{100 * p['accuracy']:.1f}%"
            weak = "-" if p["weakest_accuracy"] is None else f"{p['weakest_digit']}: {100 * p['weakest_accuracy']:.1f}%"
            lines.append(f"| {label} | {run['seed']} | {p['step']:,} | {acc} | {weak} | {p['frechet_distance']:.2f} |")
        picks = [r["picked"] for r in cand["runs"]]
        lines.append(f"| {label} (mean ± std) | | {mean_spread([p['step'] for p in picks])[0]:,.0f} | "
                     f"{cell(picks, 'accuracy', True)} | {cell(picks, 'weakest_accuracy', True)} | "
                     f"{cell(picks, 'frechet_distance', False)} |")
    return "\n".join(lines)


def compare_at_equal_steps(args, plugin: str) -> int:
    """``--steps``: the plugin's defaults and each --candidate, at every seed, to the same step count."""
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    score_steps = sorted({int(x) for x in args.score_steps.split(",") if x.strip() and int(x) <= args.steps})
    candidates = {"defaults": (None, list(PLUGINS[plugin]))}
    for text in args.candidate:
        label, steps, options = parse_candidate(text)
        candidates[label] = (steps, [*PLUGINS[plugin], *options])
    extra = ["--precision", args.precision] if args.precision else []
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gankit-ttq-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    record: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "plugin": plugin, "seeds": seeds, "score_steps": score_steps, "machine": machine,
                    "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "candidates": {}}
    def one_run(label: str, steps: int, train_args: list[str], seed: int) -> dict:
        run = work / f"{label.replace(' ', '_').replace('/', '_').replace(',', '')}-s{seed}"
        done = work / f"{run.name}.json"  # a finished, scored run: a rerun with --work-dir keeps it
        key = {"train_args": train_args, "steps": steps, "score_steps": score_steps,
               "eval_samples": args.eval_samples, "threads": args.threads}
        previous = json.loads(done.read_text()) if done.is_file() else {}
        if previous.get("key") == key:
            print(f"[{label} seed {seed}] kept from {done}", flush=True)
            return previous["info"]
        info = train_to_steps(label, train_args, run, steps, seed, args.data,
                              [k for k in score_steps if k <= steps], args.threads)
        score_to_steps(label, run, info, score_steps, args.eval_samples)
        done.write_text(json.dumps({"key": key, "info": info}, indent=1))
        return info

    plan = [(label, min(steps or args.steps, args.steps), [*train_args, *extra], seed)
            for label, (steps, train_args) in candidates.items() for seed in seeds]
    try:
        # --jobs runs at once (threads only wait on subprocesses); results keep the plan's order.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            infos = list(pool.map(lambda job: one_run(*job), plan))
        for (label, steps, train_args, _), info in zip(plan, infos):
            cand = record["candidates"].setdefault(label, {"train_args": train_args, "steps": steps, "runs": []})
            cand["runs"].append(info)
            if info["last_grid"]:
                run_name = f"{label.replace(' ', '_').replace('/', '_').replace(',', '')}-s{info['seed']}"
                grid = work / run_name / "samples" / info["last_grid"]
                if grid.is_file():
                    args.out.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(grid, args.out / f"time_to_quality_{args.tag or 'defaults'}_{run_name}.png")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    record["load_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    record["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    record["command"] = "python bench/time_to_quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    name = f"time_to_quality_{args.tag or 'defaults'}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=1))
    (args.out / f"{name}.md").write_text(equal_steps_report(record))
    print(equal_steps_table(record))
    print(f"wrote {args.out / name}.json and .md")
    return 0


def equal_steps_report(record: dict) -> str:
    """The Markdown file for an equal-steps comparison: how it was made, the tables, the commands."""
    machine, settings = record["machine"], record["settings"]
    runs = [r for c in record["candidates"].values() for r in c["runs"]]
    real = next(p["real_fd"] for r in runs for p in r["points"])
    wall = sum(r["wall_s"] for r in runs)
    loads = sorted(float(r[k].split()[0]) for r in runs for k in ("load_before", "load_after"))
    jobs = max(1, settings.get("jobs") or 1)
    header = (f"# {record['plugin']}: defaults against candidates at equal steps\n\n"
              f"`{record['command']}`\n\n"
              f"Seeds {', '.join(map(str, record['seeds']))}; each checkpoint scored by `gankit evaluate -n "
              f"{settings['eval_samples']}` (evaluation protocol seed 0; real-data FD {real:.3f}). Mean ± sample "
              f"standard deviation over seeds. Minutes: the training process's wall time at that step "
              f"(checkpoint writes included), {jobs} run(s) at once, each with OMP_NUM_THREADS="
              f"{settings.get('threads') or 'unset'}; 1-minute load average {loads[0]:.2f} to {loads[-1]:.2f} "
              f"around the runs; {wall / 60:.0f} minutes of runs in all. Compare quality at equal steps; "
              f"minutes only between runs made together.\n\n"
              f"CPU: {machine['cpu']}, {machine['cpus']} CPUs; Python {machine['python']}, torch {machine['torch']}, "
              f"onnxruntime {machine['onnxruntime']}; finished {record['finished']}.\n\n"
              + (f"{record['note']}\n\n" if record.get("note") else ""))
    commands = "\n".join(f"- {label}: `{c['runs'][0]['command']}` (per seed: `--seed S`)"
                         for label, c in record["candidates"].items())
    return header + equal_steps_table(record) + "\n\nCommands:\n\n" + commands + "\n"


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
    ap.add_argument("--steps", type=int, default=0,
                    help="train every run to exactly this many steps and compare at equal steps over --seeds "
                         "(writes time_to_quality_defaults.json/.md)")
    ap.add_argument("--seeds", default="0,1,2", help="with --steps: training seeds (default %(default)s)")
    ap.add_argument("--candidate", action="append", default=[],
                    help="with --steps: LABEL=OPTIONS (or LABEL@STEPS=OPTIONS) to train beside the defaults; repeatable")
    ap.add_argument("--score-steps", default=",".join(map(str, DEFAULT_SCORE_STEPS)),
                    help="with --steps: the steps whose checkpoints are scored (default %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="with --steps: OMP_NUM_THREADS for training (0: unset)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="with --steps: runs trained and scored at once (a machine with cores to spare)")
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

    if args.steps:
        if len(names) != 1 or args.baseline or args.rescore:
            ap.error("--steps compares one plugin's defaults with --candidate runs; name one plugin in --plugins")
        return compare_at_equal_steps(args, names[0])
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
