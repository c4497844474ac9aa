"""Find and load a digit data set: a folder of IDX files, MNIST / Fashion-MNIST by name, or synthetic.

Light tier: numpy (+ urllib and rich when a download is needed). Named sets are
looked for in $GANKIT_DATA/<name>, the user cache and Debian's dataset package
(Fashion-MNIST), and downloaded into the user cache only when allowed. Every Dataset
says where it came from (`describe()`: the files and the image count) and whether it is
synthetic, and a named set found locally with fewer images than the canonical split
says so (`warning()`): a folder called mnist may hold a subset.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from gankit.data.dataset import Dataset
from gankit.data.idx import read_idx
from gankit.errors import DataError, UsageError
from gankit.inputs import envvars

SPLITS = ("train", "test")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NAMED_SETS = ("mnist", "fashion-mnist")
SYNTHETIC_SPEC = "synthetic"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
# Images per split in the published data sets, to tell a local subset from the real thing.
CANONICAL_SIZES = {
    "mnist": {"train": 60_000, "test": 10_000},
    "fashion-mnist": {"train": 60_000, "test": 10_000},
}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UsageError(f"Unknown split {split!r}; use 'train' or 'test'")
    return split


def split_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) files of `split` in `folder`, raw or .gz; None if either is missing."""
    found = []
    for stem in SPLIT_FILES[split]:
        options = [folder / stem, folder / (stem + ".gz")]
        hit = next((p for p in options if p.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def load_folder(folder: str | os.PathLike, split: str = "train", name: str | None = None) -> Dataset:
    """Load one split from a folder of the standard MNIST-named IDX files, checking shapes."""
    _check_split(split)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"Data folder {folder} does not exist (or is not a folder)")
    files = split_files(folder, split)
    if files is None:
        missing = [s for s in SPLIT_FILES[split] if not (folder / s).is_file() and not (folder / (s + ".gz")).is_file()]
        wanted = ", ".join(f"{s}(.gz)" for s in missing)
        raise DataError(f"Data folder {folder} lacks the {split} file(s): {wanted}")
    image_path, label_path = files
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{image_path}: expected uint8 images of shape [N, 28, 28], got {images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label_path}: expected integer labels of shape [N], got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(images):
        raise DataError(
            f"{label_path}: {len(labels)} labels but {image_path.name} has {len(images)} images"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= NUM_CLASSES:
        raise DataError(f"{label_path}: labels must be 0..9, found values from {low} to {high}")
    return Dataset(
        images=np.ascontiguousarray(images),
        labels=labels.astype(np.int64),
        name=name or folder.resolve().name,
        source=str(folder),
        split=split,
        files=(str(image_path), str(label_path)),
    )


def user_cache_dir(name: str) -> Path:
    """Where downloads of data set `name` go: $XDG_CACHE_HOME/gankit/<name> or ~/.cache/gankit/<name>."""
    base = envvars.path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gankit" / name


def candidate_folders(name: str) -> list[Path]:
    """Local folders that may hold data set `name`, in the order they are searched."""
    candidates = []
    root = envvars.path("GANKIT_DATA")  # checked: a path no longer than the system allows
    if root is not None:
        candidates.append(root / name)
    candidates.append(user_cache_dir(name))
    if name == "fashion-mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
    return candidates


def find_local(name: str, split: str = "train") -> Path | None:
    """The first candidate folder that has both files of `split`, or None."""
    _check_split(split)
    for folder in candidate_folders(name):
        if folder.is_dir() and split_files(folder, split) is not None:
            return folder
    return None


def _normalise_spec(spec: str) -> str:
    return spec.strip().lower().replace("_", "-")


def _is_path_like(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.startswith(("~", "."))


def load_named(name: str, split: str = "train", *, allow_download: bool = True, progress: bool = True) -> Dataset:
    """Load MNIST or Fashion-MNIST from the first local folder that has it, else download it."""
    _check_split(split)
    folder = find_local(name, split)
    if folder is not None:
        return _named(load_folder(folder, split, name=name))
    searched = "\n".join(f"  {p}" for p in candidate_folders(name))
    if not allow_download:
        raise DataError(
            f"No local copy of {name} ({split} split) found; searched:\n{searched}\n"
            f"Put the files in $GANKIT_DATA/{name}/ or pass --data FOLDER."
        )
    from gankit.data.download import download_dataset

    cache = user_cache_dir(name)
    download_dataset(name, [s + ".gz" for s in SPLIT_FILES[split]], cache, progress=progress)
    return _named(load_folder(cache, split, name=name))


def _named(ds: Dataset) -> Dataset:
    return dataclasses.replace(ds, canonical_size=CANONICAL_SIZES.get(ds.name, {}).get(ds.split))


def load_dataset(spec: str, split: str = "train", *, allow_download: bool = True, progress: bool = True) -> Dataset:
    """Load a data set by the same names ``gankit train --data`` takes.

    A bare name that matches a known set wins over a same-named folder in the
    working directory; write ./mnist to mean the folder.

    Args:
        spec: a folder of IDX files, "mnist", "fashion-mnist" or "synthetic".
        split: "train" or "test".
        allow_download: whether a named set missing locally may be downloaded into the
            user cache (sha256-checked).
        progress: whether a download shows a progress bar.

    Returns:
        The images and labels, with where they came from (`Dataset.describe`).

    Raises:
        DataError: a folder or file is missing or corrupt, or a download failed.
        UsageError: an empty spec or an unknown split.
    """
    _check_split(split)
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise UsageError("No data set given; use a folder path, 'mnist', 'fashion-mnist' or 'synthetic'")
    text = str(spec)
    if not _is_path_like(text):
        key = _normalise_spec(text)
        if key in NAMED_SETS:
            return load_named(key, split, allow_download=allow_download, progress=progress)
        if key == SYNTHETIC_SPEC:
            return synthetic_split(split)
        if not Path(text).is_dir():
            raise DataError(
                f"Data folder {text} does not exist, and {text!r} is not a known data set "
                f"(known: {', '.join(NAMED_SETS)}, {SYNTHETIC_SPEC})"
            )
    return load_folder(text, split)


def synthetic_split(split: str = "train") -> Dataset:
    """The standard synthetic set: 10,000 digits; train and test use different seeds."""
    from gankit.data.synthetic import synthetic_digits

    return synthetic_digits(n_per_class=1000, seed=0 if _check_split(split) == "train" else 1, split=split)


def default_dataset(split: str = "train") -> Dataset:
    """Real MNIST when a local copy exists (never downloads), else the synthetic digits.

    Check `.synthetic` (or `.name == "synthetic-digits"`) to tell which one you got.
    A local copy that exists but is corrupt raises `DataError` rather than being
    silently replaced by synthetic data.
    """
    _check_split(split)
    folder = find_local("mnist", split)
    if folder is not None:
        return _named(load_folder(folder, split, name="mnist"))
    return synthetic_split(split)
