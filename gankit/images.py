"""Turn generator output into pictures and files: uint8 conversion, grids, PNGs, .npy, loss plots.

Light tier: numpy and Pillow only (no matplotlib). Every writer stages a temp
file beside the target and renames it into place, so a failure leaves no
partial file; any problem with the path raises `GankitError` naming it.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gankit.data.atomic import atomic_write, remove_quietly, staged_file
from gankit.errors import GankitError

# Colour-blind-friendly palette (Okabe-Ito) first, then extras for many series.
PALETTE = [
    (0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167),
    (230, 159, 0), (86, 180, 233), (120, 120, 120), (240, 228, 66),
    (148, 103, 189), (140, 86, 75),
]


MIN_POINTS_TO_SMOOTH = 20


def to_uint8(images, value_range=(-1.0, 1.0)) -> np.ndarray:
    """Map float images [N,1,H,W] or [N,H,W] from `value_range` to uint8 [N,H,W] (clipped, rounded)."""
    array = np.asarray(images)
    if array.ndim == 4:
        if array.shape[1] != 1:
            raise GankitError(f"to_uint8 expects one channel, got shape {list(array.shape)}")
        array = array[:, 0]
    if array.ndim != 3:
        raise GankitError(f"to_uint8 expects [N,1,H,W] or [N,H,W], got shape {list(array.shape)}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    low, high = (float(v) for v in value_range)
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise GankitError(f"to_uint8: value_range must be two finite numbers, low < high; got {value_range}")
    scaled = (array.astype(np.float64) - low) * (255.0 / (high - low))
    # NaN would otherwise become an arbitrary byte; black is the honest choice.
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def _as_u8_stack(images_u8, what: str) -> np.ndarray:
    array = np.asarray(images_u8)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] == 0:
        raise GankitError(
            f"{what} expects a non-empty uint8 array [N,H,W] (use to_uint8 first), "
            f"got {array.dtype} {list(array.shape)}"
        )
    return array


def grid_shape(n: int, height: int, width: int, nrow: int, padding: int = 2) -> tuple[int, int]:
    """(height, width) in pixels of the grid `make_grid` builds for n images of height x width."""
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    return rows * (height + padding) + padding, cols * (width + padding) + padding


def make_grid(images_u8: np.ndarray, nrow: int, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile [N,H,W] uint8 images, `nrow` images per row, into one 2-D uint8 array."""
    images = _as_u8_stack(images_u8, "make_grid")
    if nrow < 1 or padding < 0:
        raise GankitError(f"make_grid: nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    n, h, w = images.shape
    cols = min(nrow, n)
    grid = np.full(grid_shape(n, h, w, nrow, padding), pad_value, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


@functools.lru_cache(maxsize=16)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        # Pillow < 10.1 or no FreeType: the fixed bitmap font still reads fine.
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _write_png(image: Image.Image, path, what: str) -> Path:
    path = Path(path)
    with atomic_write(path, what) as handle:
        image.save(handle, format="PNG")
    return path


def save_grid(images_u8, path, nrow: int, scale: int = 1, row_labels: list[str] | None = None) -> Path:
    """Save a grid PNG, enlarged `scale` times; `row_labels` puts a label left of each row."""
    images = _as_u8_stack(images_u8, "save_grid")
    if scale < 1:
        raise GankitError(f"save_grid: scale must be >= 1, got {scale}")
    grid = make_grid(images, nrow)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    picture = Image.fromarray(grid)
    if row_labels is not None:
        n, h, _ = images.shape
        rows = math.ceil(n / min(nrow, n))
        if len(row_labels) != rows:
            raise GankitError(f"save_grid: {len(row_labels)} row labels for {rows} rows")
        font = _font(max(10, min(28, round(h * scale * 0.55))))
        probe = ImageDraw.Draw(picture)
        margin = max(_text_size(probe, str(t), font)[0] for t in row_labels) + 8 if row_labels else 0
        labelled = Image.new("L", (picture.width + margin, picture.height), 0)
        labelled.paste(picture, (margin, 0))
        draw = ImageDraw.Draw(labelled)
        pad = 2 * scale
        for r, text in enumerate(row_labels):
            middle = pad + r * (h * scale + pad) + h * scale / 2
            draw.text((margin - 4, middle), str(text), fill=255, font=font, anchor="rm")
        picture = labelled
    return _write_png(picture, path, "grid image")


def save_png_folder(images_u8, folder, labels=None) -> list[Path]:
    """Write one PNG per image into `folder` (0003.png, or 0003_digit7.png with labels)."""
    images = _as_u8_stack(images_u8, "save_png_folder")
    if labels is not None and len(labels) != len(images):
        raise GankitError(f"save_png_folder: {len(labels)} labels for {len(images)} images")
    folder = Path(folder)
    digits = max(4, len(str(len(images) - 1)))
    names = [
        f"{i:0{digits}d}.png" if labels is None else f"{i:0{digits}d}_digit{int(labels[i])}.png"
        for i in range(len(images))
    ]
    # Stage every file first and rename at the end, so a failure half-way
    # leaves none of this call's new files behind (files it overwrote stay
    # overwritten, each one complete).
    staged: list[tuple[Path, Path]] = []
    created: list[Path] = []
    made_folder = not folder.exists()
    try:
        for image, name in zip(images, names):
            with staged_file(folder / name, "PNG file") as (handle, temp):
                Image.fromarray(image).save(handle, format="PNG")
            staged.append((temp, folder / name))
        for temp, target in staged:
            existed = target.exists()
            os.replace(temp, target)
            if not existed:
                created.append(target)
    except BaseException as exc:
        remove_quietly([temp for temp, _ in staged] + created + ([folder] if made_folder else []))
        if isinstance(exc, OSError):
            raise GankitError(f"Cannot write PNG files into {folder}: {exc.strerror or exc}") from None
        raise
    return [target for _, target in staged]


def save_npy(images_u8, path) -> Path:
    """Save uint8 images [N,H,W] as a .npy file (no pickle)."""
    images = _as_u8_stack(images_u8, "save_npy")
    path = Path(path)
    with atomic_write(path, ".npy file") as handle:
        np.save(handle, np.ascontiguousarray(images), allow_pickle=False)
    return path


def _nice_ticks(low: float, high: float, target: int = 6) -> tuple[list[float], float]:
    """Round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]."""
    raw = (high - low) / max(1, target - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]
    return ticks, step


def _tick_label(value: float, step: float) -> str:
    if abs(value) < step * 1e-6:
        return "0"
    if step >= 1 and abs(value) < 1e6:
        return f"{value:.0f}"
    if 1e-4 <= abs(step) < 1:
        return f"{value:.{max(0, -math.floor(math.log10(step)))}f}"
    return f"{value:.3g}"


def _padded_range(values: np.ndarray, pad_fraction: float) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    if high == low:
        spread = abs(low) * 0.1 or 1.0
        return low - spread, high + spread
    pad = (high - low) * pad_fraction
    return low - pad, high + pad


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average, debiased (as TensorBoard does) so it does not start at 0 or lag at the start."""
    out = np.empty_like(values)
    running = 0.0
    for i, v in enumerate(values):
        running = weight * running + (1 - weight) * v
        out[i] = running / (1 - weight ** (i + 1))
    return out


def _tint(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(round(c * amount + 255 * (1 - amount)) for c in colour)


def _clean_series(series: dict) -> list[tuple[str, np.ndarray, np.ndarray]]:
    cleaned = []
    for name, pair in series.items():
        if len(pair) != 2:
            raise GankitError(f"save_line_plot: series {name!r} must be (xs, ys)")
        xs = np.asarray(pair[0], dtype=np.float64).ravel()
        ys = np.asarray(pair[1], dtype=np.float64).ravel()
        if len(xs) != len(ys):
            raise GankitError(f"save_line_plot: series {name!r} has {len(xs)} x values but {len(ys)} y values")
        # A NaN or inf loss would wreck the axis range; leave those points out.
        keep = np.isfinite(xs) & np.isfinite(ys)
        cleaned.append((str(name), xs[keep], ys[keep]))
    return cleaned


def save_line_plot(
    series: dict[str, tuple[list[float], list[float]]],
    path,
    title: str,
    xlabel: str = "step",
    ylabel: str = "",
    *,
    size: tuple[int, int] = (800, 500),
    smooth: float = 0.0,
) -> Path:
    """Draw named (xs, ys) series as coloured lines with axes, numbered ticks and a legend.

    `smooth` in [0, 1) adds an exponential moving average drawn over a faint raw line.
    """
    width, height = int(size[0]), int(size[1])
    if width < 200 or height < 150:
        raise GankitError(f"save_line_plot: size must be at least 200x150, got {width}x{height}")
    if not 0.0 <= smooth < 1.0:
        raise GankitError(f"save_line_plot: smooth must be in [0, 1), got {smooth}")
    lines = _clean_series(series)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, title_font = _font(12), _font(16)
    left, right, top, bottom = 72, width - 18, 36, height - 48
    draw.text((width / 2, 10), title, fill="black", font=title_font, anchor="mt")
    draw.text(((left + right) / 2, height - 8), xlabel, fill="black", font=font, anchor="md")
    if ylabel:
        tw, th = _text_size(draw, ylabel, font)
        label = Image.new("RGB", (tw + 4, th + 6), "white")
        ImageDraw.Draw(label).text((2, 0), ylabel, fill="black", font=font)
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (4, int((top + bottom) / 2 - rotated.height / 2)))

    all_x = np.concatenate([xs for _, xs, _ in lines]) if lines else np.empty(0)
    all_y = np.concatenate([ys for _, _, ys in lines]) if lines else np.empty(0)
    draw.rectangle((left, top, right, bottom), outline=(60, 60, 60))
    if all_x.size == 0:
        draw.text(((left + right) / 2, (top + bottom) / 2), "no data", fill="gray", font=font, anchor="mm")
        return _write_png(image, path, "plot")

    x_low, x_high = _padded_range(all_x, 0.0)
    y_low, y_high = _padded_range(all_y, 0.05)

    def to_px(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
        px = left + (xs - x_low) / (x_high - x_low) * (right - left)
        py = bottom - (ys - y_low) / (y_high - y_low) * (bottom - top)
        return list(zip(px.tolist(), py.tolist()))

    x_ticks, x_step = _nice_ticks(x_low, x_high, target=max(3, (right - left) // 90))
    y_ticks, y_step = _nice_ticks(y_low, y_high, target=max(3, (bottom - top) // 60))
    for value in x_ticks:
        x = left + (value - x_low) / (x_high - x_low) * (right - left)
        draw.line((x, top, x, bottom), fill=(232, 232, 232))
        draw.line((x, bottom, x, bottom + 5), fill=(60, 60, 60))
        draw.text((x, bottom + 7), _tick_label(value, x_step), fill="black", font=font, anchor="mt")
    for value in y_ticks:
        y = bottom - (value - y_low) / (y_high - y_low) * (bottom - top)
        draw.line((left, y, right, y), fill=(232, 232, 232))
        draw.line((left - 5, y, left, y), fill=(60, 60, 60))
        draw.text((left - 8, y), _tick_label(value, y_step), fill="black", font=font, anchor="rm")
    draw.rectangle((left, top, right, bottom), outline=(60, 60, 60))

    for index, (_, xs, ys) in enumerate(lines):
        colour = PALETTE[index % len(PALETTE)]
        if xs.size == 0:
            continue
        # A handful of points (an eval metric) is already readable; smoothing would distort it.
        if smooth > 0 and xs.size >= MIN_POINTS_TO_SMOOTH:
            draw.line(to_px(xs, ys), fill=_tint(colour, 0.3), width=1)
            ys = _ema(ys, smooth)
        points = to_px(xs, ys)
        if len(points) == 1:
            x, y = points[0]
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        else:
            draw.line(points, fill=colour, width=2, joint="curve")

    # Legend in the top-right corner of the plot area.
    names = [name for name, _, _ in lines]
    row = max(_text_size(draw, n or " ", font)[1] for n in names) + 6
    box_w = max(_text_size(draw, n or " ", font)[0] for n in names) + 40
    x0, y0 = right - box_w - 8, top + 8
    draw.rectangle((x0, y0, x0 + box_w, y0 + row * len(names) + 6), fill="white", outline=(180, 180, 180))
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        y = y0 + 6 + row * index + row / 2 - 3
        draw.line((x0 + 6, y, x0 + 28, y), fill=colour, width=3)
        draw.text((x0 + 34, y), name, fill="black", font=font, anchor="lm")
    return _write_png(image, path, "plot")
