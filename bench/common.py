"""What the benchmarks share: the dev machine's MNIST folder, the machine line, the CLI, step rates.

Bench helper (standard library; gankit's data loader only inside `train_images`). Every
benchmark imports it as ``common`` (bench/ is on ``sys.path`` as the script's folder).
This is the one place in bench/ that knows this project's folder layout: gankit itself
finds named data sets only through ``$GANKIT_DATA``, the user cache or a path, so the
benchmarks pass the folder explicitly (``--data``), defaulting to `shared_mnist()`.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_mnist() -> str:
    """The project's real MNIST folder (the 10k-image training subset): shared/data/mnist beside the checkout."""
    for parent in (REPO, *REPO.parents):
        folder = parent / "shared" / "data" / "mnist"
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return str(folder)
    return str(REPO.parent / "shared" / "data" / "mnist")


def train_images(data: str) -> int:
    """How many training images the data folder holds (result tables state it)."""
    from gankit.data import load_dataset

    return len(load_dataset(data, "train"))


def cli(*args) -> list[str]:
    """The real `gankit` command of this checkout, as a subprocess argument list."""
    return [sys.executable, "-m", "gankit.cli", *map(str, args)]


def steady_steps_per_s(metrics: list[dict], log_every: int) -> float:
    """Step rate after warm-up, from a run's log rows: all intervals but the first, time-weighted.

    Each row's ``steps_per_s`` covers the ``log_every`` steps before it; the first interval
    includes start-up, so it is left out. NaN when fewer than two intervals were logged.
    """
    rows = [r for r in metrics if "steps_per_s" in r][1:]
    if not rows:
        return float("nan")
    return log_every * len(rows) / sum(log_every / r["steps_per_s"] for r in rows)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """The machine line every result file carries: CPU, cores, Python and library versions."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return {"cpu": cpu_model(), "cpus": cpus, "python": platform.python_version(),
            "torch": version("torch"), "onnxruntime": version("onnxruntime"), "gankit": version("gankit"),
            "platform": platform.platform()}


def quality_figure():
    """(figure, accuracy axes, FD axes): the two-panel quality plot the benches draw."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), dpi=100, layout="constrained")
    ax_acc, ax_fd = fig.subplots(1, 2)
    return fig, ax_acc, ax_fd


def save_quality_figure(fig, ax_acc, ax_fd, title: str, path: Path) -> None:
    """Legends where the curves are not (accuracy rises, FD falls), the title, and an atomic PNG write."""
    from gankit.atomic import atomic_write

    ax_acc.legend(loc="lower right", fontsize="small")
    ax_fd.legend(loc="upper right", fontsize="small")
    fig.suptitle(title, fontsize="medium")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as every speed figure states them."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# What a training step's CPU time goes to, by op (self time in a torch.profiler trace).
STEP_PARTS = {
    "matmuls / convolutions": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                               "aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                               "aten::convolution", "aten::_mkldnn_convolution"),
    "optimizer (Adam)": ("aten::_fused_adam_", "aten::_fused_adamw_", "aten::_fused_sgd_"),
    "EMA (lerp)": ("aten::lerp_", "aten::_foreach_lerp_"),
    "dropout masks (bernoulli)": ("aten::bernoulli_", "aten::bernoulli", "aten::native_dropout"),
    "dtype casts / copies": ("aten::copy_", "aten::_to_copy", "aten::clone"),
    "data + noise": ("aten::index_select", "aten::index", "aten::normal_", "aten::uniform_"),
}


def step_breakdown(prof, total_ms: float, steps: int) -> dict[str, float]:
    """ms per step in each `STEP_PARTS` group, the other aten ops, and the rest (Python, dispatch, autograd).

    ``prof`` is a finished torch.profiler run over ``steps`` steps that took ``total_ms``.
    """
    parts = {name: 0.0 for name in STEP_PARTS}
    other = 0.0
    for e in prof.key_averages():
        if not e.key.startswith("aten::"):
            continue
        ms = e.self_cpu_time_total / 1e3 / steps
        group = next((name for name, ops in STEP_PARTS.items() if e.key in ops), None)
        if group is None:
            other += ms
        else:
            parts[group] += ms
    parts["other aten ops"] = other
    parts["Python, dispatch, autograd"] = max(0.0, total_ms / steps - sum(parts.values()))
    return parts


def profile_steps(cfg, plugin, images, labels, steps: int, warmup: int = 5) -> dict[str, float]:
    """`step_breakdown` of ``steps`` steady steps of ``plugin`` on a real Trainer's nets, sampler and EMA.

    Heavy (torch, imported here). The steps run outside ``Trainer.run`` so the profile holds
    the step alone: no logging, checkpoints or sample grids.
    """
    import tempfile
    import time

    from torch.profiler import ProfilerActivity, profile

    from gankit.plugin_api import Nets
    from gankit.training.engine.context import make_step_context
    from gankit.training.engine.step import standard_step
    from gankit.training.engine.trainer import Trainer

    step = plugin.train_step or standard_step

    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, plugin, images, labels, Path(tmp) / "run", dataset_name="mnist")
        ctx = make_step_context(Nets(t.G, t.D), t.spec, opt_g=t.opt_g, opt_d=t.opt_d, next_batch=t.sampler.next,
                                loss=cfg.loss, noise=cfg.noise, torch_generator=t.noise_gen, d_steps=cfg.d_steps,
                                precision=t.cfg.precision, device=t.device)

        def run(n: int, first: int) -> None:
            for i in range(first, first + n):
                ctx.step = i
                real, lab = t.sampler.next()
                step(ctx, real, lab)
                if t.ema is not None:
                    t.ema.update(t.G, i)

        run(warmup, 0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            run(steps, warmup)
            wall_ms = (time.perf_counter() - start) * 1e3
    return step_breakdown(prof, wall_ms, steps)
