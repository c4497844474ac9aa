"""`gankit generate`: draw digits with an exported model; save a PNG/JPEG/WebP grid, .npy or PNGs.

Light tier: onnxruntime, numpy and Pillow; never torch. Everything is imported inside the
command, and the summary is printed with ``print`` rather than rich, because this
command's cold start is part of the product (see bench/bench_generate.py).

``--model`` takes an exported .onnx file only. Given a training run folder or one of its
checkpoints, the command does not export it (that needs torch, which this tier never
loads): it exits with status 2 and prints the exact `gankit export` command to run first.

The command's work is `run`. `gankit.cli.main` calls it straight from `fast_arguments` when
the command line is a plain one (options it knows, well-formed values): typer, and the
pydantic it coerces values with, cost more to import than numpy and onnxruntime together.
Anything else (``--help``, a typo, an odd value) goes through the typer command that
`register` builds, so errors and help read as every other command's. This module imports
no typer at module level (and has no ``from __future__ import annotations``, so the typer
annotations inside `register` are resolved where they are written).
"""

import re
from pathlib import Path
from typing import Optional

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


def _refuse_training_folder(model: Path) -> None:
    """A run folder or checkpoint given as --model: exit 2 with the `gankit export` command to run first."""
    import shlex

    if not model.is_dir():
        return
    checkpoint = (model / "manifest.json").is_file() or (model / "state.json").is_file()
    run = (model / "config.json").is_file() or (model / "checkpoints").is_dir()
    if not (checkpoint or run):
        raise UsageError(f"--model {model} is a folder; give an exported .onnx file")
    # exports/<run-name>.onnx, as `gankit train` suggests; a checkpoint sits in <run>/checkpoints/.
    name = model.resolve().parent.parent.name if checkpoint and model.resolve().parent.name == "checkpoints" \
        else model.resolve().name
    target = Path("exports") / f"{name or 'model'}.onnx"
    what = "a training checkpoint" if checkpoint else "a training run folder"
    raise UsageError(f"--model {model} is {what}, not an exported model. Export it first with: "
                     f"gankit export {shlex.quote(str(model))} -o {shlex.quote(str(target))} "
                     f"(then use --model {shlex.quote(str(target))})")


# Every option of the command: flag -> (parameter, kind). `register` declares the same
# names (tests/test_short_run.py checks that the two agree).
OPTIONS = {
    "--digit": ("digit", "multi"), "-d": ("digit", "multi"), "--all": ("all_digits", "flag"),
    "--count": ("count", "int"), "-n": ("count", "int"), "--seed": ("seed", "int"),
    "--output": ("output", "text"), "-o": ("output", "text"), "--model": ("model", "path"), "-m": ("model", "path"),
    "--scale": ("scale", "int"),
}
DEFAULTS = {"digit": None, "all_digits": False, "count": 8, "seed": 0, "output": "digits.png", "model": None,
            "scale": 1}
# At most 100 digits: Python refuses to parse over 4,300, and 2**64 has 20.
_PLAIN_INT = re.compile(r"-?[0-9]{1,100}")


def fast_arguments(args: list[str]) -> Optional[dict]:
    """`run`'s keyword arguments for the options after ``generate``, or None unless every one is plain.

    Plain: ``--name value``, ``--name=value``, ``-x value`` or ``--all``, names from
    `OPTIONS`, integers as digits. None sends the call through typer, which reports
    whatever is wrong the way every command does.
    """
    values = dict(DEFAULTS)
    i = 0
    while i < len(args):
        name, sep, value = args[i].partition("=") if args[i].startswith("--") else (args[i], "", "")
        if name not in OPTIONS:
            return None
        param, kind = OPTIONS[name]
        if kind == "flag":
            if sep:
                return None
            values[param] = True
            i += 1
            continue
        if not sep:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        i += 1
        if value.startswith("-") and not (kind == "int" and _PLAIN_INT.fullmatch(value)):
            return None  # maybe an option given no value: typer says so
        if kind == "int":
            if not _PLAIN_INT.fullmatch(value):
                return None
            values[param] = int(value)
        elif kind == "multi":
            values[param] = [*(values[param] or []), value]
        else:
            values[param] = Path(value) if kind == "path" else value
    return values


def run(digit: Optional[list[str]] = None, all_digits: bool = False, count: int = 8, seed: int = 0,
        output: str = "digits.png", model: Optional[Path] = None, scale: int = 1) -> None:
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

    if model is not None:
        _refuse_training_folder(model)
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
    print(f"wrote {len(images)} images ({what}, seed {seed}) to {output_path}")


def register(app) -> None:
    """Add `gankit generate` to the root app (a typer app)."""
    from typing import Annotated

    import typer

    def generate(
        digit: Annotated[Optional[list[str]], typer.Option(
            "--digit", "-d", help="Digit to draw, 0-9 (repeat for several: one grid row each).")] = None,
        all_digits: Annotated[bool, typer.Option("--all", help="Draw every digit the model knows.")] = False,
        count: Annotated[int, typer.Option("--count", "-n", help="Images per digit.")] = DEFAULTS["count"],
        seed: Annotated[int, typer.Option(help="Seed, 0 to 2**64-1; the same seed gives the same pixels.")] = 0,
        output: Annotated[str, typer.Option(
            "--output", "-o", help="A .png/.jpg/.webp grid (one row per digit), a .npy file (uint8 N x 28 x 28), "
            "or a folder of PNGs.")] = DEFAULTS["output"],
        model: Annotated[Optional[Path], typer.Option(
            "--model", "-m", help="An exported .onnx model (default: the shipped conditional model). A training "
            "run folder is not one: export it first (the error says how).")] = None,
        scale: Annotated[int, typer.Option(help="Enlarge the grid picture this many times.")] = DEFAULTS["scale"],
    ) -> None:
        """Generate digits with an exported ONNX model (no PyTorch needed)."""
        run(digit=digit, all_digits=all_digits, count=count, seed=seed, output=output, model=model, scale=scale)

    app.command("generate")(generate)
