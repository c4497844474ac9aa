"""gankit.eval: exact maths on synthetic inputs, the sampling protocol, the module layout,
and real-MNIST behaviour of the report.

Light tier. The real-data tests use ../shared/data/mnist and the shipped classifier
and reference statistics.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gankit.errors import ModelFileError, UsageError
from gankit.eval import (
    CLASSIFIER_SHA256,
    classifier_score,
    digit_coverage,
    evaluate_images,
    frechet_distance,
    frechet_distance_features,
    gaussian_stats,
    kernel_inception_distance,
    load_classifier,
    load_reference,
    min_samples_for_fd,
    per_digit_accuracy,
)
from gankit.eval import maths as M
from gankit.eval import protocol as P
from gankit.eval.reference import ASSETS

from conftest import MNIST  # noqa: E402
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="real MNIST not present")


@pytest.fixture(scope="module")
def real():
    """Real MNIST: the whole test split and a 2000-image slice of the training subset,
    with classifier outputs, computed once for the module."""
    from gankit.data import load_dataset

    clf = load_classifier()
    test = load_dataset(str(MNIST), "test", allow_download=False, progress=False)
    train = load_dataset(str(MNIST), "train", allow_download=False, progress=False)
    out = {"test_images": test.images, "test_labels": test.labels,
           "train_images": train.images[:2000], "train_labels": train.labels[:2000]}
    out["test_logits"], out["test_feats"] = clf.run(test.images)
    out["train_logits"], out["train_feats"] = clf.run(out["train_images"])
    return out


def noise_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


# ------------------------------------------------------------------ maths, exact cases


def test_frechet_distance_closed_forms():
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2.
    fd = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert fd == pytest.approx(9.0 + 1.0, abs=1e-12)
    # Non-commuting covariances: compare with the eigenvalues of S1 S2 taken directly.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-10)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_too_few_samples_for_fd_is_a_usage_error():
    assert min_samples_for_fd(128) == 129
    with pytest.raises(UsageError, match="at least 129 images, got 128"):
        gaussian_stats(np.zeros((128, 128)))
    with pytest.raises(UsageError, match="at least 129 images, got 50"):
        evaluate_images(noise_images(50), None, seed=0)
    with pytest.raises(UsageError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_kid_matches_direct_formula_and_is_unbiased():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(40, 5))

    def k(a, b):
        return (a @ b.T / 5 + 1) ** 3

    m = 40
    direct = (
        sum(k(x, x)[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        + sum(k(y, y)[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )
    # With subset size = sample size every subset is the whole set, in some order.
    kid, std, used = kernel_inception_distance(x, y, subsets=3, subset_size=40, rng=rng)
    assert used == 40 and kid == pytest.approx(direct, rel=1e-10) and std == pytest.approx(0.0, abs=1e-10)
    # Same distribution: the unbiased estimate centres on 0, well inside its spread.
    a, b = rng.normal(size=(3000, 8)), rng.normal(size=(3000, 8))
    kid0, std0, _ = kernel_inception_distance(a, b, subsets=10, subset_size=1000, rng=rng)
    shifted, _, _ = kernel_inception_distance(a, b + 0.3, subsets=10, subset_size=1000, rng=rng)
    assert abs(kid0) < 3 * std0 + 1e-3 and shifted > 20 * abs(kid0)


def test_classifier_score_bounds():
    one_hot = np.eye(10)[np.arange(1000) % 10]
    assert classifier_score(one_hot)[0] == pytest.approx(10.0, rel=1e-12)
    same = np.tile(np.array([[0.7, 0.2, 0.1] + [0.0] * 7]), (500, 1))
    assert classifier_score(same)[0] == pytest.approx(1.0, abs=1e-12)
    # Digit-sorted input: unshuffled splits each see one digit and score 1; shuffling
    # (what evaluate_images does) restores the true score.
    sorted_probs = np.eye(10)[np.sort(np.arange(1000) % 10)]
    assert classifier_score(sorted_probs)[0] == pytest.approx(1.0)
    assert classifier_score(sorted_probs, rng=np.random.default_rng(0))[0] > 9.0
    # Splits hold >= 1000 images where possible, so p(y) is estimated well.
    assert [M.classifier_score_splits(n) for n in (130, 999, 2500, 10000, 60000)] == [1, 1, 2, 10, 10]


def test_per_digit_accuracy_and_coverage_numbers():
    intended = np.array([0, 0, 0, 0, 1, 1, 7, 7])
    predicted = np.array([0, 0, 0, 5, 1, 2, 7, 7])
    acc, mean = per_digit_accuracy(predicted, intended)
    assert acc == {0: 0.75, 1: 0.5, 7: 1.0} and mean == pytest.approx(0.75)
    with pytest.raises(UsageError, match="0..9"):
        per_digit_accuracy(predicted, intended + 5)
    # Read as no digit is wrong, never a free pass.
    acc, mean = per_digit_accuracy(np.array([0, P.NOT_A_DIGIT, P.NOT_A_DIGIT, 1]), np.array([0, 0, 1, 1]))
    assert acc == {0: 0.5, 1: 0.5} and mean == pytest.approx(0.5)
    with pytest.raises(UsageError, match="0..10"):
        per_digit_accuracy(np.array([11, 0]), np.array([0, 0]))

    one_digit = digit_coverage(np.full(1000, 4))
    assert one_digit.entropy_bits == pytest.approx(0.0, abs=1e-12)
    assert one_digit.alarm and "mode collapse" in one_digit.reasons[0]
    assert one_digit.starved_digits == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    even = digit_coverage(np.arange(1000) % 10)
    assert even.entropy_bits == pytest.approx(math.log2(10)) and not even.alarm
    # Losing one digit costs only 0.15 bits, under the entropy threshold; the starved-digit
    # rule is what catches it.
    no_threes = np.arange(1000) % 10
    no_threes = no_threes[no_threes != 3]
    cov = digit_coverage(no_threes)
    assert cov.entropy_bits == pytest.approx(math.log2(9)) and cov.alarm and cov.starved_digits == [3]
    # A model asked only for sevens that draws only sevens is not collapsed.
    assert not digit_coverage(np.full(300, 7), np.eye(10)[7]).alarm


def test_coverage_counts_images_read_as_no_digit_against_the_digits():
    # Asked for 3s and 8s; every 8 is fine, but 80% of the 3s read as no digit. The digits
    # read still look "balanced" between few classes, yet 3 is starved and the share of
    # non-digits trips the alarm.
    predicted = np.array([3] * 20 + [P.NOT_A_DIGIT] * 80 + [8] * 100)
    expected = np.bincount(np.repeat([3, 8], 100), minlength=10)
    cov = digit_coverage(predicted, expected)
    assert cov.counts[3] == 20 and cov.counts[8] == 100 and cov.not_a_digit == 80 and sum(cov.counts) == 120
    assert cov.alarm and cov.starved_digits == [3]
    assert any("80 of 200 images (40.0%) read as no digit" in r for r in cov.reasons)
    # A few non-digits among many good images (as real MNIST has) do not.
    few = np.where(np.arange(1000) % 100 == 0, P.NOT_A_DIGIT, np.arange(1000) % 10)
    cov = digit_coverage(few)
    assert cov.not_a_digit == 10 and not cov.alarm
    # All noise: nothing reads as a digit, and every digit is starved.
    none = digit_coverage(np.full(500, P.NOT_A_DIGIT))
    assert none.counts == [0] * 10 and none.alarm and none.starved_digits == list(range(10))


# ------------------------------------------------------------------ the sampling protocol and the layout


def test_one_sampling_rule():
    z, labels = P.evaluation_inputs(25, z_dim=7, noise="normal", digits=(8, 3), seed=4)
    assert z.dtype == np.float32 and z.shape == (25, 7) and labels.dtype == np.int64
    assert labels.tolist() == [3, 8] * 12 + [3]  # sorted, cycling
    np.testing.assert_array_equal(z, np.random.default_rng(4).standard_normal((25, 7), dtype=np.float32))
    # Drawing in chunks from one Generator is the same stream as one draw (the runtime's
    # generate relies on it), and the same seed gives the same latents.
    rng = np.random.default_rng(4)
    np.testing.assert_array_equal(np.concatenate([P.sample_latent(10, 7, "normal", rng),
                                                  P.sample_latent(15, 7, "normal", rng)]), z)
    u = P.sample_latent(4000, 3, "uniform", 0)
    assert u.dtype == np.float32 and -1 <= u.min() < -0.99 and 0.99 < u.max() <= 1
    with pytest.raises(ValueError, match="noise"):
        P.sample_latent(3, 2, "laplace", 0)
    assert P.cycle_labels(range(10), 12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_training_evaluator_asks_for_the_images_gankit_evaluate_asks_for():
    pytest.importorskip("torch")
    from gankit.config import TrainConfig
    from gankit.training.engine.evaluation import evaluation_inputs

    cfg = TrainConfig.make(z_dim=12, classes=(3, 8), seed=123, noise="uniform")
    z, labels = evaluation_inputs(cfg, "conditional", 300)
    z_cli, labels_cli = P.evaluation_inputs(300, z_dim=12, noise="uniform", digits=(3, 8), seed=P.DEFAULT_SEED)
    np.testing.assert_array_equal(z.numpy(), z_cli)
    np.testing.assert_array_equal(labels, labels_cli)
    # The run's own seed drives training, not which images are scored.
    z_other, _ = evaluation_inputs(TrainConfig.make(z_dim=12, classes=(3, 8), seed=7, noise="uniform"),
                                   "conditional", 300)
    np.testing.assert_array_equal(z_other.numpy(), z_cli)
    assert evaluation_inputs(cfg, "none", 10)[1] is None


def _gankit_imports(module: str) -> set[str]:
    path = Path(__file__).resolve().parent.parent / "gankit" / Path(*module.split(".")[1:]).with_suffix(".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("gankit")}


def test_eval_layout_has_no_import_loop():
    # The maths and the protocol stand alone; the classifier and the reference loader
    # never reach back into the report that uses them; the loader does not need the builder.
    assert _gankit_imports("gankit.eval.protocol") <= {"gankit.contract"}
    assert _gankit_imports("gankit.eval.maths") <= {"gankit.errors", "gankit.eval.protocol"}
    for module in ("gankit.eval.classifier", "gankit.eval.reference"):
        assert not {"gankit.eval.report", "gankit.eval.reference_build"} & _gankit_imports(module), module
    assert "gankit.eval.report" not in _gankit_imports("gankit.eval.reference_build")


# ------------------------------------------------------------------ real MNIST


@needs_mnist
def test_fd_real_test_vs_itself_and_train(real):
    ref = load_reference("test")
    self_fd = frechet_distance(*gaussian_stats(real["test_feats"]), ref.mu, ref.sigma)
    assert self_fd == pytest.approx(0.0, abs=1e-4)
    train_fd = frechet_distance(*gaussian_stats(real["train_feats"]), ref.mu, ref.sigma)
    n_ref, fd_at_2000 = ref.fd_reference_for(2000)
    assert n_ref == 2000 and 0 < train_fd < 3.0
    assert train_fd == pytest.approx(fd_at_2000, rel=0.35)
    # Finite-sample bias: 2000 real images sit further away than 10000 do.
    assert ref.cross["fd_by_n"]["2000"] > ref.cross["frechet_distance"] > 0
    noise = load_classifier().features(noise_images(500))
    noise_fd = frechet_distance(*gaussian_stats(noise), ref.mu, ref.sigma)
    assert noise_fd > 100 * train_fd
    # Random halves of one split are close. The split's first and last 5000 images come
    # from different writer pools (MNIST's documented SD-3 / SD-1 halves, the first
    # cleaner), and the distance sees that shift plainly.
    perm = np.random.default_rng(0).permutation(10000)
    random_halves = frechet_distance_features(real["test_feats"][perm[:5000]], real["test_feats"][perm[5000:]])
    writer_halves = frechet_distance_features(real["test_feats"][:5000], real["test_feats"][5000:])
    assert 0 < random_halves < 2 * ref.cross["fd_by_n"]["5000"]
    assert writer_halves > 4 * random_halves


@needs_mnist
def test_classifier_score_and_entropy_of_real_data(real):
    ref = load_reference("test")
    probs = M.softmax(real["test_logits"])
    cs, cs_std = classifier_score(probs, rng=np.random.default_rng(0))
    assert cs == pytest.approx(ref.real["classifier_score"], rel=0.01)
    # Label smoothing caps the classifier's confidence near 0.95, which puts real MNIST
    # near 7.4 rather than 10; what matters is agreement with the shipped reference.
    assert 6.5 < cs <= 11.0 and cs_std < 0.3
    one_image = M.softmax(real["test_logits"][[7] * 400])
    assert classifier_score(one_image)[0] == pytest.approx(1.0, abs=1e-9)
    cov = digit_coverage(probs.argmax(1), np.asarray(ref.real["label_share"]))
    assert cov.entropy_bits > 3.3 and not cov.alarm
    assert ref.real["accuracy"] >= 0.985 and cov.not_a_digit / 10000 == pytest.approx(ref.real["not_a_digit_share"])
    assert ref.real["not_a_digit_share"] < 0.005


@needs_mnist
def test_reference_assets_are_small_consistent_and_guarded():
    files = [p for p in ASSETS.iterdir() if p.name.startswith("eval_reference")]
    total = sum(p.stat().st_size for p in files) + (ASSETS / "digit_classifier.onnx").stat().st_size
    assert len(files) == 7 and total < 3_000_000
    assert json.loads((ASSETS / "eval_reference.json").read_text())["protocol"]["protocol_version"] == P.PROTOCOL_VERSION
    ref = load_reference("train", classifier_sha256=CLASSIFIER_SHA256)
    assert ref.kid_features.shape == (2000, 128) and ref.sigma.shape == (128, 128)
    # FD is symmetric, so "train vs test" is the same number whichever split is reference
    # (up to round-off in the near-singular directions of the covariances).
    assert ref.cross["frechet_distance"] == pytest.approx(load_reference("test").cross["frechet_distance"], rel=1e-5)
    with pytest.raises(ModelFileError, match="different|not the one"):
        load_reference("test", classifier_sha256="0" * 64)
    with pytest.raises(UsageError, match="unknown reference split"):
        load_reference("validation")


@needs_mnist
def test_evaluate_real_digits_conditional(real):
    images, labels = real["test_images"][:2000], real["test_labels"][:2000]
    report = evaluate_images(images, labels, seed=3)
    m = report.metrics
    assert m["digit_accuracy"].value >= 0.98
    assert m["digit_accuracy"].reference >= 0.985
    assert set(report.per_digit_accuracy) == set(range(10))
    assert 0 < m["frechet_distance"].value < 3 * m["frechet_distance"].reference
    assert report.protocol.fd_reference_n == 2000
    assert abs(m["kid"].value) < 0.05 and abs(m["kid"].reference) < 0.05
    assert m["classifier_score"].value == pytest.approx(m["classifier_score"].reference, rel=0.03)
    assert m["diversity_ratio"].value == pytest.approx(1.0, abs=0.1)
    assert m["digit_entropy_bits"].value == pytest.approx(m["digit_entropy_bits"].reference, abs=0.05)
    assert m["not_a_digit_share"].value < 0.01 and report.not_a_digit_count == round(2000 * m["not_a_digit_share"].value)
    assert not report.coverage_alarm and report.per_digit_accuracy_note is None
    p = report.protocol
    assert (p.n_samples, p.reference_split, p.seed, p.feature_dim, p.conditional) == (2000, "test", 3, 128, True)
    assert p.classifier_sha256 == CLASSIFIER_SHA256 and p.classifier_score_splits == 2
    assert p.protocol_version == P.PROTOCOL_VERSION == 2
    data = json.loads(report.to_json())
    assert data["protocol"]["classifier_sha256"] == CLASSIFIER_SHA256
    assert data["metrics"]["frechet_distance"]["value"] == pytest.approx(m["frechet_distance"].value)
    assert data["per_digit_accuracy"]["0"] == report.per_digit_accuracy[0]
    # Same images, same seed: the same report, to the last digit.
    assert evaluate_images(images, labels, seed=3).to_json() == report.to_json()


@needs_mnist
def test_evaluate_unconditional_collapsed_and_noise(real):
    # A generator stuck on one image: no accuracy (unconditional), collapse everywhere.
    stuck = real["test_images"][[0] * 300]
    report = evaluate_images(stuck, None, seed=0, reference="train")
    assert report.per_digit_accuracy is None and "digit_accuracy" not in report.metrics
    assert "no intended labels" in report.per_digit_accuracy_note
    assert report.protocol.reference_split == "train" and not report.protocol.conditional
    assert report.coverage_alarm and report.value("digit_entropy_bits") == pytest.approx(0.0, abs=1e-12)
    assert report.value("classifier_score") == pytest.approx(1.0, abs=1e-6)
    assert report.value("diversity_ratio") < 0.01
    assert any("only 300 images" in n for n in report.notes)
    json.loads(report.to_json())

    noise = evaluate_images(noise_images(300), None, seed=0)
    good = evaluate_images(real["train_images"][:300], None, seed=0)
    assert noise.value("frechet_distance") > 50 * good.value("frechet_distance")
    assert noise.value("kid") > 50 * max(good.value("kid"), 1e-3)
    assert not good.coverage_alarm
    # Noise reads as no digit, and says so: no digit is drawn, and the alarm goes off.
    assert noise.value("not_a_digit_share") > 0.95 and noise.coverage_alarm
    assert any("read as no digit" in r for r in noise.coverage_reasons)

    # Real digits on a noisy background (what an early generator draws), asked for as
    # what they are: read as those digits, not as 8s.
    from gankit.eval.probes import noisy_background

    digits, labels = real["test_images"][:1000], real["test_labels"][:1000]
    noisy = evaluate_images(noisy_background(digits, level=60, seed=2), labels, seed=0)
    assert noisy.value("digit_accuracy") >= 0.9 and noisy.predicted_counts[8] < 1.5 * np.sum(labels == 8)


def test_evaluate_rejects_bad_arguments():
    imgs = noise_images(200)
    with pytest.raises(UsageError, match="200 digits"):
        evaluate_images(imgs, np.zeros(10, np.int64), seed=0)
    with pytest.raises(UsageError, match="unknown reference split"):
        evaluate_images(imgs, None, seed=0, reference="val")
    with pytest.raises(UsageError, match="uint8"):
        evaluate_images(imgs.astype(np.float32), None, seed=0)
    with pytest.raises(UsageError, match="seed"):
        evaluate_images(imgs, None, seed="x")
