"""`gankit evaluate`: placeholder until its issue lands. Light tier."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing registered yet."""
