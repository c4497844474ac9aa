"""`gankit export RUN_OR_CHECKPOINT`: write a run's generator as a checked ONNX file.

Light tier at import (so `--help` never loads torch); the command body needs the heavy
tier (torch, onnx, onnxscript) and says how to install it when torch is missing. The
export itself is `gankit.training.export.export_from_checkpoint`, which refuses to leave
a file behind unless onnxruntime matches torch on batches of 1, 7 and 256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gankit.errors import UsageError


def export(
    source: Annotated[Path, typer.Argument(
        help="A run folder (its latest checkpoint is used) or one checkpoint directory.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The .onnx file to write (default: exports/<run-name>.onnx).")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest |torch - onnxruntime| pixel difference accepted.")] = 1e-4,
) -> None:
    """Export a trained generator to ONNX (needs the training tier)."""
    from gankit.errors import require_torch

    if output is not None and output.suffix.lower() != ".onnx":
        raise UsageError(f"--output {output}: the file name must end in .onnx")
    if not tolerance > 0:
        raise UsageError(f"--tolerance must be positive, got {tolerance}")
    require_torch("export")
    from rich.console import Console
    from rich.table import Table

    from gankit.training.export import export_from_checkpoint

    console = Console(highlight=False)
    with console.status(f"exporting {source} ..."):
        report = export_from_checkpoint(source, output, tolerance=tolerance)

    card = report.card
    table = Table(title=f"exported {report.path}", title_justify="left", show_header=False)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("plugin", f"{card.plugin} ({card.label_mode}, {card.arch})")
    table.add_row("classes", ", ".join(str(c) for c in card.classes))
    table.add_row("latent", f"{card.z_dim} x {card.noise}")
    table.add_row("trained", f"{card.training_steps} steps on {card.dataset}")
    if report.resized_from:
        table.add_row("resize", f"{report.resized_from}x{report.resized_from} -> 28x28 (area) in the graph")
    for batch, diff in report.max_abs_diff.items():
        table.add_row(f"parity batch {batch}", f"max |torch - onnxruntime| = {diff:.2e}")
    table.add_row("tolerance", f"{report.tolerance:g}  [green]passed[/]")
    table.add_row("size", f"{report.size_bytes / 1e6:.2f} MB (one self-contained file)")
    table.add_row("weights sha256", report.weights_sha256)
    table.add_row("took", f"{report.seconds:.1f} s")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `gankit export` to the root app."""
    app.command("export")(export)
