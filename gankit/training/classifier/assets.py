"""Build gankit's shipped evaluation assets: the digit classifier and its real-data references.

Heavy tier (torch, onnx, onnxscript). One command rebuilds everything `gankit evaluate`
reads from gankit/assets::

    python -m gankit.training.classifier.assets --data PATH_TO_MNIST                 # into gankit/assets
    python -m gankit.training.classifier.assets --data PATH --out /tmp/try           # somewhere else first
    python -m gankit.training.classifier.assets --data PATH --reference-only         # keep the classifier,
                                                                          # recompute the references

It trains `gankit.training.classifier.model.DigitCNN` on the 10k MNIST training subset,
measures it on the official 10k test split and on the probes of `gankit.eval.probes`
(noisy backgrounds, pure noise, blank, heavy blur), exports ``digit_classifier.onnx``
with those numbers in its metadata, and writes the reference files
(`gankit.eval.reference_build`). A replaced classifier changes every quality number,
so the command prints the sha256 to paste into `gankit.eval.classifier.CLASSIFIER_SHA256`,
and `gankit.eval.protocol.PROTOCOL_VERSION` must be bumped with it.

Deterministic for a seed, a torch build and a thread count (``--threads``, default 1:
on a shared 2-core machine one thread ran a step about 2.5x faster than two).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gankit.eval.reference import ASSETS

MIN_TEST_ACCURACY = 0.985
EPOCHS = 7
POLISH_EPOCHS = 3


def measure(predict, test_images: np.ndarray, test_labels: np.ndarray) -> dict:
    """What a classifier (``predict``: uint8 [N,28,28] -> classes [N]) makes of real test
    digits and of the probes. Shares are of images; "as digit" means any of 0-9."""
    from gankit.eval import probes
    from gankit.eval.protocol import NOT_A_DIGIT

    pred = predict(test_images)
    threes = test_images[test_labels == 3][:500]
    noisy3 = predict(probes.noisy_background(threes, level=60, seed=1))

    def as_digit(images: np.ndarray) -> float:
        return float(np.mean(predict(images) != NOT_A_DIGIT))

    return {
        "test_accuracy": float(np.mean(pred == test_labels)),
        "test_per_digit_accuracy": [float(np.mean(pred[test_labels == d] == d)) for d in range(10)],
        "test_read_as_no_digit": float(np.mean(pred == NOT_A_DIGIT)),
        "noisy_threes": {"n": int(len(threes)), "read_as_3": int(np.sum(noisy3 == 3)),
                         "read_as_8": int(np.sum(noisy3 == 8)), "read_as_no_digit": int(np.sum(noisy3 == NOT_A_DIGIT))},
        "pure_noise_read_as_digit": as_digit(probes.pure_noise(3000, seed=1)),
        "blank_read_as_digit": as_digit(probes.blank(1000, seed=1)),
        "heavy_blur_read_as_digit": as_digit(probes.heavy_blur(test_images[:2000], sigma=3.5)),
    }


def export(model, out: Path, numbers: dict, *, epochs: int, polish_epochs: int, seed: int, threads: int,
           n_train: int, source: str) -> Path:
    """Write ``model`` to OUT/digit_classifier.onnx (via a temp file, so a failed export
    leaves the old one whole), with how it was made and measured in its metadata."""
    from gankit.training.classifier.model import export_classifier

    out.mkdir(parents=True, exist_ok=True)
    target = out / "digit_classifier.onnx"
    temp = out / f".digit_classifier.{os.getpid()}.tmp.onnx"
    meta = {
        "gankit.classifier.dataset": f"MNIST training subset ({n_train} images, {source})",
        "gankit.classifier.classes": "0-9 and 10 = not a digit",
        "gankit.classifier.epochs": str(epochs),
        "gankit.classifier.polish_epochs": str(polish_epochs),
        "gankit.classifier.seed": str(seed),
        "gankit.classifier.threads": str(threads),
        "gankit.classifier.torch": torch.__version__,
        "gankit.classifier.test_accuracy": f"{numbers['test_accuracy']:.4f}",
        "gankit.classifier.probes": json.dumps({k: v for k, v in numbers.items() if k != "test_per_digit_accuracy"}),
    }
    try:
        export_classifier(model, temp, meta)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def build_references(onnx_path: Path, train, test, out: Path, seed: int) -> dict:
    """Reference files for the classifier at ``onnx_path``, into ``out``; a summary."""
    from gankit.eval.classifier import DigitClassifier
    from gankit.eval.reference_build import build_reference

    clf = DigitClassifier(onnx_path, expected_sha256=None)
    meta = build_reference(clf, {"train": (train.images, train.labels), "test": (test.images, test.labels)},
                           out, seed=seed)
    return {
        "sha256": clf.sha256,
        "feature_dim": clf.feature_dim,
        "onnx_bytes": onnx_path.stat().st_size,
        "test_accuracy": meta["splits"]["test"]["accuracy"],
        "test_not_a_digit_share": meta["splits"]["test"]["not_a_digit_share"],
        "classifier_score_test": meta["splits"]["test"]["classifier_score"],
        "train_vs_test_fd": meta["cross"]["test"]["frechet_distance"],
        "fd_by_n_test": meta["cross"]["test"]["fd_by_n"],
        "train_vs_test_kid": meta["cross"]["test"]["kid"],
        "diversity_ratio_test": meta["cross"]["test"]["diversity_ratio"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gankit.training.classifier.assets", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", help="folder of MNIST IDX files (or a dataset name)")
    parser.add_argument("--out", type=Path, default=ASSETS, help="where to write (default: gankit/assets)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--polish-epochs", type=int, default=POLISH_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the weights depend on it)")
    parser.add_argument("--reference-only", action="store_true",
                        help="keep OUT/digit_classifier.onnx; measure it and recompute only the references")
    args = parser.parse_args(argv)

    from gankit.data import load_dataset
    from gankit.eval.classifier import DigitClassifier
    from gankit.training.classifier.model import predict, train_classifier

    torch.set_num_threads(args.threads)
    train = load_dataset(args.data, "train", allow_download=False, progress=False)
    test = load_dataset(args.data, "test", allow_download=False, progress=False)
    print(f"train: {len(train)} images from {train.source}; test: {len(test)} images", flush=True)
    onnx_path = args.out / "digit_classifier.onnx"

    if not args.reference_only:
        start = time.perf_counter()
        model = train_classifier(train.images, train.labels, epochs=args.epochs, polish_epochs=args.polish_epochs,
                                 seed=args.seed, log=lambda line: print(line, flush=True))
        print(f"trained in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
        numbers = measure(lambda x: predict(model, x), test.images, test.labels)
        if numbers["test_accuracy"] < MIN_TEST_ACCURACY:
            print(f"test accuracy {numbers['test_accuracy']:.4f} is below {MIN_TEST_ACCURACY}; not exporting",
                  file=sys.stderr)
            return 1
        export(model, args.out, numbers, epochs=args.epochs, polish_epochs=args.polish_epochs, seed=args.seed,
               threads=args.threads,
               n_train=len(train), source=str(train.source))

    clf = DigitClassifier(onnx_path, expected_sha256=None)
    numbers = measure(clf.predict, test.images, test.labels)
    summary = {"classifier": numbers, "reference": build_references(onnx_path, train, test, args.out, args.seed)}
    print(json.dumps(summary, indent=1))
    print(f"\nwrote {args.out}; to ship it set in gankit/eval/classifier.py:\n"
          f'CLASSIFIER_SHA256 = "{summary["reference"]["sha256"]}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
