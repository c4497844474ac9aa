"""Read and write IDX files (the MNIST container format), gzip-compressed or raw.

Light tier: numpy and the standard library. `read_idx` checks the header and the
exact payload size before it allocates anything, so a corrupt, truncated or
hostile file (including a gzip bomb) fails with a `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from gankit.atomic import atomic_write
from gankit.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes; multi-byte values are big-endian on disk.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES_BY_KIND = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}

MAX_NDIM = 4
# The full MNIST training images are 47 MB; 1 GiB leaves room for bigger IDX
# sets while refusing headers that would make us allocate absurd amounts.
MAX_PAYLOAD_BYTES = 1 << 30

_CHUNK = 1 << 20


def _parse_header(path: Path, stream) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read magic and dims from `stream`; return (dtype, shape, header_size)."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(magic)} bytes of header)")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic {magic.hex()} does not start with two zero bytes)"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unsupported IDX type code 0x{code:02X} (supported: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{path}: IDX header says {ndim} dimensions; expected 1 to {MAX_NDIM}")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header (dimension sizes cut off)")
    shape = struct.unpack(f">{ndim}I", raw_dims)
    if any(d == 0 for d in shape):
        raise DataError(f"{path}: IDX header has a zero-sized dimension {shape}")
    dtype = IDX_DTYPES[code]
    if math.prod(shape) * dtype.itemsize > MAX_PAYLOAD_BYTES:
        raise DataError(
            f"{path}: IDX header claims shape {shape} ({math.prod(shape) * dtype.itemsize:,} bytes), "
            f"more than the {MAX_PAYLOAD_BYTES:,}-byte limit"
        )
    return dtype, shape, 4 + 4 * ndim


def _read_exact(stream, size: int) -> tuple[bytearray, int]:
    """Read up to `size` bytes into a fresh buffer; return (buffer, bytes_read)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        got = stream.readinto(view[filled : filled + _CHUNK])
        if not got:
            break
        filled += got
    return buffer, filled


def _read_payload(path: Path, stream, dtype: np.dtype, shape: tuple[int, ...], compressed: bool):
    expected = math.prod(shape) * dtype.itemsize
    what = "decompressed data" if compressed else "file"
    buffer, got = _read_exact(stream, expected)
    if got < expected:
        raise DataError(
            f"{path}: truncated IDX {what}: header promises {expected:,} bytes of data "
            f"for shape {shape}, found {got:,}"
        )
    # One byte more than promised is enough to know there is trailing data;
    # reading no further keeps a decompression bomb from expanding.
    if stream.read(1):
        raise DataError(
            f"{path}: trailing data after the {expected:,} bytes the IDX header promises "
            f"for shape {shape}"
        )
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if dtype.byteorder == ">" and dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes) into a native-endian array."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            start = raw.read(2)
            if not start:
                raise DataError(f"{path}: file is empty")
            raw.seek(0)
            if start == GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    dtype, shape, _ = _parse_header(path, stream)
                    return _read_payload(path, stream, dtype, shape, compressed=True)
            dtype, shape, header = _parse_header(path, raw)
            size = os.fstat(raw.fileno()).st_size
            expected = header + math.prod(shape) * dtype.itemsize
            if size != expected:
                problem = "truncated" if size < expected else "has trailing data"
                raise DataError(
                    f"{path}: IDX file {problem}: header for shape {shape} means "
                    f"{expected:,} bytes, file has {size:,}"
                )
            return _read_payload(path, raw, dtype, shape, compressed=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = True) -> Path:
    """Write `array` as an IDX file (gzip when `compress`), atomically; return the path."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES_BY_KIND:
        raise DataError(f"{path}: cannot write dtype {array.dtype} as IDX (use uint8, int8, int16, int32, float32 or float64)")
    if not 1 <= array.ndim <= MAX_NDIM or 0 in array.shape:
        raise DataError(f"{path}: cannot write shape {array.shape} as IDX (1 to {MAX_NDIM} non-empty dimensions)")
    code = _CODES_BY_KIND[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    with atomic_write(path, "IDX file") as handle:
        if compress:
            # mtime=0 makes the bytes reproducible, so tests can pin sha256 values.
            with gzip.GzipFile(filename="", fileobj=handle, mode="wb", mtime=0) as zipped:
                zipped.write(header)
                zipped.write(payload)
        else:
            handle.write(header)
            handle.write(payload)
    return path
