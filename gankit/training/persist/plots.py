"""Charts for training runs and benchmarks: loss curves, per-class curves, any line plot.

Training tier: matplotlib (part of the ``train`` extra; the light tier never loads it).
Figures are drawn on matplotlib's Agg canvas through the object API, without pyplot, so
nothing depends on a display or on global figure state. Every chart has axis labels, a
title that names what it shows (for a run: its name and plugin) and a legend outside the
axes, where it cannot hide a curve. Files are written through `gankit.atomic`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gankit.atomic import atomic_write
from gankit.errors import GankitError

# Noisy series with at least this many points get a smoothed line over the faint raw one;
# a handful of points (an eval metric) is already readable and smoothing would distort it.
MIN_POINTS_TO_SMOOTH = 20
DPI = 100


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing): no pull towards 0 at the start."""
    out = np.empty_like(values)
    running = 0.0
    for i, v in enumerate(values):
        running = weight * running + (1 - weight) * v
        out[i] = running / (1 - weight ** (i + 1))
    return out


def _clean_series(series: Mapping[str, tuple[Iterable[float], Iterable[float]]]):
    cleaned = []
    for name, pair in series.items():
        if len(pair) != 2:
            raise GankitError(f"line plot: series {name!r} must be (xs, ys)")
        xs = np.asarray(list(pair[0]), dtype=np.float64).ravel()
        ys = np.asarray(list(pair[1]), dtype=np.float64).ravel()
        if len(xs) != len(ys):
            raise GankitError(f"line plot: series {name!r} has {len(xs)} x values but {len(ys)} y values")
        # A NaN or inf loss would wreck the axis range; leave those points out.
        keep = np.isfinite(xs) & np.isfinite(ys)
        cleaned.append((str(name), xs[keep], ys[keep]))
    return cleaned


def _draw(ax, lines, smooth: float) -> None:
    for name, xs, ys in lines:
        if xs.size == 0:
            continue
        if smooth > 0 and xs.size >= MIN_POINTS_TO_SMOOTH:
            (raw,) = ax.plot(xs, ys, linewidth=0.8, alpha=0.3)
            ax.plot(xs, _ema(ys, smooth), linewidth=1.8, color=raw.get_color(), label=name)
        elif xs.size == 1:
            ax.plot(xs, ys, marker="o", linestyle="none", label=name)
        else:
            ax.plot(xs, ys, linewidth=1.6, label=name)
    if not any(xs.size for _, xs, _ in lines):
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.grid(True, color="0.9")


def _figure(size: tuple[int, int], rows: int = 1):
    from matplotlib.figure import Figure

    width, height = int(size[0]), int(size[1])
    if width < 200 or height < 150:
        raise GankitError(f"line plot: size must be at least 200x150 pixels, got {width}x{height}")
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def _save(fig, path, what: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_write(path, what) as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return path


def _legend(fig, axes) -> None:
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        # Outside the axes, right of them: the one place a legend never covers a curve.
        handles, labels = axes[0].get_legend_handles_labels()
        seen = set(labels)
        for ax in axes[1:]:
            for h, label in zip(*ax.get_legend_handles_labels()):
                if label not in seen:
                    handles.append(h)
                    labels.append(label)
                    seen.add(label)
        fig.legend(handles, labels, loc="outside right upper", frameon=False)


def save_line_plot(series: Mapping[str, tuple[Iterable[float], Iterable[float]]], path, title: str,
                   xlabel: str = "step", ylabel: str = "value", *, size: tuple[int, int] = (800, 500),
                   smooth: float = 0.0) -> Path:
    """Draw named (xs, ys) series as lines with axis labels, a title and a legend; write a PNG.

    `smooth` in [0, 1) draws an exponential moving average over a faint raw line for series
    of at least `MIN_POINTS_TO_SMOOTH` points. Non-finite points are left out. The PNG is
    `size` pixels.
    """
    if not 0.0 <= smooth < 1.0:
        raise GankitError(f"line plot: smooth must be in [0, 1), got {smooth}")
    lines = _clean_series(series)
    fig, (ax,) = _figure(size)
    _draw(ax, lines, smooth)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.suptitle(title)
    _legend(fig, [ax])
    return _save(fig, path, "plot")


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _class_of(key: str) -> str:
    return key.rsplit("_", 1)[1]


def save_loss_curves(rows: list[dict[str, Any]], run_dir, *, run: str, plugin: str,
                     smooth: float = 0.6, size: tuple[int, int] = (900, 520)) -> list[Path]:
    """A run's loss charts from its metrics rows; return the files written.

    ``loss_curve.png``: D and G loss against step. ``loss_curve_per_class.png``, when the
    rows carry per-class losses (``g_loss_<class>``, ``d_loss_<class>``, as the per-digit
    plugin logs them): the generator's loss per class, and the discriminator's below it.
    """
    run_dir = Path(run_dir)
    written = []
    main = {name: _series(rows, key) for key, name in (("d_loss", "D loss"), ("g_loss", "G loss"))}
    main = {k: v for k, v in main.items() if v[0]}
    if main:
        written.append(save_line_plot(main, run_dir / "loss_curve.png", title=f"run {run} ({plugin}): losses",
                                      ylabel="loss (mean over each log window)", size=size, smooth=smooth))
    keys = sorted({k for r in rows for k in r if k.startswith(("g_loss_", "d_loss_"))})
    panels = [(prefix, who, [k for k in keys if k.startswith(prefix)])
              for prefix, who in (("g_loss_", "generator"), ("d_loss_", "discriminator"))]
    panels = [p for p in panels if p[2]]
    if panels:
        fig, axes = _figure((size[0], size[1] * (1 + 0.6 * (len(panels) - 1))), rows=len(panels))
        for ax, (prefix, who, names) in zip(axes, panels):
            lines = _clean_series({f"class {_class_of(k)}": _series(rows, k) for k in names})
            _draw(ax, lines, smooth)
            ax.set_ylabel(f"{who} loss")
        axes[-1].set_xlabel("step")
        fig.suptitle(f"run {run} ({plugin}): loss per class")
        _legend(fig, axes)
        written.append(_save(fig, run_dir / "loss_curve_per_class.png", "plot"))
    return written
