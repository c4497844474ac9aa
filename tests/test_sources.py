"""Data sources: folders of IDX files, named sets found locally, synthetic fallback, bad folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gankit.data import Dataset, default_dataset, load_dataset
from gankit.data.idx import write_idx
from gankit.data.sources import DEBIAN_FASHION_MNIST, candidate_folders
from gankit.errors import DataError, UsageError
from conftest import mnist_data_root, shared_mnist


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No GANKIT_DATA, an empty user cache, and an empty working directory."""
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GANKIT_MNIST_MIRRORS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def make_split(folder: Path, split: str = "train", n: int = 12, *, gz: bool = True, seed: int = 0,
               images=None, labels=None) -> None:
    rng = np.random.default_rng(seed)
    prefix = "train" if split == "train" else "t10k"
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    labels = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress=gz)


def check_contract(ds: Dataset) -> None:
    assert ds.images.dtype == np.uint8 and ds.images.ndim == 3 and ds.images.shape[1:] == (28, 28)
    assert ds.images.flags.c_contiguous
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (len(ds),)
    assert 0 <= ds.labels.min() and ds.labels.max() <= 9


@pytest.mark.parametrize("split, first_labels", [("test", [7, 2, 1, 0, 4]), ("train", None)])
def test_real_mnist_folder(split, first_labels):
    ds = load_dataset(str(shared_mnist()), split)
    check_contract(ds)
    assert len(ds) == 10000 and ds.split == split and not ds.synthetic
    assert ds.name == "mnist" and ds.source == str(shared_mnist())
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.min() > 850 and counts.max() < 1150
    if first_labels:
        assert ds.labels[:5].tolist() == first_labels
    # The README promises any prefix of the train subset is class-balanced.
    if split == "train":
        assert np.bincount(ds.labels[:1000], minlength=10).min() >= 80


def test_mnist_by_name_via_gankit_data_says_what_it_read(tmp_path, monkeypatch):
    folder = shared_mnist()
    monkeypatch.setenv("GANKIT_DATA", str(mnist_data_root(tmp_path)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = load_dataset("mnist", "train", allow_download=False)
    assert ds.name == "mnist" and len(ds) == 10000 and Path(ds.source).resolve() == folder.resolve()
    assert [Path(f).name for f in ds.files] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert ds.describe() == f"data: mnist train split, 10,000 images from {ds.files[0]}, {ds.files[1]}"
    # The dev machine's folder holds a 10k subset of the 60k training split: say so.
    warning = ds.warning()
    assert warning.startswith("warning: 'mnist' resolved to") and "10,000" in warning and "60,000" in warning
    assert ds.messages() == [ds.describe(), warning]
    # Its test split is the full canonical one: no warning.
    assert load_dataset("mnist", "test", allow_download=False).warning() is None


def test_a_folder_given_by_path_is_not_compared_with_the_canonical_set():
    ds = load_dataset(str(shared_mnist()), "train")
    assert ds.warning() is None and ds.messages() == [ds.describe()]


def test_product_code_does_not_know_the_project_layout(isolated):
    """A shared/data/mnist folder above the working directory is not looked at."""
    make_split(isolated / "shared" / "data" / "mnist", "test", n=3)
    work = isolated / "work"
    assert (work.parent / "shared" / "data" / "mnist").is_dir()
    assert not [p for p in candidate_folders("mnist") if "shared" in p.parts]
    with pytest.raises(DataError, match="No local copy of mnist"):
        load_dataset("mnist", "test", allow_download=False)
    assert default_dataset("test").synthetic


def test_default_dataset_is_real_mnist_when_present(monkeypatch, tmp_path):
    monkeypatch.setenv("GANKIT_DATA", str(mnist_data_root(tmp_path)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = default_dataset("train")
    assert ds.name == "mnist" and not ds.synthetic and len(ds) == 10000 and ds.warning() is not None


def test_gankit_data_wins_over_cache(isolated, monkeypatch):
    make_split(isolated / "mine" / "mnist", n=7, seed=1)
    make_split(isolated / "cache" / "gankit" / "mnist", n=5, seed=2)
    monkeypatch.setenv("GANKIT_DATA", str(isolated / "mine"))
    ds = load_dataset("mnist", allow_download=False)
    assert len(ds) == 7 and ds.source == str(isolated / "mine" / "mnist") and ds.name == "mnist"
    monkeypatch.delenv("GANKIT_DATA")
    assert len(load_dataset("MNIST", allow_download=False)) == 5


def test_raw_and_gz_names_and_folder_name(isolated):
    folder = isolated / "my-digits"
    make_split(folder, "train", n=9, gz=False)
    make_split(folder, "test", n=4, gz=True)
    train, test = load_dataset(str(folder)), load_dataset(str(folder), "test")
    assert (len(train), len(test)) == (9, 4)
    assert train.name == "my-digits" and train.source == str(folder)
    check_contract(train)
    np.testing.assert_array_equal(train.labels, np.arange(9) % 10)


def test_fashion_mnist_from_debian(isolated):
    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    ds = load_dataset("fashion-mnist", "test", allow_download=False)
    check_contract(ds)
    assert ds.name == "fashion-mnist" and ds.source == str(DEBIAN_FASHION_MNIST)
    assert np.bincount(ds.labels).tolist() == [1000] * 10


def test_synthetic_spec_and_fallback(isolated):
    ds = default_dataset("test")
    assert ds.synthetic and ds.name == "synthetic-digits" and ds.split == "test"
    assert ds.source == "synthetic (rendered with Pillow)"
    check_contract(ds)
    assert len(ds) == 10000
    assert np.bincount(ds.labels).tolist() == [1000] * 10
    train = load_dataset("synthetic", "train")
    assert train.synthetic and not np.array_equal(train.images[:100], ds.images[:100])


def test_default_dataset_refuses_corrupt_local_copy(isolated, monkeypatch):
    folder = isolated / "data" / "mnist"
    make_split(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    monkeypatch.setenv("GANKIT_DATA", str(isolated / "data"))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        default_dataset()


def test_not_found_without_download_lists_places(isolated):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", allow_download=False)
    message = str(info.value)
    assert str(isolated / "cache" / "gankit" / "mnist") in message
    assert "--data" in message


def test_candidates_are_gankit_data_cache_and_debian(isolated, monkeypatch):
    monkeypatch.setenv("GANKIT_DATA", str(isolated / "d"))
    assert candidate_folders("fashion-mnist") == [isolated / "d" / "fashion-mnist",
                                                  isolated / "cache" / "gankit" / "fashion-mnist",
                                                  DEBIAN_FASHION_MNIST]
    assert candidate_folders("mnist") == [isolated / "d" / "mnist", isolated / "cache" / "gankit" / "mnist"]


def test_missing_folder(isolated):
    with pytest.raises(DataError, match="no-such-folder"):
        load_dataset(str(isolated / "no-such-folder"))
    with pytest.raises(DataError, match="not a known data set"):
        load_dataset("cifar10")


def test_missing_file(isolated):
    folder = isolated / "d"
    make_split(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_dataset(str(folder))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_dataset(str(folder), "test")


def test_bad_split():
    with pytest.raises(UsageError, match="split"):
        load_dataset("synthetic", "validation")


def test_wrong_image_shape(isolated):
    folder = isolated / "d"
    make_split(folder, images=np.zeros((12, 28, 27), np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*\[N, 28, 28\]"):
        load_dataset(str(folder))


def test_labels_out_of_range(isolated):
    folder = isolated / "d"
    make_split(folder, labels=np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*0\.\.9"):
        load_dataset(str(folder))


def test_labels_wrong_shape(isolated):
    folder = isolated / "d"
    make_split(folder, labels=np.zeros((12, 2), np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_dataset(str(folder))


def test_unequal_counts(isolated):
    folder = isolated / "d"
    make_split(folder, labels=np.zeros(11, np.uint8))
    with pytest.raises(DataError, match="11 labels but train-images-idx3-ubyte.gz has 12 images"):
        load_dataset(str(folder))


def test_truncated_real_file_in_folder(isolated):
    folder = isolated / "copy"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_mnist() / name, folder / name)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: 500_000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: truncated gzip"):
        load_dataset(str(folder), "test")


def test_non_idx_file_in_folder(isolated):
    folder = isolated / "d"
    make_split(folder)
    (folder / "train-images-idx3-ubyte.gz").unlink()
    (folder / "train-images-idx3-ubyte").write_text("<html>not data</html>")
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not an IDX file"):
        load_dataset(str(folder))


def test_train_cli_prints_the_files_and_warns_about_the_subset(tmp_path):
    from conftest import SMALL_NETS, run_cli

    env = {"GANKIT_DATA": str(mnist_data_root(tmp_path)), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = run_cli("train", "--data", "mnist", "--steps", 2, "--runs-dir", tmp_path / "runs", "--name", "r",
                   "-q", *SMALL_NETS, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = " ".join(proc.stderr.split())  # rich may wrap long lines
    assert "data: mnist train split, 10,000 images from" in err and "train-labels-idx1-ubyte.gz" in err
    assert "warning: 'mnist' resolved to" in err and "canonical 60,000" in err
