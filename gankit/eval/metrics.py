"""MNIST-native quality numbers for generated digits, and the report that gathers them.

Light tier: numpy maths only (onnxruntime is reached through `gankit.eval.classifier`,
imported when `evaluate_images` runs). Inception-based FID means little on 28x28
digits, so every number here is computed with gankit's own digit classifier:

* per-digit accuracy: share of the images generated for digit d that the classifier
  reads as d, and the mean over digits (conditional and per-digit models only);
* Fréchet distance between Gaussians fitted to classifier features, against a real split;
* KID: unbiased squared MMD with the cubic polynomial kernel, averaged over subsets;
* classifier score, the Inception-score analogue ``exp(E_x KL(p(y|x) || p(y)))``
  (1 = every image reads the same, 10 = certain and evenly spread over the digits; real
  MNIST gets about 7.4, since the classifier was trained with label smoothing and is
  never fully certain, so read it against its reference);
* digit coverage: entropy of the predicted digits in bits (max log2 10 = 3.32), with a
  mode-collapse alarm, and within-digit diversity (mean pairwise feature distance per
  predicted digit, relative to real digits of the same class).

`evaluate_images` computes all of them and pairs each with the value real MNIST data
gets under the same protocol (shipped in `gankit/assets`, see `gankit.eval.reference`),
so a number can be read without the data files at hand.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from gankit.errors import UsageError

NUM_DIGITS = 10
MAX_ENTROPY_BITS = math.log2(NUM_DIGITS)

# The evaluation protocol. Changing any of these changes the numbers, so they are fixed
# here (and stamped into every report) rather than offered as knobs.
PROTOCOL_VERSION = 1
CLASSIFIER_SCORE_SPLITS = 10
# p(y) is estimated per split, and a split of m images biases the score down by about
# exp(-9 / 2m) (6% at m = 75, under 0.5% at m = 1000); hence splits of at least 1000.
CLASSIFIER_SCORE_MIN_SPLIT = 1000
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
DIVERSITY_MAX_PER_DIGIT = 500
DIVERSITY_MIN_PER_DIGIT = 2
# Alarm when the digit entropy falls this many bits below what the intended digits
# (or real MNIST, for unconditional models) would give: losing a quarter of the mass of
# half the digits costs about that much, while sampling noise at n >= 200 costs < 0.05.
ENTROPY_ALARM_DROP_BITS = 0.25
# A digit is "starved" when it gets under this share of the images it should get; only
# judged where at least STARVED_MIN_EXPECTED images were expected, so chance cannot trip it.
STARVED_SHARE = 0.25
STARVED_MIN_EXPECTED = 20


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


def _labels(labels: np.ndarray, n: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise UsageError(f"{what} must be a 1-D array of {n} digits, got shape {list(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise UsageError(f"{what} must be integers 0..9, got dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_DIGITS):
        raise UsageError(f"{what} must be digits 0..9, got values from {labels.min()} to {labels.max()}")
    return labels.astype(np.int64)


# --------------------------------------------------------------------------- accuracy


def per_digit_accuracy(predicted: np.ndarray, intended: np.ndarray) -> tuple[dict[int, float], float]:
    """Share of images meant as digit d that the classifier reads as d, per d; and their mean.

    Only digits that occur in ``intended`` appear. The mean is over digits (macro), so a
    digit asked for rarely weighs as much as one asked for often.
    """
    intended = _labels(intended, len(predicted), "intended labels")
    predicted = _labels(predicted, len(intended), "predicted labels")
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
    """How the predicted digits spread over 0..9, and whether that looks like collapse."""

    counts: list[int]
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
) -> Coverage:
    """Entropy of the predicted digits and a mode-collapse alarm.

    ``expected_share`` [10] is the digit mix the images should have (the intended labels'
    mix for a conditional model; real MNIST's mix, roughly uniform, otherwise; uniform
    when None). The alarm goes off when the entropy drops ``drop_bits`` below the expected
    mix's entropy, or when some expected digit gets under a quarter of its due.
    """
    predicted = _labels(predicted, len(np.asarray(predicted)), "predicted labels")
    counts = np.bincount(predicted, minlength=NUM_DIGITS)
    n = int(counts.sum())
    share = np.full(NUM_DIGITS, 1.0 / NUM_DIGITS) if expected_share is None else np.asarray(expected_share, np.float64)
    share = share / share.sum()
    h, h_expected = entropy_bits(counts), entropy_bits(share)
    reasons: list[str] = []
    if h < h_expected - drop_bits:
        reasons.append(
            f"predicted digits carry {h:.2f} bits of entropy, {h_expected - h:.2f} below the "
            f"{h_expected:.2f} expected: the images concentrate on few digits (mode collapse)"
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
    """Mean pairwise feature distance among the images predicted as each digit.

    A random subset of at most ``max_per_digit`` images per digit keeps the cost bounded;
    the mean over distinct pairs is unbiased for any subset size. None where fewer than
    `DIVERSITY_MIN_PER_DIGIT` images fall on a digit.
    """
    predicted = _labels(predicted, len(features), "predicted labels")
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


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Metric:
    """One number, the value real MNIST gets under the same protocol, and how to read it."""

    value: float
    reference: float
    better: str  # "higher" | "lower" | "near reference"
    about: str
    std: float | None = None


@dataclass(frozen=True)
class Protocol:
    """What the numbers were measured with; two reports compare only if these agree."""

    n_samples: int
    reference_split: str
    classifier_sha256: str
    seed: int
    feature_dim: int
    conditional: bool
    classifier_score_splits: int
    kid_subsets: int
    kid_subset_size: int
    fd_reference_n: int
    protocol_version: int
    gankit_version: str


@dataclass(frozen=True)
class EvalReport:
    """Everything `evaluate_images` measured. ``to_json()`` gives the same as JSON."""

    protocol: Protocol
    metrics: dict[str, Metric]
    per_digit_accuracy: dict[int, float] | None
    per_digit_accuracy_reference: dict[int, float]
    per_digit_accuracy_note: str | None
    predicted_counts: list[int]
    coverage_alarm: bool
    coverage_reasons: list[str]
    per_digit_diversity: dict[int, float]
    notes: list[str] = field(default_factory=list)

    def value(self, name: str) -> float:
        """The value of metric ``name`` (a key of ``metrics``)."""
        return self.metrics[name].value

    def to_dict(self) -> dict:
        """Plain, JSON-ready dict (digit keys become strings, as JSON requires)."""
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def evaluate_images(
    images_u8: np.ndarray,
    intended_labels: np.ndarray | None,
    *,
    seed: int,
    reference: str = "test",
) -> EvalReport:
    """Measure generated digits ``images_u8`` (uint8 [N,28,28]) against real MNIST.

    ``intended_labels`` int [N] are the digits each image was generated as, or None for an
    unconditional model (per-digit accuracy is then skipped and the report says why).
    ``seed`` drives every random subset (KID, classifier-score splits, diversity), so the
    same images and seed give the same report. ``reference`` is the real split to compare
    with: "test" (the official 10k test split, default) or "train" (gankit's 10k
    training subset). Needs more images than the classifier has features (see
    `min_samples_for_fd`); raises `UsageError` otherwise.
    """
    # Imported here: those modules import this one, and this keeps it numpy-only to load.
    from gankit import __version__
    from gankit.eval.classifier import load_classifier
    from gankit.eval.reference import SPLITS, load_reference

    images = as_uint8_images(images_u8)
    n = len(images)
    labels = None if intended_labels is None else _labels(intended_labels, n, "intended labels")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    if reference not in SPLITS:
        raise UsageError(f"unknown reference split {reference!r}; choose one of: {', '.join(SPLITS)}")
    clf = load_classifier()
    require_fd_samples(n, clf.feature_dim)
    ref = load_reference(reference, classifier_sha256=clf.sha256)

    logits, feats = clf.run(images)
    probs = softmax(logits)
    predicted = probs.argmax(axis=1)
    rng = np.random.default_rng(int(seed))
    metrics: dict[str, Metric] = {}

    acc_ref = {d: float(a) for d, a in enumerate(ref.real["per_digit_accuracy"])}
    if labels is not None:
        acc, mean_acc = per_digit_accuracy(predicted, labels)
        acc_note = None
        metrics["digit_accuracy"] = Metric(
            mean_acc, float(np.mean([acc_ref[d] for d in acc])), "higher",
            "mean over digits of the share of images the classifier reads as the digit asked for",
        )
    else:
        acc = None
        acc_note = (
            "not measured: no intended labels were given (an unconditional model cannot be "
            "asked for a digit), so there is no right answer to score; digit coverage below "
            "shows which digits it draws instead"
        )

    fd_n, fd_ref = ref.fd_reference_for(n)
    fd = frechet_distance(*gaussian_stats(feats), ref.mu, ref.sigma)
    metrics["frechet_distance"] = Metric(
        fd, fd_ref, "lower",
        f"Fréchet distance of classifier features to the real {reference} split; the reference "
        f"is {fd_n} real images of the other split (FD grows as the sample shrinks)",
    )

    kid, kid_std, kid_m = kernel_inception_distance(feats, ref.kid_features, rng=rng)
    metrics["kid"] = Metric(
        kid, ref.cross["kid"], "lower",
        f"unbiased squared MMD (cubic kernel) to the real {reference} split; ~0 for real digits",
        std=kid_std,
    )

    cs_splits = classifier_score_splits(n)
    cs, cs_std = classifier_score(probs, splits=cs_splits, rng=rng)
    metrics["classifier_score"] = Metric(
        cs, ref.real["classifier_score"], "higher",
        "exp(E KL(p(y|x) || p(y))): 1 = all images read alike, 10 = confident and spread over all digits",
        std=cs_std,
    )

    label_share = np.asarray(ref.real["label_share"], np.float64)
    expected = label_share if labels is None else np.bincount(labels, minlength=NUM_DIGITS)
    cov = digit_coverage(predicted, expected)
    metrics["digit_entropy_bits"] = Metric(
        cov.entropy_bits,
        ref.real["digit_entropy_bits"] if labels is None else cov.expected_entropy_bits,
        "near reference",
        f"entropy of the predicted digits, max {MAX_ENTROPY_BITS:.2f} bits; the reference is "
        + ("real MNIST's" if labels is None else "that of the intended digits"),
    )

    dists = per_digit_pairwise_distance(feats, predicted, rng=rng)
    div, div_mean = diversity_ratios(dists, ref.per_digit_distance)
    notes: list[str] = []
    if div_mean is None:
        notes.append("within-digit diversity not measured: no digit got 2 or more images")
    else:
        metrics["diversity_ratio"] = Metric(
            div_mean, ref.cross["diversity_ratio"], "near reference",
            "mean pairwise feature distance within each predicted digit, over the same for real "
            "digits; near 0 = the same image repeated",
        )
    if n < 2000:
        notes.append(
            f"only {n} images: the Fréchet distance is biased upward at small sample sizes, "
            + ("the classifier score slightly downward, " if n < CLASSIFIER_SCORE_MIN_SPLIT else "")
            + "and the per-digit numbers are noisy; 2000+ images are recommended"
        )

    protocol = Protocol(
        n_samples=n,
        reference_split=reference,
        classifier_sha256=clf.sha256,
        seed=int(seed),
        feature_dim=clf.feature_dim,
        conditional=labels is not None,
        classifier_score_splits=cs_splits,
        kid_subsets=KID_SUBSETS,
        kid_subset_size=kid_m,
        fd_reference_n=fd_n,
        protocol_version=PROTOCOL_VERSION,
        gankit_version=__version__,
    )
    return EvalReport(
        protocol=protocol,
        metrics=metrics,
        per_digit_accuracy=acc,
        per_digit_accuracy_reference=acc_ref,
        per_digit_accuracy_note=acc_note,
        predicted_counts=cov.counts,
        coverage_alarm=cov.alarm,
        coverage_reasons=cov.reasons,
        per_digit_diversity=div,
        notes=notes,
    )
