"""The error types every gankit command raises, and the exit code each maps to.

Light tier: no third-party imports. The CLI turns a `GankitError` into a one-line
message and its exit code (1 runtime failure, 2 usage error) instead of a traceback.
"""

from __future__ import annotations


class GankitError(Exception):
    """A failure the user can act on. The message is shown as is, without a traceback."""

    exit_code = 1


class UsageError(GankitError):
    """The command line asked for something impossible (bad option value, unknown name)."""

    exit_code = 2


class DataError(GankitError):
    """A data file or source is missing, corrupt, or not what it claims to be."""


class ModelFileError(GankitError):
    """A model file (ONNX or checkpoint) is missing, corrupt, or breaks the gankit contract."""


class PluginError(GankitError):
    """A plugin could not be loaded or breaks the plugin contract."""


class TrainingError(GankitError):
    """Training cannot go on (for example a non-finite loss)."""


class MissingDependencyError(GankitError):
    """A command needs an optional dependency tier that is not installed."""


def install_hint(extra: str) -> str:
    """The command that adds the optional dependencies `extra` (e.g. ``"train"``) to this install.

    gankit is installed from a clone of its repository, not from a package index, so
    ``pip install 'gankit[train]'`` finds nothing. A source checkout (an editable install,
    or gankit run from the clone) gets ``pip install -e 'CLONE[extra]'``, with the clone's
    ``constraints.txt``; a copy installed from a local folder gets that folder, as pip
    recorded it in ``direct_url.json``; anything else gets the form to run in a clone.
    """
    import json
    import shlex
    import sys
    import urllib.parse
    from importlib import metadata
    from pathlib import Path

    pip = f"{shlex.quote(sys.executable)} -m pip install"
    clone, editable = Path(__file__).resolve().parents[1], True
    if not (clone / "pyproject.toml").is_file():
        try:
            raw = metadata.distribution("gankit").read_text("direct_url.json") or ""
            # Written by pip, but still read with care: a small JSON object, or nothing.
            info = json.loads(raw) if len(raw) < 65536 else {}
            url = info.get("url", "") if isinstance(info, dict) else ""
        except (metadata.PackageNotFoundError, ValueError, RecursionError, AttributeError, OSError):
            url = ""
        clone, editable = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)), False
        if not url.startswith("file://") or not (clone / "pyproject.toml").is_file():
            return f"pip install -e '.[{extra}]' in a clone of the gankit repository (gankit is not on PyPI)"
    constraints = clone / "constraints.txt"
    pin = f" -c {shlex.quote(str(constraints))}" if constraints.is_file() else ""
    return f"{pip} {'-e ' if editable else ''}{shlex.quote(f'{clone}[{extra}]')}{pin}"


def require_torch(command: str) -> None:
    """Fail with the install hint when the heavy tier (torch) is missing.

    Raises:
        MissingDependencyError: torch cannot be imported; the message says how to install it.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise MissingDependencyError(
            f"`gankit {command}` needs PyTorch, which is not installed. "
            f"Install the training tier with: {install_hint('train')}"
        )
