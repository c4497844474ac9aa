"""The `gankit` command: a Typer root app that joins one module per command.

Light tier. Typer imports every command module to build `--help`, so command modules
load torch (and other heavy things) only inside the command function.
`main()` turns a `GankitError` into a clean message and its exit code:
0 ok, 1 runtime failure, 2 usage error.
"""

from __future__ import annotations

import sys

import typer

from gankit.errors import GankitError

app = typer.Typer(
    name="gankit",
    help="Train GAN digit generators, export them to ONNX, and generate digits without PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module registers its own command(s); the order here is the order in --help.
from gankit.cli import train as _train  # noqa: E402
from gankit.cli import export as _export  # noqa: E402
from gankit.cli import generate as _generate  # noqa: E402
from gankit.cli import evaluate as _evaluate  # noqa: E402
from gankit.cli import info as _info  # noqa: E402
from gankit.cli import plugins as _plugins  # noqa: E402

for _module in (_train, _export, _generate, _evaluate, _info, _plugins):
    _module.register(app)


def report_error(err: GankitError) -> None:
    """Print a GankitError the way every command does: red 'error:' and the message."""
    from rich.console import Console
    from rich.markup import escape

    # escape: messages hold text like "gankit[train]" that rich would take for markup.
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except GankitError as err:
        report_error(err)
        sys.exit(err.exit_code)
