"""Training speed: gankit's train loop against a faithful transcription of the PyTorch seed's loop.

Heavy tier (torch). Run: ``python bench/bench_train_speed.py [--steps 300] [--repeats 3] [--profile]``.

The baseline is ../shared/seeds/004_156ffc9b714fac87.txt as written: a Dataset that turns
each sample into a PIL image and applies ToTensor + Normalize(0.5, 0.5) one by one (what
torchvision's MNIST + transforms do; torchvision itself is not installed here, so those
two transforms are transcribed), a DataLoader(batch 32, shuffle, drop_last), the same
nets, nn.BCELoss on sigmoid outputs, Adam 2e-4, a fresh z for the G step, and
``.item()`` on both losses every step. Both loops run on the same data (real MNIST),
in the same process, interleaved, so machine noise hits both alike.

gankit's side is the real `Trainer.run()` (pytorch-mlp preset, batch 32) with logging
every 50 steps, at the default precision (``--precision auto``: bf16 autocast where the
CPU has native bf16 and a timed trial says it pays, else fp32; the table says which) and
in fp32; steps/s is measured over whole log intervals after the first.

Every rate is given in wall time and in CPU time (the process's CPU seconds per step):
on a machine shared with other work the wall clock mostly measures the others, while CPU
time still measures the step (with one torch thread it is the quiet machine's wall time).
The load average before and after is printed with the table.

It also reports how close each step is to the machine's limit: FLOPs per step counted
from the layer shapes, divided by the step time, against a plain matrix-multiply
benchmark on the same cores in fp32 and in bf16. ``--profile`` adds where a gankit
step's time goes (torch.profiler), which is what bounds the ratio to the seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import STEP_PARTS, load_average, profile_steps, shared_mnist, steady_steps_per_s  # noqa: E402
from gankit.config import TrainConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine.trainer import Callbacks, Trainer  # noqa: E402

BATCH = 32
Z = 100


# ---------------------------------------------------------------- the seed, transcribed
class SeedGenerator(nn.Module):
    def __init__(self, g_input_dim, g_output_dim):
        super().__init__()
        self.fc1 = nn.Linear(g_input_dim, 256)
        self.fc2 = nn.Linear(self.fc1.out_features, self.fc1.out_features * 2)
        self.fc3 = nn.Linear(self.fc2.out_features, self.fc2.out_features * 2)
        self.fc4 = nn.Linear(self.fc3.out_features, g_output_dim)

    def forward(self, x):
        x = F.leaky_relu(self.fc1(x), 0.2)
        x = F.leaky_relu(self.fc2(x), 0.2)
        x = F.leaky_relu(self.fc3(x), 0.2)
        return torch.tanh(self.fc4(x))


class SeedDiscriminator(nn.Module):
    def __init__(self, d_input_dim):
        super().__init__()
        self.fc1 = nn.Linear(d_input_dim, 1024)
        self.fc2 = nn.Linear(self.fc1.out_features, self.fc1.out_features // 2)
        self.fc3 = nn.Linear(self.fc2.out_features, self.fc2.out_features // 2)
        self.fc4 = nn.Linear(self.fc3.out_features, 1)

    def forward(self, x):
        x = F.leaky_relu(self.fc1(x), 0.2)
        x = F.dropout(x, 0.3)
        x = F.leaky_relu(self.fc2(x), 0.2)
        x = F.dropout(x, 0.3)
        x = F.leaky_relu(self.fc3(x), 0.2)
        x = F.dropout(x, 0.3)
        return torch.sigmoid(self.fc4(x))


class SeedMNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST + Compose([ToTensor(), Normalize((0.5,), (0.5,))]), per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.data = torch.from_numpy(images)
        self.targets = torch.from_numpy(labels)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        # ToTensor: PIL -> float CHW in [0, 1]
        t = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1).permute(2, 0, 1).contiguous()
        t = t.to(torch.float32).div(255)
        # Normalize(mean=0.5, std=0.5)
        t = (t - 0.5) / 0.5
        return t, target


def seed_loop(images, labels, steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second) of the seed's loop over ``steps`` steps (after 20 warm-up steps)."""
    torch.manual_seed(0)
    mnist_dim = 784
    G, D = SeedGenerator(Z, mnist_dim), SeedDiscriminator(mnist_dim)
    g_optimizer = torch.optim.Adam(G.parameters(), lr=2e-4)
    d_optimizer = torch.optim.Adam(D.parameters(), lr=2e-4)
    criterion = nn.BCELoss()
    loader = torch.utils.data.DataLoader(SeedMNIST(images, labels), batch_size=BATCH, shuffle=True, drop_last=True)

    def d_train(x):
        D.zero_grad()
        x_real, y_real = x.view(-1, mnist_dim), torch.ones(BATCH, 1)
        d_real_loss = criterion(D(x_real), y_real)
        z = torch.randn(BATCH, Z)
        x_fake, y_fake = G(z), torch.zeros(BATCH, 1)
        d_fake_loss = criterion(D(x_fake), y_fake)
        d_loss = d_real_loss + d_fake_loss
        d_loss.backward()
        d_optimizer.step()
        return d_loss.item()

    def g_train(x):
        G.zero_grad()
        z = torch.randn(BATCH, Z)
        y = torch.ones(BATCH, 1)
        g_loss = criterion(D(G(z)), y)
        g_loss.backward()
        g_optimizer.step()
        return g_loss.item()

    done, t0, c0 = 0, None, None
    while True:
        for x, _ in loader:
            if done == 20:
                t0, c0 = time.perf_counter(), time.process_time()
            d_train(x)
            g_train(x)
            done += 1
            if done == steps + 20:
                return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


# ---------------------------------------------------------------- gankit
class _Clock(Callbacks):
    """This process's CPU seconds at each log row."""

    def __init__(self):
        self.cpu: list[float] = []

    def on_log(self, row) -> None:
        self.cpu.append(time.process_time())


def gankit_loop(images, labels, steps: int, precision: str = "fp32") -> tuple[float, float, str]:
    """(steps per wall second, steps per CPU second, the precision that ran) of gankit's loop."""
    log_every = 50
    cfg = TrainConfig(steps=steps + log_every, batch_size=BATCH, log_every=log_every, sample_every=10**9,
                      checkpoint_every=10**9, precision=precision, device="cpu", preset="pytorch-mlp").validate()
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, load_plugin("unconditional"), images, labels, Path(tmp) / "run",
                          dataset_name="mnist", callbacks=clock)
        result = trainer.run()
    cpu_rate = (len(clock.cpu) - 1) * log_every / (clock.cpu[-1] - clock.cpu[0])
    return steady_steps_per_s(result.metrics, log_every), cpu_rate, trainer.cfg.precision


def gankit_profile(images, labels, precision: str, steps: int = 20) -> dict[str, float]:
    """ms per step in each part of a steady gankit step (torch.profiler)."""
    cfg = TrainConfig(steps=10**9, batch_size=BATCH, precision=precision, device="cpu", preset="pytorch-mlp",
                      compile="off").validate()
    return profile_steps(cfg, load_plugin("unconditional"), images, labels, steps)


# ---------------------------------------------------------------- the machine's limit
def mlp_step_flops(batch: int) -> float:
    """FLOPs of one gankit step (matmuls only; they are >95% of the work), counted from shapes.

    D update: G forward (B), D forward on 2B (real+fake), D backward on 2B (input and
    weight grads). G update: D forward on B, D backward for input grads only (weights are
    frozen), G backward (input + weight grads; the first layer's input grad is skipped).
    """
    g = [(Z, 256), (256, 512), (512, 1024), (1024, 784)]
    d = [(784, 1024), (1024, 512), (512, 256), (256, 1)]

    def fwd(layers, n):
        return sum(2 * n * i * o for i, o in layers)

    g_f, d_f = fwd(g, batch), fwd(d, batch)
    d_update = g_f + 2 * d_f + 2 * (2 * d_f)
    g_update = d_f + d_f + (2 * g_f - 2 * batch * Z * 256)
    return d_update + g_update


def matmul_gflops(n: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """A large matrix multiply's GFLOP per CPU second (CPU time, as the loops' rates in the table).

    With one thread that is the core's rate; with several, CPU time adds up over the
    threads, so it is the rate per core busy.
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for _ in range(repeats):
            a @ b
        best = min(best, time.process_time() - c0)
    return 2 * n**3 * repeats / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--bf16", action="store_true", help="also time gankit with bf16 autocast")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--profile", action="store_true", help="also show where a gankit step's time goes")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset(args.data, "train", allow_download=False)
    load_before = load_average()
    # Interleaved, so a change in machine load hits every loop alike.
    loops = {"seed (DataLoader + per-sample ToTensor/Normalize)": lambda: (*seed_loop(ds.images, ds.labels, args.steps), "fp32"),
             "gankit, default precision (auto)": lambda: gankit_loop(ds.images, ds.labels, args.steps, "auto"),
             "gankit fp32": lambda: gankit_loop(ds.images, ds.labels, args.steps, "fp32")}
    if args.bf16:
        loops["gankit bf16 autocast"] = lambda: gankit_loop(ds.images, ds.labels, args.steps, "bf16")
    runs: dict[str, list[tuple[float, float, str]]] = {name: [] for name in loops}
    for r in range(args.repeats):
        for name in (list(loops) if r % 2 == 0 else list(loops)[::-1]):
            runs[name].append(loops[name]())
    med = {name: (statistics.median(w for w, _, _ in rs), statistics.median(c for _, c, _ in rs)) for name, rs in runs.items()}
    peak = matmul_gflops()
    peak_bf16 = matmul_gflops(dtype=torch.bfloat16)
    flops = mlp_step_flops(BATCH)
    seed_name = next(iter(loops))
    seed_wall, seed_cpu = med[seed_name]

    print(f"\nTraining speed, PyTorch seed recipe (MLP, batch {BATCH}, BCE, Adam 2e-4), CPU, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} x {args.steps} steps; "
          f"load average {load_before} before, {load_average()} after\n")
    print("| loop | precision | steps/s (wall) | steps/s (CPU time) | vs seed (wall, CPU) | achieved GFLOP/s (CPU) "
          "| share of matmul peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    result = {"load_before": load_before, "load_after": load_average(), "threads": torch.get_num_threads(),
              "step_gflop": flops / 1e9, "matmul_peak_gflops": peak, "matmul_peak_gflops_bf16": peak_bf16, "loops": {}}
    for name, (wall, cpu) in med.items():
        precisions = ",".join(sorted({p for _, _, p in runs[name]}))
        row = f"| {name} | {precisions} | {wall:.1f} | {cpu:.1f} | {wall / seed_wall:.2f}x, {cpu / seed_cpu:.2f}x |"
        if name == seed_name:
            row += " - | - |"
        else:
            achieved = flops * cpu / 1e9
            ceiling = peak_bf16 if precisions == "bf16" else peak
            row += f" {achieved:.1f} | {achieved / ceiling:.0%} |"
        print(row)
        result["loops"][name] = {"runs": runs[name], "wall_steps_per_s": wall, "cpu_steps_per_s": cpu,
                                 "vs_seed_wall": wall / seed_wall, "vs_seed_cpu": cpu / seed_cpu}
    print(f"\nplain matmul (1024^3): {peak:.1f} GFLOP per CPU second in fp32, {peak_bf16:.1f} in bf16; one gankit "
          f"step = {flops / 1e9:.3f} GFLOP (achieved: GFLOP per CPU second at the CPU-time rate; share: against the "
          "matmul of the precision that ran)")
    if args.profile:
        auto = runs["gankit, default precision (auto)"][0][2]
        parts = {p: gankit_profile(ds.images, ds.labels, p) for p in dict.fromkeys([auto, "fp32"])}
        print(f"\nWhere a gankit step's time goes (ms per step, torch.profiler self times; load {load_average()}):\n")
        print("| part | " + " | ".join(parts) + " |")
        print("|---|" + "---:|" * len(parts))
        for part in [*STEP_PARTS, "other aten ops", "Python, dispatch, autograd"]:
            print(f"| {part} | " + " | ".join(f"{v[part]:.2f}" for v in parts.values()) + " |")
        print("| total | " + " | ".join(f"{sum(v.values()):.2f}" for v in parts.values()) + " |")
        result["profile_ms_per_step"] = parts
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
