"""The shipped MNIST digit classifier, run with onnxruntime: readings and features.

Light tier (numpy + onnxruntime, loaded on first use). The model file is
``gankit/assets/digit_classifier.onnx``; it is checked against `CLASSIFIER_SHA256`
before use, because every quality number gankit reports is only comparable with another
if both came from the very same classifier.

It reads a 28x28 image as one of 11 classes: the digits 0-9, or `NOT_A_DIGIT` (10) for
noise, blank, blobs and strokes that form no digit. How it is trained, and why the 11th
class, is in `gankit.training.classifier.model`; ``python -m gankit.training.classifier.assets`` rebuilds
it and prints its measured accuracy and rejection rates, which the ONNX file also
records in its metadata (``gankit.classifier.*``).

ONNX graph: input ``image`` float32[N,1,28,28] in [0, 1]; outputs ``logits``
float32[N,11] and ``features`` float32[N,F] (the penultimate layer, after batch norm and
before the ReLU), batch size N dynamic.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from gankit.errors import ModelFileError
from gankit.eval.maths import as_uint8_images, softmax
from gankit.eval.protocol import NOT_A_DIGIT, NUM_CLASSES

__all__ = ["CLASSIFIER_PATH", "CLASSIFIER_SHA256", "DigitClassifier", "NOT_A_DIGIT", "file_sha256", "load_classifier"]

CLASSIFIER_PATH = Path(__file__).resolve().parent.parent / "assets" / "digit_classifier.onnx"
CLASSIFIER_SHA256 = "0a29933cf84bcccf8c3157b31fa5960550e1aad522b6fa945e4d2230115807fc"
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "features")
# Bounds memory (one batch of activations) without costing speed: onnxruntime is
# already at full throughput well below this size.
BATCH_SIZE = 1024


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class DigitClassifier:
    """An onnxruntime session on a verified digit classifier.

    All methods take uint8 images [N,28,28] (or [N,1,28,28]), pixels 0..255 as in MNIST.
    """

    def __init__(self, path: str | Path = CLASSIFIER_PATH, *, expected_sha256: str | None = CLASSIFIER_SHA256):
        import onnxruntime as ort

        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read the digit classifier {self.path}: {exc.strerror or exc}") from None
        # Hash the very bytes handed to onnxruntime, so the file cannot change in between.
        self.sha256 = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise ModelFileError(
                f"the digit classifier {self.path} has sha256 {self.sha256}, but gankit expects "
                f"{expected_sha256}: the file was modified or replaced, and its numbers would not "
                "be comparable with gankit's reference values. Reinstall gankit to restore it."
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelFileError(f"onnxruntime cannot load the digit classifier {self.path}: {exc}") from None
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = {o.name: o for o in self._session.get_outputs()}
        if inputs != [INPUT_NAME] or set(outputs) != set(OUTPUT_NAMES):
            raise ModelFileError(
                f"{self.path} is not a gankit digit classifier: inputs {inputs}, outputs {sorted(outputs)} "
                f"(expected [{INPUT_NAME!r}] and {list(OUTPUT_NAMES)})"
            )
        dim = outputs["features"].shape[-1]
        if not isinstance(dim, int):
            raise ModelFileError(f"{self.path}: the features output has no fixed size ({dim!r})")
        classes = outputs["logits"].shape[-1]
        if classes != NUM_CLASSES:
            raise ModelFileError(f"{self.path}: the logits output has {classes!r} classes; gankit's classifier "
                                 f"reads {NUM_CLASSES} (the digits 0-9 and 'not a digit')")
        self.feature_dim: int = dim

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits float32 [N,11], features float32 [N,feature_dim])."""
        images = as_uint8_images(images)
        logits, feats = [], []
        for start in range(0, len(images), BATCH_SIZE):
            x = images[start:start + BATCH_SIZE, None].astype(np.float32) / np.float32(255.0)
            lg, ft = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
            logits.append(lg)
            feats.append(ft)
        return np.concatenate(logits), np.concatenate(feats)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """p(class | image), float64 [N,11]: the digits 0-9, then `NOT_A_DIGIT`."""
        return softmax(self.run(images)[0])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """What each image reads as, int64 [N]: a digit 0-9, or `NOT_A_DIGIT` (10)."""
        return self.run(images)[0].argmax(axis=1).astype(np.int64)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate-layer features, float32 [N,feature_dim]."""
        return self.run(images)[1]


@functools.lru_cache(maxsize=1)
def _shipped() -> DigitClassifier:
    return DigitClassifier()


def load_classifier(path: str | Path | None = None, *, expected_sha256: str | None = CLASSIFIER_SHA256) -> DigitClassifier:
    """The shipped classifier (cached), or the one at ``path``, verified by sha256.

    Pass ``expected_sha256=None`` only to inspect a newly trained classifier before it
    is shipped; numbers from it do not compare with gankit's reference values.
    """
    if path is None and expected_sha256 == CLASSIFIER_SHA256:
        return _shipped()
    return DigitClassifier(CLASSIFIER_PATH if path is None else path, expected_sha256=expected_sha256)
