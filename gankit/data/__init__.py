"""Digit data sets for gankit: IDX folders, MNIST / Fashion-MNIST by name, or synthetic digits.

Light tier: numpy and Pillow (urllib and rich only when downloading).
`load_dataset(spec, split)` and `default_dataset(split)` are the public entry
points; both return a `Dataset` that says where its images came from.
"""

from __future__ import annotations

from gankit.data.dataset import Dataset
from gankit.data.sources import default_dataset, load_dataset

__all__ = ["Dataset", "default_dataset", "load_dataset"]
