"""Scaling benchmark: steps/s and images/s with 1 and N processes, per plugin, through the real CLI.

Bench script (runs `gankit train` in subprocesses). For each plugin it trains the same run
(same seed, same *global* batch) in one process, with ``--nproc N`` (DDP), and for
per-digit also with ``--nproc N --shard-digits``, then reads the steady step rate from
each run's metrics.jsonl (`common.steady_steps_per_s`: warm-up interval left out).
images/s is steps/s times the global batch (per-digit: batch per digit times digits).

    python bench/bench_scale.py                   # 1 vs 2 processes, default nets
    python bench/bench_scale.py --nproc 4 --steps 600

Writes bench/results/scale.md and scale.json. The numbers are only as quiet as the
machine: on a shared box, run it when nothing else trains, and read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# (plugin, extra options, images per step given --batch-size B)
PLUGINS = {
    "unconditional": ([], lambda b: b),
    "conditional": ([], lambda b: b),
    "per-digit": ([], lambda b: 10 * b),
}


def one_run(data: str, plugin: str, batch: int, steps: int, log_every: int, extra: list[str],
            runs_dir: Path, name: str) -> dict:
    args = common.cli("train", "--plugin", plugin, "--data", data, "--device", "cpu", "--batch-size", batch,
                      "--steps", steps, "--log-every", log_every, "--checkpoint-every", steps,
                      "--sample-every", steps, "--d-dropout", "0", "--runs-dir", runs_dir, "--name", name,
                      "--quiet", *extra)
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{proc.stderr}")
    rows = [json.loads(line) for line in (runs_dir / name / "metrics.jsonl").read_text().splitlines()]
    return {"steps_per_s": common.steady_steps_per_s(rows, log_every), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=common.shared_mnist())
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (per digit for per-digit)")
    ap.add_argument("--plugins", default=",".join(PLUGINS))
    args = ap.parse_args()
    log_every = max(1, args.steps // 8)
    load_before = os.getloadavg()[0]
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for plugin in args.plugins.split(","):
            extra, images = PLUGINS[plugin]
            # per-digit's batch is per digit: a smaller one keeps its global batch comparable.
            batch = max(args.nproc, args.batch_size // 8) if plugin == "per-digit" else args.batch_size
            modes = [("1 process", []), (f"{args.nproc} DDP", ["--nproc", args.nproc])]
            if plugin == "per-digit":
                modes.append((f"{args.nproc} shard-digits", ["--nproc", args.nproc, "--shard-digits"]))
            base = None
            for label, mode in modes:
                name = f"{plugin}-{len(table)}"
                r = one_run(args.data, plugin, batch, args.steps, log_every, extra + list(map(str, mode)),
                            Path(tmp), name)
                base = base or r["steps_per_s"]
                row = {"plugin": plugin, "mode": label, "global_batch": images(batch),
                       "steps_per_s": round(r["steps_per_s"], 2),
                       "images_per_s": round(r["steps_per_s"] * images(batch)),
                       "ratio": round(r["steps_per_s"] / base, 2), "wall_s": round(r["wall_s"], 1)}
                table.append(row)
                print(f"{plugin:14s} {label:18s} {row['steps_per_s']:8.2f} steps/s {row['images_per_s']:8d} img/s "
                      f"x{row['ratio']:.2f}", flush=True)
    info = common.machine_info()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"machine": info, "steps": args.steps, "rows": table,
                                                     "date": time.strftime("%Y-%m-%d")}, indent=1))
    lines = [f"# Scaling: 1 vs {args.nproc} processes ({time.strftime('%Y-%m-%d')})", "",
             f"CPU: {info['cpu']}, {info['cpus']} cores; torch {info['torch']}; default nets, {args.steps} steps, "
             "steady rate from metrics.jsonl. Ratio is against one process. "
             f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
             "(on a shared box the one-process rows starve first, and the ratios overstate DDP).", "",
             "| plugin | mode | global batch | steps/s | images/s | ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['plugin']} | {r['mode']} | {r['global_batch']} | {r['steps_per_s']} | {r['images_per_s']} | "
              f"x{r['ratio']} |" for r in table]
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
