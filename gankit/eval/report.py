"""The evaluation report: `evaluate_images` runs the classifier and gathers every number beside its real-data value.

Light tier (numpy; onnxruntime through `gankit.eval.classifier`, loaded on first use).
This is the orchestrator: the maths is `gankit.eval.maths`, the fixed choices are
`gankit.eval.protocol`, the real-data values come from `gankit.eval.reference` (shipped
in gankit/assets), so a number can be read without the MNIST files at hand.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from gankit.errors import UsageError
from gankit.eval import maths as M
from gankit.eval.classifier import load_classifier
from gankit.eval.protocol import (
    CLASSIFIER_SCORE_MIN_SPLIT,
    DEFAULT_REFERENCE,
    KID_SUBSETS,
    MAX_ENTROPY_BITS,
    NUM_DIGITS,
    PROTOCOL_VERSION,
    RECOMMENDED_SAMPLES,
)
from gankit.eval.reference import SPLITS, load_reference


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
    predicted_counts: list[int]  # images read as each digit 0..9
    not_a_digit_count: int  # images read as no digit
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
    reference: str = DEFAULT_REFERENCE,
) -> EvalReport:
    """Measure generated digits ``images_u8`` (uint8 [N,28,28]) against real MNIST.

    ``intended_labels`` int [N] are the digits each image was generated as, or None for an
    unconditional model (per-digit accuracy is then skipped and the report says why). An
    image the classifier reads as no digit counts as wrong and as covering no digit.
    ``seed`` drives every random subset (KID, classifier-score splits, diversity), so the
    same images and seed give the same report. ``reference`` is the real split to compare
    with: "test" (the official 10k test split, default) or "train" (gankit's 10k
    training subset). Needs more images than the classifier has features (see
    `min_samples_for_fd`); raises `UsageError` otherwise.
    """
    from gankit import __version__

    images = M.as_uint8_images(images_u8)
    n = len(images)
    labels = None if intended_labels is None else M.check_labels(intended_labels, n, "intended labels")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    if reference not in SPLITS:
        raise UsageError(f"unknown reference split {reference!r}; choose one of: {', '.join(SPLITS)}")
    clf = load_classifier()
    M.require_fd_samples(n, clf.feature_dim)
    ref = load_reference(reference, classifier_sha256=clf.sha256)

    logits, feats = clf.run(images)
    probs = M.softmax(logits)
    predicted = probs.argmax(axis=1)
    rng = np.random.default_rng(int(seed))
    metrics: dict[str, Metric] = {}

    acc_ref = {d: float(a) for d, a in enumerate(ref.real["per_digit_accuracy"])}
    if labels is not None:
        acc, mean_acc = M.per_digit_accuracy(predicted, labels)
        acc_note = None
        metrics["digit_accuracy"] = Metric(
            mean_acc, float(np.mean([acc_ref[d] for d in acc])), "higher",
            "mean over digits of the share of images the classifier reads as the digit asked for "
            "(an image read as no digit is wrong)",
        )
    else:
        acc = None
        acc_note = (
            "not measured: no intended labels were given (an unconditional model cannot be "
            "asked for a digit), so there is no right answer to score; digit coverage below "
            "shows which digits it draws instead"
        )

    fd_n, fd_ref = ref.fd_reference_for(n)
    fd = M.frechet_distance(*M.gaussian_stats(feats), ref.mu, ref.sigma)
    metrics["frechet_distance"] = Metric(
        fd, fd_ref, "lower",
        f"Fréchet distance of classifier features to the real {reference} split; the reference "
        f"is {fd_n} real images of the other split (FD grows as the sample shrinks)",
    )

    kid, kid_std, kid_m = M.kernel_inception_distance(feats, ref.kid_features, rng=rng)
    metrics["kid"] = Metric(
        kid, ref.cross["kid"], "lower",
        f"unbiased squared MMD (cubic kernel) to the real {reference} split; ~0 for real digits",
        std=kid_std,
    )

    cs_splits = M.classifier_score_splits(n)
    cs, cs_std = M.classifier_score(probs, splits=cs_splits, rng=rng)
    metrics["classifier_score"] = Metric(
        cs, ref.real["classifier_score"], "higher",
        "exp(E KL(p(y|x) || p(y))) over the 10 digits and 'no digit': 1 = all images read alike, "
        "higher = confident and spread over the digits",
        std=cs_std,
    )

    label_share = np.asarray(ref.real["label_share"], np.float64)
    expected = label_share if labels is None else np.bincount(labels, minlength=NUM_DIGITS)
    cov = M.digit_coverage(predicted, expected)
    metrics["digit_entropy_bits"] = Metric(
        cov.entropy_bits,
        ref.real["digit_entropy_bits"] if labels is None else cov.expected_entropy_bits,
        "near reference",
        f"entropy of the predicted digits, max {MAX_ENTROPY_BITS:.2f} bits; the reference is "
        + ("real MNIST's" if labels is None else "that of the intended digits"),
    )

    metrics["not_a_digit_share"] = Metric(
        cov.not_a_digit / n, ref.real["not_a_digit_share"], "lower",
        "share of the images the classifier reads as no digit at all (noise, blank, half-formed)",
    )

    dists = M.per_digit_pairwise_distance(feats, predicted, rng=rng)
    div, div_mean = M.diversity_ratios(dists, ref.per_digit_distance)
    notes: list[str] = []
    if div_mean is None:
        notes.append("within-digit diversity not measured: no digit got 2 or more images")
    else:
        metrics["diversity_ratio"] = Metric(
            div_mean, ref.cross["diversity_ratio"], "near reference",
            "mean pairwise feature distance within each predicted digit, over the same for real "
            "digits; near 0 = the same image repeated",
        )
    if n < RECOMMENDED_SAMPLES:
        notes.append(
            f"only {n} images: the Fréchet distance is biased upward at small sample sizes, "
            + ("the classifier score slightly downward, " if n < CLASSIFIER_SCORE_MIN_SPLIT else "")
            + f"and the per-digit numbers are noisy; {RECOMMENDED_SAMPLES}+ images are recommended"
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
        not_a_digit_count=cov.not_a_digit,
        coverage_alarm=cov.alarm,
        coverage_reasons=cov.reasons,
        per_digit_diversity=div,
        notes=notes,
    )
