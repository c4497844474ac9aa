"""`gankit evaluate MODEL`: score a generator's digits against real MNIST with gankit's own classifier.

Light tier for an exported ``.onnx`` model (onnxruntime, numpy, rich; never torch). A run
folder or checkpoint directory needs the training tier to rebuild the generator, and the
command says how to install it when torch is missing.

Both kinds of input are sampled by `gankit.eval.protocol.evaluation_inputs`, the rule the
runtime and the training-time evaluator share: ``--samples`` latent vectors from one
numpy stream seeded by ``--seed``, with digit labels cycling through the model's classes
(or ``--digits``), so every digit gets an equal share (within one image). A checkpoint
and its ONNX export therefore see the very same latents and labels and score the same
up to uint8 rounding of the export's tiny float differences; with the default seed and
``-n`` equal to the run's ``--eval-samples``, these are the images ``--eval-every``
chose the ``best`` checkpoint on. The numbers come from `gankit.eval.report.evaluate_images`;
each is shown beside the value real MNIST gets under the same protocol, and the protocol
stamp (sample count, reference split, classifier sha256, seed) says what they compare with.
``--json PATH`` writes the full report (``-`` prints it to stdout, and the tables go to
stderr so that stdout stays parseable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import numpy as np
import typer

from gankit.errors import ModelFileError, UsageError
from gankit.eval.protocol import DEFAULT_SEED, evaluation_inputs

CHECKPOINT_CHOICES = ("latest", "best")
# The same cap as one `generate` call: more is almost surely a typo, and 10^6 images
# already take minutes to score.
MAX_SAMPLES = 1_000_000

# How each metric of the report is shown; a metric missing here is shown under its key.
METRIC_NAMES = {
    "digit_accuracy": "digit accuracy",
    "frechet_distance": "Fréchet distance",
    "kid": "KID",
    "classifier_score": "classifier score",
    "digit_entropy_bits": "digit entropy (bits)",
    "diversity_ratio": "within-digit diversity",
    "not_a_digit_share": "read as no digit",
}
PERCENT_METRICS = ("digit_accuracy", "not_a_digit_share")


@dataclass
class _Model:
    """A generator to score, whichever file it came from."""

    path: Path
    kind: str  # "onnx" | "checkpoint"
    plugin: str
    label_mode: str  # "none" | "per-class" | "conditional"
    classes: tuple[int, ...]
    z_dim: int
    noise: str  # "normal" | "uniform"
    steps: int
    images: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (z float32 [N,Z], labels int64 [N]) -> uint8 [N,28,28]
    checkpoint: Path | None = None


def _open_onnx(path: Path) -> _Model:
    from gankit.images import to_uint8
    from gankit.runtime import load_generator

    gen = load_generator(path)
    card = gen.card

    def images(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = gen.generate_float(z, labels)
        if not np.all(np.isfinite(out)):
            raise ModelFileError(f"{path}: the model produced non-finite pixels")
        return to_uint8(out, card.value_range)

    return _Model(path=path, kind="onnx", plugin=card.plugin, label_mode=card.label_mode,
                  classes=tuple(sorted(card.classes)), z_dim=card.z_dim, noise=card.noise,
                  steps=card.training_steps, images=images)


def _checkpoint_dir(path: Path, which: str) -> Path:
    """The checkpoint to score: the latest step, or the run's ``best`` (kept by --eval-every)."""
    from gankit.training.persist.checkpoint import MANIFEST, find_checkpoint

    if which == "latest":
        return find_checkpoint(path)
    if (path / MANIFEST).is_file():
        if path.name == "best":
            return path
        raise UsageError(f"{path} is one checkpoint already; --checkpoint best takes a run folder")
    for folder in (path / "checkpoints", path):
        if (folder / "best" / MANIFEST).is_file():
            return folder / "best"
    raise ModelFileError(f"{path}: no 'best' checkpoint here; a run keeps one only when trained with "
                         "--eval-every K (score its latest checkpoint with --checkpoint latest)")


def _open_checkpoint(path: Path, which: str) -> _Model:
    from gankit.errors import require_torch

    require_torch("evaluate")  # only for run folders and checkpoints; .onnx models need no torch
    import torch

    from gankit.training.export.source import load_export_source
    from gankit.training.engine.evaluation import sample_uint8

    ckpt = _checkpoint_dir(path, which)
    src = load_export_source(ckpt)
    cfg = src.config

    def images(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        lab = None if src.label_mode == "none" else labels
        return sample_uint8(src.generator, torch.from_numpy(z), lab, src.spec.value_range, cfg.image_size)

    return _Model(path=path, kind="checkpoint", plugin=src.plugin, label_mode=src.label_mode,
                  classes=tuple(sorted(cfg.classes)), z_dim=cfg.z_dim, noise=src.noise, steps=src.steps,
                  images=images, checkpoint=ckpt)


def _open(path: Path, which: str) -> _Model:
    if path.is_dir():
        return _open_checkpoint(path, which)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file, run folder or checkpoint")
    if which != "latest":
        raise UsageError("--checkpoint picks a checkpoint of a run folder; it does not apply to an .onnx file")
    return _open_onnx(path)


def _intended(model: _Model, digits: tuple[int, ...] | None, n: int) -> np.ndarray | None:
    """The digit each image is generated as (cycling, so each digit gets n/k), or None if unconditional."""
    if model.label_mode == "none":
        if digits:
            raise UsageError(f"{model.path.name} is an unconditional model: it cannot be asked for particular "
                             "digits, so --digits does not apply (leave it out to score all its images)")
        return None
    if digits:
        missing = [d for d in digits if d not in model.classes]
        if missing:
            known = ", ".join(map(str, model.classes))
            raise UsageError(f"--digits {','.join(map(str, digits))}: {model.path.name} cannot draw "
                             f"{', '.join(map(str, missing))} (it knows {known})")
    from gankit.eval.protocol import cycle_labels

    return cycle_labels(sorted(digits or model.classes), n)


# --------------------------------------------------------------------------- display


def _num(value: float) -> str:
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.3f}"
    if a >= 1e-3 or value == 0:
        return f"{value:.4f}"
    return f"{value:.2e}"


def _digit_list(digits: list[int]) -> str:
    if len(digits) > 2 and digits == list(range(digits[0], digits[-1] + 1)):
        return f"{digits[0]}-{digits[-1]}"
    return ",".join(map(str, digits))


def _show(name: str, value: float) -> str:
    return f"{100 * value:.2f}%" if name in PERCENT_METRICS else _num(value)


def _print_report(console, model: _Model, report, intended: np.ndarray | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    p = report.protocol
    source = escape(str(model.checkpoint or model.path))
    labels = {"none": "no labels", "per-class": "one net per digit", "conditional": "labelled"}
    spread = ""
    if intended is not None:
        digits = sorted(set(intended.tolist()))
        spread = f", ~{p.n_samples // len(digits)} per digit for digit(s) {_digit_list(digits)}"
    console.print(f"[bold]gankit evaluate[/] {source}: plugin {escape(model.plugin)} "
                  f"({labels.get(model.label_mode, escape(model.label_mode))}), {model.steps} training steps; "
                  f"{p.n_samples} images{spread}; seed {p.seed}")

    table = Table(title=f"quality against real MNIST ({p.reference_split} split)", title_justify="left")
    table.add_column("metric", style="cyan", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("real data", justify="right")
    table.add_column("better", style="dim")
    for key, m in report.metrics.items():
        value = _show(key, m.value)
        if m.std is not None:
            value += f" ± {_show(key, m.std)}"
        table.add_row(METRIC_NAMES.get(key, key), value, _show(key, m.reference), m.better)
    console.print(table)

    counts = report.predicted_counts
    if report.per_digit_accuracy is not None:
        acc, ref = report.per_digit_accuracy, report.per_digit_accuracy_reference
        per = Table(title="per-digit accuracy: share of the images asked for digit d that read as d",
                    title_justify="left")
        per.add_column("digit", style="cyan", justify="right")
        per.add_column("accuracy", justify="right")
        per.add_column("real data", justify="right", style="dim")
        per.add_column("images read as d", justify="right")
        for d in sorted(acc):
            per.add_row(str(d), f"{100 * acc[d]:.1f}%", f"{100 * ref[d]:.1f}%", str(counts[d]))
        console.print(per)
    else:
        console.print(
            f"[yellow]per-digit accuracy does not apply:[/] {escape(model.path.name)} is an unconditional "
            "model. It cannot be asked for a digit, so no image has an intended digit to check the "
            "classifier's reading against. The other metrics still apply; the digit entropy and the "
            "counts below show which digits it draws.")
        console.print("images read as each digit: " + "  ".join(f"{d}: {c}" for d, c in enumerate(counts))
                      + f"  no digit: {report.not_a_digit_count}")
    if report.coverage_alarm:
        console.print("[bold red]coverage alarm[/] (possible mode collapse):")
        for reason in report.coverage_reasons:
            console.print(f"  - {escape(reason)}")
    else:
        console.print("coverage: [green]ok[/] (no digit starved, entropy near what it should be)")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"[dim]protocol v{p.protocol_version}: {p.n_samples} samples, reference {p.reference_split} "
                  f"split, classifier sha256 {p.classifier_sha256}, seed {p.seed}, gankit {p.gankit_version}[/]")


# --------------------------------------------------------------------------- the command


def evaluate(
    model: Annotated[Path, typer.Argument(
        help="An exported .onnx model (no PyTorch needed), or a run folder / checkpoint directory "
             "(needs the training tier).", show_default=False)],
    samples: Annotated[int, typer.Option(
        "--samples", "-n", help="Images to generate and score (spread evenly over the digits of a "
                                "labelled model); at least 129 for the Fréchet distance.")] = 10000,
    seed: Annotated[int, typer.Option(help="Seed for the latents and the metrics' random subsets.")] = DEFAULT_SEED,
    reference: Annotated[str, typer.Option(
        help="Real split to compare with: test (the official 10k test split) or train (gankit's 10k "
             "training subset).")] = "test",
    digits: Annotated[Optional[str], typer.Option(
        help="Score only these digits of a labelled model, e.g. 3,8.")] = None,
    checkpoint: Annotated[str, typer.Option(
        help="For a run folder: its latest checkpoint, or the best one kept by --eval-every.")] = "latest",
    json_out: Annotated[Optional[str], typer.Option(
        "--json", help="Write the full report as JSON to this file ('-' prints it to stdout).")] = None,
) -> None:
    """Score a generator's digits with gankit's digit classifier, beside what real MNIST gets."""
    from gankit.config import parse_digits
    from gankit.eval.reference import SPLITS

    if reference not in SPLITS:
        raise UsageError(f"--reference must be one of {', '.join(SPLITS)}, got {reference!r}")
    if checkpoint not in CHECKPOINT_CHOICES:
        raise UsageError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {checkpoint!r}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise UsageError(f"--samples must be between 1 and {MAX_SAMPLES:,}, got {samples}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or positive, got {seed}")
    wanted = parse_digits(digits) if digits is not None else None
    if json_out == "":
        raise UsageError("--json needs a file name, or '-' for stdout")

    from rich.console import Console

    from gankit.eval.classifier import load_classifier
    from gankit.eval.maths import require_fd_samples
    from gankit.eval.report import evaluate_images

    # Before any model is loaded or image generated: a too-small sample is a usage error.
    require_fd_samples(samples, load_classifier().feature_dim)

    to_stdout = json_out == "-"
    console = Console(stderr=to_stdout, highlight=False)
    with console.status(f"loading {model} ..."):
        m = _open(model, checkpoint)
    intended = _intended(m, wanted, samples)
    z, labels = evaluation_inputs(samples, z_dim=m.z_dim, noise=m.noise, digits=wanted or m.classes, seed=seed)
    with console.status(f"generating and scoring {samples} images ..."):
        images = m.images(z, labels)
        report = evaluate_images(images, intended, seed=seed, reference=reference)

    _print_report(console, m, report, intended)
    if json_out is not None:
        payload: dict[str, Any] = report.to_dict()
        payload["model"] = {
            "path": str(m.path),
            "format": m.kind,
            "checkpoint": str(m.checkpoint) if m.checkpoint else None,
            "plugin": m.plugin,
            "label_mode": m.label_mode,
            "classes": list(m.classes),
            "training_steps": m.steps,
            "digits_evaluated": sorted(set(intended.tolist())) if intended is not None else None,
        }
        text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
        if to_stdout:
            typer.echo(text, nl=False)
        else:
            from gankit.atomic import atomic_write

            with atomic_write(Path(json_out), "report") as f:
                f.write(text.encode())
            from rich.markup import escape

            console.print(f"report written to {escape(json_out)}")


def register(app: typer.Typer) -> None:
    """Add `gankit evaluate` to the root app."""
    app.command("evaluate")(evaluate)
