"""Per-digit training speed: ten GANs in one vectorised run against ten sequential single-digit runs.

Heavy tier (torch). Run: ``python bench/bench_per_digit.py [--steps 100] [--arch defaults] [--device cpu]``.

Both sides use the real `Trainer` (as bench/bench_train_speed.py does) on real MNIST,
in the same process, one after the other, with the same config and the same batch per
digit (``--batch``, default 32):

* vectorised: ``--plugin per-digit`` with all ten digits, N steps (each step trains ten
  GANs: stacked weights, batched matmuls / grouped convolutions);
* sequential: ten runs of N steps each, one per digit (``--digits d``), by default with
  the per-digit plugin itself (the very same maths per digit, see tests/test_per_digit.py)
  and, with ``--baseline both``, also with the unconditional plugin (plain ``nn.Linear`` /
  ``nn.Conv2d`` nets and the standard step), i.e. "ten ordinary GANs, one after another".

``--arch``: ``defaults`` (the per-digit plugin's own defaults, what ``gankit train
--plugin per-digit`` trains), ``mlp`` (the PyTorch seed's MLP), ``dcgan`` (the Keras
seed's DCGAN) or ``dcgan-small`` (the sweep's DCGAN candidate, 32-16 / 16-32-32-32).
Both sides run at the default precision (``--precision auto``, settled by each run) unless
``--precision`` says otherwise.

Each side's time is the whole run as a user would wait for it: building the nets,
training, the final sample grid and checkpoint. Steady-state step rates (from the
trainer's log rows after the first) are printed beside them, in wall time and in CPU
time (the process's CPU seconds between log rows): on a machine shared with other work
the wall clock mostly measures the others, while CPU time still measures the step.
``--profile`` adds where one steady step's time goes on each side (torch.profiler, per
digit-step), which is what bounds the ratio.

Where the speed-up comes from: the FLOPs are the same on both sides, so the gain is what
one big call saves over ten small ones: kernel-launch and Python/dispatcher overhead per
op, small matrices that cannot fill the device, per-run start-up. On a GPU a small GAN's
step is almost all launch overhead and ten of them cost about one; on a CPU a step of the
default MLP is already compute- and memory-bound, so expect much less there.

Measured results, with the machines they come from: bench/results/per_digit.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import STEP_PARTS, load_average, profile_steps, shared_mnist, steady_steps_per_s  # noqa: E402
from gankit.config import TrainConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine.trainer import Callbacks, Trainer  # noqa: E402

ARCHS = {
    "defaults": None,  # the per-digit plugin's train_defaults
    # The default config (the PyTorch seed's MLP) and the Keras seed's DCGAN.
    "mlp": {},
    "dcgan": dict(arch="dcgan", g_hidden=(128, 64), d_hidden=(32, 64, 128, 256), d_dropout=0.25, beta1=0.5),
    # bench/sweep_per_digit.py's DCGAN candidate.
    "dcgan-small": dict(arch="dcgan", g_hidden=(32, 16), d_hidden=(16, 32, 32, 32), beta1=0.5, ema=0.999),
}
LOG_EVERY = 25


class _Clock(Callbacks):
    """CPU seconds of this process at each log row, for steady CPU-time rates."""

    def __init__(self):
        self.cpu: list[float] = []

    def on_log(self, row) -> None:
        self.cpu.append(time.process_time())


def arch_settings(arch: str) -> dict:
    settings = ARCHS[arch]
    if settings is None:
        settings = dict(load_plugin("per-digit").train_defaults)
        settings.pop("steps", None)
    return dict(settings)


def make_config(plugin: str, classes: tuple[int, ...], args, steps: int | None = None) -> TrainConfig:
    settings = arch_settings(args.arch)
    settings.update(steps=steps or args.steps, batch_size=args.batch, classes=classes, device=args.device,
                    log_every=LOG_EVERY, sample_every=10**9, checkpoint_every=10**9, seed=0)
    if args.precision != "auto":
        settings["precision"] = args.precision
    return TrainConfig.make(plugin=plugin, **settings).validate()


def one_run(images, labels, plugin: str, classes: tuple[int, ...], args, steps: int | None = None) -> dict:
    cfg = make_config(plugin, classes, args, steps)
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        if args.device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        trainer = Trainer(cfg, load_plugin(plugin), images, labels, Path(tmp) / "run", dataset_name="mnist",
                          callbacks=clock)
        result = trainer.run()
        if args.device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steady_cpu = (len(clock.cpu) - 1) * LOG_EVERY / (clock.cpu[-1] - clock.cpu[0]) if len(clock.cpu) > 1 else float("nan")
    return {"wall_s": wall, "cpu_s": cpu, "steady_steps_per_s": steady_steps_per_s(result.metrics, LOG_EVERY),
            "steady_cpu_steps_per_s": steady_cpu, "precision": trainer.cfg.precision}


def sequential(images, labels, plugin: str, args) -> dict:
    runs = [one_run(images, labels, plugin, (d,), args) for d in range(10)]
    return {"wall_s": sum(r["wall_s"] for r in runs), "cpu_s": sum(r["cpu_s"] for r in runs),
            # ten digits one after another: a "digit-step" rate comparable with the vectorised run's
            "steady_steps_per_s": 1.0 / sum(1.0 / r["steady_steps_per_s"] for r in runs),
            "steady_cpu_steps_per_s": 1.0 / sum(1.0 / r["steady_cpu_steps_per_s"] for r in runs),
            "precision": ",".join(sorted({r["precision"] for r in runs})), "runs": runs}


def profile_side(images, labels, classes: tuple[int, ...], args, precision: str) -> dict[str, float]:
    """ms per *digit*-step in each part of a steady per-digit step on ``classes`` (torch.profiler)."""
    cfg = make_config("per-digit", classes, args).with_overrides(precision=precision)
    parts = profile_steps(cfg, load_plugin("per-digit"), images, labels, args.profile_steps)
    return {k: v / len(classes) for k, v in parts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="steps per run (N)")
    ap.add_argument("--batch", type=int, default=32, help="images per digit per batch")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="mlp")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="both sides' precision (auto: each run settles its own, the default)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--baseline", choices=("per-digit", "unconditional", "both"), default="per-digit",
                    help="plugin for the ten sequential single-digit runs")
    ap.add_argument("--repeats", type=int, default=1, help="repeat both sides, alternating order; medians shown")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--profile", action="store_true", help="also profile one steady step on each side")
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--data", default=shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()
    if args.steps < 2 * LOG_EVERY:
        ap.error(f"--steps must be at least {2 * LOG_EVERY} (steady rates are measured over log intervals)")
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data, "train", allow_download=False)
    load_before = load_average()

    one_run(ds.images, ds.labels, "per-digit", (0,), args, steps=2 * LOG_EVERY)
    baselines = ("per-digit", "unconditional") if args.baseline == "both" else (args.baseline,)
    sides = ["vectorised", *(f"sequential:{b}" for b in baselines)]
    trials: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(args.repeats):
        # Alternate the order between repeats so a drift in machine load hits both sides alike.
        for side in (sides if r % 2 == 0 else sides[::-1]):
            if side == "vectorised":
                trials[side].append(one_run(ds.images, ds.labels, "per-digit", tuple(range(10)), args))
            else:
                trials[side].append(sequential(ds.images, ds.labels, side.split(":")[1], args))
    keys = ("wall_s", "cpu_s", "steady_steps_per_s", "steady_cpu_steps_per_s")
    results = {side: {**{k: statistics.median(t[k] for t in ts) for k in keys},
                      "precision": ts[0]["precision"], "trials": ts} for side, ts in trials.items()}

    device = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"
    vec = results["vectorised"]
    print(f"\nPer-digit training, 10 digits x {args.steps} steps, {args.arch}, batch {args.batch} per digit, "
          f"{device}, torch {torch.__version__}, median of {args.repeats}; load average {load_before} before, "
          f"{load_average()} after\n")
    print("| run | precision | wall time (s) | CPU time (s) | steady digit-steps/s (wall / CPU) | "
          "vectorised is faster by (wall, steady wall, steady CPU) |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| vectorised: per-digit, 10 digits in one run | {vec['precision']} | {vec['wall_s']:.1f} | "
          f"{vec['cpu_s']:.1f} | {10 * vec['steady_steps_per_s']:.1f} / {10 * vec['steady_cpu_steps_per_s']:.1f} | - |")
    for name in baselines:
        seq = results[f"sequential:{name}"]
        print(f"| sequential: 10 x {name} --digits d | {seq['precision']} | {seq['wall_s']:.1f} | {seq['cpu_s']:.1f} | "
              f"{10 * seq['steady_steps_per_s']:.1f} / {10 * seq['steady_cpu_steps_per_s']:.1f} | "
              f"{seq['wall_s'] / vec['wall_s']:.2f}x, "
              f"{vec['steady_steps_per_s'] / seq['steady_steps_per_s']:.2f}x, "
              f"{vec['steady_cpu_steps_per_s'] / seq['steady_cpu_steps_per_s']:.2f}x |")
    if args.profile:
        profiles = {}
        for label, classes in (("ten at once", tuple(range(10))), ("one digit", (3,))):
            precision = vec["precision"] if label == "ten at once" else results[f"sequential:{baselines[0]}"]["precision"]
            profiles[label] = profile_side(ds.images, ds.labels, classes, args, precision.split(",")[0])
        print("\nWhere a digit-step's time goes (ms per digit per step, torch.profiler self times, "
              f"{args.profile_steps} steady steps; load {load_average()}):\n")
        print("| part | ten at once | one digit alone |")
        print("|---|---:|---:|")
        for part in [*STEP_PARTS, "other aten ops", "Python, dispatch, autograd"]:
            print(f"| {part} | {profiles['ten at once'][part]:.2f} | {profiles['one digit'][part]:.2f} |")
        totals = {k: sum(v.values()) for k, v in profiles.items()}
        print(f"| total | {totals['ten at once']:.2f} | {totals['one digit']:.2f} |")
        results["profile_ms_per_digit_step"] = profiles
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "device": device,
                                         "load_before": load_before, "load_after": load_average(), **results},
                                        indent=2))


if __name__ == "__main__":
    main()
