"""Charts (gankit.training.persist.plots, training tier): line plots and a run's loss curves, drawn by matplotlib."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from gankit.errors import GankitError  # noqa: E402
from gankit.training.persist.plots import save_line_plot, save_loss_curves  # noqa: E402


def _rows(n: int = 100, per_class: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for step in range(10, 10 * (n + 1), 10):
        row = {"step": step, "d_loss": 1.4 * np.exp(-step / 300) + rng.normal(0, 0.05), "g_loss": 0.6 + step / 2000}
        if per_class:
            row.update({f"g_loss_{c}": 0.5 + 0.1 * c for c in (3, 8)})
            row.update({f"d_loss_{c}": 1.2 - 0.1 * c for c in (3, 8)})
        rows.append(row)
    rows[5]["g_loss"] = float("nan")  # a non-finite value must not break the plot
    rows.append({"step": 1000, "eval/score": 0.4})  # eval rows carry no losses
    return rows


def _coloured_pixels(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def test_line_plot_size_and_curves(tmp_path):
    xs = list(range(200))
    path = save_line_plot({"a": (xs, np.sin(np.array(xs) / 20).tolist()), "b": ([0, 100, 199], [0.1, 0.2, 0.3])},
                          tmp_path / "p.png", "title", ylabel="value", size=(640, 400), smooth=0.6)
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (640, 400)
    assert _coloured_pixels(path) > 500  # the curves are drawn in colour, the frame and text in grey/black


def test_line_plot_edge_cases(tmp_path):
    assert Image.open(save_line_plot({"only": ([1], [2.0])}, tmp_path / "a.png", "one point")).size == (800, 500)
    assert Image.open(save_line_plot({}, tmp_path / "b.png", "empty")).size == (800, 500)
    with pytest.raises(GankitError, match="3 x values but 2 y values"):
        save_line_plot({"bad": ([0, 1, 2], [1.0, 2.0])}, tmp_path / "d.png", "bad")
    with pytest.raises(GankitError, match="smooth"):
        save_line_plot({"a": ([0], [1.0])}, tmp_path / "e.png", "t", smooth=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_unwritable_plot_path_is_one_clean_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GankitError, match="file/sub/p.png"):
        save_line_plot({"a": ([0, 1], [1.0, 2.0])}, blocker / "sub" / "p.png", "t")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_loss_curves_of_a_plain_run(tmp_path):
    written = save_loss_curves(_rows(), tmp_path, run="r1", plugin="unconditional")
    assert written == [tmp_path / "loss_curve.png"]
    assert Image.open(written[0]).size == (900, 520)


def test_loss_curves_per_class(tmp_path):
    written = save_loss_curves(_rows(per_class=True), tmp_path, run="pd", plugin="per-digit")
    assert [p.name for p in written] == ["loss_curve.png", "loss_curve_per_class.png"]
    per_class = Image.open(written[1])
    assert per_class.width == 900 and per_class.height > 520  # two panels: generator and discriminator


def test_title_legend_and_labels_are_set(tmp_path, monkeypatch):
    """What the chart says, read from the matplotlib figure before it is saved."""
    import gankit.training.persist.plots as plots

    seen = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, what: (seen.append(fig), real_save(fig, path, what))[1])
    save_loss_curves(_rows(per_class=True), tmp_path, run="pd", plugin="per-digit")
    main, per = seen
    assert main._suptitle.get_text() == "run pd (per-digit): losses"
    (ax,) = main.axes
    assert ax.get_xlabel() == "step" and ax.get_ylabel().startswith("loss")
    (legend,) = main.legends
    assert [t.get_text() for t in legend.get_texts()] == ["D loss", "G loss"]
    # The legend sits right of the axes, so it cannot cover a curve.
    main.canvas.draw()
    renderer = main.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert per._suptitle.get_text() == "run pd (per-digit): loss per class"
    assert [a.get_ylabel() for a in per.axes] == ["generator loss", "discriminator loss"]
    assert [t.get_text() for t in per.legends[0].get_texts()] == ["class 3", "class 8"]
