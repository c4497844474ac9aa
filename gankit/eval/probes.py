"""Images that are hard for a digit classifier: the probes its robustness is measured on.

Light tier (numpy only). Deterministic for a seed. ``python -m gankit.training.classifier.assets``
reports the shipped classifier's readings of these, and the tests hold it to them:

* `noisy_background`: real digits on a background of uniform noise below a pixel level,
  the failure that made the 10-class classifier read the 3s of an early conditional GAN
  as 8s (that classifier reads 500 of 500 real test 3s as "8" at level 60);
* `pure_noise`, `blank` and `heavy_blur`: images that are no digit and must not read as one.
"""

from __future__ import annotations

import numpy as np


def noisy_background(images_u8: np.ndarray, level: int = 60, seed: int = 0) -> np.ndarray:
    """``images_u8`` uint8 [N,28,28] with every pixel raised to at least U[0, level)."""
    noise = np.random.default_rng(seed).uniform(0, level, size=images_u8.shape)
    return np.maximum(images_u8, noise).astype(np.uint8)


def pure_noise(n: int, seed: int = 0) -> np.ndarray:
    """uint8 [n,28,28] noise: a third uniform over 0..255, a third uniform below a random
    level, a third sparse speckle, so that every strength from faint to saturated appears."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(30, 255, size=(n, 1, 1))
    x = rng.uniform(0, 1, size=(n, 28, 28))
    kind = np.arange(n) % 3
    lit = rng.uniform(0, 1, size=(n, 28, 28)) < rng.uniform(0.05, 0.5, size=(n, 1, 1))
    out = np.where((kind == 0)[:, None, None], x * 255, x * level)
    out = np.where((kind == 2)[:, None, None], out * lit, out)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def blank(n: int, seed: int = 0) -> np.ndarray:
    """uint8 [n,28,28] flat images: half black, half an even grey up to 128."""
    rng = np.random.default_rng(seed)
    grey = np.where(np.arange(n) % 2 == 0, 0, rng.integers(1, 129, size=n))
    return np.broadcast_to(grey[:, None, None], (n, 28, 28)).astype(np.uint8)


def _blur_matrix(sigma: float) -> np.ndarray:
    t = np.arange(28, dtype=np.float64)
    m = np.exp(-((t[:, None] - t[None, :]) ** 2) / (2 * sigma**2))
    return m / m.sum(axis=1, keepdims=True)


def heavy_blur(images_u8: np.ndarray, sigma: float = 3.5) -> np.ndarray:
    """``images_u8`` blurred by a Gaussian of ``sigma`` pixels, brightest pixel restored to
    the original's: the strokes melt into a blob while the contrast stays."""
    b = _blur_matrix(sigma)
    x = images_u8.astype(np.float64)
    y = b @ x @ b.T
    peak = np.maximum(y.max(axis=(1, 2), keepdims=True), 1e-6)
    y = y / peak * x.max(axis=(1, 2), keepdims=True)
    return np.clip(np.round(y), 0, 255).astype(np.uint8)
