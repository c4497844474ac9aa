"""Load the real-MNIST reference statistics and values that reports compare with, shipped in gankit/assets.

Light tier (numpy only). Evaluation must work without the MNIST files, so what it needs
from real data is computed once, by `gankit.eval.reference_build` (run from
``python -m gankit.training.classifier.assets``), and shipped:

* ``eval_reference.json``: the reference values (what real digits score under the same
  protocol) and small per-digit tables, stamped with the classifier's sha256;
* ``eval_reference_{split}_mu.npy`` / ``_sigma.npy``: Gaussian fit (float64) of the
  classifier features of each real split, for the Fréchet distance;
* ``eval_reference_{split}_kid.npy``: 2000 random feature rows of each split (float16,
  to stay small; the rounding is far below KID's sampling noise), for KID.

Splits: "test" is the official 10k MNIST test split, "train" gankit's 10k subset of the
training split (the one the classifier was trained on). Reference values of the
distribution metrics (FD, KID, diversity) compare the *other* real split with the chosen
one: what a generator drawing genuine MNIST digits would get. Values that need no second
distribution (accuracy, classifier score, digit entropy) come from the test split, which
the classifier never saw.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from gankit.errors import ModelFileError, UsageError
from gankit.inputs import bounded
from gankit.eval.protocol import PROTOCOL_VERSION

ASSETS = Path(__file__).resolve().parent.parent / "assets"
REFERENCE_JSON = "eval_reference.json"
# The shipped reference's JSON is ~20 KB; a folder given instead is read within this.
MAX_REFERENCE_JSON_BYTES = 16 << 20
SPLITS = ("test", "train")
FORMAT_VERSION = 2


def array_name(split: str, what: str) -> str:
    """File name of one reference array ("mu", "sigma" or "kid") of ``split``."""
    return f"eval_reference_{split}_{what}.npy"


@dataclass(frozen=True)
class Reference:
    """What evaluation compares generated images with, for one real split."""

    split: str
    classifier_sha256: str  # the classifier whose features these are
    mu: np.ndarray
    sigma: np.ndarray
    kid_features: np.ndarray
    per_digit_distance: list[float]
    real: Mapping  # values of the held-out test split (accuracy, classifier score, entropy, ...)
    own: Mapping  # the same values measured on this split
    cross: Mapping  # the other real split measured against this one (FD, KID, diversity)

    def fd_reference_for(self, n: int) -> tuple[int, float]:
        """(n_ref, FD of n_ref real images of the other split) with n_ref nearest to ``n``.

        FD is biased upward by roughly a constant over n, so a generator's FD on n images
        is read against real images at a similar n. Nearest is on a log scale.
        """
        table = {int(k): float(v) for k, v in self.cross["fd_by_n"].items()}
        best = min(table, key=lambda k: abs(math.log(k) - math.log(max(n, 1))))
        return best, table[best]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UsageError(f"unknown reference split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read evaluation reference file {path}: {exc}") from None


@functools.lru_cache(maxsize=4)
def _load(split: str, folder: str) -> Reference:
    root = Path(folder)
    try:
        meta = bounded.load_file(root / REFERENCE_JSON, limit=MAX_REFERENCE_JSON_BYTES)
        own, real, cross = meta["splits"][split], meta["splits"]["test"], meta["cross"][split]
        fmt, sha, dim = meta["format"], meta["classifier_sha256"], int(meta["feature_dim"])
        version = meta["protocol"]["protocol_version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"evaluation reference {root / REFERENCE_JSON} is missing or damaged: {exc}") from None
    if fmt != FORMAT_VERSION:
        raise ModelFileError(f"evaluation reference format {fmt}; this gankit reads {FORMAT_VERSION}")
    if version != PROTOCOL_VERSION:
        raise ModelFileError(f"evaluation reference in {root} was built under protocol v{version}; this gankit "
                             f"measures under v{PROTOCOL_VERSION}, so its values would not compare")
    ref = Reference(
        split=split,
        classifier_sha256=sha,
        mu=_load_npy(root / array_name(split, "mu")).astype(np.float64),
        sigma=_load_npy(root / array_name(split, "sigma")).astype(np.float64),
        kid_features=_load_npy(root / array_name(split, "kid")).astype(np.float64),
        per_digit_distance=[float(d) for d in own["per_digit_distance"]],
        real=real,
        own=own,
        cross=cross,
    )
    if ref.mu.shape != (dim,) or ref.sigma.shape != (dim, dim) or ref.kid_features.shape[1:] != (dim,):
        raise ModelFileError(f"evaluation reference arrays in {root} do not match feature size {dim}")
    return ref


def load_reference(split: str = "test", *, classifier_sha256: str | None = None, folder: str | Path = ASSETS) -> Reference:
    """The shipped reference for ``split`` ("test" or "train").

    With ``classifier_sha256``, refuses statistics computed with a different classifier:
    features of two classifiers live in different spaces and do not compare.
    """
    ref = _load(_check_split(split), str(folder))
    stamp = ref.classifier_sha256
    if classifier_sha256 is not None and stamp != classifier_sha256:
        raise ModelFileError(
            f"the evaluation reference in {folder} was computed with classifier {stamp[:12]}…, "
            f"not the one in use ({classifier_sha256[:12]}…); rebuild it with python -m gankit.training.classifier.assets --reference-only"
        )
    return ref


def clear_cache() -> None:
    """Forget loaded references (after new files were written)."""
    _load.cache_clear()
