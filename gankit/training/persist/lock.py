"""The run-folder lock: one writer at a time in a run folder (a train, a resume, an export into it).

Heavy tier by placement; the lock itself needs only the standard library. It is an
``fcntl.flock`` on the file `LOCK_NAME` inside the run folder, held for the life of the
command that writes the folder:

* the kernel releases a flock when its holder exits, however it exits (SIGKILL, a crash,
  a power cut releases everything), so a lock file left behind never blocks anyone: the
  file's existence means nothing, only a live holder does;
* a second writer does not wait: it stops at once with `RunFolderBusy` (exit 1), one
  line naming the holder's PID and command, which the holder writes into the file;
* the holder removes the file when it is done (and the folders it created, when nothing
  else was written there), so a finished run's folder holds only what the run wrote; a
  takeover never deletes it; and a locker that finds the file gone or replaced once it
  has locked it tries again, so two processes can never each hold "the" lock of one
  folder;
* within one process the lock is re-entrant (`gankit train` holds it and the trainer
  it starts asks again), counted per folder.

Where flock does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path
from typing import Iterator

from gankit.errors import GankitError, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".gankit.lock"
# What a holder writes: "PID COMMAND\n"; a reader waits this long for a fresh holder to write it.
_INFO_WAIT_S = 0.5


class RunFolderBusy(GankitError):
    """Another gankit process is writing this run folder."""


class RunLockError(GankitError):
    """The run folder's lock file could not be created or locked (permissions, a read-only disk)."""


# realpath of the folder -> [fd, count, folders acquire created (deepest first)]
_HELD: dict[str, list] = {}


def _holder(fd: int) -> str:
    """'pid N, COMMAND' from the lock file, waiting briefly for a holder that has just locked it."""
    deadline = time.monotonic() + _INFO_WAIT_S
    while True:
        try:
            raw = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
        except OSError:
            raw = []
        if raw and raw[0].isdigit():
            command = " ".join(raw[1:])[:80]
            return f"pid {raw[0]}" + (f", gankit {command}" if command else "")
        if time.monotonic() > deadline:
            return "pid unknown"
        time.sleep(0.02)


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunLockError(f"{path} is not a regular file; remove it (gankit keeps its run-folder lock there)")
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def acquire(folder: str | os.PathLike, command: str) -> str:
    """Lock ``folder`` (created if missing) for this process; return its key for `release`.

    Raises `RunFolderBusy` naming the holder when another process holds it, UsageError
    when ``folder`` exists and is not a folder or cannot be created, `RunLockError` when
    the lock file cannot be made or locked.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder; pick another --name or --runs-dir")
    created = []  # the folders this call makes, deepest first: removed again if nothing is written
    try:
        current = folder
        while not current.exists() and current.parent != current:
            created.append(current)
            current = current.parent
        for missing in reversed(list(created)):
            try:
                missing.mkdir()
            except FileExistsError:  # another process made it meanwhile: not ours to remove
                if not missing.is_dir():
                    raise
                created.remove(missing)
    except OSError as exc:
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()
        raise UsageError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from None
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    if fcntl is None:  # pragma: no cover - Windows: no lock
        _HELD[key] = [None, 1, []]
        return key
    try:
        fd = _lock(folder / LOCK_NAME, folder)
    except BaseException:
        for made in created:  # only while empty: a holder's lock file keeps its folder
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    with contextlib.suppress(OSError):  # the PID is for the message only; a full disk must not stop a run
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
    _HELD[key] = [fd, 1, created]
    return key


def _lock(path: Path, folder: Path) -> int:
    """An fd of the lock file at ``path``, exclusively flocked, checked to still be the file there."""
    for _ in range(20):
        try:
            fd = _open_lock_file(path)
        except OSError as exc:
            raise RunLockError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderBusy(f"{folder} is in use by another gankit process ({holder}); wait for it to "
                                "finish, or stop it, then try again") from None
        except OSError as exc:
            os.close(fd)
            raise RunLockError(f"cannot lock {path}: {exc.strerror or exc}") from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its last holder removed it while we waited: lock the file that is there now
    raise RunLockError(f"cannot lock {path}: it keeps being replaced")


def release(key: str) -> None:
    """Undo one `acquire`; the last one unlocks (and removes the folders it created, if nothing else was written)."""
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    fd, _, created = held
    if fd is None:
        return
    folder = Path(key)
    with contextlib.suppress(OSError):
        if _same_file(fd, folder / LOCK_NAME):
            # Removed while still locked, so no one else can hold it; a process that opened it
            # meanwhile finds it gone once it gets the lock, and starts over (`acquire`).
            os.unlink(folder / LOCK_NAME)
    with contextlib.suppress(OSError):
        for made in created:  # the run folder, then the parents made for it, while they are empty
            os.rmdir(made)
    os.close(fd)


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block; see `acquire`."""
    key = acquire(folder, command)
    try:
        yield Path(folder)
    finally:
        release(key)


def held_by_this_process(folder: str | os.PathLike) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return os.path.realpath(folder) in _HELD
