"""Leaderboard: every built-in plugin and seed preset, trained for the same CPU wall-clock budget, scored alike.

Heavy tier (runs the real ``gankit train`` and ``gankit evaluate`` in subprocesses). Run::

    python bench/leaderboard.py [--budget 60] [--seeds 0,1,2] [--jobs 1|2] [--only NAME ...]

Entries: the plugins ``unconditional``, ``per-digit`` and ``conditional`` with their
defaults (``gankit train --plugin NAME``), and the seed presets ``dl4j-mlp``,
``keras-dcgan``, ``paddle-lsgan``, ``tf1-mlp`` and ``pytorch-mlp`` (``gankit train
--preset NAME``). Each trains on the 10k-image MNIST subset for ``--budget`` seconds of
training-loop wall time (``--max-seconds``, with a step count too large to be reached),
once per seed. Periodic checkpoints and sample grids are pushed past the end of the run,
so the budget is spent training; the final checkpoint and grid are still written.

Each final model is then scored by ``gankit evaluate RUN --json`` on ``--samples``
images (seed 0, the official test split as reference), and the table gives the mean ±
sample standard deviation over seeds of each metric, the steps reached, the training
seconds, and how many seeds tripped the coverage (mode-collapse) alarm, beside the row
real MNIST gets under the same protocol.

Timing modes: ``--jobs 1`` trains one model at a time with torch's default threads;
``--jobs 2`` trains two at once, each limited to one thread (``OMP_NUM_THREADS=1``,
``MKL_NUM_THREADS=1``). Runs go in lockstep batches of ``--jobs``: the batch trains,
then the batch is evaluated, so evaluation never overlaps a timed training. A budget
buys different step counts in the two modes, so compare rows only within one table,
whose header says which mode made it. The machine is shared: other load shrinks the
steps a budget buys, and the header records the load average before and after.

Outputs (``--out``, default bench/results): ``leaderboard.md``, ``leaderboard.json`` and
``leaderboard_samples/NAME.png`` (the final sample grid of the first seed). With
``--work-dir DIR`` the run folders are kept there, and a rerun with the same settings
reuses every run that already finished training and evaluation (to continue an
interrupted leaderboard); without it they live in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import cli, machine_info, shared_mnist, train_images  # noqa: E402  (bench/ is on sys.path)

ENTRIES: dict[str, list[str]] = {
    "unconditional": ["--plugin", "unconditional"],
    "per-digit": ["--plugin", "per-digit"],
    "conditional": ["--plugin", "conditional"],
    "dl4j-mlp": ["--preset", "dl4j-mlp"],
    "keras-dcgan": ["--preset", "keras-dcgan"],
    "paddle-lsgan": ["--preset", "paddle-lsgan"],
    "tf1-mlp": ["--preset", "tf1-mlp"],
    "pytorch-mlp": ["--preset", "pytorch-mlp"],
}
# (report key, column title, how to format a value)
METRICS = [
    ("digit_accuracy", "digit acc. % ↑", lambda v: f"{100 * v:.1f}"),
    ("frechet_distance", "FD ↓", lambda v: f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"),
    ("kid", "KID ↓", lambda v: f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"),
    ("classifier_score", "classifier score ↑", lambda v: f"{v:.2f}"),
    ("digit_entropy_bits", "digit entropy (bits) →ref", lambda v: f"{v:.2f}"),
]
HIGHER_IS_BETTER = {"digit_accuracy": True, "frechet_distance": False, "kid": False, "classifier_score": True}
# Far more steps than any budget reaches: --max-seconds is what ends every run.
UNREACHABLE_STEPS = 1_000_000_000
EVAL_SEED = 0


def run_logged(cmd: list[str], log: Path, env: dict[str, str], timeout: float) -> tuple[int, float]:
    """Run ``cmd`` with stdout+stderr into ``log``; (return code, wall seconds)."""
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[leaderboard] killed after {timeout:.0f} s\n")
            rc = -9
    return rc, time.perf_counter() - start


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def last_loss_row(run: Path) -> dict:
    """The last metrics.jsonl row with timing (loss rows carry elapsed_s)."""
    last: dict = {}
    try:
        for line in (run / "metrics.jsonl").read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "elapsed_s" in row:
                last = row
    except OSError:
        pass
    return last


class Job:
    """One (entry, seed): train, then evaluate; its record lands in ``self.record``."""

    def __init__(self, name: str, seed: int, args, work: Path):
        self.name, self.seed, self.args = name, seed, args
        self.run = work / f"{name}-s{seed}"
        self.record: dict = {"seed": seed, "run": str(self.run)}

    def settings(self) -> dict:
        a = self.args
        return {"budget_s": a.budget, "jobs": a.jobs, "data": a.data, "samples": a.samples,
                "reference": a.reference, "train_args": ENTRIES[self.name]}

    def train_command(self) -> list[str]:
        return cli("train", *ENTRIES[self.name], "--data", self.args.data, "--steps", UNREACHABLE_STEPS,
                   "--max-seconds", self.args.budget, "--seed", self.seed, "--device", "cpu",
                   "--checkpoint-every", UNREACHABLE_STEPS, "--sample-every", UNREACHABLE_STEPS,
                   "--name", self.run.name, "--runs-dir", self.run.parent, "-q")

    def finished(self) -> bool:
        """True when a previous invocation (same settings) already trained and evaluated this run."""
        try:
            saved = json.loads((self.run / "leaderboard_record.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if saved.get("settings") != self.settings():
            return False
        self.record = saved["record"]
        return True

    def train(self, env: dict[str, str]) -> None:
        if self.run.exists():  # a run from an interrupted invocation or other settings: start over
            shutil.rmtree(self.run)
        log = self.run.parent / f"{self.run.name}.train.log"
        # A run that hangs is cut off well after its budget (start-up, data loading, final save).
        rc, wall = run_logged(self.train_command(), log, env, timeout=self.args.budget * 3 + 300)
        row = last_loss_row(self.run)
        self.record.update(train_returncode=rc, wall_seconds=round(wall, 2),
                           train_seconds=row.get("elapsed_s"), steps=row.get("step"),
                           final_steps_per_s=row.get("steps_per_s"))
        if rc != 0:
            self.record["error"] = f"train exit {rc}: {tail(log)}"

    def evaluate(self) -> None:
        if "error" in self.record:
            return
        log = self.run.parent / f"{self.run.name}.eval.log"
        out = self.run / "evaluate.json"
        rc, wall = run_logged(cli("evaluate", self.run, "-n", self.args.samples, "--seed", EVAL_SEED,
                                  "--reference", self.args.reference, "--json", out),
                              log, dict(os.environ), timeout=1800)
        self.record["eval_seconds"] = round(wall, 2)
        if rc != 0:
            self.record["error"] = f"evaluate exit {rc}: {tail(log)}"
            return
        report = json.loads(out.read_text())
        self.record.update(
            metrics={k: m["value"] for k, m in report["metrics"].items()},
            references={k: m["reference"] for k, m in report["metrics"].items()},
            coverage_alarm=report["coverage_alarm"],
            coverage_reasons=report["coverage_reasons"],
            protocol=report["protocol"],
            steps=report["model"]["training_steps"],
        )
        grids = sorted((self.run / "samples").glob("step-*.png"))
        if grids:
            self.record["sample_grid"] = str(grids[-1])
        (self.run / "leaderboard_record.json").write_text(
            json.dumps({"settings": self.settings(), "record": self.record}, indent=1))


def train_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    if jobs > 1:
        # Two trainings on two cores: one thread each, or they fight over both cores.
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_batch(batch: list[Job], jobs: int) -> None:
    """Train the batch side by side, then evaluate it side by side (never overlapping a training)."""
    env = train_env(jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(batch)) as pool:
        list(pool.map(lambda j: j.train(env), batch))
        list(pool.map(lambda j: j.evaluate(), batch))


# --------------------------------------------------------------------------- summary


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarise(jobs: list[Job]) -> dict:
    ok = [j.record for j in jobs if "metrics" in j.record]
    summary: dict = {"seeds": len(jobs), "succeeded": len(ok)}
    for key, _, _ in METRICS:
        vals = [r["metrics"][key] for r in ok if key in r["metrics"]]
        mean, std = mean_std(vals)
        summary[key] = {"mean": mean, "std": std, "n": len(vals)}
    for key in ("steps", "train_seconds"):
        vals = [float(r[key]) for r in ok if r.get(key) is not None]
        mean, std = mean_std(vals)
        summary[key] = {"mean": mean, "std": std, "n": len(vals)}
    summary["coverage_alarms"] = sum(bool(r.get("coverage_alarm")) for r in ok)
    return summary


def reference_row(samples: int, split: str) -> dict[str, float]:
    """What real MNIST scores under the evaluation protocol (the values `gankit evaluate` prints)."""
    from gankit.eval.classifier import CLASSIFIER_SHA256
    from gankit.eval.reference import load_reference

    ref = load_reference(split, classifier_sha256=CLASSIFIER_SHA256)
    return {
        "digit_accuracy": float(sum(ref.real["per_digit_accuracy"]) / len(ref.real["per_digit_accuracy"])),
        "frechet_distance": ref.fd_reference_for(samples)[1],
        "kid": float(ref.cross["kid"]),
        "classifier_score": float(ref.real["classifier_score"]),
        "digit_entropy_bits": float(ref.real["digit_entropy_bits"]),
    }


def cell(stat: dict, fmt, bold: bool = False) -> str:
    if stat["mean"] is None:
        return "—"
    text = fmt(stat["mean"]) + (f" ± {fmt(stat['std'])}" if stat["std"] is not None else "")
    return f"**{text}**" if bold else text


def best_per_metric(summaries: dict[str, dict]) -> dict[str, str]:
    best = {}
    for key, higher in HIGHER_IS_BETTER.items():
        scored = [(s[key]["mean"], name) for name, s in summaries.items() if s[key]["mean"] is not None]
        if scored:
            best[key] = (max if higher else min)(scored)[1]
    return best


def markdown(result: dict) -> str:
    a, m = result["settings"], result["machine"]
    mode = ("sequential: one training at a time, torch's default threads" if a["jobs"] == 1 else
            f"{a['jobs']} trainings in parallel, 1 thread each (OMP_NUM_THREADS=1)")
    summaries = {e["name"]: e["summary"] for e in result["entries"]}
    best = best_per_metric(summaries)
    lines = [
        "# gankit leaderboard",
        "",
        f"Each model trained for **{a['budget']:g} s** of training-loop wall time on {a['train_images']:,} real "
        f"MNIST training images ({a['data']}), seeds {', '.join(map(str, a['seeds']))}; mode: **{mode}**. "
        f"Scored by `gankit evaluate RUN -n {a['samples']} --seed {EVAL_SEED} --reference {a['reference']}` "
        "(final checkpoint; EMA weights where a run keeps them). Values are mean ± sample std over seeds; "
        "**bold** is the best mean in its column. Digit accuracy applies only to models that take a digit. "
        "Digit entropy is best near the reference (3.32 bits = all ten digits equally).",
        "",
        "| model | setup | " + " | ".join(title for _, title, _ in METRICS)
        + " | steps reached | train s | coverage alarms |",
        "|---|---|" + "---:|" * len(METRICS) + "---:|---:|---:|",
    ]
    for entry in result["entries"]:
        s = entry["summary"]
        name = entry["name"]
        if s["succeeded"] == 0:
            lines.append(f"| {name} | `{' '.join(entry['train_args'])}` | " + " | ".join("—" for _ in METRICS)
                         + f" | — | — | failed {s['seeds']}/{s['seeds']} |")
            continue
        cells = [cell(s[key], fmt, best.get(key) == name) for key, _, fmt in METRICS]
        failed = s["seeds"] - s["succeeded"]
        alarms = f"{s['coverage_alarms']}/{s['succeeded']}" + (f" ({failed} failed)" if failed else "")
        lines.append(f"| {name} | `{' '.join(entry['train_args'])}` | " + " | ".join(cells)
                     + f" | {cell(s['steps'], lambda v: f'{v:,.0f}')} | {cell(s['train_seconds'], lambda v: f'{v:.0f}')}"
                     + f" | {alarms} |")
    ref = result["reference"]
    lines.append(f"| *real MNIST* | *other real split vs {a['reference']}* | "
                 + " | ".join(f"*{fmt(ref[key])}*" for key, _, fmt in METRICS) + " | | | |")
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}, onnxruntime "
        f"{m['onnxruntime']}, gankit {m['gankit']}; load average {result['load_before']} before, "
        f"{result['load_after']} after (the machine may be shared; other load costs steps). "
        f"Protocol: evaluation protocol v{result['protocol'].get('protocol_version', '?')}, classifier sha256 "
        f"{result['protocol'].get('classifier_sha256', '?')[:16]}…, {a['samples']} images per model, FD reference "
        f"at n={result['protocol'].get('fd_reference_n', '?')}. Run {result['finished']} "
        f"(total {result['total_seconds'] / 60:.1f} min).",
        "",
    ]
    failures = [(e["name"], r) for e in result["entries"] for r in e["runs"] if "error" in r]
    if failures:
        lines += ["Failed runs:", ""] + [f"- {n} seed {r['seed']}: {r['error']}" for n, r in failures] + [""]
    samples = [e for e in result["entries"] if e.get("sample_png")]
    if samples:
        lines += ["Final samples (first seed):", ""]
        lines += [f"- {e['name']}: ![{e['name']}]({e['sample_png']})" for e in samples]
        lines.append("")
    lines.append("Rebuild: `python bench/leaderboard.py " + " ".join(result["argv"]) + "`")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", "--max-seconds", type=float, default=60.0, dest="budget",
                    help="training seconds per run (default 60)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"only these entries: {', '.join(ENTRIES)}")
    ap.add_argument("--jobs", type=int, choices=(1, 2), default=1,
                    help="trainings at once (2: one torch thread each)")
    ap.add_argument("--samples", type=int, default=5000, help="images per evaluation (default 5000)")
    ap.add_argument("--reference", choices=("test", "train"), default="test")
    ap.add_argument("--data", default=shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where the table goes")
    ap.add_argument("--work-dir", type=Path, help="keep run folders here (and reuse finished ones)")
    args = ap.parse_args(argv)
    if not args.budget > 0:
        ap.error(f"--budget must be positive, got {args.budget}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds takes whole numbers separated by commas, got {args.seeds!r}")
    if not args.seeds or min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        ap.error("--seeds needs distinct non-negative seeds")
    unknown = [n for n in args.only or [] if n not in ENTRIES]
    if unknown:
        ap.error(f"unknown entry {unknown[0]!r}; choose from: {', '.join(ENTRIES)}")
    if args.samples < 129:
        ap.error("--samples must be at least 129 (the Fréchet distance needs more images than features)")
    if not (Path(args.data) / "train-images-idx3-ubyte.gz").is_file():
        ap.error(f"no MNIST training images in {args.data}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in ENTRIES if not args.only or n in args.only]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gankit-leaderboard-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    jobs = {name: [Job(name, seed, args, work) for seed in args.seeds] for name in names}
    todo = [j for js in jobs.values() for j in js if not j.finished()]
    total = sum(len(js) for js in jobs.values())
    print(f"leaderboard: {len(names)} entries x {len(args.seeds)} seeds, {args.budget:g} s each, jobs={args.jobs}; "
          f"{total - len(todo)} reused, {len(todo)} to run (~{len(todo) * args.budget / args.jobs / 60:.0f} min "
          f"of training); runs in {work}", flush=True)
    try:
        done = total - len(todo)
        for i in range(0, len(todo), args.jobs):
            batch = todo[i:i + args.jobs]
            run_batch(batch, args.jobs)
            for j in batch:
                done += 1
                r = j.record
                status = r.get("error") or (
                    f"{r.get('steps')} steps in {r.get('train_seconds')} s; "
                    + ", ".join(f"{k}={v:.4g}" for k, v in r.get("metrics", {}).items()))
                print(f"[{done}/{total}] {j.name} seed {j.seed}: {status}", flush=True)

        args.out.mkdir(parents=True, exist_ok=True)
        sample_dir = args.out / "leaderboard_samples"
        entries = []
        protocol: dict = {}
        for name, js in jobs.items():
            entry = {"name": name, "train_args": ENTRIES[name], "runs": [j.record for j in js],
                     "summary": summarise(js)}
            for j in js:
                protocol = protocol or j.record.get("protocol", {})
                grid = j.record.get("sample_grid")
                if grid and Path(grid).is_file() and "sample_png" not in entry:
                    sample_dir.mkdir(exist_ok=True)
                    shutil.copy(grid, sample_dir / f"{name}.png")
                    entry["sample_png"] = f"leaderboard_samples/{name}.png"
            entries.append(entry)
        result = {
            "settings": {"budget": args.budget, "seeds": args.seeds, "jobs": args.jobs, "samples": args.samples,
                         "reference": args.reference, "data": args.data, "train_images": train_images(args.data),
                         "eval_seed": EVAL_SEED},
            "argv": sys.argv[1:] if argv is None else argv,
            "machine": machine_info(),
            "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "protocol": protocol,
            "reference": reference_row(args.samples, args.reference),
            "entries": entries,
            "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "total_seconds": time.perf_counter() - started,
        }
        (args.out / "leaderboard.json").write_text(json.dumps(result, indent=1))
        (args.out / "leaderboard.md").write_text(markdown(result))
        print(f"wrote {args.out / 'leaderboard.md'} and leaderboard.json")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = sum("error" in j.record for js in jobs.values() for j in js)
    return 1 if failed == total else 0


if __name__ == "__main__":
    sys.exit(main())
