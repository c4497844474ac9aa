"""The maths of gankit's quality numbers: pure functions on classifier outputs, no I/O.

Light tier (numpy only). Inception-based FID means little on 28x28 digits, so these are
computed on the outputs of gankit's own digit classifier (`gankit.eval.classifier`),
which reads an image as one of the digits 0-9 or as `NOT_A_DIGIT`:

* per-digit accuracy: share of the images generated for digit d read as d (an image
  read as no digit is wrong), and the mean over digits;
* Fréchet distance between Gaussians fitted to classifier features;
* KID: unbiased squared MMD with the cubic polynomial kernel, averaged over subsets;
* classifier score, the Inception-score analogue ``exp(E_x KL(p(y|x) || p(y)))`` over
  all 11 classes (1 = every image reads the same; read it against its real-data value);
* digit coverage: entropy of the digits read, a mode-collapse alarm that also goes off
  when many images read as no digit, and within-digit diversity.

Default subset sizes and thresholds are the protocol's (`gankit.eval.protocol`).
`gankit.eval.report` puts these together into a report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gankit.errors import UsageError
from gankit.eval.protocol import (
    CLASSIFIER_SCORE_MIN_SPLIT,
    CLASSIFIER_SCORE_SPLITS,
    DIVERSITY_MAX_PER_DIGIT,
    DIVERSITY_MIN_PER_DIGIT,
    ENTROPY_ALARM_DROP_BITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    NOT_A_DIGIT,
    NOT_A_DIGIT_ALARM_SHARE,
    NUM_CLASSES,
    NUM_DIGITS,
    STARVED_MIN_EXPECTED,
    STARVED_SHARE,
)


# --------------------------------------------------------------------------- inputs


def as_uint8_images(images: np.ndarray) -> np.ndarray:
    """Check generated images and return them as uint8 [N,28,28] (a view when possible)."""
    if not isinstance(images, np.ndarray):
        raise UsageError(f"images must be a numpy array, got {type(images).__name__}")
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UsageError(f"images must have shape [N, 28, 28] (or [N, 1, 28, 28]), got {list(images.shape)}")
    if images.dtype != np.uint8:
        raise UsageError(
            f"images must be uint8 pixels 0..255, got {images.dtype}; convert generator output "
            "with gankit.images.to_uint8(images, value_range)"
        )
    if len(images) == 0:
        raise UsageError("no images to evaluate")
    return images


def check_labels(labels: np.ndarray, n: int, what: str, classes: int = NUM_DIGITS) -> np.ndarray:
    """``labels`` as int64 [n] after checking shape, dtype and range 0..classes-1 (UsageError otherwise)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise UsageError(f"{what} must be a 1-D array of {n} digits, got shape {list(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise UsageError(f"{what} must be integers 0..{classes - 1}, got dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise UsageError(f"{what} must be 0..{classes - 1}, got values from {labels.min()} to {labels.max()}")
    return labels.astype(np.int64)


def _predicted(predicted: np.ndarray, n: int) -> np.ndarray:
    """Classifier readings: digits 0..9, or NOT_A_DIGIT."""
    return check_labels(predicted, n, "predicted labels", NUM_CLASSES)


# --------------------------------------------------------------------------- accuracy


def per_digit_accuracy(predicted: np.ndarray, intended: np.ndarray) -> tuple[dict[int, float], float]:
    """Share of images meant as digit d that the classifier reads as d, per d; and their mean.

    An image read as `NOT_A_DIGIT` (or as another digit) is wrong. Only digits that occur
    in ``intended`` appear. The mean is over digits (macro), so a
    digit asked for rarely weighs as much as one asked for often.
    """
    intended = check_labels(intended, len(predicted), "intended labels")
    predicted = _predicted(predicted, len(intended))
    acc = {int(d): float(np.mean(predicted[intended == d] == d)) for d in np.unique(intended)}
    return acc, float(np.mean(list(acc.values())))


# --------------------------------------------------------------------------- Fréchet distance


def min_samples_for_fd(feature_dim: int) -> int:
    """Fewest samples whose covariance can be full rank in ``feature_dim`` dimensions."""
    return feature_dim + 1


def require_fd_samples(n: int, dim: int) -> None:
    """Raise `UsageError`, explaining the minimum, if ``n`` images are too few for FD."""
    if n < min_samples_for_fd(dim):
        raise UsageError(
            f"the Fréchet distance on {dim}-dimensional classifier features needs at least "
            f"{min_samples_for_fd(dim)} images, got {n}: with fewer, the covariance is singular and "
            "the distance measures the sample size rather than the images. Generate more "
            "(2000 or more for numbers comparable with the reference values)."
        )


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and sample covariance [F,F] (float64) of ``features`` [N,F]."""
    features = np.asarray(features, dtype=np.float64)
    require_fd_samples(*features.shape)
    mu = features.mean(axis=0)
    return mu, np.cov(features, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)`` between two Gaussians.

    ``S1 S2`` is not symmetric, but it has the same eigenvalues as the symmetric PSD
    ``S1^½ S2 S1^½``, so the trace of its square root comes from two `eigh` calls: exact,
    numpy-only, and free of the complex round-off a general matrix square root leaves.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise UsageError(
            f"Gaussian statistics do not match: means {mu1.shape} / {mu2.shape}, "
            f"covariances {sigma1.shape} / {sigma2.shape}"
        )
    r = _sqrt_psd(sigma1)
    middle = r @ sigma2 @ r
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt
    # Round-off can leave a tiny negative number for identical inputs; a distance is >= 0.
    return float(max(fd, 0.0))


def frechet_distance_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets [N1,F] and [N2,F]."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


# --------------------------------------------------------------------------- KID


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kernel_inception_distance(
    f1: np.ndarray,
    f2: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    rng: np.random.Generator,
) -> tuple[float, float, int]:
    """Unbiased squared MMD, cubic kernel ``(x.y/F + 1)^3``, over random subsets.

    Returns (mean, std over subsets, subset size used). Unbiased means real-vs-real is
    0 on average (single subsets may be slightly negative) whatever the sample size,
    which is why KID is the number to compare across sample counts.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise UsageError(f"KID needs at least 2 images on each side, got {len(f1)} and {len(f2)}")
    values = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        # Dropping the diagonals (each point with itself) is what removes the bias.
        values[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )
    return float(values.mean()), float(values.std()), m


# --------------------------------------------------------------------------- classifier score


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classifier_score_splits(n: int) -> int:
    """Splits the protocol uses for ``n`` images: up to 10, each of at least 1000 images."""
    return int(min(CLASSIFIER_SCORE_SPLITS, max(1, n // CLASSIFIER_SCORE_MIN_SPLIT)))


def classifier_score(
    probs: np.ndarray, *, splits: int = CLASSIFIER_SCORE_SPLITS, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` on each of ``splits`` parts; returns (mean, std).

    With ``rng`` the rows are shuffled first: generators are often sampled digit by
    digit, and a split holding a single digit would score ~1 however good the images.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise UsageError(f"class probabilities must be [N, classes], got shape {list(p.shape)}")
    if rng is not None:
        p = p[rng.permutation(len(p))]
    splits = max(1, min(splits, len(p)))
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        # 0 * log 0 = 0: mask zero probabilities instead of adding an epsilon that biases.
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0).sum(axis=1)
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


# --------------------------------------------------------------------------- coverage


def entropy_bits(counts_or_shares: np.ndarray) -> float:
    """Shannon entropy (bits) of a histogram given as counts or shares."""
    p = np.asarray(counts_or_shares, np.float64)
    total = p.sum()
    if total <= 0:
        return 0.0
    p = p[p > 0] / total
    return float(max(0.0, -(p * np.log2(p)).sum()))


@dataclass(frozen=True)
class Coverage:
    """How the images spread over the digits 0..9, and whether that looks like collapse."""

    counts: list[int]  # images read as each digit 0..9
    not_a_digit: int  # images read as no digit
    entropy_bits: float
    expected_entropy_bits: float
    starved_digits: list[int]
    alarm: bool
    reasons: list[str]


def digit_coverage(
    predicted: np.ndarray,
    expected_share: np.ndarray | None = None,
    *,
    drop_bits: float = ENTROPY_ALARM_DROP_BITS,
    not_a_digit_alarm: float = NOT_A_DIGIT_ALARM_SHARE,
) -> Coverage:
    """Entropy of the digits read and a mode-collapse alarm.

    ``predicted`` are classifier readings (0..9 or `NOT_A_DIGIT`). ``expected_share`` [10]
    is the digit mix the images should have (the intended labels' mix for a conditional
    model; real MNIST's mix, roughly uniform, otherwise; uniform when None). The alarm goes
    off when the entropy of the images read as digits drops ``drop_bits`` below the
    expected mix's, when some expected digit gets under a quarter of its due (its due is a
    share of *all* images, so images read as no digit count against it), or when more
    than ``not_a_digit_alarm`` of the images read as no digit.
    """
    predicted = _predicted(predicted, len(np.asarray(predicted)))
    all_counts = np.bincount(predicted, minlength=NUM_CLASSES)
    counts, none = all_counts[:NUM_DIGITS], int(all_counts[NOT_A_DIGIT])
    n = int(all_counts.sum())
    share = np.full(NUM_DIGITS, 1.0 / NUM_DIGITS) if expected_share is None else np.asarray(expected_share, np.float64)
    share = share / share.sum()
    h, h_expected = entropy_bits(counts), entropy_bits(share)
    reasons: list[str] = []
    if h < h_expected - drop_bits:
        reasons.append(
            f"the digits read carry {h:.2f} bits of entropy, {h_expected - h:.2f} below the "
            f"{h_expected:.2f} expected: the images concentrate on few digits (mode collapse)"
        )
    if n and none > not_a_digit_alarm * n:
        reasons.append(
            f"{none} of {n} images ({100 * none / n:.1f}%) read as no digit at all (noise, blank or "
            "half-formed strokes)"
        )
    due = share * n
    starved = [d for d in range(NUM_DIGITS) if due[d] >= STARVED_MIN_EXPECTED and counts[d] < STARVED_SHARE * due[d]]
    if starved:
        reasons.append(
            "digits drawn far less often than expected: "
            + ", ".join(f"{d} ({counts[d]} of ~{due[d]:.0f})" for d in starved)
        )
    return Coverage(
        counts=[int(c) for c in counts],
        not_a_digit=none,
        entropy_bits=h,
        expected_entropy_bits=h_expected,
        starved_digits=starved,
        alarm=bool(reasons),
        reasons=reasons,
    )


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance over distinct pairs of rows of ``features`` [N,F] (N >= 2)."""
    f = np.asarray(features, np.float64)
    n = len(f)
    if n < 2:
        raise UsageError("mean pairwise distance needs at least 2 feature rows")
    sq = (f * f).sum(axis=1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0, None)
    iu = np.triu_indices(n, k=1)
    return float(np.sqrt(d2[iu]).mean())


def per_digit_pairwise_distance(
    features: np.ndarray,
    predicted: np.ndarray,
    *,
    rng: np.random.Generator,
    max_per_digit: int = DIVERSITY_MAX_PER_DIGIT,
) -> list[float | None]:
    """Mean pairwise feature distance among the images predicted as each digit 0..9.

    A random subset of at most ``max_per_digit`` images per digit keeps the cost bounded;
    the mean over distinct pairs is unbiased for any subset size. None where fewer than
    `DIVERSITY_MIN_PER_DIGIT` images fall on a digit.
    """
    predicted = _predicted(predicted, len(features))
    out: list[float | None] = []
    for d in range(NUM_DIGITS):
        idx = np.flatnonzero(predicted == d)
        if len(idx) < DIVERSITY_MIN_PER_DIGIT:
            out.append(None)
            continue
        if len(idx) > max_per_digit:
            idx = rng.choice(idx, max_per_digit, replace=False)
        out.append(mean_pairwise_distance(features[idx]))
    return out


def diversity_ratios(
    distances: Sequence[float | None], reference_distances: Sequence[float | None]
) -> tuple[dict[int, float], float | None]:
    """Per-digit ``distance / real distance`` and their mean (None if no digit qualifies).

    1 means as varied as real digits of that class; near 0 means one image over and over.
    """
    ratios = {
        d: float(dist / ref)
        for d, (dist, ref) in enumerate(zip(distances, reference_distances))
        if dist is not None and ref
    }
    return ratios, (float(np.mean(list(ratios.values()))) if ratios else None)
