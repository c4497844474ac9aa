"""Build the real-MNIST reference files that `gankit.eval.reference` loads.

Light tier (numpy; the classifier runs through onnxruntime). Run once per classifier by
``python -m gankit.training.classifier.assets``; evaluation itself only ever loads the result.
Reference values of the distribution metrics (FD, KID, diversity) compare the *other*
real split with the chosen one; values that need no second distribution (accuracy,
classifier score, digit entropy, share read as no digit) are measured on each split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from gankit.errors import UsageError
from gankit.eval import maths as M
from gankit.eval import protocol as P
from gankit.eval.reference import ASSETS, FORMAT_VERSION, REFERENCE_JSON, SPLITS, array_name, clear_cache

KID_REFERENCE_ROWS = 2000
FD_TABLE_SIZES = (200, 500, 1000, 2000, 5000, 10000)
FD_TABLE_DRAWS = 5


def _split_values(probs: np.ndarray, feats: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict:
    predicted = probs.argmax(axis=1)
    counts = np.bincount(predicted, minlength=P.NUM_CLASSES)
    acc, mean_acc = M.per_digit_accuracy(predicted, labels)
    cs, cs_std = M.classifier_score(probs, splits=M.classifier_score_splits(len(probs)), rng=rng)
    # All images of each digit, not a subset: this is the yardstick, so spend the time.
    dists = M.per_digit_pairwise_distance(feats, predicted, rng=rng, max_per_digit=len(feats))
    return {
        "n": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        "per_digit_accuracy": [acc[d] for d in range(P.NUM_DIGITS)],
        "mean_digit_accuracy": mean_acc,
        "classifier_score": cs,
        "classifier_score_std": cs_std,
        "digit_entropy_bits": M.entropy_bits(counts[:P.NUM_DIGITS]),
        "not_a_digit_share": float(counts[P.NOT_A_DIGIT] / len(labels)),
        "label_share": (np.bincount(labels, minlength=P.NUM_DIGITS) / len(labels)).tolist(),
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
    "train" to (uint8 images [N,28,28], int labels [N]). Every file is written atomically.
    """
    from gankit.atomic import atomic_write

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
        for what, arr in (("mu", stats[split][0]), ("sigma", stats[split][1]), ("kid", kid_rows[split])):
            with atomic_write(out / array_name(split, what), "reference array") as f:
                np.save(f, arr, allow_pickle=False)

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
            "classifier_score_splits": P.CLASSIFIER_SCORE_SPLITS,
            "classifier_score_min_split": P.CLASSIFIER_SCORE_MIN_SPLIT,
            "kid_subsets": P.KID_SUBSETS,
            "kid_subset_size": P.KID_SUBSET_SIZE,
            "kid_reference_rows": KID_REFERENCE_ROWS,
            "diversity_max_per_digit": P.DIVERSITY_MAX_PER_DIGIT,
            "protocol_version": P.PROTOCOL_VERSION,
        },
        "splits": values,
        "cross": cross,
    }
    with atomic_write(out / REFERENCE_JSON, "reference") as f:
        f.write((json.dumps(meta, indent=1, allow_nan=False) + "\n").encode())
    clear_cache()
    return meta
