"""Per-digit training speed: ten GANs in one vectorised run against ten sequential single-digit runs.

Heavy tier (torch). Run: ``python bench/bench_per_digit.py [--steps 100] [--arch mlp] [--device cpu]``.

Both sides use the real `Trainer` (as bench/bench_train_speed.py does) on real MNIST,
in the same process, one after the other, with the same config and the same batch per
digit (``--batch``, default 32):

* vectorised: ``--plugin per-digit`` with all ten digits, N steps (each step trains ten
  GANs: stacked weights, batched matmuls / grouped convolutions);
* sequential: ten runs of N steps each, one per digit (``--digits d``), by default with
  the per-digit plugin itself (the very same maths per digit, see tests/test_per_digit.py)
  and, with ``--baseline both``, also with the unconditional plugin (plain ``nn.Linear`` /
  ``nn.Conv2d`` nets and the standard step), i.e. "ten ordinary GANs, one after another".

Each side's time is the whole run as a user would wait for it: building the nets,
training, the final sample grid and checkpoint. Steady-state step rates (from the
trainer's own log rows after the first) are printed beside them.

Where the speed-up comes from: the FLOPs are the same on both sides, so the gain is what
one big call saves over ten small ones: kernel-launch and Python/dispatcher overhead per
op, small matrices that cannot fill the device, per-run start-up. On a GPU a small GAN's
step is almost all launch overhead and ten of them cost about one; on a CPU a step of the
default MLP is already compute-bound, so expect much less there.

Measured results, with the machines and date they come from: bench/results/per_digit.md.
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

from common import shared_mnist, steady_steps_per_s  # noqa: E402  (bench/ is on sys.path as the script's folder)
from gankit.config import TrainConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine.trainer import Trainer  # noqa: E402

ARCHS = {
    # The default config (the PyTorch seed's MLP) and the Keras seed's DCGAN.
    "mlp": {},
    "dcgan": dict(arch="dcgan", g_hidden=(128, 64), d_hidden=(32, 64, 128, 256), d_dropout=0.25, beta1=0.5),
}
LOG_EVERY = 25


def one_run(images, labels, plugin: str, classes: tuple[int, ...], args) -> dict:
    cfg = TrainConfig.make(plugin=plugin, steps=args.steps, batch_size=args.batch, classes=classes, device=args.device,
                      log_every=LOG_EVERY, sample_every=10**9, checkpoint_every=10**9, seed=0,
                      **ARCHS[args.arch]).validate()
    with tempfile.TemporaryDirectory() as tmp:
        if args.device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer = Trainer(cfg, load_plugin(plugin), images, labels, Path(tmp) / "run", dataset_name="mnist")
        result = trainer.run()
        if args.device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "steady_steps_per_s": steady_steps_per_s(result.metrics, LOG_EVERY)}


def sequential(images, labels, plugin: str, args) -> dict:
    runs = [one_run(images, labels, plugin, (d,), args) for d in range(10)]
    return {"wall_s": sum(r["wall_s"] for r in runs),
            # ten digits one after another: a "digit-step" rate comparable with the vectorised run's
            "steady_steps_per_s": 1.0 / sum(1.0 / r["steady_steps_per_s"] for r in runs),
            "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="steps per run (N)")
    ap.add_argument("--batch", type=int, default=32, help="images per digit per batch")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="mlp")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--baseline", choices=("per-digit", "unconditional", "both"), default="per-digit",
                    help="plugin for the ten sequential single-digit runs")
    ap.add_argument("--repeats", type=int, default=1, help="repeat both sides, alternating order; medians shown")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--data", default=shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()
    if args.steps < 2 * LOG_EVERY:
        ap.error(f"--steps must be at least {2 * LOG_EVERY} (steady rates are measured over log intervals)")
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data, "train", allow_download=False)

    one_run(ds.images, ds.labels, "per-digit", (0,), argparse.Namespace(**{**vars(args), "steps": 2 * LOG_EVERY}))
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
    results = {side: {"wall_s": statistics.median(t["wall_s"] for t in ts),
                      "steady_steps_per_s": statistics.median(t["steady_steps_per_s"] for t in ts),
                      "trials": ts} for side, ts in trials.items()}

    device = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"
    vec = results["vectorised"]
    print(f"\nPer-digit training, 10 digits x {args.steps} steps, {args.arch}, batch {args.batch} per digit, "
          f"{device}, torch {torch.__version__}, median of {args.repeats}\n")
    print("| run | wall time (s) | steady digit-steps/s | vectorised is faster by |")
    print("|---|---:|---:|---:|")
    print(f"| vectorised: per-digit, 10 digits in one run | {vec['wall_s']:.1f} | "
          f"{10 * vec['steady_steps_per_s']:.1f} | - |")
    for name in baselines:
        seq = results[f"sequential:{name}"]
        print(f"| sequential: 10 x {name} --digits d | {seq['wall_s']:.1f} | {10 * seq['steady_steps_per_s']:.1f} | "
              f"{seq['wall_s'] / vec['wall_s']:.2f}x wall, "
              f"{vec['steady_steps_per_s'] / seq['steady_steps_per_s']:.2f}x steady |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "device": device,
                                         **results}, indent=2))


if __name__ == "__main__":
    main()
