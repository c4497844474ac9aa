"""`gankit info MODEL.onnx`: show what an exported model says about itself.

Light tier (onnxruntime, rich). The model goes through the same checks as
`gankit generate` (`gankit.runtime.load_generator`), so a file that passes here will
generate. ``--json`` prints one JSON object for scripts instead of the tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _shape(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def info(
    model: Annotated[Path, typer.Argument(help="An exported .onnx model.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show an exported model's metadata, inputs, outputs and size."""
    from gankit.runtime import load_generator

    gen = load_generator(model)
    if as_json:
        typer.echo(json.dumps(gen.describe(), indent=2))
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    meta = Table(title=escape(f"{gen.path}  ({gen.size_bytes / 1e6:.2f} MB)"), title_justify="left")
    meta.add_column("metadata key", style="cyan", no_wrap=True)
    meta.add_column("value", overflow="fold")
    # Metadata comes from an untrusted file: escape it so it cannot inject rich markup.
    for key, value in gen.card.to_metadata().items():
        meta.add_row(escape(key), escape(value))
    console.print(meta)

    io = Table(title="graph inputs and outputs", title_justify="left")
    io.add_column("", style="cyan")
    io.add_column("name")
    io.add_column("type")
    io.add_column("shape")
    for role, args in (("input", gen.inputs), ("output", gen.outputs)):
        for arg in args:
            io.add_row(role, escape(arg["name"]), arg["type"], escape(_shape(arg["shape"])))
    console.print(io)


def register(app: typer.Typer) -> None:
    """Add `gankit info` to the root app."""
    app.command("info")(info)
