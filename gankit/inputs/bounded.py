"""Bounded reads: regular files only and at most N bytes; JSON at most N bytes and D levels deep.

Light tier (standard library only). Python's JSON and TOML parsers recurse once per level
of nesting, so ``[[[[...]]]]`` a few thousand levels deep raises RecursionError, and
whatever walks the parsed value afterwards (a dataclass, ``json.dumps``, a copy) may do
the same at a smaller depth; a FIFO or ``/dev/zero`` given as a file would block or never
end. Every such failure here is an `InputError`, a ValueError with a one-line message
that the caller prefixes with what it was reading.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

# The largest JSON value gankit reads: a checkpoint's state.json is ~30 KB, a run's
# config.json ~2 KB, one metrics row ~200 bytes; 64 MiB is far past any of them.
MAX_JSON_BYTES = 64 << 20
# gankit's own JSON is at most 4 levels deep (state.json's optimizer param groups); 32
# leaves room for plugin options while staying far below Python's recursion limit.
MAX_DEPTH = 32


class InputError(ValueError):
    """Input that is too large, too deep, not a regular file, or not valid JSON."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file at ``path``; InputError past ``limit`` bytes or for anything else.

    OSError (a missing file, no permission) passes through for the caller to word. The
    file is opened without blocking, so a FIFO is refused instead of waiting for a writer,
    and the size is checked on the open file, so swapping the path afterwards changes nothing.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _kind(info.st_mode)
            raise InputError(f"{kind}, not a file" if kind != "not a regular file" else kind)
        if info.st_size > limit:
            raise InputError(f"{info.st_size:,} bytes, more than the {limit:,} allowed")
        chunks, total = [], 0
        while True:  # a file that grows while it is read still stops at the limit
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InputError(f"more than the {limit:,} bytes allowed")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` if its lists and dicts nest at most ``max_depth`` levels, else InputError.

    Iterative, so it is safe on any value; it stops at the first level too deep.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= max_depth:
            raise InputError(f"nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)
    return value


def _no_constant(name: str) -> Any:
    raise InputError(f"{name} is not a number JSON allows")


def loads(text: str | bytes, *, limit: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH,
          allow_nan: bool = True) -> Any:
    """Parse JSON of at most ``limit`` bytes and ``max_depth`` levels; InputError otherwise.

    ``allow_nan=False`` refuses the NaN and Infinity literals that Python's json accepts.
    Numbers with more digits than Python converts (4,300) are an InputError too.
    """
    if len(text) > limit:
        raise InputError(f"{len(text):,} bytes of JSON, more than the {limit:,} allowed")
    try:
        value = json.loads(text, parse_constant=None if allow_nan else _no_constant)
    except RecursionError:
        raise InputError(f"JSON nested more than {max_depth} levels deep") from None
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, an int over 4,300 digits
        raise InputError(f"not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    try:
        return check_depth(value, max_depth)
    except InputError:
        raise InputError(f"JSON nested more than {max_depth} levels deep") from None


def load_file(path: str | os.PathLike, *, limit: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH,
              allow_nan: bool = True) -> Any:
    """`loads` of the regular file at ``path`` (see `read_regular`); OSError passes through."""
    return loads(read_regular(path, limit), limit=limit, max_depth=max_depth, allow_nan=allow_nan)
