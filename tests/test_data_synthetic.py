"""Synthetic digits: contract, determinism, speed, and that they look like (learnable) MNIST digits."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gankit.data.synthetic import SYNTHETIC_NAME, synthetic_digits
from gankit.errors import DataError


@pytest.fixture(scope="module")
def digits():
    # CPU time, not wall time: on a shared machine other processes stretch the wall clock.
    started = time.process_time()
    ds = synthetic_digits(n_per_class=1000, seed=0)
    return ds, time.process_time() - started


def test_contract_and_speed(digits):
    ds, seconds = digits
    assert seconds < 3.0, f"10k synthetic digits took {seconds:.2f} s of CPU"
    assert ds.synthetic and ds.name == SYNTHETIC_NAME and ds.split == "train"
    assert ds.images.shape == (10000, 28, 28) and ds.images.dtype == np.uint8
    assert ds.images.flags.c_contiguous
    assert ds.labels.dtype == np.int64 and np.bincount(ds.labels).tolist() == [1000] * 10
    assert len(np.unique(ds.labels[:20])) > 4  # shuffled, not sorted by class


def test_deterministic_per_seed():
    a, b, c = synthetic_digits(20, seed=5), synthetic_digits(20, seed=5), synthetic_digits(20, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_rejects_empty():
    with pytest.raises(DataError):
        synthetic_digits(0)


def test_looks_like_mnist(digits):
    ds, _ = digits
    images = ds.images.astype(np.float64)
    # MNIST: mean pixel ~33, ~19% of pixels lit, black border, white strokes reaching 255.
    assert 20 < images.mean() < 55
    assert 0.08 < (ds.images > 128).mean() < 0.30
    assert np.percentile(ds.images.max(axis=(1, 2)), 5) == 255
    assert images[:, :, :2].mean() < 1 and images[:, :, -2:].mean() < 1
    # Centred: the ink's centre of mass sits near the middle.
    ys, xs = np.mgrid[:28, :28]
    mass = images.sum(axis=(1, 2))
    cy = (images * ys).sum(axis=(1, 2)) / mass
    cx = (images * xs).sum(axis=(1, 2)) / mass
    assert abs(np.median(cy) - 13.5) < 1.5 and abs(np.median(cx) - 13.5) < 1.5
    # Digit height ~20 px like MNIST's normalised box, with some variety.
    rows = (ds.images > 64).any(axis=2)
    heights = 28 - np.argmax(rows, axis=1) - np.argmax(rows[:, ::-1], axis=1)
    assert 16 <= np.median(heights) <= 23 and heights.std() > 0.7
    # Samples of one class vary (random warps), not one stamp repeated.
    sevens = images[ds.labels == 7][:50].reshape(50, -1)
    assert np.abs(sevens - sevens.mean(axis=0)).mean() > 10


def test_classes_are_learnable(digits):
    """A nearest-class-mean classifier fit on half separates the classes on the other half."""
    ds, _ = digits
    x = ds.images.reshape(len(ds), -1).astype(np.float32) / 255
    y = ds.labels
    train, test = slice(0, 5000), slice(5000, None)
    means = np.stack([x[train][y[train] == k].mean(axis=0) for k in range(10)])
    distances = ((x[test][:, None, :] - means[None]) ** 2).sum(axis=2)
    accuracy = (distances.argmin(axis=1) == y[test]).mean()
    assert accuracy > 0.7, accuracy
