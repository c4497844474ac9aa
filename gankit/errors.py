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


def require_torch(command: str) -> None:
    """Fail with the install hint when the heavy tier (torch) is missing."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise MissingDependencyError(
            f"`gankit {command}` needs PyTorch, which is not installed. "
            "Install the training tier with: pip install 'gankit[train]'"
        )
