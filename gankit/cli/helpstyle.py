"""Conventional `--help` for every command, and `--show-completion SHELL` that honours SHELL.

Light tier (typer). Typer labels every value with its Python type (``<bool>``, ``<str>``,
``<list[str]>``), flags and ``--help`` included, and writes required arguments as
``{model}`` in the usage line. `conventional` gives each command class the metavars
users know from other tools instead: none on a flag, ``N`` for a count, ``PATH`` for a
file, ``DIGIT`` for a digit, ``[a|b]`` for a short list of choices, and an argument's own
name in capitals (``MODEL``). An explicit ``metavar=`` in a declaration is kept.

Typer's ``--show-completion`` and ``--install-completion`` are flags that detect the
shell, so ``gankit --show-completion zsh`` printed the script of whatever shell ran it
and ignored ``zsh``. `completion_request` reads a shell name after either option and
uses it, or refuses an unknown one with a usage error (exit 2).
"""

from __future__ import annotations

from typing import Any

from gankit.errors import UsageError

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
COMPLETION_OPTIONS = ("--show-completion", "--install-completion")

# Option or argument name -> metavar, where the name says more than the type.
NAMED = {
    "digit": "DIGIT", "digits": "DIGITS", "seed": "SEED", "port": "PORT", "host": "HOST",
    "output": "PATH", "json": "PATH", "model": "PATH", "config": "PATH", "resume": "PATH",
    "data": "DATA", "runs_dir": "DIR", "name": "NAME", "plugin": "NAME", "arch": "NAME",
    "checkpoint": "NAME", "reference": "SPLIT", "api_key": "KEY", "cors_origin": "ORIGIN",
}
# Choices are written out when they fit; a longer list is named and the help lists it.
MAX_CHOICES_WIDTH = 30
_COMPLETION_HELP = {
    "install_completion": "Install completion for SHELL (bash, zsh, fish, powershell or pwsh; default: the "
                          "shell running gankit).",
    "show_completion": "Print the completion script for SHELL (bash, zsh, fish, powershell or pwsh; default: "
                       "the shell running gankit), to copy it or customize the installation.",
}


def metavar_for(param: Any) -> str:
    """The conventional metavar of one typer parameter: '' for a flag, else a word in capitals."""
    desc = param.type_descriptor
    if param.param_type_name == "argument":
        return param.name.upper()  # typer adds "..." to the usage line when it takes several
    if getattr(param, "is_flag", False):
        return ""
    if desc.is_choice and desc.choices:
        written = "|".join(str(getattr(c, "value", c)) for c in desc.choices)
        if len(written) <= MAX_CHOICES_WIDTH:
            return f"[{written}]"
        return "NAME"
    if param.name in NAMED:
        return NAMED[param.name]
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    element = getattr(annotation, "__args__", (annotation,))[0] if desc.is_list else annotation
    if element is int:
        return "N"
    if element is float:
        if param.name.endswith("seconds"):
            return "SECONDS"
        return "MS" if param.name.endswith("_ms") else "FLOAT"
    return "TEXT"


def restyle(param: Any) -> None:
    """Give one parameter its conventional metavar (idempotent; explicit metavars are kept)."""
    if getattr(param, "_gankit_styled", False) or not hasattr(param, "type_descriptor"):
        return
    param._gankit_styled = True
    if param.name in _COMPLETION_HELP:
        param.metavar = "[SHELL]"
        param.help = _COMPLETION_HELP[param.name]
        return
    if param.metavar is None or (getattr(param, "is_flag", False) and param.metavar == ""):
        param.metavar = metavar_for(param)
    if param.param_type_name == "argument":
        # The name column already shows MODEL; typer would add <path> in the type column.
        param.display_type_rich = lambda ctx: None


class _Conventional:
    """Mixin for typer's command and group classes: conventional metavars and usage line."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            restyle(param)
        return params

    def collect_usage_pieces(self, ctx):
        pieces = super().collect_usage_pieces(ctx)
        # typer writes a required argument as {MODEL}; the convention is MODEL, and [MODEL] when optional.
        return [p[1:].replace("}", "", 1) if p.startswith("{") and "}" in p else p for p in pieces]


_classes: dict[type, type] = {}


def conventional(cls: type) -> type:
    """`cls` (a typer command or group class) with conventional help; the same class for the same `cls`."""
    if issubclass(cls, _Conventional):
        return cls
    if cls not in _classes:
        _classes[cls] = type(cls.__name__, (_Conventional, cls), {"__doc__": cls.__doc__,
                                                                  "__module__": cls.__module__})
    return _classes[cls]


def style_app(app: Any) -> None:
    """Set the conventional command and group classes on a typer app, its commands and its sub-apps."""
    from typer.core import TyperCommand, TyperGroup

    app.info.cls = conventional(app.info.cls if isinstance(app.info.cls, type) else TyperGroup)
    for command in app.registered_commands:
        command.cls = conventional(command.cls if isinstance(command.cls, type) else TyperCommand)
    for group in app.registered_groups:
        style_app(group.typer_instance)


def completion_request(args: list[str]) -> tuple[str, str] | None:
    """(option, shell) when `args` start with a completion option followed by a shell name, else None.

    ``--show-completion zsh`` and ``--show-completion=zsh`` name zsh; a word that is not a
    shell gankit can complete is a UsageError. Without a word, typer detects the shell.
    """
    if not args:
        return None
    option, _, shell = args[0].partition("=")
    if option not in COMPLETION_OPTIONS:
        return None
    if not shell and len(args) > 1 and not args[1].startswith("-"):
        shell = args[1]
    if not shell:
        return None
    if shell not in SHELLS:
        raise UsageError(f"{option}: unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")
    return option, shell


def run_completion(option: str, shell: str) -> None:
    """Print (``--show-completion``) or install (``--install-completion``) the completion for `shell`."""
    # typer's own callbacks for these two options call the same two functions.
    from typer._completion_shared import get_completion_script, install

    if option == "--show-completion":
        print(get_completion_script(prog_name="gankit", complete_var="_GANKIT_COMPLETE", shell=shell))
        return
    installed_shell, path = install(shell=shell, prog_name="gankit", complete_var="_GANKIT_COMPLETE")
    print(f"{installed_shell} completion installed in {path}")
    print("Completion will take effect once you restart the terminal")
