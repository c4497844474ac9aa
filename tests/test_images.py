"""Image helpers: uint8 conversion, grid maths, PNG/.npy round trips, failed writes (light tier)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gankit.errors import DataError, GankitError
from gankit.images import (
    grid_shape,
    make_grid,
    save_grid,
    save_npy,
    save_png_folder,
    to_uint8,
)


def stack(n: int = 10, h: int = 28, w: int = 28) -> np.ndarray:
    """Image k is filled with value 10 * (k + 1), so its position in a grid is checkable."""
    return np.stack([np.full((h, w), 10 * (k + 1), np.uint8) for k in range(n)])


def test_to_uint8_maps_clips_and_rounds():
    x = np.array([-1.0, 0.0, 1.0, 2.0, -3.0, np.nan, 0.5, -0.996]).reshape(1, 1, 2, 4)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 4)
    assert out.ravel().tolist() == [0, 128, 255, 255, 0, 0, 191, 1]
    assert to_uint8(np.array([[[0.0, 0.5, 1.0]]]), value_range=(0, 1)).tolist() == [[[0, 128, 255]]]
    u8 = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    np.testing.assert_array_equal(to_uint8(u8), u8)


def test_to_uint8_rejects_bad_input():
    with pytest.raises(GankitError, match="one channel"):
        to_uint8(np.zeros((2, 3, 4, 4)))
    with pytest.raises(GankitError, match="shape"):
        to_uint8(np.zeros((4, 4)))
    with pytest.raises(GankitError, match="value_range"):
        to_uint8(np.zeros((1, 4, 4)), value_range=(1, 1))


@pytest.mark.parametrize("n, nrow, padding, expected", [
    (10, 4, 2, (3 * 30 + 2, 4 * 30 + 2)),
    (16, 4, 2, (4 * 30 + 2, 4 * 30 + 2)),
    (3, 8, 2, (30 + 2, 3 * 30 + 2)),
    (10, 10, 0, (28, 280)),
    (1, 1, 5, (38, 38)),
])
def test_grid_shape(n, nrow, padding, expected):
    grid = make_grid(stack(n), nrow, padding)
    assert grid.shape == expected == grid_shape(n, 28, 28, nrow, padding)
    assert grid.dtype == np.uint8


def test_grid_places_images_row_major():
    grid = make_grid(stack(10, 4, 5), nrow=4, padding=1)
    for k in range(10):
        r, c = divmod(k, 4)
        top, left = 1 + r * 5, 1 + c * 6
        assert (grid[top : top + 4, left : left + 5] == 10 * (k + 1)).all()
    assert grid[0].max() == 0 and grid[:, 0].max() == 0  # padding stays pad_value
    assert (grid[-5:, -13:] == 0).all()  # the two empty slots of the last row


def test_grid_rejects_float_input():
    with pytest.raises(GankitError, match="to_uint8"):
        make_grid(np.zeros((2, 28, 28), np.float32), 2)


def test_save_grid_png_round_trip(tmp_path):
    images = stack(6)
    path = save_grid(images, tmp_path / "grid.png", nrow=3)
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back, make_grid(images, 3))
    big = np.asarray(Image.open(save_grid(images, tmp_path / "big.png", nrow=3, scale=3)))
    assert big.shape == (back.shape[0] * 3, back.shape[1] * 3)
    np.testing.assert_array_equal(big[::3, ::3], back)


def test_save_grid_row_labels(tmp_path):
    images = stack(20)
    plain = np.asarray(Image.open(save_grid(images, tmp_path / "a.png", nrow=10, scale=2)))
    labelled = np.asarray(Image.open(
        save_grid(images, tmp_path / "b.png", nrow=10, scale=2, row_labels=["digit 3", "digit 7"])
    ))
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 10
    np.testing.assert_array_equal(labelled[:, margin:], plain)
    half = labelled.shape[0] // 2
    assert labelled[:half, :margin].max() > 128 and labelled[half:, :margin].max() > 128
    with pytest.raises(GankitError, match="3 row labels for 2 rows"):
        save_grid(images, tmp_path / "c.png", nrow=10, row_labels=["a", "b", "c"])
    assert not (tmp_path / "c.png").exists()


def test_save_grid_caption_strip_above_the_grid(tmp_path):
    images = stack(8)
    plain = np.asarray(Image.open(save_grid(images, tmp_path / "a.png", nrow=4, scale=2)))
    captioned = np.asarray(Image.open(save_grid(images, tmp_path / "b.png", nrow=4, scale=2, caption="step 1,500")))
    strip = captioned.shape[0] - plain.shape[0]
    assert captioned.shape[1] == plain.shape[1] and 10 <= strip <= 40
    np.testing.assert_array_equal(captioned[strip:], plain)  # the grid itself is untouched
    assert (captioned[:strip] > 128).sum() > 20  # the caption's text is drawn in white


def test_save_png_folder(tmp_path):
    images = stack(12)
    labels = np.arange(12) % 10
    paths = save_png_folder(images, tmp_path / "out", labels=labels)
    assert [p.name for p in paths][:4] == ["0000_digit0.png", "0001_digit1.png", "0002_digit2.png", "0003_digit3.png"]
    assert paths[11].name == "0011_digit1.png"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images[k])
    plain = save_png_folder(images[:2], tmp_path / "plain")
    assert [p.name for p in plain] == ["0000.png", "0001.png"]


def test_save_npy(tmp_path):
    images = stack(5)
    path = save_npy(images, tmp_path / "x.npy")
    back = np.load(path, allow_pickle=False)
    assert back.dtype == np.uint8 and back.shape == (5, 28, 28)
    np.testing.assert_array_equal(back, images)


def writers(target):
    images = stack(3)
    return [
        lambda: save_grid(images, target, nrow=3),
        lambda: save_npy(images, target),
        lambda: save_grid(images, target, nrow=3, caption="step 10"),
    ]


@pytest.mark.parametrize("which", range(3))
def test_unwritable_path_raises_and_leaves_nothing(tmp_path, which):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(GankitError) as info:
        writers(blocker / "sub" / "out.png")[which]()
    assert not isinstance(info.value, DataError)
    assert str(blocker / "sub" / "out.png") in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("which", range(3))
def test_failed_rename_leaves_no_temp_file(tmp_path, which):
    # The target is an existing folder: the temp file is written, the rename fails.
    target = tmp_path / "out.png"
    target.mkdir()
    with pytest.raises(GankitError, match="out.png"):
        writers(target)[which]()
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"] and target.is_dir()


def test_png_folder_failure_leaves_nothing(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "0002.png").mkdir()  # the third file cannot be renamed into place
    with pytest.raises(GankitError, match="pngs"):
        save_png_folder(stack(4), folder)
    assert [p.name for p in folder.iterdir()] == ["0002.png"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GankitError):
        save_png_folder(stack(2), blocker / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "pngs"]


def test_overwrite_keeps_old_file_until_success(tmp_path):
    path = save_npy(stack(2), tmp_path / "x.npy")
    with pytest.raises(GankitError):
        save_npy(np.zeros((2, 28, 28), np.float32), path)
    assert np.load(path, allow_pickle=False).shape == (2, 28, 28)
    save_npy(stack(3), path)
    assert np.load(path, allow_pickle=False).shape == (3, 28, 28)
