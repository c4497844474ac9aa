"""Benchmark: onnxruntime generation (ours) against torch eager on the same generator.

Heavy tier to run (it builds and exports the generator with torch, and times torch eager
for comparison); the ONNX side runs exactly as users run it. Prints one table, every row
measured in this run on this machine, with the ratio ours/torch:

* cold start: ``gankit generate --digit 7 -n 64 -o x.png`` in a torch-free venv vs a
  torch-eager script doing the same job (import torch, build the net, load its
  safetensors weights, draw 64 sevens, save the same PNG grid), median of ``--runs``;
  also against a bare ``python -c "import torch"`` (target: at most 0.20x) and against
  the floor: the same venv's Python importing numpy and onnxruntime, loading the model
  and running 64 sevens, nothing else (no checks, no PNG);
* throughput at batch 1024 (images/s), and batch-1 latency, in-process.

The generator is the default conditional MLP: z 100 + one-hot label -> 256 -> 512 ->
1024 -> 784 (LeakyReLU, tanh), 1.5 M weights. Usage::

    .venv/bin/python bench/bench_generate.py [--runs 7] [--sweep]

``--sweep`` also times onnxruntime's thread and graph-optimisation settings (how the
runtime's `SessionOptions` were chosen).

Measured results, with the machine line they come from: bench/results/generate.txt
(this script's printed output; the README's Generation table quotes it).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TORCH_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from torch import nn
    from safetensors.torch import load_file
    from gankit.images import save_grid, to_uint8

    class Conditional(nn.Module):
        def __init__(self):
            super().__init__()
            widths = (110, 256, 512, 1024)
            layers = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
            self.net = nn.Sequential(*layers, nn.Linear(1024, 784), nn.Tanh())

        def forward(self, z, labels):
            cond = torch.nn.functional.one_hot(labels, 10).float()
            return self.net(torch.cat([z, cond], 1)).view(-1, 1, 28, 28)

    g = Conditional()
    g.load_state_dict(load_file(sys.argv[1]))
    g.eval()
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        images = g(torch.randn(64, 100, generator=gen), torch.full((64,), 7))
    save_grid(to_uint8(images.numpy(), (-1.0, 1.0)), sys.argv[2], nrow=64, row_labels=["7"])
""")

# The least any torch-free generate can do: import numpy and onnxruntime, load, run.
FLOOR_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((64, 100), dtype=np.float32)
    session.run(None, {"z": z, "label": np.full(64, 7, dtype=np.int64)})
""")
COLD_TARGET = 0.20  # issue 21: at most 0.20x a bare `import torch`


def build_model(folder: Path):
    """Export the benchmark generator; save its weights for the torch script. Returns the module."""
    import torch
    from safetensors.torch import save_file

    from gankit.contract import CONTRACT_VERSION, ModelCard
    from gankit.training.export.to_onnx import export_generator

    namespace: dict = {}
    exec(TORCH_SCRIPT.split("g = Conditional()")[0], namespace)  # the class only, same code as the script
    torch.manual_seed(0)
    module = namespace["Conditional"]().eval()
    card = ModelCard(gankit_version="0.1.0", contract_version=CONTRACT_VERSION, plugin="bench",
                     label_mode="conditional", arch="mlp", z_dim=100, noise="normal", classes=tuple(range(10)),
                     image_size=28, value_range=(-1.0, 1.0), training_steps=0, dataset="none", created="",
                     weights_sha256="")
    export_generator(module, card, folder / "bench.onnx")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(folder / "bench.safetensors"))
    (folder / "torch_generate.py").write_text(TORCH_SCRIPT)
    (folder / "floor.py").write_text(FLOOR_SCRIPT)
    return module


def cold(cmds: dict[str, list[str]], cwd: Path, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Wall-clock and CPU (user + system) seconds of each run of each command.

    Runs are interleaved (a, b, c, a, b, c, ...) so every command sees the same load on a
    shared machine, after one untimed warm-up each that fills the page cache and writes
    .pyc files (PYTHONDONTWRITEBYTECODE is dropped), as a normal install has them. CPU time
    is reported too because other processes stretch wall time but hardly the CPU time a
    run needs.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cmds}
    for i in range(runs + 1):
        for name, cmd in cmds.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
            if i:
                times[name][0].append(elapsed)
                times[name][1].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times


def import_profile(cmd: list[str], cwd: Path, top: int = 12) -> None:
    """Print the top-level imports of one run by cumulative time (python -X importtime)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):  # top-level imports only
                rows.append((int(cumulative), name.strip()))
    print(f"\nwhere a cold start's imports go (top-level modules, cumulative ms):")
    for micros, name in sorted(rows, reverse=True)[:top]:
        print(f"  {micros / 1000:7.1f}  {name}")


def timed(fn, reps: int) -> float:
    """Median seconds per call of ``fn`` over ``reps`` calls (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="cold-start runs per side (median reported)")
    parser.add_argument("--sweep", action="store_true", help="also time onnxruntime thread/optimisation settings")
    args = parser.parse_args()
    load = os.getloadavg()[0]

    import numpy as np
    import torch

    from gankit.runtime import load_generator

    sys.path.insert(0, str(REPO / "tests"))
    from light_venv import ensure_light_venv  # the torch-free venv tests/test_no_torch.py runs in

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        module = build_model(folder)
        venv = ensure_light_venv(REPO)

        ours_cmd = [str(venv / "bin" / "gankit"), "generate", "--digit", "7", "-n", "64", "-o", "x.png",
                    "--model", str(folder / "bench.onnx")]
        cmds = {"ours": ours_cmd,
                "torch": [sys.executable, str(folder / "torch_generate.py"), str(folder / "bench.safetensors"),
                          "t.png"],
                # Issue 10's yardstick: the bare import, no work at all.
                "import torch": [sys.executable, "-c", "import torch"],
                "floor": [str(venv / "bin" / "python"), str(folder / "floor.py"), str(folder / "bench.onnx")]}
        times = cold(cmds, folder, args.runs)
        (ours, ours_cpu), (theirs, theirs_cpu) = times["ours"], times["torch"]
        bare = statistics.median(times["import torch"][0])
        floor = statistics.median(times["floor"][0])
        cold_ratio = statistics.median(ours) / bare
        rows.append(("cold start, 64 sevens -> PNG (s wall, median)", statistics.median(ours),
                     statistics.median(theirs), "lower"))
        rows.append(("cold start, 64 sevens -> PNG (s CPU, median)", statistics.median(ours_cpu),
                     statistics.median(theirs_cpu), "lower"))

        gen = load_generator(folder / "bench.onnx")
        rng = np.random.default_rng(0)
        z = rng.standard_normal((1024, 100), dtype=np.float32)
        labels = rng.integers(0, 10, 1024).astype(np.int64)
        zt, lt = torch.from_numpy(z), torch.from_numpy(labels)
        default_threads = torch.get_num_threads()

        def torch_run(n):
            with torch.inference_mode():
                module(zt[:n], lt[:n])

        ort_1024 = timed(lambda: gen.generate_float(z, labels), 30)
        torch_1024 = timed(lambda: torch_run(1024), 30)
        ort_1 = timed(lambda: gen.generate_float(z[:1], labels[:1]), 500)
        torch_1 = timed(lambda: torch_run(1), 500)
        torch.set_num_threads(1)
        torch_1024_t1 = timed(lambda: torch_run(1024), 30)
        torch_1_t1 = timed(lambda: torch_run(1), 500)
        torch.set_num_threads(default_threads)
        threads = gen._session.get_session_options().intra_op_num_threads
        rows += [
            (f"throughput, batch 1024 (images/s), torch {default_threads} threads", 1024 / ort_1024,
             1024 / torch_1024, "higher"),
            ("throughput, batch 1024 (images/s), torch 1 thread", 1024 / ort_1024, 1024 / torch_1024_t1, "higher"),
            (f"latency, batch 1 (ms), torch {default_threads} threads", ort_1 * 1e3, torch_1 * 1e3, "lower"),
            ("latency, batch 1 (ms), torch 1 thread", ort_1 * 1e3, torch_1_t1 * 1e3, "lower"),
        ]

        # The shipped default model (conditional DCGAN) against the same nets in torch eager,
        # eval mode. The exporter folds batch norm into the convolutions; torch eager cannot.
        shipped = load_generator()
        shipped_torch = shipped_torch_generator()

        def torch_shipped():
            with torch.inference_mode():
                shipped_torch(zt, lt)

        ort_s = timed(lambda: shipped.generate_float(z, labels), 10)
        torch_s = timed(torch_shipped, 10)
        rows.append((f"throughput, batch 1024 (images/s), shipped conditional DCGAN, torch {default_threads} threads",
                     1024 / ort_s, 1024 / torch_s, "higher"))

        print(f"\nmachine: {os.cpu_count()} CPUs, load average {load:.2f} before this bench's own work "
              f"(other processes stretch wall times); onnxruntime: {threads} intra-op threads (gankit.runtime)")
        print(f"cold start runs, wall s: ours {[round(t, 3) for t in ours]}  torch {[round(t, 3) for t in theirs]}")
        print(f"\n{'measure':<58} {'ours (onnxruntime)':>18} {'torch eager':>12} {'ours vs torch':>14}")
        for name, a, b, better in rows:
            ratio = b / a if better == "lower" else a / b
            print(f"{name:<58} {a:>18.4g} {b:>12.4g} {ratio:>13.2f}x")
        print("(ours vs torch: how many times better ours is; > 1 means ours is faster)")
        print("\ntargets:")
        for name, a, b, _ in rows:
            if "wall" in name:
                print(f"  {name.strip()}: <= 0.5 s {'met' if a <= 0.5 else 'MISSED'} ({a:.3f} s); "
                      f">= 4x torch {'met' if b / a >= 4 else 'MISSED'} ({b / a:.1f}x)")
        for name, a, b, _ in rows:
            if name.startswith("throughput") and f"torch {default_threads} threads" in name:
                print(f"  {name}: >= 1.5x torch {'met' if a / b >= 1.5 else 'MISSED'} ({a / b:.2f}x)")
        print(f"  cold start vs `python -c 'import torch'` ({bare:.3f} s, median): <= {COLD_TARGET:.2f}x "
              f"{'met' if cold_ratio <= COLD_TARGET else 'MISSED'} ({cold_ratio:.3f}x)")
        bare_cpu = statistics.median(times["import torch"][1])
        print(f"  the same in CPU time (user + system, which other processes hardly stretch): ours "
              f"{statistics.median(ours_cpu):.3f} s, import torch {bare_cpu:.3f} s: "
              f"{statistics.median(ours_cpu) / bare_cpu:.3f}x; the floor {statistics.median(times['floor'][1]):.3f} s, "
              f"{statistics.median(times['floor'][1]) / bare_cpu:.3f}x")
        print(f"  the floor (Python + numpy + onnxruntime import, model load and run; no checks, no PNG): "
              f"{floor:.3f} s, {floor / bare:.3f}x `import torch`; ours is {statistics.median(ours) - floor:.3f} s "
              f"({statistics.median(ours) / floor:.2f}x) above it")
        print(f"cold start runs, wall s: import torch {[round(t, 3) for t in times['import torch'][0]]}  "
              f"floor {[round(t, 3) for t in times['floor'][0]]}")
        import_profile(ours_cmd, folder)

        if args.sweep:
            sweep(folder / "bench.onnx", z, labels)


def shipped_torch_generator():
    """The shipped conditional model's generator as torch builds it (exports/conditional.md's recipe), eval mode.

    Its weights are freshly initialised: the timing depends on the shapes, not the values.
    """
    from gankit.presets import get_preset
    from gankit.registry import load_plugin
    from gankit.training.engine.spec import spec_from_config

    cfg = get_preset("keras-dcgan").config.with_overrides(plugin="conditional", arch="dcgan")
    plugin = load_plugin("conditional")
    return plugin.build(spec_from_config(cfg, plugin)).generator.eval()


def sweep(path: Path, z, labels) -> None:
    """Time onnxruntime settings on the same model (how gankit.runtime's options were picked)."""
    import onnxruntime as ort

    print(f"\n{'threads':>7} {'spin':>4} {'optimisation':>12} {'create CPU ms':>13} {'batch 1 ms':>10} "
          f"{'batch 1024 ms':>13} {'(CPU ms)':>9}")
    data = path.read_bytes()
    settings = [(t, spin, "ORT_ENABLE_ALL") for t in (1, 2) for spin in ("0", "1")]
    settings += [(2, "0", level) for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED")]
    for threads, spin, level in settings:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        start = time.process_time()
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        create = time.process_time() - start
        one = timed(lambda: session.run(None, {"z": z[:1], "label": labels[:1]}), 300)
        big = timed(lambda: session.run(None, {"z": z, "label": labels}), 20)
        start = time.process_time()
        for _ in range(10):
            session.run(None, {"z": z, "label": labels})
        big_cpu = (time.process_time() - start) / 10
        print(f"{threads:>7} {spin:>4} {level[4:]:>12} {create * 1e3:>13.1f} {one * 1e3:>10.3f} "
              f"{big * 1e3:>13.1f} {big_cpu * 1e3:>9.1f}")


if __name__ == "__main__":
    main()
