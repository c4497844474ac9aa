"""Rebuild gankit's digit classifier and its real-data reference statistics.

Heavy tier (torch, onnx, onnxscript). Trains `gankit.training.classifier.DigitCNN` on
the 10k MNIST training subset, reports its accuracy on the official 10k test split,
exports ``digit_classifier.onnx`` and writes the evaluation reference files
(`gankit.eval.reference.build_reference`) next to it.

    python bench/train_classifier.py                      # writes bench/out/classifier/
    python bench/train_classifier.py --out gankit/assets  # replaces the shipped files
    python bench/train_classifier.py --reference-only --out gankit/assets
        # keeps the classifier in --out, recomputes only the reference files (seconds)

About 4-6 minutes on 2 CPU cores. The shipped file came from the defaults (seed 0,
24 epochs, 2 threads). Replacing it changes every quality number gankit reports, so
after ``--out gankit/assets`` paste the printed sha256 into
``gankit/eval/classifier.py`` (CLASSIFIER_SHA256) and update the accuracy noted there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gankit.data import load_dataset  # noqa: E402
from gankit.eval.classifier import DigitClassifier  # noqa: E402
from gankit.eval.reference import build_reference  # noqa: E402
from gankit.training.classifier import export_classifier, predict, train_classifier  # noqa: E402

MIN_TEST_ACCURACY = 0.985


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", help="folder of MNIST IDX files")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "classifier")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    parser.add_argument("--reference-only", action="store_true",
                        help="reuse OUT/digit_classifier.onnx; only recompute the reference files")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    train = load_dataset(args.data, "train", allow_download=False, progress=False)
    test = load_dataset(args.data, "test", allow_download=False, progress=False)
    print(f"train: {len(train)} images from {train.source}; test: {len(test)} images")

    if args.reference_only:
        clf = DigitClassifier(args.out / "digit_classifier.onnx", expected_sha256=None)
        return _write_reference(clf, train, test, args)

    start = time.perf_counter()
    model = train_classifier(train.images, train.labels, epochs=args.epochs, seed=args.seed)
    minutes = (time.perf_counter() - start) / 60
    pred = predict(model, test.images)
    test_acc = float(np.mean(pred == test.labels))
    per_digit = [float(np.mean(pred[test.labels == d] == d)) for d in range(10)]
    print(f"trained in {minutes:.1f} min; test accuracy {test_acc:.4f}")
    print("per digit: " + " ".join(f"{d}:{a:.4f}" for d, a in enumerate(per_digit)))
    if test_acc < MIN_TEST_ACCURACY:
        print(f"test accuracy below {MIN_TEST_ACCURACY}; not exporting", file=sys.stderr)
        return 1

    onnx_path = export_classifier(model, args.out / "digit_classifier.onnx", {
        "gankit.classifier.dataset": f"MNIST training subset ({len(train)} images, {train.source})",
        "gankit.classifier.epochs": str(args.epochs),
        "gankit.classifier.seed": str(args.seed),
        "gankit.classifier.test_accuracy": f"{test_acc:.4f}",
        "gankit.classifier.torch": torch.__version__,
    })
    # Sanity: the ONNX file must agree with the torch net it came from.
    clf = DigitClassifier(onnx_path, expected_sha256=None)
    onnx_acc = float(np.mean(clf.predict(test.images) == test.labels))
    if abs(onnx_acc - test_acc) > 1e-3:
        print(f"ONNX accuracy {onnx_acc:.4f} differs from torch {test_acc:.4f}", file=sys.stderr)
        return 1
    return _write_reference(clf, train, test, args)


def _write_reference(clf: DigitClassifier, train, test, args) -> int:
    meta = build_reference(
        clf, {"train": (train.images, train.labels), "test": (test.images, test.labels)}, args.out, seed=args.seed
    )
    onnx_path = args.out / "digit_classifier.onnx"
    summary = {
        "test_accuracy": meta["splits"]["test"]["accuracy"],
        "feature_dim": clf.feature_dim,
        "sha256": clf.sha256,
        "train_vs_test_fd": meta["cross"]["test"]["frechet_distance"],
        "train_vs_test_kid": meta["cross"]["test"]["kid"],
        "classifier_score_test": meta["splits"]["test"]["classifier_score"],
        "onnx_bytes": onnx_path.stat().st_size,
    }
    print(json.dumps(summary, indent=1))
    print(f'\nwrote {args.out}; to ship it set in gankit/eval/classifier.py:\nCLASSIFIER_SHA256 = "{clf.sha256}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
