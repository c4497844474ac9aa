"""Quality numbers for generated MNIST digits, measured with gankit's own digit classifier.

Light tier: numpy and onnxruntime, never torch (onnxruntime loads only when a classifier
is first used). Start with `evaluate_images`; the maths is in `gankit.eval.metrics`, the
shipped classifier in `gankit.eval.classifier`, the real-data yardstick in
`gankit.eval.reference`.
"""

from __future__ import annotations

from gankit.eval.classifier import CLASSIFIER_SHA256, DigitClassifier, load_classifier
from gankit.eval.metrics import (
    Coverage,
    EvalReport,
    Metric,
    Protocol,
    classifier_score,
    digit_coverage,
    evaluate_images,
    frechet_distance,
    frechet_distance_features,
    gaussian_stats,
    kernel_inception_distance,
    min_samples_for_fd,
    per_digit_accuracy,
)
from gankit.eval.reference import load_reference

__all__ = [
    "CLASSIFIER_SHA256",
    "Coverage",
    "DigitClassifier",
    "EvalReport",
    "Metric",
    "Protocol",
    "classifier_score",
    "digit_coverage",
    "evaluate_images",
    "frechet_distance",
    "frechet_distance_features",
    "gaussian_stats",
    "kernel_inception_distance",
    "load_classifier",
    "load_reference",
    "min_samples_for_fd",
    "per_digit_accuracy",
]
