"""`gankit export RUN_OR_CHECKPOINT`: write a run's generator as a checked ONNX file.

Light tier at import (so `--help` never loads torch); the command body needs the heavy
tier (torch, onnx, onnxscript) and says how to install it when torch is missing. The
export itself is `gankit.training.export.to_onnx.export_from_checkpoint`, which refuses to leave
a file behind unless onnxruntime matches torch on batches of 1, 7 and 256.

``--torch-fidelity`` also writes ``NAME.torch-fidelity.onnx`` beside it, the form
torch-fidelity's ``GenerativeModelONNX`` loads (`gankit.training.export.fidelity`). Given an
exported ``.onnx`` file instead of a run, it writes only that adapter, which needs onnx
but not torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gankit.errors import UsageError


def export(
    source: Annotated[Path, typer.Argument(
        help="A run folder (its latest checkpoint is used) or one checkpoint directory; "
             "with --torch-fidelity also an exported .onnx file.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The .onnx file to write (default: exports/<run-name>.onnx; for an .onnx "
                               "source with --torch-fidelity: NAME.torch-fidelity.onnx beside it).")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest |torch - onnxruntime| pixel difference accepted.")] = 1e-4,
    torch_fidelity: Annotated[bool, typer.Option(
        "--torch-fidelity", help="Also write NAME.torch-fidelity.onnx: uint8 RGB [N, 3, 28, 28] output and "
                                 "(z, class_index) inputs, as torch-fidelity's GenerativeModelONNX wants.")] = False,
) -> None:
    """Export a trained generator to ONNX (needs the training tier)."""
    from gankit.errors import require_torch

    if output is not None and output.suffix.lower() != ".onnx":
        raise UsageError(f"--output {output}: the file name must end in .onnx")
    if not tolerance > 0:
        raise UsageError(f"--tolerance must be positive, got {tolerance}")
    if source.suffix.lower() == ".onnx" and not source.is_dir():
        if not torch_fidelity:
            raise UsageError(f"{source} is already an ONNX model; export takes a run folder or checkpoint "
                             "(add --torch-fidelity to write its torch-fidelity adapter)")
        _write_adapter(source, output)
        return
    require_torch("export")
    from rich.console import Console
    from rich.table import Table

    from gankit.training.export.to_onnx import export_from_checkpoint

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
    if torch_fidelity:
        _write_adapter(report.path, None)


def _write_adapter(model: Path, output: Optional[Path]) -> None:
    """Write and describe the torch-fidelity adapter of the exported ``model``."""
    from rich.console import Console

    from gankit.training.export.fidelity import adapt_for_torch_fidelity

    console = Console(highlight=False)
    with console.status(f"writing the torch-fidelity adapter of {model} ..."):
        adapter = adapt_for_torch_fidelity(model, output)
    console.print(f"wrote {adapter.path} ({adapter.size_bytes / 1e6:.2f} MB): torch-fidelity adapter of {model}, "
                  f"uint8 [N, 3, 28, 28]; its bytes match gankit generate's within {adapter.max_level_diff} grey "
                  f"level ({adapter.differing_pixels} of {adapter.checked_pixels:,} pixels differ)", markup=False, soft_wrap=True)
    if adapter.num_classes and list(adapter.classes) != list(range(adapter.num_classes)):
        console.print(f"class_index i draws digit {list(adapter.classes)}[i]", markup=False, soft_wrap=True)
    console.print(f"load it with: {adapter.loader_call()}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `gankit export` to the root app."""
    app.command("export")(export)
