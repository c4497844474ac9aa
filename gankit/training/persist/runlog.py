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
import re
import signal
from pathlib import Path
from typing import Any

from gankit.errors import GankitError, UsageError
from gankit.inputs import bounded, envvars
from gankit.training.persist.lock import LOCK_NAME

METRICS = "metrics.jsonl"
CONFIG = "config.json"
# Timing fields legitimately differ between an interrupted and an uninterrupted run.
TIMING_FIELDS = ("steps_per_s", "elapsed_s")
# A row is ~200 bytes; a line past this is not one of ours and is skipped unread.
MAX_ROW_BYTES = 1 << 20
# The whole log: a million rows of ~200 bytes. It is read whole on resume.
MAX_LOG_BYTES = 1 << 30


FAULT_ENV = "GANKIT_FAULT_KILL_AT"


def fault_point(name: str) -> None:
    """Fault injection for tests/test_faults.py: SIGKILL this process at the Nth pass of ``name``.

    ``GANKIT_FAULT_KILL_AT=name:N`` arms it; unset (always, outside the fault tests) it
    costs one dictionary lookup. Killing here, rather than at a random time, is what
    proves the windows that are too short to hit by chance (mid-prune, mid-commit).
    """
    if not os.environ.get(FAULT_ENV):
        return
    setting = fault_setting()
    if setting is None or setting[0] != name:
        return
    count = setting[1]
    seen = _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if seen >= count:
        os.kill(os.getpid(), signal.SIGKILL)


def fault_setting() -> tuple[str, int] | None:
    """(point, N) from `GANKIT_FAULT_KILL_AT`, None when unset; a malformed value is a UsageError."""
    return envvars.parsed(FAULT_ENV, _parse_fault, what="POINT:N (a fault point and a count from 1)")


def _parse_fault(text: str) -> tuple[str, int]:
    point, _, count = text.partition(":")
    if not point or count and (not count.isdigit() or len(count) > 9 or int(count) < 1):
        raise ValueError(f"{count!r} is not a count from 1")
    return point, int(count or 1)


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
    """One metrics row, or None for anything that is not a JSON object with an integer step.

    The line is read with `gankit.inputs.bounded` limits, so a line nested thousands of
    levels deep, or megabytes long, is skipped like any other bad line.
    """
    try:
        row = bounded.loads(line, limit=MAX_ROW_BYTES)
    except ValueError:  # a line cut by a kill, garbage, or too big or too deep
        return None
    if not isinstance(row, dict):
        return None
    step = row.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    return row


def _read_log(path: Path) -> bytes | None:
    """The log's bytes; None when it does not exist. Only a regular file is read (never a FIFO)."""
    try:
        return bounded.read_regular(path, MAX_LOG_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunFileError(f"cannot read {path}: {describe(exc)}") from None
    except ValueError as exc:
        raise RunFileError(f"cannot read {path}: {exc}") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every well-formed row of a metrics log, in file order; a missing file has none."""
    raw = _read_log(Path(path))
    if raw is None:
        return []
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
    current = _read_log(path)
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



# ----- taking over a run that stopped before its first checkpoint ---------------------------
#
# What a run writes before its first checkpoint, recognised by name and, where the file
# has one, by its own marker. Anything else, at any depth, is the user's: its presence
# makes a takeover refuse, so nothing gankit did not write is ever deleted.
_PNG = b"\x89PNG\r\n\x1a\n"
_CHECKPOINT_FILES = {"tensors.safetensors", "state.json", "manifest.json"}
_PICTURE_TEMP = re.compile(r"\.(step-\d+|loss_curve|loss_curve_per_class)\.png\.[0-9a-f]+\.tmp")
_LOG_TEMP = re.compile(r"\.(config\.json|metrics\.jsonl)\.\d+\.tmp")
_CHECKPOINT_DIR = re.compile(r"(step-\d+|best|\.(tmp|old|del)-.+-\d+)")
_EVENTS = re.compile(r"events\.out\.tfevents\..+")
_MARKER_BYTES = 64


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_MARKER_BYTES)


def _is_png(path: Path) -> bool:
    head = _head(path)
    return head.startswith(_PNG) or _PNG.startswith(head)  # a cut write is a prefix (or nothing)


def _is_config(path: Path) -> bool:
    from gankit.config import SETTINGS

    if path.stat().st_size == 0:
        return True  # an empty file holds nothing to lose
    try:
        data = bounded.load_file(path, limit=1 << 20)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and set(data) <= set(SETTINGS) | {"net"}


def _is_metrics(path: Path) -> bool:
    head = _head(path)
    return not head or head.startswith(b'{"step": ')  # every row gankit logs starts so


def _is_events(path: Path) -> bool:
    head = _head(path)
    return not head or b"brain.Event" in head  # TensorBoard's first record names its format


def _checkpoint_parts(folder: Path, rel: str, ours: list[Path], foreign: list[str]) -> None:
    for entry in os.scandir(folder):
        if entry.name in _CHECKPOINT_FILES and entry.is_file(follow_symlinks=False):
            ours.append(Path(entry.path))
        else:
            foreign.append(f"{rel}/{entry.name}")


def _survey(run_dir: Path) -> tuple[list[Path], list[str]]:
    """(gankit's files and folders, deepest first; the user's, as paths relative to ``run_dir``)."""
    ours: list[Path] = []
    foreign: list[str] = []

    def files_in(folder: Path, rel: str, accept) -> None:
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if entry.is_file(follow_symlinks=False) and accept(entry.name, path):
                ours.append(path)
            else:
                foreign.append(f"{rel}/{entry.name}")

    for entry in os.scandir(run_dir):
        name, path = entry.name, Path(entry.path)
        is_file, is_dir = entry.is_file(follow_symlinks=False), entry.is_dir(follow_symlinks=False)
        if name == LOCK_NAME:
            continue  # the lock is never deleted: its holder is the one taking over
        if is_file and (_LOG_TEMP.fullmatch(name) or _PICTURE_TEMP.fullmatch(name)
                        or name == CONFIG and _is_config(path) or name == METRICS and _is_metrics(path)
                        or name in ("loss_curve.png", "loss_curve_per_class.png") and _is_png(path)):
            ours.append(path)
        elif is_dir and name == "samples":
            files_in(path, name, lambda n, p: bool(_PICTURE_TEMP.fullmatch(n))
                     or bool(re.fullmatch(r"step-\d+\.png", n)) and _is_png(p))
            ours.append(path)
        elif is_dir and name == "tb":
            files_in(path, name, lambda n, p: bool(_EVENTS.fullmatch(n)) and _is_events(p))
            ours.append(path)
        elif is_dir and name == "checkpoints":
            for sub in os.scandir(path):
                if sub.is_dir(follow_symlinks=False) and _CHECKPOINT_DIR.fullmatch(sub.name):
                    _checkpoint_parts(Path(sub.path), f"{name}/{sub.name}", ours, foreign)
                    ours.append(Path(sub.path))
                else:
                    foreign.append(f"{name}/{sub.name}")
            ours.append(path)
        else:
            foreign.append(name)
    return ours, sorted(foreign)


def _holds_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and any((entry / "manifest.json").is_file() for entry in folder.iterdir())


def claim_folder(run_dir: Path) -> str | None:
    """Make ``run_dir`` ready for a new run; return a note when an abandoned run was taken over.

    The caller holds the folder's lock (`gankit.training.persist.lock`), so no live run
    is writing it. A folder that holds a committed checkpoint is a run to continue
    (UsageError pointing at --resume). One that holds only what a run writes before its
    first checkpoint (a kill, a double Ctrl-C, a full disk or a NaN at step 1) is a dead
    end otherwise: those files are deleted and the new run starts there. Every file and
    folder is checked, at any depth, by its name and, where it has one, its content's
    marker (a PNG signature, a metrics row, a TensorBoard record, a config's keys); one
    thing gankit did not write makes it refuse, naming it, and nothing is deleted.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder; pick another --name or --runs-dir")
    if _holds_checkpoint(run_dir / "checkpoints"):
        raise UsageError(f"{run_dir} already exists; pick another --name or continue it with --resume {run_dir}")
    try:
        ours, foreign = _survey(run_dir)
    except OSError as exc:
        raise RunFileError(f"cannot look through the run folder {run_dir}: {describe(exc)}") from None
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UsageError(f"{run_dir} already exists and holds files gankit did not write ({shown}); "
                         "pick another --name")
    if not ours:
        return None
    try:
        for path in ours:  # files before the folders that hold them
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    except OSError as exc:
        raise RunFileError(f"cannot clear the abandoned run folder {run_dir}: {describe(exc)}") from None
    return (f"{run_dir} held a run stopped before its first checkpoint (nothing to resume); "
            "starting it over from step 0")
