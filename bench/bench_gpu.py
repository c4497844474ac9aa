"""Step speed per `--compile` mode: per-digit and conditional, eager against each captured option.

Heavy tier (torch). One prepared script that runs unattended on the device it is given
(it installs nothing)::

    python bench/bench_gpu.py --device cuda        # on a GPU machine
    python bench/bench_gpu.py --device cpu         # the same options on a CPU

For each plugin (its ``train_defaults``, real MNIST) and each mode (``off`` = eager,
``default``, ``reduce-overhead``) it builds the real `Trainer`'s nets, optimizers,
sampler and EMA, wraps the plugin's step exactly as ``gankit train --compile MODE`` does
(`gankit.training.engine.compile.CompiledStep`), and then:

* times the first step (for a compiled mode: the compile time). Inductor's on-disk cache
  starts empty (a temporary folder; ``--warm-cache`` keeps the user's), so the first
  compiled mode of each plugin pays a cold compile, as on a fresh machine; a later mode
  reuses what the process already compiled;
* runs ``--warmup`` steps, then ``--rounds`` rounds of ``--steps`` steps, the modes
  interleaved round by round so that a change in machine load hits every mode alike;
  a mode's rate is its best round (the least disturbed), the median is shown beside it;
* profiles ``--profile-steps`` steps with torch.profiler and reports the share of the
  wall time spent in kernels: on a GPU the device's busy time (CUDA kernels and copies),
  on a CPU the self time of the compute ops (aten ops other than views and other
  metadata, and inductor's generated kernels);
* says after how many steps a compiled mode's compile time is paid back.

It prints a table and writes bench/results/gpu_<device>.json and .md with the command,
the CPU model (lscpu), the torch build, the thread count and the load average before
and after. On a shared machine read the ratios, which are measured in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from gankit.config import TrainConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.plugin_api import Nets  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine.compile import CompiledStep  # noqa: E402
from gankit.training.engine.context import make_step_context  # noqa: E402
from gankit.training.engine.step import standard_step  # noqa: E402
from gankit.training.engine.trainer import Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("off", "default", "reduce-overhead")
# What `--compile auto` may pick: a mode at least this much faster than eager whose compile
# time is paid back within this many steps (a few minutes of a default 18,000-step run).
MIN_SPEEDUP, MAX_PAYBACK_STEPS = 1.10, 2000
# Ops that only make views or move metadata: their self time is dispatch overhead, not a kernel.
_METADATA_OPS = {
    "aten::view", "aten::as_strided", "aten::empty", "aten::empty_strided", "aten::reshape", "aten::_reshape_alias",
    "aten::transpose", "aten::t", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice",
    "aten::detach", "aten::detach_", "aten::expand", "aten::permute", "aten::alias", "aten::narrow",
    "aten::resolve_conj", "aten::resolve_neg", "aten::lift_fresh", "aten::movedim", "aten::unbind",
    "aten::split", "aten::chunk", "aten::view_as", "aten::empty_like", "aten::set_", "aten::resize_",
    "aten::is_nonzero", "aten::result_type", "aten::to", "aten::contiguous", "aten::flatten", "aten::numpy_T",
    "aten::zeros", "aten::expand_as", "aten::requires_grad_", "aten::_unsafe_view", "aten::new_empty",
    "aten::new_empty_strided", "aten::record_stream",
}


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def cpu_model() -> str:
    """lscpu's Model name (the CPU the numbers come from); /proc/cpuinfo where lscpu is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return common.cpu_model()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stepper:
    """One plugin's real training state on ``device``, stepped through ``CompiledStep`` in one mode."""

    def __init__(self, plugin_name: str, mode: str, args, data, run_dir: Path, precision: str):
        plugin = load_plugin(plugin_name)
        settings = {**dict(plugin.train_defaults), "device": args.device, "precision": precision,
                    "compile": "off", "seed": args.seed, "steps": 10**9, "log_every": 10**9,
                    "sample_every": 10**9, "checkpoint_every": 10**9}
        cfg = TrainConfig.make(plugin=plugin_name, **settings).validate()
        self.trainer = t = Trainer(cfg, plugin, data.images, data.labels, run_dir, dataset_name="bench")
        self.device = t.device
        self.precision = t.cfg.precision
        self.mode = mode
        ctx = make_step_context(
            Nets(t.G, t.D), t.spec, opt_g=t.opt_g, opt_d=t.opt_d, next_batch=t.sampler.next, loss=cfg.loss,
            ls_sigmoid=cfg.ls_sigmoid, noise=cfg.noise, torch_generator=t.noise_gen, d_steps=cfg.d_steps,
            precision=t.cfg.precision, device=t.device, d_regularizer=getattr(plugin, "d_regularizer", None))
        self.ctx = ctx
        train_step = plugin.train_step or standard_step
        self.messages: list[str] = []
        if mode != "off":
            train_step = CompiledStep(train_step, ctx, mode, modules=[t.G, t.D], optimizers=[t.opt_g, t.opt_d],
                                      generators=[t.noise_gen], sampler=t.sampler, on_message=self.messages.append)
        self.train_step = train_step
        self.step = 0
        self.losses: list = []

    def run(self, n: int) -> None:
        t = self.trainer
        for _ in range(n):
            self.ctx.step = self.step
            real, labels = t.sampler.next()
            out = self.train_step(self.ctx, real, labels)
            if t.ema is not None:
                t.ema.update(t.G, self.step)
            self.step += 1
            self.losses.append(out)  # kept as tensors, as the trainer keeps them until a log row
            if len(self.losses) >= 50:
                self.losses.clear()

    def timed(self, n: int) -> tuple[float, float]:
        """(steps per wall second, CPU ms per step) over ``n`` steps."""
        sync(self.device)
        start, cpu = time.perf_counter(), time.process_time()
        self.run(n)
        sync(self.device)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e3

    @property
    def fell_back(self) -> bool:
        return isinstance(self.train_step, CompiledStep) and self.train_step.failed is not None


def kernel_share(stepper: Stepper, steps: int) -> tuple[float, list[tuple[str, float]]]:
    """(share of wall time in kernels, the top ops by self time as (name, ms per step))."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if stepper.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync(stepper.device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        stepper.run(steps)
        sync(stepper.device)
        wall = time.perf_counter() - start
    averages = prof.key_averages()
    if stepper.device.type == "cuda":
        busy = sum(getattr(e, "self_device_time_total", 0.0) for e in averages if e.device_type.name == "CUDA")
        top = sorted(((e.key, getattr(e, "self_device_time_total", 0.0)) for e in averages
                      if e.device_type.name == "CUDA"), key=lambda kv: -kv[1])
    else:
        def is_kernel(key: str) -> bool:
            # Inductor names its generated CPU kernels graph_<n>_cpp_fused_... (with enable_kernel_profile).
            return (key.startswith("aten::") and key not in _METADATA_OPS) or "cpp_fused" in key
        busy = sum(e.self_cpu_time_total for e in averages if is_kernel(e.key))
        top = sorted(((e.key, e.self_cpu_time_total) for e in averages if is_kernel(e.key)), key=lambda kv: -kv[1])
    return busy / 1e6 / wall, [(k, v / 1e3 / steps) for k, v in top[:8]]


def bench_plugin(plugin_name: str, args, data, tmp: Path) -> dict:
    # One precision for every mode: --precision auto is settled once (by the eager trainer's timing).
    probe = Stepper(plugin_name, "off", args, data, tmp / f"{plugin_name}-probe", args.precision)
    precision = probe.precision
    del probe
    steppers = {}
    first = {}
    for mode in args.modes:
        s = Stepper(plugin_name, mode, args, data, tmp / f"{plugin_name}-{mode}", precision)
        sync(s.device)
        start = time.perf_counter()
        s.run(1)
        sync(s.device)
        first[mode] = time.perf_counter() - start
        steppers[mode] = s
    for s in steppers.values():
        s.run(args.warmup)
    rates: dict[str, list[float]] = {m: [] for m in steppers}
    cpu_ms: dict[str, list[float]] = {m: [] for m in steppers}
    for r in range(args.rounds):
        order = list(steppers) if r % 2 == 0 else list(steppers)[::-1]
        for mode in order:
            rate, cpu = steppers[mode].timed(args.steps)
            rates[mode].append(rate)
            cpu_ms[mode].append(cpu)
    out = {"precision": precision, "modes": {}}
    eager_best = max(rates["off"])
    for mode, s in steppers.items():
        share, top = kernel_share(s, args.profile_steps)
        best = max(rates[mode])
        row = {"first_step_s": first[mode], "best_steps_per_s": best, "median_steps_per_s": statistics.median(rates[mode]),
               "rounds": rates[mode], "cpu_ms_per_step": min(cpu_ms[mode]), "cpu_rounds": cpu_ms[mode],
               "kernel_share": share, "top_ops_ms_per_step": top, "fell_back": s.fell_back, "messages": s.messages}
        if mode != "off" and not s.fell_back:
            row["speedup"] = best / eager_best
            row["cpu_speedup"] = min(cpu_ms["off"]) / min(cpu_ms[mode])
            saved_per_step = 1 / eager_best - 1 / best
            extra = first[mode] - 1 / eager_best
            row["compile_s"] = extra
            row["pays_back_after_steps"] = (extra / saved_per_step) if saved_per_step > 0 else None
        out["modes"][mode] = row
    return out


def recommendation(results: dict) -> str:
    """The mode `--compile auto` should pick on this device: the fastest that pays on every plugin, else off."""
    best, best_speed = "off", 1.0
    for mode in MODES[1:]:
        rows = [res["modes"].get(mode) for res in results.values()]
        if not rows or any(r is None or "speedup" not in r for r in rows):
            continue
        speed = min(r["speedup"] for r in rows)
        pays = all(r.get("pays_back_after_steps") is not None and r["pays_back_after_steps"] <= MAX_PAYBACK_STEPS
                   for r in rows)
        if pays and speed >= MIN_SPEEDUP and speed > best_speed:
            best, best_speed = mode, speed
    return best


def markdown(results: dict, header: dict) -> str:
    lines = [f"# Step speed per --compile mode on {header['device_name']}", "",
             f"Command: `{header['command']}`", "",
             f"Device: {header['device_name']}; CPU: {header['cpu']}; {header['threads']} torch threads; "
             f"torch {header['torch']}; Python {header['python']}", "",
             f"Load average (1, 5, 15 min): {header['load_before']} before, {header['load_after']} after", "",
             f"Inductor cache: {header['inductor_cache']}; a plugin's first compiled mode pays the compile, a later "
             "mode reuses what the process compiled.", "",
             f"Each mode: {header['rounds']} rounds of {header['steps']} steps after {header['warmup']} warm-up steps, "
             "interleaved; best round, median in brackets. CPU ms/step is this process's CPU time per step "
             "(best round): on a shared machine it measures the step where the wall clock measures the "
             "other work too. Kernel share from torch.profiler over "
             f"{header['profile_steps']} steps.", "",
             "| plugin | precision | mode | steps/s | CPU ms/step | vs eager (wall, CPU) | first step (s) | "
             "pays back after | kernel share |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for plugin, res in results.items():
        for mode, row in res["modes"].items():
            vs = f"{row['speedup']:.2f}x, {row['cpu_speedup']:.2f}x" if "speedup" in row else \
                ("fell back" if row["fell_back"] else "-")
            payback = row.get("pays_back_after_steps")
            pays = "-" if mode == "off" or row["fell_back"] else ("never" if payback is None else f"{payback:,.0f} steps")
            lines.append(f"| {plugin} | {res['precision']} | {mode} | {row['best_steps_per_s']:.1f} "
                         f"({row['median_steps_per_s']:.1f}) | {row['cpu_ms_per_step']:.1f} | {vs} | "
                         f"{row['first_step_s']:.1f} | {pays} | "
                         f"{row['kernel_share']:.0%} |")
    lines += ["", f"For `--compile auto` on {header['device']}: **{header['recommendation']}** (the fastest mode at least "
              f"{MIN_SPEEDUP:.2f}x eager on every plugin whose compile time is paid back within "
              f"{MAX_PAYBACK_STEPS:,} steps; `AUTO` in gankit/training/engine/compile.py says "
              f"`{header['auto_now']}`).", ""]
    lines += ["", "Top ops by time per step (ms):", ""]
    for plugin, res in results.items():
        for mode, row in res["modes"].items():
            ops = ", ".join(f"{k} {v:.2f}" for k, v in row["top_ops_ms_per_step"][:6])
            lines.append(f"- {plugin} / {mode}: {ops}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    ap.add_argument("--plugins", default="per-digit,conditional")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated; 'off' (eager) is always included")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--steps", type=int, default=100, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=common.shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu_<device>.json / .md")
    ap.add_argument("--warm-cache", action="store_true", help="use the user's inductor cache, not an empty one")
    args = ap.parse_args()
    args.modes = ["off", *[m for m in args.modes.split(",") if m and m != "off"]]
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:  # name inductor's CPU kernels in the profile
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True
    except (ImportError, AttributeError):
        pass

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({cpu_model()})"
    header = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device": args.device,
              "device_name": device_name, "cpu": cpu_model(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "python": platform.python_version(), "load_before": load_line(),
              "steps": args.steps, "rounds": args.rounds, "warmup": args.warmup, "profile_steps": args.profile_steps}
    data = load_dataset(args.data, "train", allow_download=False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.warm_cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor-cache")
        header["inductor_cache"] = "user's (warm)" if args.warm_cache else "empty at start (cold)"
        for plugin in [p for p in args.plugins.split(",") if p]:
            results[plugin] = bench_plugin(plugin, args, data, Path(tmp))
            print(f"{plugin}: done (load {load_line()})", file=sys.stderr)
    header["load_after"] = load_line()
    header["recommendation"] = recommendation(results)
    from gankit.training.engine.compile import AUTO

    header["auto_now"] = AUTO.get(args.device, "off")
    text = markdown(results, header)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gpu_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps({**header, "results": results}, indent=2))
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
