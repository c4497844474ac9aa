"""`gankit generate`: draw digits with an exported model and save them as PNG or .npy.

Light tier: onnxruntime, numpy and Pillow; never torch. Everything past typer is imported
inside the command, and the summary is printed with ``typer.echo`` rather than rich,
because this command's cold start is part of the product (see bench/bench_generate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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


def _output_kind(output: Path) -> str:
    suffix = output.suffix.lower()
    if suffix == ".png":
        return "grid"
    if suffix == ".npy":
        return "npy"
    if suffix == "" or output.is_dir():
        return "folder"
    raise UsageError(f"--output {output}: use a .png file (a grid), a .npy file, or a folder name")


def generate(
    digit: Annotated[Optional[list[str]], typer.Option(
        "--digit", "-d", help="Digit to draw, 0-9 (repeat for several: one grid row each).")] = None,
    all_digits: Annotated[bool, typer.Option("--all", help="Draw every digit the model knows.")] = False,
    count: Annotated[int, typer.Option("--count", "-n", help="Images per digit.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same pixels.")] = 0,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="A .png grid (one row per digit), a .npy file (uint8 N x 28 x 28), "
        "or a folder of PNGs.")] = Path("digits.png"),
    model: Annotated[Optional[Path], typer.Option(
        "--model", "-m", help="An exported .onnx model (default: the shipped conditional model).")] = None,
    scale: Annotated[int, typer.Option(help="Enlarge the .png grid this many times.")] = 1,
) -> None:
    """Generate digits with an exported ONNX model (no PyTorch needed)."""
    digits = _parse_digits(digit or [])
    if digit and all_digits:
        raise UsageError("use either --digit or --all, not both")
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    if not 1 <= scale <= 32:
        raise UsageError(f"--scale must be between 1 and 32, got {scale}")
    kind = _output_kind(output)
    if kind == "grid" and count > MAX_GRID_COLUMNS:
        raise UsageError(f"a .png grid holds at most {MAX_GRID_COLUMNS} images per digit (one row each); "
                         f"write {count} to a .npy file or a folder instead")

    from gankit.runtime import load_generator

    gen = load_generator(model)
    if not digits and gen.conditional:
        digits = list(gen.card.classes)  # no digit asked for: one row of each class
    elif all_digits and not gen.conditional:
        raise UsageError(f"{gen.path.name} is an unconditional model: it cannot draw chosen digits, drop --all")

    labels = gen.labels_for(digits or None, count)  # checks every digit before any work
    images = gen.generate(digits or None, n=count, seed=seed)

    from gankit import images as img

    if kind == "grid":
        if digits:
            img.save_grid(images, output, nrow=count, scale=scale, row_labels=[str(d) for d in digits])
        else:
            img.save_grid(images, output, nrow=min(count, GRID_COLUMNS_UNCONDITIONAL), scale=scale)
    elif kind == "npy":
        img.save_npy(images, output)
    else:
        img.save_png_folder(images, output, labels=labels if digits else None)
    what = f"digit {', '.join(map(str, digits))}" if digits else "unconditional samples"
    typer.echo(f"wrote {len(images)} images ({what}, seed {seed}) to {output}")


def register(app: typer.Typer) -> None:
    """Add `gankit generate` to the root app."""
    app.command("generate")(generate)
