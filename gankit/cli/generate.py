"""`gankit generate`: draw digits with an exported model; save a PNG/JPEG/WebP grid, .npy or PNGs.

Light tier: onnxruntime, numpy and Pillow; never torch. Everything past typer is imported
inside the command, and the summary is printed with ``typer.echo`` rather than rich,
because this command's cold start is part of the product (see bench/bench_generate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gankit.contract import IMAGE_SIZE
from gankit.errors import UsageError

GRID_COLUMNS_UNCONDITIONAL = 8
# A row of 256 digits is already 7,682 pixels wide; past that a grid is no longer a picture.
MAX_GRID_COLUMNS = 256


def _parse_digits(raw: list[str]) -> list[int]:
    digits = []
    for text in raw:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise UsageError(f"--digit takes a whole number from 0 to 9, got {text!r}") from None
        if not 0 <= value <= 9:
            raise UsageError(f"--digit takes a whole number from 0 to 9, got {value}")
        digits.append(value)
    return digits


# Pillow writes these by the suffix; .webp only where Pillow was built with libwebp.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
# A grid picture of at most 100 million pixels (100 MB of greyscale, ~10,000 x 10,000);
# `--all -n 256 --scale 32` would be 2.4 billion.
MAX_GRID_PIXELS = 100_000_000


def _pillow_has_webp() -> bool:
    from PIL import features  # only for .webp: importing it costs a cold start ~10%

    return bool(features.check("webp"))


def _output_kind(output: str) -> tuple[str, Path]:
    if not output.strip():
        raise UsageError("--output is empty; give a .png/.jpg/.webp grid, a .npy file, or a folder name")
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix in IMAGE_FORMATS:
        if suffix == ".webp" and not _pillow_has_webp():
            raise UsageError(f"--output {output}: this Pillow cannot write WebP; use .png or .jpg")
        return "grid", path
    if suffix == ".npy":
        return "npy", path
    if suffix == "" or path.is_dir():
        return "folder", path
    raise UsageError(f"--output {output}: use a .png, .jpg or .webp file (a grid), a .npy file, or a folder name")


def _check_grid_size(images: int, columns: int, scale: int) -> None:
    from gankit.images import grid_shape

    height, width = grid_shape(images, IMAGE_SIZE * scale, IMAGE_SIZE * scale, columns, 2 * scale)
    if height * width > MAX_GRID_PIXELS:
        raise UsageError(f"that grid would be {width:,} x {height:,} pixels; at most {MAX_GRID_PIXELS:,} "
                         "pixels in all. Use a smaller --scale or --count, or write a .npy file or a folder")


def generate(
    digit: Annotated[Optional[list[str]], typer.Option(
        "--digit", "-d", help="Digit to draw, 0-9 (repeat for several: one grid row each).")] = None,
    all_digits: Annotated[bool, typer.Option("--all", help="Draw every digit the model knows.")] = False,
    count: Annotated[int, typer.Option("--count", "-n", help="Images per digit.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed, 0 to 2**64-1; the same seed gives the same pixels.")] = 0,
    output: Annotated[str, typer.Option(
        "--output", "-o", help="A .png/.jpg/.webp grid (one row per digit), a .npy file (uint8 N x 28 x 28), "
        "or a folder of PNGs.")] = "digits.png",
    model: Annotated[Optional[Path], typer.Option(
        "--model", "-m", help="An exported .onnx model (default: the shipped conditional model).")] = None,
    scale: Annotated[int, typer.Option(help="Enlarge the grid picture this many times.")] = 1,
) -> None:
    """Generate digits with an exported ONNX model (no PyTorch needed)."""
    from gankit.runtime import MAX_IMAGES, check_seed

    digits = _parse_digits(digit or [])
    if digit and all_digits:
        raise UsageError("use either --digit or --all, not both")
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    # Checked before anything is built: -n may be 10**12 or 2**64.
    if count * max(1, len(digits)) > MAX_IMAGES:
        raise UsageError(f"--count {count} asks for {count * max(1, len(digits)):,} images; "
                         f"at most {MAX_IMAGES:,} per call")
    try:
        check_seed(seed)
    except UsageError as exc:
        raise UsageError(f"--seed: {exc}") from None
    if not 1 <= scale <= 32:
        raise UsageError(f"--scale must be between 1 and 32, got {scale}")
    kind, output_path = _output_kind(output)
    if kind == "grid" and count > MAX_GRID_COLUMNS:
        raise UsageError(f"a grid picture holds at most {MAX_GRID_COLUMNS} images per digit (one row each); "
                         f"write {count} to a .npy file or a folder instead")
    if kind == "grid" and digits:
        _check_grid_size(count * len(digits), count, scale)

    from gankit.runtime import load_generator  # onnxruntime: only once the request is known to be sane

    gen = load_generator(model)
    if not digits and gen.conditional:
        digits = list(gen.card.classes)  # no digit asked for: one row of each class
    elif all_digits and not gen.conditional:
        raise UsageError(f"{gen.path.name} is an unconditional model: it cannot draw chosen digits, drop --all")

    labels = gen.labels_for(digits or None, count)  # checks every digit and the total before any work
    columns = count if digits else min(count, GRID_COLUMNS_UNCONDITIONAL)
    if kind == "grid":
        _check_grid_size(labels.size, columns, scale)
    images = gen.generate(digits or None, n=count, seed=seed)

    from gankit import images as img

    if kind == "grid":
        row_labels = [str(d) for d in digits] if digits else None
        img.save_grid(images, output_path, nrow=columns, scale=scale, row_labels=row_labels)
    elif kind == "npy":
        img.save_npy(images, output_path)
    else:
        img.save_png_folder(images, output_path, labels=labels if digits else None)
    what = f"digit {', '.join(map(str, digits))}" if digits else "unconditional samples"
    typer.echo(f"wrote {len(images)} images ({what}, seed {seed}) to {output_path}")


def register(app: typer.Typer) -> None:
    """Add `gankit generate` to the root app."""
    app.command("generate")(generate)
