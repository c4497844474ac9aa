"""A run folder's text files: metrics.jsonl (append-only log) and config.json.

Light tier (standard library only), though only the trainer uses it. Two rules keep a
kill or a full disk from losing anything:

* metrics.jsonl is only ever appended to, except on resume, when the rows logged after
  the resumed checkpoint are dropped. That rewrite goes to a temporary file which is
  fsynced and renamed over the old one, so a kill leaves the old log or the new one,
  never an empty file.
* every write error (ENOSPC, EFBIG, EACCES...) becomes one `RunFileError` naming the
  file, and a failed atomic write leaves no temporary behind.

Reading is lenient where a kill can cut things short (the last line of the log) and
strict about nothing else: a line that is not a JSON object with an integer ``step`` is
skipped, whatever it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from gankit.errors import GankitError

METRICS = "metrics.jsonl"
CONFIG = "config.json"
# Timing fields legitimately differ between an interrupted and an uninterrupted run.
TIMING_FIELDS = ("steps_per_s", "elapsed_s")


FAULT_ENV = "GANKIT_FAULT_KILL_AT"


def fault_point(name: str) -> None:
    """Fault injection for tests/test_faults.py: SIGKILL this process at the Nth pass of ``name``.

    ``GANKIT_FAULT_KILL_AT=name:N`` arms it; unset (always, outside the fault tests) it
    costs one dictionary lookup. Killing here, rather than at a random time, is what
    proves the windows that are too short to hit by chance (mid-prune, mid-commit).
    """
    armed = os.environ.get(FAULT_ENV)
    if not armed:
        return
    point, _, count = armed.partition(":")
    if point != name:
        return
    seen = _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if seen >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_COUNTS: dict[str, int] = {}


class RunFileError(GankitError):
    """A run folder file could not be written (disk full, file too large, no permission)."""


def describe(exc: BaseException) -> str:
    """The OS reason for an error, without Python's '[Errno N]' noise when there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes, what: str) -> None:
    """Replace ``path`` with ``data`` all at once; on failure ``path`` is unchanged and no temp is left.

    The temporary is created with mode 0666 minus the umask, like any other file the user
    makes (tempfile's 0600 would survive the rename).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        fault_point("before-replace")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunFileError(f"cannot write {what} {path}: {describe(exc)}") from None
    _fsync_dir(path.parent)


def parse_row(line: str) -> dict[str, Any] | None:
    """One metrics row, or None for anything that is not a JSON object with an integer step."""
    try:
        row = json.loads(line)
    except ValueError:  # a line cut by a kill, or garbage
        return None
    if not isinstance(row, dict):
        return None
    step = row.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every well-formed row of a metrics log, in file order; a missing file has none."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunFileError(f"cannot read {path}: {describe(exc)}") from None
    text = raw.decode("utf-8", errors="replace")
    return [row for row in map(parse_row, text.splitlines()) if row is not None]


def rows_to_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def truncate_to(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the rows logged up to ``step`` (the resumed checkpoint) and return them.

    The file is rewritten, atomically, only when that changes it: rows past the
    checkpoint, a cut last line or a malformed line. A clean log is left untouched, so
    the common resume writes nothing.
    """
    path = Path(path)
    rows = [r for r in read_rows(path) if r["step"] <= step]
    wanted = rows_to_text(rows).encode()
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current is not None and current != wanted:
        write_atomic(path, wanted, "the metrics log")
    return rows


def write_config(run_dir: Path, text: str) -> None:
    """Write config.json atomically (a full disk leaves the old one, or none, never 0 bytes).

    Called when a run starts, it first removes temporaries a killed run left beside it.
    """
    clean_temps(run_dir)
    write_atomic(Path(run_dir) / CONFIG, text.encode(), "the run config")


def clean_temps(run_dir: Path) -> None:
    """Delete the temporaries that a kill cut short: config.json and metrics.jsonl rewrites,
    and the sample grids and loss curves (``gankit.atomic`` names them ``.NAME.<hex>.tmp``)."""
    for pattern in (f".{CONFIG}.*.tmp", f".{METRICS}.*.tmp"):
        for tmp in Path(run_dir).glob(pattern):
            if tmp.name.split(".")[-2] != str(os.getpid()):
                with contextlib.suppress(OSError):
                    tmp.unlink()
    # Pictures are written only by the training loop, which has not started when this runs,
    # so every such temporary is a dead run's.
    for tmp in [*Path(run_dir).glob(".*.png.*.tmp"), *(Path(run_dir) / "samples").glob(".*.png.*.tmp")]:
        with contextlib.suppress(OSError):
            tmp.unlink()


class MetricsLog:
    """metrics.jsonl opened for appending; a failed write raises RunFileError naming the file.

    It has the two methods the trainer uses on a file (``write``, ``flush``) so the loop
    reads the same whichever it holds.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None

    def __enter__(self) -> "MetricsLog":
        try:
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise RunFileError(f"cannot open the metrics log {self.path}: {describe(exc)}") from None
        return self

    def _guard(self, action) -> None:
        try:
            action()
        except OSError as exc:
            raise RunFileError(f"cannot write the metrics log {self.path}: {describe(exc)}") from None

    def write(self, text: str) -> None:
        # Flushed at once: a buffered row would otherwise surface its error much later.
        self._guard(lambda: (self._file.write(text), self._file.flush()))

    def flush(self) -> None:
        self._guard(self._file.flush)

    def __exit__(self, *exc_info) -> bool:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                if exc_info[0] is None:
                    raise RunFileError(f"cannot write the metrics log {self.path}: {describe(exc)}") from None
        return False


def without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows minus the fields that measure wall-clock time (they differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]



# What a run leaves in its folder before its first checkpoint; nothing else may be deleted.
_RUN_OUTPUTS = {CONFIG, METRICS, "checkpoints", "samples", "tb", "loss_curve.png", "loss_curve_per_class.png"}


def _holds_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and any((entry / "manifest.json").is_file() for entry in folder.iterdir())


def claim_folder(run_dir: Path) -> str | None:
    """Make ``run_dir`` ready for a new run; return a note when an abandoned run was taken over.

    A folder that holds a committed checkpoint is a run to continue (UsageError pointing
    at --resume). One that holds only what a run writes before its first checkpoint (a
    kill, a double Ctrl-C, a full disk or a NaN at step 1) is a dead end otherwise: those
    files are deleted and the new run starts there. Anything gankit did not write makes
    it refuse, so no user file is ever deleted.
    """
    import shutil

    from gankit.errors import UsageError

    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder; pick another --name or --runs-dir")
    if _holds_checkpoint(run_dir / "checkpoints"):
        raise UsageError(f"{run_dir} already exists; pick another --name or continue it with --resume {run_dir}")
    entries = list(run_dir.iterdir())
    foreign = sorted(e.name for e in entries if e.name not in _RUN_OUTPUTS and not _is_our_temp(e.name))
    if foreign:
        raise UsageError(f"{run_dir} already exists and holds files gankit did not write ({', '.join(foreign[:3])}); "
                         "pick another --name")
    if not entries:
        return None
    try:
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    except OSError as exc:
        raise RunFileError(f"cannot clear the abandoned run folder {run_dir}: {describe(exc)}") from None
    return (f"{run_dir} held a run stopped before its first checkpoint (nothing to resume); "
            "starting it over from step 0")


def _is_our_temp(name: str) -> bool:
    return name.startswith((f".{CONFIG}.", f".{METRICS}.")) and name.endswith(".tmp")
