"""bf16 against fp32 training, step for step: does bf16 reach the same quality in the same number of steps?

Heavy tier at run time only through what it reads (no torch import). Run after two
time-to-quality runs on the same machine with the same ``--eval-every`` (so the scored
checkpoints fall on the same steps)::

    python bench/time_to_quality.py --plugins conditional,per-digit --precision bf16 --tag bf16 ...
    python bench/time_to_quality.py --plugins conditional,per-digit --precision fp32 --tag fp32 --eval-every K ...
    python bench/bf16_parity.py bench/results/time_to_quality_bf16.json bench/results/time_to_quality_fp32.json

For each plugin in both files it lists digit accuracy and Fréchet distance at every step
both runs scored, with the steps each run made per second, and draws both against steps
(``bench/results/bf16_parity.png``; the table goes to ``bf16_parity.md``). Wall time is
not compared here (``time_to_quality.py`` does that); steps are, because the question is
whether bf16's rounding costs quality per step, which must hold before its speed counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        sys.exit(f"{path}: cannot read a time-to-quality result ({exc})")


def steps_per_s(info: dict) -> float | None:
    pts = info.get("points") or []
    return pts[-1]["step"] / pts[-1]["seconds"] if pts and pts[-1]["seconds"] else None


def pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def pair_runs(results: list[dict], names: tuple[str, str]) -> dict[str, tuple[dict, dict]]:
    """plugin -> (its run at precision names[0], its run at names[1]), by the precision each run recorded."""
    found: dict[str, dict[str, dict]] = {}
    for result in results:
        for key, info in result["runs"].items():
            if info.get("precision") in names:
                found.setdefault(key, {})[info["precision"]] = info
    return {k: (v[names[0]], v[names[1]]) for k, v in found.items() if len(v) == 2}


def compare(pairs: dict[str, tuple[dict, dict]], names: tuple[str, str]) -> tuple[str, dict]:
    """The markdown table and the matched points per plugin."""
    lines, matched = [], {}
    for key, (run_a, run_b) in pairs.items():
        pa = {p["step"]: p for p in run_a["points"]}
        pb = {p["step"]: p for p in run_b["points"]}
        common = sorted(set(pa) & set(pb))
        if not common:
            continue
        matched[key] = [(s, pa[s], pb[s]) for s in common]
        ra, rb = steps_per_s(run_a), steps_per_s(run_b)
        lines += [f"### {key}", "",
                  f"{names[0]}: {ra:.1f} steps/s, {names[1]}: {rb:.1f} steps/s over the whole run "
                  f"(wall time incl. checkpoints; {names[0]} / {names[1]} = {ra / rb:.2f}x)", "",
                  f"| step | accuracy {names[0]} | accuracy {names[1]} | FD {names[0]} | FD {names[1]} |",
                  "|---:|---:|---:|---:|---:|"]
        for s, x, y in matched[key]:
            lines.append(f"| {s:,} | {pct(x['accuracy'])} | {pct(y['accuracy'])} | "
                         f"{x['frechet_distance']:.2f} | {y['frechet_distance']:.2f} |")
        tail = matched[key][len(matched[key]) // 2:]  # the second half: past the early, fast-moving part
        acc = [(x["accuracy"], y["accuracy"]) for _, x, y in tail if x["accuracy"] is not None]
        fd = [(x["frechet_distance"], y["frechet_distance"]) for _, x, y in tail]
        summary = []
        if acc:
            summary.append(f"mean accuracy over the second half of the shared steps: {names[0]} "
                           f"{pct(sum(v for v, _ in acc) / len(acc))}, {names[1]} {pct(sum(v for _, v in acc) / len(acc))}")
        summary.append(f"mean FD there: {names[0]} {sum(v for v, _ in fd) / len(fd):.2f}, "
                       f"{names[1]} {sum(v for _, v in fd) / len(fd):.2f}")
        lines += ["", "; ".join(summary) + f" ({len(tail)} checkpoints from step {tail[0][0]:,})", ""]
    return "\n".join(lines), matched


def plot(matched: dict, names: tuple[str, str], path: Path, machine: str) -> None:
    from common import quality_figure, save_quality_figure

    fig, ax_acc, ax_fd = quality_figure()
    for key, rows in matched.items():
        steps = [s for s, _, _ in rows]
        for i, (name, style) in enumerate(zip(names, ("-", "--"))):
            acc = [r[1 + i]["accuracy"] for r in rows]
            if all(v is not None for v in acc):
                ax_acc.plot(steps, [100 * v for v in acc], style, marker=".", label=f"{key} {name}")
            ax_fd.plot(steps, [r[1 + i]["frechet_distance"] for r in rows], style, marker=".", label=f"{key} {name}")
    ax_acc.set(xlabel="training step", ylabel="digit accuracy (%)", ylim=(0, 100),
               title="digit accuracy at the same steps")
    ax_fd.set(xlabel="training step", ylabel="Fréchet distance (classifier features)", yscale="log",
              title="Fréchet distance at the same steps (lower is better)")
    save_quality_figure(fig, ax_acc, ax_fd, f"{names[0]} vs {names[1]} training, step for step ({machine})", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+",
                    help="time_to_quality JSON files; each plugin's bf16 and fp32 runs are found by the precision they recorded")
    ap.add_argument("--names", default="bf16,fp32", help="the two precisions to compare (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    names = tuple(args.names.split(",", 1))
    if len(names) != 2:
        ap.error("--names takes two comma-separated labels")
    results = [load(path) for path in args.results]
    text, matched = compare(pair_runs(results, names), names)
    if not matched:
        sys.exit(f"no plugin has both a {names[0]} and a {names[1]} run with checkpoints at the same steps "
                 "(train the second with --match FIRST.json)")
    m = results[0].get("machine", {})
    machine = f"{m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs"
    args.out.mkdir(parents=True, exist_ok=True)
    plot(matched, names, args.out / "bf16_parity.png", machine)
    head = (f"# {names[0]} vs {names[1]}, step for step\n\n`python bench/bf16_parity.py "
            f"{' '.join(str(p.resolve().relative_to(REPO)) if p.resolve().is_relative_to(REPO) else str(p) for p in args.results)}`: "
            f"checkpoints at the same steps, each scored by `gankit evaluate -n "
            f"{results[0]['settings'].get('eval_samples')}`, from time-to-quality runs (finished "
            f"{', '.join(str(r.get('finished')) for r in results)}). Machine: {machine}.\n\n")
    (args.out / "bf16_parity.md").write_text(head + text)
    print(head + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
