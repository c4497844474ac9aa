"""Download the MNIST / Fashion-MNIST IDX files from a list of mirrors, checking sha256.

Light tier: urllib and rich. Each file streams to `<file>.part`, is checked against
its known size and sha256, and only then is renamed into place. Any failure
(HTTP error, refused connection, short read, checksum mismatch, an HTML page
served with status 200) removes the `.part` and moves on to the next mirror; when
every mirror fails, `DataError` lists what each one did and how to work offline.
Mirrors come from the `mirrors` argument, else `$GANKIT_<NAME>_MIRRORS`
(comma-separated, e.g. GANKIT_MNIST_MIRRORS), else the built-in list.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gankit.atomic import commit, staged_file
from gankit.errors import DataError
from gankit.inputs import envvars


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its canonical sha256 and size in bytes."""

    sha256: str
    size: int | None = None


# MNIST. The two t10k values were checked offline against the canonical files
# kept in shared/data/mnist (their MD5s match the published ones). The train
# values could not be checked offline (the train files there are a re-encoded
# subset); they are the widely published canonical sha256s, and the sizes are
# those of the canonical files.
MNIST_FILES: dict[str, RemoteFile] = {
    "train-images-idx3-ubyte.gz": RemoteFile(
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422
    ),
    "train-labels-idx1-ubyte.gz": RemoteFile(
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881
    ),
    "t10k-images-idx3-ubyte.gz": RemoteFile(
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877
    ),
    "t10k-labels-idx1-ubyte.gz": RemoteFile(
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542
    ),
}

# Fashion-MNIST, checked offline: Debian's dataset-fashion-mnist ships the same
# deflate streams with the gzip header's file-name field dropped (hence 23-24
# bytes shorter). Putting the name back with the original mtimes (1504176606 for
# the train files, 1504176627 for t10k) reproduces exactly these sha256s
# (tests/test_download.py does so when the Debian package is installed).
FASHION_MNIST_FILES: dict[str, RemoteFile] = {
    "train-images-idx3-ubyte.gz": RemoteFile(
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26_421_880
    ),
    "train-labels-idx1-ubyte.gz": RemoteFile(
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29_515
    ),
    "t10k-images-idx3-ubyte.gz": RemoteFile(
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4_422_102
    ),
    "t10k-labels-idx1-ubyte.gz": RemoteFile(
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5_148
    ),
}

FILES: dict[str, dict[str, RemoteFile]] = {
    "mnist": MNIST_FILES,
    "fashion-mnist": FASHION_MNIST_FILES,
}

MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        # S3 website endpoints speak plain HTTP only; the sha256 check is what
        # makes the bytes trustworthy, not the transport.
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

DEFAULT_TIMEOUT_S = 30.0
_CHUNK = 1 << 16
_USER_AGENT = "gankit-data/0.1 (+urllib)"


def mirror_env_var(name: str) -> str:
    """The environment variable that overrides the mirrors of data set `name`."""
    return "GANKIT_" + name.upper().replace("-", "_") + "_MIRRORS"


def _mirror_problem(url: str) -> str | None:
    """None for an http(s) URL with a host, else what is wrong with it."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http:// or https:// URL"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "holds spaces or control characters"
    return None


def mirrors_for(name: str, mirrors: list[str] | None = None) -> list[str]:
    """Mirrors to try, in order: the argument, else the env var, else the built-in list.

    The env var is checked when read: a value that is not a comma-separated list of
    http(s) URLs is a UsageError naming the variable (exit 2), never a traceback.
    """
    if mirrors is None:
        mirrors = envvars.items(mirror_env_var(name), _mirror_problem, what="mirror URLs") or MIRRORS.get(name, [])
    return [m if m.endswith("/") else m + "/" for m in mirrors]


class _MirrorFailed(Exception):
    """One mirror did not deliver one file; the message says why."""


def _looks_like_html(first_bytes: bytes, content_type: str) -> bool:
    # IDX and gzip files never start with "<"; error pages and portals do.
    return "html" in content_type.lower() or first_bytes.lstrip().startswith(b"<")


def _fetch(url: str, out, expected: RemoteFile, timeout: float, progress, task_label: str) -> None:
    """Stream `url` into the open file `out`; raise `_MirrorFailed` unless size and sha256 match."""
    if not url.startswith(("http://", "https://")):
        raise _MirrorFailed("only http:// and https:// mirrors are supported")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else expected.size
            task = progress.add_task(task_label, total=total) if progress is not None else None
            try:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    if received == 0 and _looks_like_html(chunk, content_type):
                        raise _MirrorFailed(
                            f"served a web page (Content-Type {content_type or 'unknown'!r}), not the file"
                        )
                    received += len(chunk)
                    # Stop early rather than fill the disk if a mirror sends far too much.
                    if expected.size is not None and received > expected.size:
                        raise _MirrorFailed(f"sent more than the expected {expected.size:,} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                    if task is not None:
                        progress.update(task, advance=len(chunk))
            finally:
                if task is not None:
                    progress.remove_task(task)
    except _MirrorFailed:
        raise
    except urllib.error.HTTPError as exc:
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _MirrorFailed(f"cannot connect ({exc.reason})") from None
    except TimeoutError:
        raise _MirrorFailed(f"timed out after {timeout:g} s") from None
    except OSError as exc:  # includes http.client.IncompleteRead and reset connections
        raise _MirrorFailed(f"transfer failed ({exc})") from None
    except Exception as exc:  # http.client raises non-OSError errors on broken responses
        raise _MirrorFailed(f"transfer failed ({type(exc).__name__}: {exc})") from None
    if expected.size is not None and received != expected.size:
        raise _MirrorFailed(f"short read: got {received:,} of {expected.size:,} bytes")
    if digest.hexdigest() != expected.sha256:
        raise _MirrorFailed(
            f"sha256 mismatch: got {digest.hexdigest()}, expected {expected.sha256}"
        )


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def download_file(
    filename: str,
    expected: RemoteFile,
    dest_dir: str | os.PathLike,
    mirrors: list[str],
    *,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    offline_hint: str = "",
) -> Path:
    """Fetch `filename` from the first mirror that delivers it intact; return its path."""
    dest_dir = Path(dest_dir)
    target = dest_dir / filename
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create download folder {dest_dir}: {exc.strerror or exc}") from None
    failures: list[str] = []
    bar = _progress_bar(progress)
    try:
        if bar is not None:
            bar.start()
        for mirror in mirrors:
            url = mirror + filename
            try:
                # A failed or cut-short download removes its staged file, Ctrl-C included.
                with staged_file(target, "download", DataError) as (out, temp):
                    _fetch(url, out, expected, timeout, bar, f"{filename} ({mirror})")
                    commit(out, temp, target)
                return target
            except _MirrorFailed as exc:
                failures.append(f"  {url}: {exc}")
            except OSError as exc:  # the rename failed: a local problem, not the mirror's
                raise DataError(f"Cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if bar is not None:
            bar.stop()
    tried = "\n".join(failures) if failures else "  (no mirrors configured)"
    raise DataError(f"Could not download {filename}; every mirror failed:\n{tried}\n{offline_hint}".rstrip())


def download_dataset(
    name: str,
    filenames: list[str],
    dest_dir: str | os.PathLike,
    *,
    mirrors: list[str] | None = None,
    files: dict[str, RemoteFile] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Download `filenames` of data set `name` into `dest_dir`; return their paths.

    `files` replaces the built-in sha256 table (tests serve their own small files).
    A file is only ever in `dest_dir` under its final name once it is verified;
    files finished before a later one fails are kept (they are correct).
    """
    table = files if files is not None else FILES.get(name)
    if table is None:
        raise DataError(f"No download source is known for data set {name!r}")
    urls = mirrors_for(name, mirrors)
    hint = (
        f"To work offline, put the files ({', '.join(filenames)}) in "
        f"$GANKIT_DATA/{name}/ or in {Path(dest_dir)}/, or pass --data FOLDER; "
        f"set {mirror_env_var(name)} to use other mirrors."
    )
    paths = []
    for filename in filenames:
        if filename not in table:
            raise DataError(f"No sha256 is known for {filename} of data set {name!r}")
        paths.append(
            download_file(
                filename, table[filename], dest_dir, urls,
                progress=progress, timeout=timeout, offline_hint=hint,
            )
        )
    return paths
