"""Real-MNIST reference statistics and values for `evaluate_images`, shipped in gankit/assets.

Light tier (numpy + onnxruntime). Evaluation must work without the MNIST files, so what it
needs from real data is computed once, by `build_reference` (run from
``bench/train_classifier.py``), and shipped:

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
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from gankit.errors import ModelFileError, UsageError
from gankit.eval import metrics as M

ASSETS = Path(__file__).resolve().parent.parent / "assets"
REFERENCE_JSON = "eval_reference.json"
SPLITS = ("test", "train")
FORMAT_VERSION = 1
KID_REFERENCE_ROWS = 2000
FD_TABLE_SIZES = (200, 500, 1000, 2000, 5000, 10000)
FD_TABLE_DRAWS = 5


def _array_name(split: str, what: str) -> str:
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
        meta = json.loads((root / REFERENCE_JSON).read_text())
        own, real, cross = meta["splits"][split], meta["splits"]["test"], meta["cross"][split]
        fmt, sha, dim = meta["format"], meta["classifier_sha256"], int(meta["feature_dim"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"evaluation reference {root / REFERENCE_JSON} is missing or damaged: {exc}") from None
    if fmt != FORMAT_VERSION:
        raise ModelFileError(f"evaluation reference format {fmt}; this gankit reads {FORMAT_VERSION}")
    ref = Reference(
        split=split,
        classifier_sha256=sha,
        mu=_load_npy(root / _array_name(split, "mu")).astype(np.float64),
        sigma=_load_npy(root / _array_name(split, "sigma")).astype(np.float64),
        kid_features=_load_npy(root / _array_name(split, "kid")).astype(np.float64),
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
            f"not the one in use ({classifier_sha256[:12]}…); rebuild it with bench/train_classifier.py"
        )
    return ref


def _split_values(probs: np.ndarray, feats: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict:
    predicted = probs.argmax(axis=1)
    acc, mean_acc = M.per_digit_accuracy(predicted, labels)
    cs, cs_std = M.classifier_score(probs, splits=M.classifier_score_splits(len(probs)), rng=rng)
    # All images of each digit, not a subset: this is the yardstick, so spend the time.
    dists = M.per_digit_pairwise_distance(feats, predicted, rng=rng, max_per_digit=len(feats))
    return {
        "n": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        "per_digit_accuracy": [acc[d] for d in range(M.NUM_DIGITS)],
        "mean_digit_accuracy": mean_acc,
        "classifier_score": cs,
        "classifier_score_std": cs_std,
        "digit_entropy_bits": M.entropy_bits(np.bincount(predicted, minlength=M.NUM_DIGITS)),
        "label_share": (np.bincount(labels, minlength=M.NUM_DIGITS) / len(labels)).tolist(),
        "per_digit_distance": dists,
    }


def build_reference(
    classifier,
    data: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out_dir: str | Path = ASSETS,
    *,
    seed: int = 0,
) -> dict:
    """Compute and write the reference files for both splits; return the JSON content.

    ``classifier`` is a `gankit.eval.classifier.DigitClassifier`; ``data`` maps "test" and
    "train" to (uint8 images [N,28,28], int labels [N]).
    """
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise UsageError(f"build_reference needs every split; missing: {', '.join(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    feats, stats, kid_rows, values, predicted = {}, {}, {}, {}, {}
    for split in SPLITS:
        images, labels = data[split]
        logits, f = classifier.run(images)
        feats[split] = f.astype(np.float64)
        predicted[split] = logits.argmax(axis=1)
        stats[split] = M.gaussian_stats(feats[split])
        idx = np.sort(rng.choice(len(f), min(KID_REFERENCE_ROWS, len(f)), replace=False))
        kid_rows[split] = f[idx].astype(np.float16)
        values[split] = _split_values(M.softmax(logits), feats[split], np.asarray(labels, np.int64), rng)
        np.save(out / _array_name(split, "mu"), stats[split][0], allow_pickle=False)
        np.save(out / _array_name(split, "sigma"), stats[split][1], allow_pickle=False)
        np.save(out / _array_name(split, "kid"), kid_rows[split], allow_pickle=False)

    cross = {}
    for split, other in (("test", "train"), ("train", "test")):
        mu, sigma = stats[split]
        f_other = feats[other]
        fd_by_n = {}
        for n in FD_TABLE_SIZES:
            if n > len(f_other):
                continue
            draws = 1 if n == len(f_other) else FD_TABLE_DRAWS
            fd_by_n[str(n)] = float(np.mean([
                M.frechet_distance(*M.gaussian_stats(f_other[rng.choice(len(f_other), n, replace=False)]), mu, sigma)
                for _ in range(draws)
            ]))
        kid, kid_std, kid_m = M.kernel_inception_distance(f_other, kid_rows[split].astype(np.float64), rng=rng)
        _, div = M.diversity_ratios(
            M.per_digit_pairwise_distance(f_other, predicted[other], rng=rng), values[split]["per_digit_distance"]
        )
        cross[split] = {
            "compared": other,
            "frechet_distance": M.frechet_distance(*stats[other], mu, sigma),
            "fd_by_n": fd_by_n,
            "kid": kid,
            "kid_std": kid_std,
            "kid_subset_size": kid_m,
            "diversity_ratio": div,
        }
    meta = {
        "format": FORMAT_VERSION,
        "classifier_sha256": classifier.sha256,
        "feature_dim": int(classifier.feature_dim),
        "seed": seed,
        "protocol": {
            "classifier_score_splits": M.CLASSIFIER_SCORE_SPLITS,
            "classifier_score_min_split": M.CLASSIFIER_SCORE_MIN_SPLIT,
            "kid_subsets": M.KID_SUBSETS,
            "kid_subset_size": M.KID_SUBSET_SIZE,
            "kid_reference_rows": KID_REFERENCE_ROWS,
            "diversity_max_per_digit": M.DIVERSITY_MAX_PER_DIGIT,
            "protocol_version": M.PROTOCOL_VERSION,
        },
        "splits": values,
        "cross": cross,
    }
    (out / REFERENCE_JSON).write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n")
    _load.cache_clear()
    return meta
