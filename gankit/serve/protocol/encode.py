"""Images to response bodies: a PNG grid, a .npy file, or JSON.

Light tier (numpy, Pillow). The .npy body is the very bytes ``gankit generate -o x.npy``
writes (`numpy.save` of the uint8 [N, 28, 28] array, no pickle). The PNG is the grid
`gankit.images.make_grid` tiles, one row per digit, without the row labels the CLI adds
at the left, enlarged ``scale`` times with square pixels.
"""

from __future__ import annotations

import io
import json

import numpy as np

from gankit.images import make_grid

MEDIA_TYPES = {"png": "image/png", "npy": "application/octet-stream", "json": "application/json"}


def png_grid(images: np.ndarray, columns: int, scale: int = 1) -> bytes:
    from PIL import Image

    grid = make_grid(images, columns)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(images), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(images: np.ndarray, *, model: str, digits, n: int, seed: int, labels: np.ndarray,
               columns: int) -> bytes:
    """``images`` as nested lists [N][28][28] of grey levels 0-255, with what was asked."""
    payload = {"model": model, "digits": list(digits) if digits else None, "n": n, "seed": seed,
               "labels": labels.tolist(), "columns": columns, "shape": list(images.shape), "dtype": "uint8",
               "images": images.tolist()}
    return json.dumps(payload, separators=(",", ":")).encode()


def body(fmt: str, images: np.ndarray, request) -> bytes:
    """The body for a checked `gankit.serve.protocol.params.GenerateRequest`."""
    if fmt == "png":
        return png_grid(images, request.columns, request.scale)
    if fmt == "npy":
        return npy_bytes(images)
    return json_bytes(images, model=request.model.name, digits=request.digits, n=request.n, seed=request.seed,
                      labels=request.labels, columns=request.columns)
