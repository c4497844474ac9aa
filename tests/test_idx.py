"""IDX reader/writer: the real MNIST files, round trips, and every kind of corrupt file."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gankit.data.idx import MAX_PAYLOAD_BYTES, read_idx, write_idx
from gankit.errors import DataError, GankitError
from conftest import shared_mnist




def raise_data_error(path: Path, *fragments: str) -> DataError:
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_reads_real_mnist_test_split():
    folder = shared_mnist()
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    # Known facts about the canonical test split.
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert images.min() == 0 and images.max() == 255
    assert 30 < images.mean() < 37


def test_reads_real_mnist_train_subset():
    folder = shared_mnist()
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and counts.min() > 800 and counts.max() < 1200


@pytest.mark.parametrize("dtype", ["u1", "i1", "<i2", "<i4", "<f4", "<f8", ">i4"])
@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_all_types(tmp_path, dtype, compress):
    rng = np.random.default_rng(1)
    array = rng.normal(0, 50, (3, 4, 5)).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert list(tmp_path.iterdir()) == [path]


def test_raw_layout_is_big_endian(tmp_path):
    path = write_idx(tmp_path / "x", np.array([1, 256], dtype=np.int32), compress=False)
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + b"\0\0\0\x01\0\0\x01\0"


def test_gzip_output_is_reproducible(tmp_path):
    array = np.arange(784, dtype=np.uint8).reshape(1, 28, 28)
    a = write_idx(tmp_path / "a.gz", array).read_bytes()
    b = write_idx(tmp_path / "b.gz", array).read_bytes()
    assert a == b and a[:2] == b"\x1f\x8b"


def test_write_rejects_unsupported_dtype_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x.gz", np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="shape"):
        write_idx(tmp_path / "x.gz", np.zeros((1, 1, 1, 1, 1), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_write_to_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GankitError, match=str(blocker)):
        write_idx(blocker / "sub" / "x.gz", np.zeros(3, dtype=np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.gz"
    path.write_bytes(b"")
    raise_data_error(path, "empty")


def test_missing_file_and_folder(tmp_path):
    raise_data_error(tmp_path / "nope.gz", "not found")
    raise_data_error(tmp_path, "folder")


def test_non_idx_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not an IDX file\n")
    raise_data_error(path, "not an IDX file")


def test_wrong_magic_in_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x01\x00\x08\x01" + struct.pack(">I", 3) + b"abc"))
    raise_data_error(path, "not an IDX file", "01000801")


def test_unknown_type_code(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"a")
    raise_data_error(path, "type code 0x0A")


@pytest.mark.parametrize("ndim", [0, 5])
def test_bad_ndim(tmp_path, ndim):
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 8, ndim]) + struct.pack(f">{ndim}I", *([1] * ndim)) + b"\0")
    raise_data_error(path, f"{ndim} dimensions")


def test_zero_dimension(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 5, 0))
    raise_data_error(path, "zero-sized")


def test_absurd_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 60000, 60000, 60000)))
    raise_data_error(path, f"{MAX_PAYLOAD_BYTES:,}")


def test_truncated_header(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    raise_data_error(path, "truncated IDX header")


def test_truncated_gzip(tmp_path):
    real = shared_mnist() / "t10k-labels-idx1-ubyte.gz"
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(real.read_bytes()[:-200])
    raise_data_error(path, "truncated gzip")


def test_gzip_payload_shorter_than_header_says(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"12345"))
    raise_data_error(path, "truncated IDX decompressed data", "found 5")


def test_raw_truncated_and_trailing(tmp_path):
    header = b"\x00\x00\x08\x01" + struct.pack(">I", 10)
    short = tmp_path / "short"
    short.write_bytes(header + b"12345")
    raise_data_error(short, "truncated")
    long = tmp_path / "long"
    long.write_bytes(header + b"0123456789garbage")
    raise_data_error(long, "trailing data")


def test_trailing_data_inside_gzip(tmp_path):
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abcdef"))
    raise_data_error(path, "trailing data")


def test_garbage_after_gzip_stream(tmp_path):
    path = tmp_path / "junk.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abc") + b"JUNKJUNK")
    raise_data_error(path, "corrupt gzip")


def test_gzip_bomb_is_not_expanded(tmp_path):
    # 10-byte promise, ~200 MB of zeros behind it, compressed to ~200 KB.
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b"\x00\x00\x08\x01" + struct.pack(">I", 10))
        block = bytes(1 << 20)
        for _ in range(200):
            out.write(block)
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        raise_data_error(path, "trailing data")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 5_000_000
