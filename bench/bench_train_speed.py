"""Training speed: gankit's train loop against a faithful transcription of the PyTorch seed's loop.

Heavy tier (torch). Run: ``python bench/bench_train_speed.py [--steps 300] [--repeats 3]``.

The baseline is ../shared/seeds/004_156ffc9b714fac87.txt as written: a Dataset that turns
each sample into a PIL image and applies ToTensor + Normalize(0.5, 0.5) one by one (what
torchvision's MNIST + transforms do; torchvision itself is not installed here, so those
two transforms are transcribed), a DataLoader(batch 32, shuffle, drop_last), the same
nets, nn.BCELoss on sigmoid outputs, Adam 2e-4, a fresh z for the G step, and
``.item()`` on both losses every step. Both loops run on the same data (real MNIST),
in the same process, interleaved, so machine noise hits both alike.

gankit's side is the real `Trainer.run()` (pytorch-mlp preset, batch 32, fp32) with
logging every 50 steps; steps/s is measured over whole log intervals after the first.

It also reports how close each step is to the machine's limit: FLOPs per step counted
from the layer shapes, divided by the step time, against a plain fp32 matrix-multiply
benchmark on the same cores.
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

from common import shared_mnist, steady_steps_per_s  # noqa: E402  (bench/ is on sys.path as the script's folder)
from gankit.config import TrainConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine.trainer import Trainer  # noqa: E402

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


def seed_loop(images, labels, steps: int) -> float:
    """Steps/s of the seed's loop over ``steps`` steps (after 20 warm-up steps)."""
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

    done, t0 = 0, None
    while True:
        for x, _ in loader:
            if done == 20:
                t0 = time.perf_counter()
            d_train(x)
            g_train(x)
            done += 1
            if done == steps + 20:
                return steps / (time.perf_counter() - t0)


# ---------------------------------------------------------------- gankit
def gankit_loop(images, labels, steps: int, precision: str = "fp32") -> float:
    log_every = 50
    cfg = TrainConfig(steps=steps + log_every, batch_size=BATCH, log_every=log_every, sample_every=10**9,
                      checkpoint_every=10**9, precision=precision, device="cpu", preset="pytorch-mlp").validate()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, load_plugin("unconditional"), images, labels, Path(tmp) / "run",
                          dataset_name="mnist")
        result = trainer.run()
    return steady_steps_per_s(result.metrics, log_every)


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


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--bf16", action="store_true", help="also time gankit with bf16 autocast")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()

    ds = load_dataset(args.data, "train", allow_download=False)
    seed_rates, ours, ours_bf16 = [], [], []
    for _ in range(args.repeats):
        seed_rates.append(seed_loop(ds.images, ds.labels, args.steps))
        ours.append(gankit_loop(ds.images, ds.labels, args.steps))
        if args.bf16:
            ours_bf16.append(gankit_loop(ds.images, ds.labels, args.steps, "bf16"))
    seed_med, ours_med = statistics.median(seed_rates), statistics.median(ours)
    peak = matmul_gflops()
    flops = mlp_step_flops(BATCH)

    print(f"\nTraining speed, PyTorch seed recipe (MLP, batch {BATCH}, BCE, Adam 2e-4), CPU, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} x {args.steps} steps\n")
    print("| loop | steps/s | vs seed | achieved GFLOP/s | share of matmul peak |")
    print("|---|---:|---:|---:|---:|")
    print(f"| seed (DataLoader + per-sample ToTensor/Normalize) | {seed_med:.1f} | 1.00x | - | - |")
    print(f"| gankit fp32 | {ours_med:.1f} | {ours_med / seed_med:.2f}x | {flops * ours_med / 1e9:.1f} | "
          f"{flops * ours_med / 1e9 / peak:.0%} |")
    result = {"seed_steps_per_s": seed_rates, "gankit_fp32_steps_per_s": ours, "ratio_fp32": ours_med / seed_med,
              "step_gflop": flops / 1e9, "matmul_peak_gflops": peak}
    if ours_bf16:
        bf = statistics.median(ours_bf16)
        print(f"| gankit bf16 autocast | {bf:.1f} | {bf / seed_med:.2f}x | - | - |")
        result["gankit_bf16_steps_per_s"] = ours_bf16
    print(f"\nplain fp32 matmul (1024^3): {peak:.1f} GFLOP/s; one gankit step = {flops / 1e9:.3f} GFLOP")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
