"""`gankit evaluate` through real subprocesses, on small models trained and exported with the real CLI.

The numbers the command reports are checked against `evaluate_images` run here on the
very images the command should have generated, so the test pins down the sampling
protocol (latents, labels, seed) as well as the JSON layout.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import SMALL_NETS, run_cli
from gankit.eval.classifier import CLASSIFIER_SHA256
from gankit.eval.protocol import PROTOCOL_VERSION
from gankit.eval.report import evaluate_images
from gankit.runtime import load_generator

STEPS = 30


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "gankit.cli", *map(str, args)]


def _all_ok(commands: list[list[str]], cwd) -> None:
    """Run commands side by side and require success; one torch thread each, as they share the cores."""
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for cmd, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out}\n{err}"


@pytest.fixture(scope="module")
def made(mnist_dir, tmp_path_factory):
    """Unconditional, conditional and per-digit (digits 3 and 7) runs of 30 steps with small nets, exported."""
    root = tmp_path_factory.mktemp("evaluate")
    common = [*SMALL_NETS, "--steps", STEPS, "--data", mnist_dir, "--runs-dir", root, "-q"]
    _all_ok([
        _cli("train", "--plugin", "unconditional", "--name", "unc", *common),
        # --eval-every at the last step leaves a `best` checkpoint to pick with --checkpoint best.
        _cli("train", "--plugin", "conditional", "--name", "cond", "--eval-every", STEPS,
             "--eval-samples", 200, *common),
        _cli("train", "--plugin", "per-digit", "--digits", "3,7", "--name", "pd", *common),
    ], root)
    _all_ok([_cli("export", root / name, "-o", root / f"{name}.onnx") for name in ("unc", "cond", "pd")], root)
    return {"root": root, "unc_run": root / "unc", "cond_run": root / "cond",
            "unc": root / "unc.onnx", "cond": root / "cond.onnx", "pd": root / "pd.onnx"}


def evaluate_json(*args, cwd=None) -> tuple[dict, subprocess.CompletedProcess]:
    proc = run_cli("evaluate", *args, "--json", "-", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc


def metric(report: dict, name: str) -> float:
    return report["metrics"][name]["value"]


def test_conditional_onnx_report_matches_the_metrics_on_the_same_images(made, tmp_path):
    out = tmp_path / "sub" / "report.json"
    proc = run_cli("evaluate", made["cond"], "-n", 1000, "--seed", 5, "--json", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())

    # What the command should have scored: n latents from one seeded stream, labels cycling 0-9.
    gen = load_generator(made["cond"])
    labels = np.resize(np.arange(10), 1000)
    want = evaluate_images(gen.generate(None, n=1000, seed=5), labels, seed=5)
    for name, m in want.metrics.items():
        assert report["metrics"][name]["value"] == m.value, name
        assert report["metrics"][name]["reference"] == m.reference, name
    assert report["per_digit_accuracy"] == {str(d): a for d, a in want.per_digit_accuracy.items()}
    assert report["predicted_counts"] == want.predicted_counts
    assert report["not_a_digit_count"] == want.not_a_digit_count

    p = report["protocol"]
    assert (p["n_samples"], p["seed"], p["reference_split"]) == (1000, 5, "test")
    assert p["classifier_sha256"] == CLASSIFIER_SHA256 and p["conditional"] is True
    acc = report["per_digit_accuracy"]
    assert sorted(acc, key=int) == [str(d) for d in range(10)]
    assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert math.isclose(metric(report, "digit_accuracy"), np.mean(list(acc.values())))
    assert 0.0 <= metric(report, "digit_accuracy") <= 1.0
    assert metric(report, "frechet_distance") > 0
    assert 1.0 <= metric(report, "classifier_score") <= 11.0
    assert 0.0 <= metric(report, "digit_entropy_bits") <= math.log2(10) + 1e-9
    assert sum(report["predicted_counts"]) + report["not_a_digit_count"] == 1000
    assert metric(report, "not_a_digit_share") == report["not_a_digit_count"] / 1000
    assert report["model"]["format"] == "onnx" and report["model"]["training_steps"] == STEPS
    assert report["model"]["digits_evaluated"] == list(range(10))

    # The human-readable side: each metric beside its real-data reference, and the stamp.
    text = proc.stdout
    for words in ("digit accuracy", "Fréchet distance", "KID", "classifier score", "real data", "better",
                  "per-digit accuracy", "read as no digit",
                  f"protocol v{PROTOCOL_VERSION}: 1000 samples, reference test split", CLASSIFIER_SHA256,
                  "seed 5", f"report written to {out}"):
        assert words in text, words
    reference = f"{100 * want.metrics['digit_accuracy'].reference:.2f}%"
    assert reference in text  # the real-data accuracy printed beside the model's


def test_digit_subset_train_reference_and_json_on_stdout(made):
    report, proc = evaluate_json(made["cond"], "-n", 300, "--digits", "3,8", "--reference", "train", "--seed", 2)
    assert sorted(report["per_digit_accuracy"]) == ["3", "8"]
    assert report["model"]["digits_evaluated"] == [3, 8]
    assert report["protocol"]["reference_split"] == "train" and report["protocol"]["n_samples"] == 300
    # The digit entropy's reference is that of the intended digits: half 3s, half 8s = 1 bit.
    assert math.isclose(report["metrics"]["digit_entropy_bits"]["reference"], 1.0)
    assert f"protocol v{PROTOCOL_VERSION}: 300 samples, reference train split" in proc.stderr  # tables go to stderr
    assert any("2000+ images are recommended" in n for n in report["notes"])


def test_unconditional_model_skips_accuracy_and_scores_the_rest(made):
    report, proc = evaluate_json(made["unc"], "-n", 300)
    assert report["per_digit_accuracy"] is None and "digit_accuracy" not in report["metrics"]
    assert "unconditional" in report["per_digit_accuracy_note"]
    assert report["protocol"]["conditional"] is False
    assert metric(report, "frechet_distance") > 0 and report["metrics"]["kid"]["std"] >= 0
    assert sum(report["predicted_counts"]) + report["not_a_digit_count"] == 300
    assert "per-digit accuracy does not apply" in proc.stderr and "is an unconditional model" in proc.stderr


def test_run_folder_scores_like_its_export(made):
    ckpt, _ = evaluate_json(made["cond_run"], "-n", 500, "--seed", 1)
    onnx, _ = evaluate_json(made["cond"], "-n", 500, "--seed", 1)
    best, _ = evaluate_json(made["cond_run"], "-n", 500, "--seed", 1, "--checkpoint", "best")
    assert ckpt["model"]["format"] == "checkpoint"
    assert ckpt["model"]["checkpoint"].endswith(f"step-{STEPS:09d}")
    assert best["model"]["checkpoint"].endswith("best")
    # Same latents and labels; torch and onnxruntime differ by < 1e-4 per pixel, which can
    # flip a rare uint8 rounding, so the numbers agree closely rather than bit for bit.
    for name in ckpt["metrics"]:
        assert math.isclose(metric(ckpt, name), metric(onnx, name), rel_tol=0.01, abs_tol=0.01), name
    assert np.abs(np.subtract(ckpt["predicted_counts"], onnx["predicted_counts"])).sum() <= 10
    # The best checkpoint was saved at the last step too: the same weights, the same numbers.
    assert best["metrics"] == ckpt["metrics"]


def test_best_is_chosen_on_the_images_gankit_evaluate_scores(made):
    # The run evaluated itself at its last step on --eval-samples 200; `gankit evaluate`
    # with the default seed and -n 200 asks the same checkpoint for the same images, so it
    # reports the very numbers `best` was picked by.
    rows = [json.loads(line) for line in (made["cond_run"] / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/digit_accuracy" in r]
    assert evals and evals[-1]["step"] == STEPS
    report, _ = evaluate_json(made["cond_run"], "-n", 200, "--checkpoint", "best")
    for name in ("digit_accuracy", "frechet_distance", "kid", "classifier_score", "not_a_digit_share"):
        assert metric(report, name) == evals[-1][f"eval/{name}"], name
    # best is picked by FD (diversity) made worse by misread digits, not by accuracy alone
    assert evals[-1]["eval/score"] == -metric(report, "frechet_distance") / max(metric(report, "digit_accuracy"), 0.01)


@pytest.mark.parametrize("n", [50, 128])
def test_too_few_samples_is_a_usage_error(made, tmp_path, n):
    out = tmp_path / "r.json"
    proc = run_cli("evaluate", made["cond"], "-n", n, "--json", out)
    assert proc.returncode == 2
    assert f"at least 129 images, got {n}" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one clear line
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "missing_run", "truncated", "text", "corrupt_checkpoint", "no_best"])
def test_missing_or_corrupt_model_exits_1(made, tmp_path, case):
    if case == "missing":
        target, pattern = tmp_path / "nope.onnx", "no such model file"
    elif case == "missing_run":
        target, pattern = tmp_path / "runs" / "nope", "no such model file, run folder or checkpoint"
    elif case == "truncated":
        target, pattern = tmp_path / "t.onnx", "corrupt or truncated"
        raw = made["cond"].read_bytes()
        target.write_bytes(raw[: len(raw) // 2])
    elif case == "text":
        target, pattern = tmp_path / "x.onnx", "not a valid ONNX file|cannot load it"
        target.write_text("not a model\n" * 10)
    elif case == "corrupt_checkpoint":
        target, pattern = tmp_path / "run", "corrupt checkpoint"
        shutil.copytree(made["cond_run"] / "checkpoints" / f"step-{STEPS:09d}", target / "checkpoints" / "step-1")
        tensors = target / "checkpoints" / "step-1" / "tensors.safetensors"
        data = bytearray(tensors.read_bytes())
        data[-100] ^= 0xFF
        tensors.write_bytes(bytes(data))
    else:
        target, pattern = made["unc_run"], "no 'best' checkpoint"
    args = [target, "-n", 200] + (["--checkpoint", "best"] if case == "no_best" else [])
    proc = run_cli("evaluate", *args)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, proc.stderr), proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--reference", "val"], "--reference must be one of test, train"),
    (["--digits", "3,x"], "--digits"),
    (["--checkpoint", "best"], "does not apply to an .onnx file"),
    (["--seed", "-1"], "--seed must be 0 or positive"),
])
def test_bad_options_exit_2(made, args, message):
    proc = run_cli("evaluate", made["cond"], *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_per_digit_model_is_scored_on_its_own_digits(made):
    report, proc = evaluate_json(made["pd"], "-n", 300)
    assert sorted(report["per_digit_accuracy"]) == ["3", "7"]
    assert report["model"]["label_mode"] == "per-class" and report["model"]["digits_evaluated"] == [3, 7]
    # 150 images asked for each of the two digits: the intended mix carries exactly 1 bit.
    assert math.isclose(report["metrics"]["digit_entropy_bits"]["reference"], 1.0)
    assert "one net per digit" in proc.stderr and "150 per digit for digit(s) 3,7" in proc.stderr
    proc = run_cli("evaluate", made["pd"], "--digits", "5", "-n", 200)
    assert proc.returncode == 2 and "cannot draw 5 (it knows 3, 7)" in proc.stderr, proc.stderr


def test_digits_on_an_unconditional_model_exit_2(made):
    proc = run_cli("evaluate", made["unc"], "--digits", "3", "-n", 200)
    assert proc.returncode == 2 and "unconditional model" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_onnx_evaluation_needs_no_torch(made, tmp_path):
    from test_no_torch import ensure_light_venv, imported_modules

    venv = ensure_light_venv()
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "COLUMNS": "200"}
    proc = subprocess.run([str(venv / "bin" / "gankit"), "evaluate", str(made["cond"]), "-n", "300", "--json",
                           str(tmp_path / "r.json")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = imported_modules(proc.stderr)
    assert "onnxruntime" in modules and "gankit.eval.report" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "onnx", "onnxscript")}
    assert json.loads((tmp_path / "r.json").read_text())["protocol"]["n_samples"] == 300
    # A run folder needs the training tier: a clear install hint, not a traceback.
    proc = subprocess.run([str(venv / "bin" / "gankit"), "evaluate", str(made["cond_run"])],
                          capture_output=True, text=True, timeout=300)
    # The hint names this clone (gankit is not on PyPI, so 'gankit[train]' alone would find nothing).
    assert proc.returncode == 1 and "pip install -e" in proc.stderr and "[train]'" in proc.stderr, proc.stderr
