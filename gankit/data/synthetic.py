"""Synthetic MNIST-like digits rendered with Pillow, for when no real MNIST is on disk.

Light tier: numpy and Pillow. Each digit glyph is rendered once at high
resolution in a few stroke widths (cached), then every sample is drawn from it
by one random affine warp (scale, aspect, rotation, shear, shift) plus a gentle
wave distortion, sampled bilinearly for the whole batch at once. The result is
28x28 uint8, white on black, centred like MNIST, and identical for a given seed.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 28
SYNTHETIC_NAME = "synthetic-digits"
SYNTHETIC_SOURCE = "synthetic (rendered with Pillow)"

_CANVAS = 96  # glyphs are drawn at ~3.4x and sampled down, which antialiases them
_FONT_SIZE = 64
_GLYPH_HEIGHT = 68  # canvas pixels: at scale 1.0 a digit is ~20 px tall in 28, like MNIST
_STROKES = (0, 1, 2)  # extra outline width at font size: thin to bold pens
_BATCH = 2048


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        # Pillow < 10.1 or no FreeType: the small bitmap font, scaled up below.
        return ImageFont.load_default()


def _render(digit: int, stroke: int) -> np.ndarray:
    """One glyph, centred on its bounding box, as float32 [CANVAS, CANVAS] in 0..1."""
    font = _font(_FONT_SIZE)
    text = str(digit)
    big = Image.new("L", (_CANVAS * 2, _CANVAS * 2), 0)
    draw = ImageDraw.Draw(big)
    if isinstance(font, ImageFont.FreeTypeFont):
        draw.text((_CANVAS // 2, _CANVAS // 4), text, fill=255, font=font,
                  stroke_width=stroke, stroke_fill=255)
    else:
        small = Image.new("L", (16, 16), 0)
        ImageDraw.Draw(small).text((2, 1), text, fill=255, font=font)
        box = small.getbbox()
        if box is not None:
            glyph = small.crop(box)
            scale = _FONT_SIZE / glyph.height
            glyph = glyph.resize((max(1, round(glyph.width * scale)), _FONT_SIZE), Image.BILINEAR)
            if stroke:
                glyph = glyph.filter(ImageFilter.MaxFilter(2 * stroke + 1))
            big.paste(glyph, (_CANVAS // 2, _CANVAS // 4))
    box = big.getbbox()
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    if box is not None:
        glyph = big.crop(box)
        # Every digit gets the same height, as MNIST normalised its digits to a 20 px box.
        width = min(_CANVAS, max(1, round(glyph.width * _GLYPH_HEIGHT / glyph.height)))
        glyph = glyph.resize((width, _GLYPH_HEIGHT), Image.LANCZOS)
        canvas.paste(glyph, ((_CANVAS - width) // 2, (_CANVAS - _GLYPH_HEIGHT) // 2))
    # A slight blur rounds the font's crisp corners into pen-like strokes.
    canvas = canvas.filter(ImageFilter.GaussianBlur(1.2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=1)
def glyph_bank() -> np.ndarray:
    """All glyphs as float32 [10 * len(_STROKES), CANVAS, CANVAS], digit-major, read-only."""
    bank = np.stack([_render(d, s) for d in range(10) for s in _STROKES])
    bank.setflags(write=False)
    return bank


def _warp(bank: np.ndarray, glyph_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample one randomly warped 28x28 image per glyph index; float32 [N, 28, 28]."""
    n = len(glyph_index)
    scale = rng.uniform(0.84, 1.04, n)
    aspect = np.exp(rng.normal(0.0, 0.10, n))
    angle = np.deg2rad(rng.normal(0.0, 9.0, n).clip(-22, 22))
    shear = rng.normal(0.0, 0.18, n).clip(-0.45, 0.45)
    shift = rng.normal(0.0, 0.9, (n, 2)).clip(-2.5, 2.5)

    # Forward map canvas->output is R(angle) @ Shear @ diag(sx, sy) * (SIZE / CANVAS);
    # we need its inverse to pull each output pixel from the canvas.
    cos, sin = np.cos(angle), np.sin(angle)
    sx, sy = scale * aspect, scale / aspect
    forward = np.empty((n, 2, 2), np.float64)
    forward[:, 0, 0] = cos * sx
    forward[:, 0, 1] = (cos * shear - sin) * sy
    forward[:, 1, 0] = sin * sx
    forward[:, 1, 1] = (sin * shear + cos) * sy
    inverse = np.linalg.inv(forward) * (_CANVAS / SIZE)

    coords = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    col = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731 - per-image broadcast
    ox = xs[None] - col(shift[:, 0])
    oy = ys[None] - col(shift[:, 1])
    # A low-frequency wave per image bends strokes a little, like a hand would.
    amp = rng.uniform(0.0, 0.9, (2, n))
    freq = rng.uniform(0.15, 0.35, (2, n))
    phase = rng.uniform(0, 2 * np.pi, (2, n))
    ox += col(amp[0]) * np.sin(col(freq[0]) * ys + col(phase[0]))
    oy += col(amp[1]) * np.sin(col(freq[1]) * xs + col(phase[1]))

    centre = (_CANVAS - 1) / 2
    x = col(inverse[:, 0, 0]) * ox + col(inverse[:, 0, 1]) * oy + centre
    y = col(inverse[:, 1, 0]) * ox + col(inverse[:, 1, 1]) * oy + centre
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = x - x0
    fy = y - y0
    # Pad by one pixel of black so out-of-canvas samples read zero without masks.
    padded = np.pad(bank, ((0, 0), (1, 1), (1, 1)))
    side = _CANVAS + 2
    x0 = np.clip(x0 + 1, 0, side - 2)
    y0 = np.clip(y0 + 1, 0, side - 2)
    flat = padded.reshape(-1)
    base = (glyph_index.astype(np.int64) * side * side)[:, None, None] + y0 * side + x0
    top = flat[base] * (1 - fx) + flat[base + 1] * fx
    bottom = flat[base + side] * (1 - fx) + flat[base + side + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one synthetic image per label (0..9); uint8 [N, 28, 28]."""
    bank = glyph_bank()
    labels = np.asarray(labels, dtype=np.int64)
    strokes = rng.integers(0, len(_STROKES), len(labels))
    glyph_index = labels * len(_STROKES) + strokes
    gain = rng.uniform(1.3, 2.0, len(labels)).astype(np.float32)[:, None, None]
    images = np.empty((len(labels), SIZE, SIZE), np.uint8)
    for start in range(0, len(labels), _BATCH):
        part = slice(start, start + _BATCH)
        values = _warp(bank, glyph_index[part], rng)
        # MNIST strokes saturate at 255 in the middle and fade at the edges.
        images[part] = np.rint(np.clip(values * gain[part], 0.0, 1.0) * 255.0)
    return images


def synthetic_digits(n_per_class: int = 1000, seed: int = 0, *, split: str = "train"):
    """A balanced, shuffled set of 10 * n_per_class synthetic digits as a `Dataset`."""
    from gankit.data.dataset import Dataset
    from gankit.errors import DataError

    if n_per_class < 1:
        raise DataError(f"synthetic digits: n_per_class must be at least 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10, dtype=np.int64), n_per_class))
    images = render_digits(labels, rng)
    return Dataset(
        images=images, labels=labels, name=SYNTHETIC_NAME, source=SYNTHETIC_SOURCE,
        split=split, synthetic=True,
    )
