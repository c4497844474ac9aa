"""Turn generator output into pictures and files: uint8 conversion, grids, PNGs, .npy.

Light tier: numpy and Pillow only. Charts (loss curves, bench plots) are matplotlib's job
in the training tier, `gankit.training.persist.plots`. Every writer here goes through
`gankit.atomic`, so a failure leaves no partial file; any problem with the path raises
`GankitError` naming it.
"""

from __future__ import annotations

import functools
import importlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gankit.atomic import atomic_write, commit, remove_quietly, staged_file
from gankit.errors import GankitError

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


# The suffix picks the format (.jpg, .webp for `gankit generate`); anything else is PNG.
# A fixed table, not Image.registered_extensions(): that imports every Pillow plugin,
# a tenth of `gankit generate`'s cold start.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


_WRITERS = {"PNG": "PngImagePlugin", "JPEG": "JpegImagePlugin", "WEBP": "WebPImagePlugin"}


def _load_writer(fmt: str) -> None:
    """Register the one Pillow plugin that writes ``fmt``, and skip the rest.

    ``Image.save`` first imports the BMP, GIF, JPEG, PPM and PNG plugins (``preinit``),
    a tenth of a `gankit generate` cold start, for a format already known. With the
    writer imported, Pillow is told that step is done; `Image.open` of any other format
    still finds its plugin (it falls back to importing them all). Where a Pillow keeps
    that flag under another name, nothing changes but the time.
    """
    importlib.import_module(f"PIL.{_WRITERS[fmt]}")
    if getattr(Image, "_initialized", None) == 0:
        Image._initialized = 1


def _write_png(image: Image.Image, path, what: str) -> Path:
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower(), "PNG")
    _load_writer(fmt)
    with atomic_write(path, what) as handle:
        image.save(handle, format=fmt)
    return path


def save_grid(images_u8, path, nrow: int, scale: int = 1, row_labels: list[str] | None = None,
              caption: str | None = None) -> Path:
    """Save a grid PNG, enlarged `scale` times.

    `row_labels` puts a label left of each row; `caption` (e.g. the training step of a
    sample grid) goes in a strip above the grid.
    """
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
    if caption:
        font = _font(max(10, min(20, 6 * scale + 4)))
        probe = ImageDraw.Draw(picture)
        strip = _text_size(probe, caption, font)[1] + 8
        captioned = Image.new("L", (picture.width, picture.height + strip), 0)
        captioned.paste(picture, (0, strip))
        ImageDraw.Draw(captioned).text((4, strip / 2), caption, fill=255, font=font, anchor="lm")
        picture = captioned
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
            commit(None, temp, target)
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
