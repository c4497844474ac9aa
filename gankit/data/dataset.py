"""`Dataset`: one split's images and labels, and where they came from.

Light tier (numpy). Its own module so that every data source (`sources`, `synthetic`)
builds one without importing another source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one split, plus where they came from."""

    images: np.ndarray  # uint8 [N, 28, 28], C-contiguous
    labels: np.ndarray  # int64 [N]
    name: str  # "mnist", "fashion-mnist", "synthetic-digits", or the folder name
    source: str  # folder path, or "synthetic (rendered with Pillow)"
    split: str  # "train" or "test"
    synthetic: bool = False
    files: tuple[str, ...] = ()  # the images and labels files read, when read from files
    canonical_size: int | None = None  # the published split's size, when loaded by name

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def describe(self) -> str:
        """One line: what was loaded, how many images, from which files."""
        where = ", ".join(self.files) if self.files else self.source
        return f"data: {self.name} {self.split} split, {len(self):,} images from {where}"

    def warning(self) -> str | None:
        """A warning when a named set resolved to fewer images than its canonical split holds."""
        if self.canonical_size is None or len(self) >= self.canonical_size:
            return None
        return (f"warning: {self.name!r} resolved to {self.source}, which holds {len(self):,} {self.split} "
                f"images, a subset of the canonical {self.canonical_size:,}; numbers from it are not "
                f"comparable with full-{self.name} results (pass --data FOLDER to choose the files)")

    def messages(self) -> list[str]:
        """`describe()` and, when there is one, `warning()`: what a command prints about its data."""
        return [self.describe(), *filter(None, [self.warning()])]
