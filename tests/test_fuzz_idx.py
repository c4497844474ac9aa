"""Property tests for the IDX reader: round trips, and hostile bytes raise only DataError.

hypothesis drives them. CI runs a small fixed number of examples (seconds); set
``GANKIT_FUZZ=N`` for N examples per property (the long run). Any exception other than
gankit's `DataError` is a failure, and so is an array that does not match its header.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gankit.data.idx import IDX_DTYPES, read_idx, write_idx
from gankit.errors import DataError

FUZZ = int(os.environ.get("GANKIT_FUZZ", "0"))
CASES = settings(max_examples=FUZZ or 60, deadline=None, derandomize=not FUZZ,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = [np.dtype(d).newbyteorder("=") for d in IDX_DTYPES.values()]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)))


def _valid_idx(array: np.ndarray, compress: bool) -> bytes:
    code = {d: c for c, d in IDX_DTYPES.items()}[array.dtype.newbyteorder(">") if array.dtype.itemsize > 1
                                                 else array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return gzip.compress(raw, mtime=0) if compress else raw


def _read_or_data_error(path) -> np.ndarray | None:
    try:
        return read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None


@CASES
@given(array=arrays, compress=st.booleans())
def test_round_trip(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, array, compress=compress)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    assert np.array_equal(back, array, equal_nan=array.dtype.kind == "f")
    written = gzip.decompress(path.read_bytes()) if compress else path.read_bytes()
    assert written == _valid_idx(array, False)  # the writer writes exactly the format


@CASES
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("idx") / "r.idx"
    path.write_bytes(data)
    out = _read_or_data_error(path)
    if out is not None:  # random bytes that happen to be a valid IDX file: it must be the exact size
        assert out.size * out.dtype.itemsize == len(data) - 4 - 4 * out.ndim


@CASES
@given(array=arrays, compress=st.booleans(), edits=st.lists(
    st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255)),
    min_size=1, max_size=4))
def test_mutated_files_raise_only_data_error(tmp_path_factory, array, compress, edits):
    data = bytearray(_valid_idx(array, compress))
    for kind, at, value in edits:
        if not data:
            break
        at %= len(data)
        if kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes([value])
        else:
            del data[at]
    path = tmp_path_factory.mktemp("idx") / "m.idx"
    path.write_bytes(bytes(data))
    out = _read_or_data_error(path)
    if out is not None:
        assert 1 <= out.ndim <= 4 and out.size >= 1


@pytest.mark.parametrize("dims", [(2**32 - 1,) * 3, (1 << 31, 1 << 31), (60000, 28, 28, 1 << 20)])
def test_headers_promising_huge_payloads_are_refused_without_allocating(tmp_path, dims):
    for compress in (False, True):
        raw = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + b"\0" * 64
        path = tmp_path / "h.idx"
        path.write_bytes(gzip.compress(raw) if compress else raw)
        with pytest.raises(DataError):
            read_idx(path)
