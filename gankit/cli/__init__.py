"""The `gankit` command: a Typer root app that joins one module per command.

Light tier. Command modules load torch (and other heavy things) only inside the command
function. Typer builds every registered command's parameters on each call, so the app
registers only the module of the command being run (`gankit generate` must start fast,
see bench/bench_generate.py); `--help`, shell completion and anything unknown get them all.
typer itself is imported only when the app is first needed (``gankit.cli.app`` is built
on first access): a plain `gankit generate` command line skips it, and the pydantic and
rich it brings, and runs `gankit.cli.generate.run` directly (`fast_arguments` says when).
`main()` turns a `GankitError` into a clean message and its exit code:
0 ok, 1 runtime failure, 2 usage error.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

from gankit.errors import GankitError

# Command name -> module under gankit.cli that registers it; the order here is the order in --help.
COMMANDS = {
    "train": "train",
    "export": "export",
    "generate": "generate",
    "evaluate": "evaluate",
    "info": "info",
    "plugins": "plugins",
    "serve": "serve",
}


def _wanted(args: list[str]) -> list[str]:
    """The command modules a call with `args` needs: the one named, else all of them."""
    completing = any(key.startswith("_") and key.endswith("_COMPLETE") for key in os.environ)
    first = next((a for a in args if not a.startswith("-")), None)
    if completing or first not in COMMANDS:
        return list(COMMANDS)
    return [first]


_app = None
typer = None  # the module, once _get_app has imported it (the annotations of _root name it)


def _get_app():
    """The root Typer app, built on first use (importing typer costs more than a whole `gankit generate`)."""
    global _app, typer
    if _app is not None:
        return _app
    import typer

    from gankit.cli import helpstyle

    class _LazyApp(typer.Typer):
        """A Typer app that imports and registers command modules when it is called."""

        _loaded: tuple[str, ...] = ()

        def load(self, names: list[str]) -> None:
            if set(names) <= set(self._loaded):
                return
            names = list(COMMANDS) if len(names) > 1 or self._loaded else names
            # Re-register from scratch so that --help keeps the COMMANDS order.
            self.registered_commands.clear()
            self.registered_groups.clear()
            for name in names:
                importlib.import_module(f"gankit.cli.{COMMANDS[name]}").register(self)
            helpstyle.style_app(self)  # conventional --help: DIGIT, PATH, N, no <bool> tags
            self._loaded = tuple(names)

        def __call__(self, *args, **kwargs):
            argv = kwargs.get("args")
            argv = list(argv) if argv is not None else sys.argv[1:]
            completion = helpstyle.completion_request(argv)
            if completion is not None:  # `--show-completion zsh`: the named shell, not the detected one
                return helpstyle.run_completion(*completion)
            self.load(_wanted(argv))
            return super().__call__(*args, **kwargs)

    _app = _LazyApp(
        name="gankit",
        help="Train GAN digit generators, export them to ONNX, and generate digits without PyTorch.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    _app.callback()(_root)
    return _app


def __getattr__(name: str):
    if name == "app":  # `from gankit.cli import app` builds it
        return _get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def versions() -> list[tuple[str, str]]:
    """(package, version) for gankit, torch and onnxruntime, without importing torch."""
    import importlib.metadata as metadata
    import importlib.util
    import platform

    import gankit

    rows = [("gankit", gankit.__version__)]
    if importlib.util.find_spec("torch") is None:
        rows.append(("torch", "not installed (light tier)"))
    else:
        try:
            rows.append(("torch", metadata.version("torch")))
        except metadata.PackageNotFoundError:
            rows.append(("torch", "installed, version unknown"))
    try:
        import onnxruntime

        rows.append(("onnxruntime", onnxruntime.__version__))
    except ImportError:
        rows.append(("onnxruntime", "not installed"))
    rows.append(("python", platform.python_version()))
    return rows


def _print_version(value: bool) -> None:
    if value:
        for name, version in versions():
            typer.echo(f"{name} {version}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the versions of gankit, torch and onnxruntime, and exit.")] = False,
) -> None:
    """Train GAN digit generators, export them to ONNX, and generate digits without PyTorch."""


def report_error(err: GankitError) -> None:
    """Print a GankitError the way every command does: red 'error:' and the message."""
    from rich.console import Console
    from rich.markup import escape

    # escape: messages hold text like "gankit[train]" that rich would take for markup.
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}")


def _fast_generate(args: list[str]) -> bool:
    """Run a plain `gankit generate ...` command line without typer; False when it is not one."""
    if not args or args[0] != "generate" or any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return False
    from gankit.cli import generate

    kwargs = generate.fast_arguments(args[1:])
    if kwargs is None:
        return False
    generate.run(**kwargs)
    return True


def main() -> None:
    """Console-script entry point."""
    try:
        if not _fast_generate(sys.argv[1:]):
            _get_app()()
    except GankitError as err:
        report_error(err)
        sys.exit(err.exit_code)
    except OSError as err:
        # The last line of defence for file-system failures a command did not foresee
        # (a name too long, a read-only or full disk): one line naming the path, exit 1.
        where = f": {err.filename}" if err.filename else ""
        report_error(GankitError(f"{err.strerror or err}{where}"))
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C while a command module imports, before click handles it
        sys.stderr.write("interrupted\n")
        sys.exit(130)

