"""The environment variables gankit documents, read typed and checked: a bad value is one UsageError naming it.

Light tier (standard library only). A variable that is unset, or set to an empty or
blank string, takes its default. Anything else must parse and lie within its bounds, or
the command stops with exit 2 and a line such as
``environment variable GANKIT_DIST_TIMEOUT='abc' is not a number of seconds``, instead
of a traceback from deep inside whatever reads it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional, TypeVar

from gankit.errors import UsageError

T = TypeVar("T")

# Linux's limits: one path component, and a whole path.
NAME_MAX = 255
PATH_MAX = 4096


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _bad(name: str, value: str, want: str) -> UsageError:
    return UsageError(f"environment variable {name}={_shown(value)} {want}")


def text(name: str) -> Optional[str]:
    """The variable's value with surrounding blanks removed, or None when unset or blank."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def number(name: str, default: float, *, low: float, high: float, above_low: bool = False,
           what: str = "a number") -> float:
    """A finite float in [low, high], or in (low, high] with ``above_low``."""
    raw = text(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, f"is not {what}") from None
    if not math.isfinite(value) or not low <= value <= high or (above_low and value == low):
        bounds = f"above {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"
        raise _bad(name, raw, f"must be {what} {bounds}")
    return value


def integer(name: str, default: Optional[int], *, low: int, high: int, what: str = "a whole number") -> Optional[int]:
    """An int in [low, high] written in decimal digits."""
    raw = text(name)
    if raw is None:
        return default
    if not raw.lstrip("+-").isdigit() or len(raw) > 30:
        raise _bad(name, raw, f"is not {what}")
    value = int(raw)
    if not low <= value <= high:
        raise _bad(name, raw, f"must be {what} from {low} to {high}")
    return value


def path(name: str) -> Optional[Path]:
    """A file-system path (``~`` expanded) no longer than the system allows, or None when unset."""
    raw = text(name)
    if raw is None:
        return None
    expanded = os.path.expanduser(raw)
    encoded = os.fsencode(expanded)
    if len(encoded) >= PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise _bad(name, raw, f"is longer than a path may be ({NAME_MAX} bytes a name, {PATH_MAX} in all)")
    return Path(expanded)


def items(name: str, check: Callable[[str], Optional[str]], *, what: str) -> Optional[list[str]]:
    """A comma-separated list; ``check(item)`` returns None for a good item, else what is wrong with it."""
    raw = text(name)
    if raw is None:
        return None
    values = [part.strip() for part in raw.split(",") if part.strip()]
    if not values:
        raise _bad(name, raw, f"holds no {what}")
    for value in values:
        problem = check(value)
        if problem:
            raise _bad(name, raw, f"holds {value!r:.80}, which {problem}")
    return values


def parsed(name: str, parse: Callable[[str], T], *, what: str) -> Optional[T]:
    """``parse(value)``, with its ValueError turned into one line naming the variable."""
    raw = text(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise _bad(name, raw, f"is not {what} ({exc})") from None
