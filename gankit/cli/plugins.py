"""`gankit plugins`: list the installed GAN plugins, or show one in detail.

Light tier. Listing imports each plugin module to read its description (plugins keep
torch out of module level, so this stays light); a plugin that cannot be loaded shows
as a warning row naming its distribution and the reason, and the command still exits 0,
because one broken third-party package must not hide the others.

    gankit plugins              # table: name, distribution, version, description
    gankit plugins show NAME    # label mode, batch layout, API, archs, train defaults, typed options
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

plugins_app = typer.Typer(
    name="plugins",
    help="List installed GAN plugins, or show one in detail.",
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)

_LABEL_MODES = {
    "none": "none (unconditional; labels are ignored)",
    "per-class": "per-class (one independent GAN per class)",
    "conditional": "conditional (one GAN that takes the label as input)",
}
_BATCH_LAYOUTS = {
    "shuffled": "shuffled (uniform random draws)",
    "per-class": "per-class (batch_size images of each class, grouped by class)",
}


def _console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap keeps long warning lines whole, so they stay greppable in logs.
    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


@plugins_app.callback()
def plugins_list(ctx: typer.Context) -> None:
    """List installed plugins (name, distribution, version, description)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape
    from rich.table import Table

    from gankit.registry import survey_plugins

    statuses = survey_plugins()
    out = _console()
    if not statuses:
        out.print("No gankit plugins are installed.")
        return
    table = Table(title="gankit plugins", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("description")
    for status in statuses:
        info = status.info
        if status.ok:
            table.add_row(escape(info.name), escape(info.distribution), escape(info.version),
                          escape(info.description or ""))
        else:
            # The full message (repeated on stderr below) starts with the name, distribution
            # and version, which the row's own columns already show.
            reason = status.error
            if reason.startswith(info.origin):
                reason = reason[len(info.origin):].lstrip(" :")
            table.add_row(escape(info.name), escape(info.distribution), escape(info.version),
                          f"[yellow]warning: cannot be loaded: {escape(reason)}[/]")
    out.print(table)
    err = _console(stderr=True)
    for status in statuses:
        if not status.ok:
            err.print(f"[bold yellow]warning:[/] {escape(status.error)}")


def _docstring_summary(module_name: str) -> str:
    """First paragraph of the plugin module's docstring, joined onto one line."""
    module = sys.modules.get(module_name)
    doc = (getattr(module, "__doc__", None) or "").strip()
    if not doc:
        return "(no module docstring)"
    return " ".join(doc.split("\n\n", 1)[0].split())


def _callable_name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@plugins_app.command("show")
def plugins_show(
    name: Annotated[str, typer.Argument(help="Plugin name, as listed by `gankit plugins`.")],
) -> None:
    """Show one plugin: label mode, batch layout, API version, archs, train defaults, options."""
    from rich.markup import escape
    from rich.table import Table

    from gankit.plugin_api import describe_options
    from gankit.registry import info_of, load_plugin

    plugin = load_plugin(name)  # UsageError (unknown) / PluginError (broken) reach main()
    info = info_of(name)
    module_name = info.value.split(":", 1)[0]

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = [
        ("name", plugin.name),
        ("description", plugin.description),
        ("distribution", f"{info.distribution} {info.version}"),
        ("entry point", info.value),
        ("plugin API", str(plugin.api_version)),
        ("label mode", _LABEL_MODES.get(plugin.label_mode, plugin.label_mode)),
        ("batch layout", _BATCH_LAYOUTS.get(plugin.batch_layout, plugin.batch_layout)),
        ("archs", ", ".join(plugin.supported_archs) or "(none)"),
        ("train step", _callable_name(plugin.train_step) if plugin.train_step else "standard"),
        ("D regulariser", _callable_name(plugin.d_regularizer) if plugin.d_regularizer else "(none)"),
        ("loss", "the run's --loss" if plugin.uses_loss else "its own (--loss does not apply)"),
        ("train defaults", ", ".join(f"{k}={v!r}" for k, v in plugin.train_defaults.items())
         or "(none: gankit's defaults)"),
        ("export module", (_callable_name(plugin.export_module) if plugin.export_module
                           else "the generator itself") + ", with the EMA weights when a run keeps an EMA"),
        ("about", _docstring_summary(module_name)),
    ]
    for key, value in rows:
        grid.add_row(key, escape(str(value)))
    if plugin.default_options:
        typed = "" if plugin.options else " (untyped, plugin API 1: the plugin checks the values)"
        options = "\n".join(describe_options(plugin))
        grid.add_row("options", escape(options + f"\n(set with --option key=value{typed})"))
    else:
        grid.add_row("options", "(none)")
    _console().print(grid)


def register(app: typer.Typer) -> None:
    """Add `gankit plugins` (and `gankit plugins show`) to the root app."""
    app.add_typer(plugins_app, name="plugins")
