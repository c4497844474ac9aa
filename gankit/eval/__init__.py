"""Quality numbers for generated MNIST digits, measured with gankit's own digit classifier.

Light tier: numpy and onnxruntime, never torch (onnxruntime loads only when a classifier
is first used). Start with `evaluate_images`. Where each part lives:

* `gankit.eval.protocol`: the one latent/label sampling rule and the protocol's fixed numbers;
* `gankit.eval.maths`: the metrics as pure functions;
* `gankit.eval.classifier`: the shipped 11-class classifier (digits and "not a digit");
* `gankit.eval.reference`: loads the shipped real-data yardstick
  (`gankit.eval.reference_build` builds it);
* `gankit.eval.report`: `evaluate_images` and the report it returns;
* `gankit.eval.probes`: images that are hard for a classifier, for its tests.
"""

from __future__ import annotations

import importlib

# Resolved on first use: gankit.runtime needs only `protocol`, and `gankit generate`'s cold
# start should not pay for the classifier, the metrics and the report (about 5% of it).
_PUBLIC = {
    "CLASSIFIER_SHA256": "classifier",
    "DigitClassifier": "classifier",
    "load_classifier": "classifier",
    "Coverage": "maths",
    "classifier_score": "maths",
    "digit_coverage": "maths",
    "frechet_distance": "maths",
    "frechet_distance_features": "maths",
    "gaussian_stats": "maths",
    "kernel_inception_distance": "maths",
    "min_samples_for_fd": "maths",
    "per_digit_accuracy": "maths",
    "NOT_A_DIGIT": "protocol",
    "PROTOCOL_VERSION": "protocol",
    "evaluation_inputs": "protocol",
    "sample_latent": "protocol",
    "load_reference": "reference",
    "EvalReport": "report",
    "Metric": "report",
    "Protocol": "report",
    "evaluate_images": "report",
}

__all__ = [
    "CLASSIFIER_SHA256",
    "Coverage",
    "DigitClassifier",
    "EvalReport",
    "Metric",
    "NOT_A_DIGIT",
    "PROTOCOL_VERSION",
    "Protocol",
    "classifier_score",
    "digit_coverage",
    "evaluate_images",
    "evaluation_inputs",
    "frechet_distance",
    "frechet_distance_features",
    "gaussian_stats",
    "kernel_inception_distance",
    "load_classifier",
    "load_reference",
    "min_samples_for_fd",
    "per_digit_accuracy",
    "sample_latent",
]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gankit.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gankit.eval.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
