"""Whether the ``serve`` extra is installed, and the one message that says how to get it.

Light tier (standard library). The modules that use Starlette, uvicorn or the Prometheus
client import them inside ``try`` blocks, so that gankit's modules all import in a base
install; `require_serve_extra` is called before any of them is used.
"""

from __future__ import annotations

import importlib.util

from gankit.errors import MissingDependencyError, install_hint

# Import name -> the distribution that provides it (as listed in pyproject's `serve` extra).
SERVE_MODULES = {"starlette": "starlette", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client"}


def missing_serve_modules() -> list[str]:
    """Distributions of the ``serve`` extra that cannot be imported here."""
    return [dist for module, dist in SERVE_MODULES.items() if importlib.util.find_spec(module) is None]


def require_serve_extra(command: str = "serve") -> None:
    """Raise MissingDependencyError naming what is missing, with the install command."""
    missing = missing_serve_modules()
    if missing:
        raise MissingDependencyError(
            f"`gankit {command}` needs the serve extra ({', '.join(missing)} not installed). "
            f"Install it with: {install_hint('serve')}")
