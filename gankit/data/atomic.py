"""Write files so that a reader never sees half of one: temp file, then os.replace.

Light tier: standard library only. Every gankit writer (IDX files, downloads,
PNGs, .npy) goes through `atomic_write`, so a failure at any point leaves no
partial file and no stray temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gankit.errors import GankitError


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and missing ancestors; return the ones created, deepest first."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for created in reversed(missing):
        created.mkdir()
    return missing


def remove_quietly(paths: list[Path]) -> None:
    """Best-effort cleanup after a failure; the original error is what matters."""
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()


@contextlib.contextmanager
def staged_file(path: str | os.PathLike, what: str = "file") -> Iterator[tuple[IO[bytes], Path]]:
    """Yield (handle, temp_path) of a temp file beside `path`, unlinked on any failure.

    The caller decides when to move it into place (several staged files can be
    committed together); `atomic_write` is the one-file shortcut.
    """
    target = Path(path)
    created: list[Path] = []
    try:
        created = _make_parents(target.parent)
        handle = tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        )
    except OSError as exc:
        remove_quietly(created)
        raise GankitError(f"Cannot write {what} {target}: {exc.strerror or exc}") from None
    temp = Path(handle.name)
    try:
        with handle:
            yield handle, temp
    except BaseException:
        remove_quietly([temp, *created])
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, what: str = "file") -> Iterator[IO[bytes]]:
    """Open a binary temp file beside `path`; on success move it over `path`.

    On any exception the temp file (and any folder this call created) is removed
    and the target is left as it was. OS errors become a `GankitError` naming the path.
    """
    target = Path(path)
    try:
        with staged_file(target, what) as (handle, temp):
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(temp, target)
    except OSError as exc:
        raise GankitError(f"Cannot write {what} {target}: {exc.strerror or exc}") from None
