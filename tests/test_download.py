"""Downloads against a real HTTP server on 127.0.0.1: good files, broken mirrors, fallbacks, cleanup.

Nothing here touches the real network.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from gankit.data import load_dataset
from gankit.data.download import (
    FASHION_MNIST_FILES,
    MNIST_FILES,
    RemoteFile,
    download_dataset,
    mirrors_for,
)
from gankit.data.idx import write_idx
from gankit.data.sources import DEBIAN_FASHION_MNIST, load_folder
from gankit.errors import DataError
from conftest import shared_mnist

NAMES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
HTML = b"<!DOCTYPE html>\n<html><body><h1>Sign in to the hotel Wi-Fi</h1></body></html>\n"




class Handler(BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (status, content_type, body, declared_length, delay)`."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, content_type, body, declared, delay = route
        time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if declared is None else declared))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests): nothing to do

    def log_message(self, *args):  # keep test output quiet
        pass


class Server:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.routes = {}
        self.httpd.hits = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, folder: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{folder}/"

    def add(self, folder, name, body, *, status=200, content_type="application/octet-stream",
            declared=None, delay=0.0):
        self.httpd.routes[f"/{folder}/{name}"] = (status, content_type, body, declared, delay)

    @property
    def hits(self):
        return self.httpd.hits

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def small_files(tmp_path):
    """Two small real IDX.gz files and a file table holding their true sha256 and size."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "origin"
    write_idx(folder / NAMES[0], rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    write_idx(folder / NAMES[1], (np.arange(20) % 10).astype(np.uint8))
    bodies = {name: (folder / name).read_bytes() for name in NAMES}
    table = {name: RemoteFile(hashlib.sha256(b).hexdigest(), len(b)) for name, b in bodies.items()}
    return bodies, table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(dest, mirrors, table, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 5.0)
    return download_dataset("mnist", NAMES, dest, mirrors=mirrors, files=table, **kw)


def test_good_mirror(server, small_files, tmp_path):
    bodies, table = small_files
    for name, body in bodies.items():
        server.add("good", name, body)
    dest = tmp_path / "cache"
    paths = fetch(dest, [server.url("good")], table)
    assert [p.name for p in paths] == NAMES
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)  # no .part left
    for path in paths:
        assert path.read_bytes() == bodies[path.name]
    ds = load_folder(dest, "test", name="mnist")
    assert len(ds) == 20 and ds.labels.tolist() == (np.arange(20) % 10).tolist()


def test_truncated_file_falls_back_to_next_mirror(server, small_files, tmp_path):
    bodies, table = small_files
    for name, body in bodies.items():
        server.add("trunc", name, body[: len(body) // 2])
        server.add("good", name, body)
    dest = tmp_path / "cache"
    fetch(dest, [server.url("trunc"), server.url("good")], table)
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)
    assert [h.split("/")[1] for h in server.hits] == ["trunc", "good", "trunc", "good"]


def test_truncated_file_only_leaves_nothing(server, small_files, tmp_path):
    bodies, table = small_files
    # Without a known size the sha256 is what catches the truncation.
    table = {name: RemoteFile(entry.sha256, None) for name, entry in table.items()}
    server.add("trunc", NAMES[0], bodies[NAMES[0]][:-100])
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch(dest, [server.url("trunc")], table)
    assert list(dest.iterdir()) == []


def test_connection_dropped_mid_transfer(server, small_files, tmp_path):
    bodies, table = small_files
    body = bodies[NAMES[0]]
    server.add("drop", NAMES[0], body[:1000], declared=len(body))
    dest = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        fetch(dest, [server.url("drop")], table)
    assert server.url("drop") + NAMES[0] in str(info.value)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_with_status_200(server, small_files, tmp_path, content_type):
    _, table = small_files
    server.add("portal", NAMES[0], HTML, content_type=content_type)
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match="web page"):
        fetch(dest, [server.url("portal")], table)
    assert list(dest.iterdir()) == []


def test_404_then_good_mirror(server, small_files, tmp_path):
    bodies, table = small_files
    for name, body in bodies.items():
        server.add("good", name, body)
    dest = tmp_path / "cache"
    fetch(dest, [server.url("missing"), server.url("good")], table)
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)
    assert server.hits[:2] == [f"/missing/{NAMES[0]}", f"/good/{NAMES[0]}"]


def test_oversized_response_is_cut_off(server, small_files, tmp_path):
    bodies, table = small_files
    server.add("big", NAMES[0], bodies[NAMES[0]] + bytes(100_000))
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match="more than the expected"):
        fetch(dest, [server.url("big")], table)
    assert list(dest.iterdir()) == []


def test_all_mirrors_fail_names_each(server, small_files, tmp_path):
    _, table = small_files
    server.add("portal", NAMES[0], HTML, content_type="text/html")
    refused = f"http://127.0.0.1:{free_port()}/mnist/"
    mirrors = [server.url("missing"), refused, server.url("portal"), "ftp://example.invalid/mnist/"]
    dest = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        fetch(dest, mirrors, table)
    message = str(info.value)
    for mirror in mirrors:
        assert mirror + NAMES[0] in message
    assert "HTTP 404" in message and "cannot connect" in message and "web page" in message
    assert "$GANKIT_DATA/mnist" in message and "--data FOLDER" in message
    assert "GANKIT_MNIST_MIRRORS" in message
    assert list(dest.iterdir()) == []


def test_slow_mirror_times_out(server, small_files, tmp_path):
    bodies, table = small_files
    server.add("slow", NAMES[0], bodies[NAMES[0]], delay=3.0)
    started = time.perf_counter()
    with pytest.raises(DataError, match="timed out"):
        fetch(tmp_path / "cache", [server.url("slow")], table, timeout=0.5)
    assert time.perf_counter() - started < 2.5


def test_mirror_list_sources(monkeypatch):
    monkeypatch.delenv("GANKIT_MNIST_MIRRORS", raising=False)
    assert mirrors_for("mnist")[0].startswith("https://")
    monkeypatch.setenv("GANKIT_MNIST_MIRRORS", " http://a/x , http://b/y/ ,")
    assert mirrors_for("mnist") == ["http://a/x/", "http://b/y/"]
    assert mirrors_for("mnist", ["http://c"]) == ["http://c/"]
    monkeypatch.setenv("GANKIT_FASHION_MNIST_MIRRORS", "http://f/")
    assert mirrors_for("fashion-mnist") == ["http://f/"]


def test_load_dataset_downloads_real_files_via_env_mirrors(server, tmp_path, monkeypatch):
    """End to end with the canonical t10k files, checked against the built-in sha256 table."""
    shared = shared_mnist()
    for name in NAMES:
        server.add("real", name, (shared / name).read_bytes())
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GANKIT_MNIST_MIRRORS", f"{server.url('missing')},{server.url('real')}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ds = load_dataset("mnist", "test", progress=True)
    assert len(ds) == 10000 and ds.name == "mnist" and not ds.synthetic
    cache = tmp_path / "cache" / "gankit" / "mnist"
    assert Path(ds.source) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)
    hits = len(server.hits)
    assert len(load_dataset("mnist", "test")) == 10000
    assert len(server.hits) == hits  # the second load came from the cache


def test_canonical_mnist_t10k_sha256_matches_shared_files():
    shared = shared_mnist()
    for name in NAMES:
        data = (shared / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == MNIST_FILES[name].sha256
        assert len(data) == MNIST_FILES[name].size


# Debian re-packed Fashion-MNIST without the gzip file-name field; restoring the
# field with these original mtimes gives back the canonical files byte for byte.
FASHION_MTIMES = {
    "train-images-idx3-ubyte.gz": 1504176606,
    "train-labels-idx1-ubyte.gz": 1504176606,
    "t10k-images-idx3-ubyte.gz": 1504176627,
    "t10k-labels-idx1-ubyte.gz": 1504176627,
}


@pytest.mark.parametrize("name", sorted(FASHION_MTIMES))
def test_fashion_mnist_sha256_reproduced_from_debian_files(name):
    path = DEBIAN_FASHION_MNIST / name
    if not path.is_file():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    debian = path.read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00"  # no FNAME flag: the name was dropped
    stem = name.encode()[: -len(".gz")]
    canonical = (
        b"\x1f\x8b\x08\x08" + struct.pack("<I", FASHION_MTIMES[name]) + debian[8:10]
        + stem + b"\x00" + debian[10:]
    )
    assert len(canonical) == FASHION_MNIST_FILES[name].size
    assert hashlib.sha256(canonical).hexdigest() == FASHION_MNIST_FILES[name].sha256
    if "labels" in name:  # small enough to also compare decompressed contents cheaply
        assert gzip.decompress(canonical) == gzip.decompress(debian)
