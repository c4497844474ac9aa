"""Write files and folders so that a reader never sees half of one: stage beside, then rename.

Light tier: standard library only. This is gankit's one atomic writer; every writer in
the package goes through it: IDX files, downloads, PNGs and .npy (gankit.images),
exported ONNX files (gankit.training.export.to_onnx) and checkpoint folders
(gankit.training.persist.checkpoint). A failure at any point leaves the target as it was and no
stray temporary behind.

Staged files are created with mode 0o666 filtered by the umask, the way `open()` creates
files, so what gankit writes is as readable as anything else the user writes
(`tempfile` would make it 0600).
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


# The longest file name most file systems allow (ext4, xfs, btrfs, tmpfs: 255 bytes).
NAME_MAX = 255


def _name_max(folder: Path) -> int:
    try:
        return min(NAME_MAX, os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the folder is odd
        return NAME_MAX


def temp_name(folder: Path, prefix: str, name: str, suffix: str) -> str:
    """``prefix + name + suffix``, with ``name`` cut (at a character boundary) so the whole fits
    the folder's name limit: a target near the limit must still get a temporary beside it."""
    room = max(_name_max(folder) - len(os.fsencode(prefix + suffix)), 0)
    if len(os.fsencode(name)) > room:
        name = name[:room]  # every character is at least one byte
        while len(os.fsencode(name)) > room:
            name = name[:-1]
    return prefix + name + suffix


def _open_new(folder: Path, name: str) -> tuple[IO[bytes], Path]:
    """A new, empty file `.NAME.<random>.tmp` in `folder` (NAME cut to fit), opened for binary writing."""
    for _ in range(100):
        # os.urandom, not secrets: the same bytes without importing secrets' hmac/random/base64,
        # which `gankit generate`'s cold start would pay for.
        temp = folder / temp_name(folder, ".", name, f".{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return os.fdopen(fd, "wb"), temp
    raise FileExistsError(f"no free temporary name in {folder}")


@contextlib.contextmanager
def staged_file(path: str | os.PathLike, what: str = "file",
                error: type[GankitError] = GankitError) -> Iterator[tuple[IO[bytes], Path]]:
    """Yield (handle, temp_path) of a new temp file beside `path`, removed on any failure.

    The caller decides when to move it into place with `commit` (several staged files can
    be committed together, or a file checked before it is committed); `atomic_write` is
    the one-file shortcut. OS errors while staging become `error` naming the path.
    """
    target = Path(path)
    created: list[Path] = []
    try:
        created = _make_parents(target.parent)
        handle, temp = _open_new(target.parent, target.name)
    except OSError as exc:
        remove_quietly(created)
        raise error(f"Cannot write {what} {target}: {exc.strerror or exc}") from None
    try:
        with handle:
            yield handle, temp
    except BaseException:
        remove_quietly([temp, *created])
        raise


def commit(handle: IO[bytes] | None, temp: Path, target: str | os.PathLike) -> None:
    """Flush `handle` (if still open) to disk and rename `temp` over `target`."""
    if handle is not None and not handle.closed:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
    os.replace(temp, target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, what: str = "file",
                 error: type[GankitError] = GankitError) -> Iterator[IO[bytes]]:
    """Open a binary temp file beside `path`; on success move it over `path`.

    On any exception the temp file (and any folder this call created) is removed and the
    target is left as it was. OS errors become `error` (a GankitError) naming the path.
    """
    target = Path(path)
    try:
        with staged_file(target, what, error) as (handle, temp):
            yield handle
            commit(handle, temp, target)
    except OSError as exc:
        raise error(f"Cannot write {what} {target}: {exc.strerror or exc}") from None


def write_atomic(path: str | os.PathLike, data: bytes, what: str = "file",
                 error: type[GankitError] = GankitError) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with atomic_write(path, what, error) as handle:
        handle.write(data)
    return Path(path)


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write a file inside a staged folder and flush it to disk (the folder's rename makes it atomic)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file some other library wrote (e.g. safetensors' save_file) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk, where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open folders; the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside `final`; on success it replaces `final` in one rename.

    An existing `final` is swapped out first and removed after the new one is in place, so
    a kill at any moment leaves the old folder or the new one under that name (and at worst
    a hidden `.old-*` or `.tmp-*` sibling), never a half-written folder. On any exception
    the temp folder is removed and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / temp_name(final.parent, ".tmp-", final.name, f"-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename the finished folder `tmp` to `final`, swapping out an existing `final` first.

    The old folder goes to a hidden ``.old-NAME-PID`` sibling and is deleted only after the
    new one is in place; the parent folder is flushed to disk afterwards.
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        old = final.parent / temp_name(final.parent, ".old-", final.name, f"-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_dir(final.parent)
