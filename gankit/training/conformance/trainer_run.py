"""The kit's run through the real `Trainer`: logging with a sparse key, a checkpoint, an exact resume.

Heavy tier (torch). The plugin trains a few steps in a temporary run folder exactly as
`gankit train` would run it (the trainer's own run-time checks included), with its step
wrapped only to record what it returned and to add `PROBE_KEY` on odd steps, so every
run also logs a key that is missing from some steps. Then a second trainer resumes
from the step-2 checkpoint; its weights and log rows must equal the first run's.
TensorBoard and the loss-curve chart are skipped (slow to import, and not the plugin's).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gankit.config import NET_FIELDS, TrainConfig
from gankit.errors import GankitError
from gankit.plugin_api import COUNT_SUFFIX
from gankit.training.engine.step import standard_step
from gankit.training.engine.trainer import Callbacks, Trainer
from gankit.training.persist.checkpoint import load_checkpoint
from gankit.training.persist.runlog import without_timing

# A run of STEPS steps logging every LOG_EVERY (so a row averages several steps) and
# committing a checkpoint every CHECKPOINT_EVERY (so the resumed checkpoint holds
# steps not yet logged).
STEPS, LOG_EVERY, CHECKPOINT_EVERY = 4, 3, 2
PROBE_KEY = "kit_probe"
# float32 means against float64 ones
MEAN_TOLERANCE = 1e-5
# Settings of the plugin's train_defaults that the kit's run takes (the rest is the kit's).
TRAINING_KEYS = ("optimizer", "lr_g", "lr_d", "beta1", "beta2", "momentum", "loss", "ls_sigmoid", "noise",
                 "d_steps", "ema")


class TrainerFail(Exception):
    """The trainer run failed a check; the message says how."""


class _KitTrainer(Trainer):
    """The real trainer without TensorBoard and the loss-curve chart."""

    def _open_tensorboard(self):
        return None

    def _write_loss_curve(self, rows) -> None:
        return None


class _Record(Callbacks):
    def __init__(self):
        self.checkpoints: dict[int, Path] = {}

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints[step] = path


def _numbers(out: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v.detach().float().cpu()) if torch.is_tensor(v) else float(v) for k, v in out.items()}


def _data(spec, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 28x28 uint8 'digits', enough of each class for a per-class batch."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(spec.classes, dtype=np.int64), max(2 * batch_size, 8))
    return rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8), labels


def _config(s, training: Mapping[str, Any]) -> TrainConfig:
    net = {k: getattr(s.spec, k) for k in NET_FIELDS}
    chosen = {k: training[k] for k in TRAINING_KEYS if k in training}
    return TrainConfig.make(
        plugin=s.plugin.name, classes=tuple(s.spec.classes), options=dict(s.spec.options), steps=STEPS,
        batch_size=s.batch_size, log_every=LOG_EVERY, checkpoint_every=CHECKPOINT_EVERY, keep_checkpoints=STEPS,
        sample_every=STEPS, seed=s.seed, device="cpu", precision="fp32", data="gankit.testing",
        **net, **chosen).validate()


def _expected_rows(records: list[tuple[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """The log rows the contract's logging rules give for the recorded per-step results."""
    rows: dict[int, dict[str, float]] = {}
    window: list[dict[str, float]] = []
    for step, out in records:
        window.append(out)
        if (step + 1) % LOG_EVERY == 0 or step + 1 == STEPS:
            row: dict[str, float] = {}
            for key in dict.fromkeys(k for w in window for k in w):
                vals = [w[key] for w in window if key in w]
                row[key] = float(np.mean(vals))
                if len(vals) < len(window):
                    row[key + COUNT_SUFFIX] = len(vals)
            rows[step + 1] = row
            window = []
    return rows


def _compare_rows(logged: list[dict[str, Any]], expected: dict[int, dict[str, float]]) -> list[str]:
    problems = []
    by_step = {r["step"]: r for r in logged if "d_loss" in r}
    if sorted(by_step) != sorted(expected):
        return [f"rows were logged at steps {sorted(by_step)}, expected {sorted(expected)}"]
    for step, want in expected.items():
        got = {k: v for k, v in by_step[step].items() if k not in ("step", "steps_per_s", "elapsed_s")}
        if set(got) != set(want):
            problems.append(f"the row at step {step} has keys {sorted(got)}, expected {sorted(want)}")
            continue
        for key, value in want.items():
            if abs(got[key] - value) > MEAN_TOLERANCE * max(1.0, abs(value)):
                problems.append(f"the row at step {step} logs {key}={got[key]:.6g}, expected {value:.6g}")
    return problems


def _differences(a: Trainer, b: Trainer) -> list[str]:
    parts = {"generator": (a.G.state_dict(), b.G.state_dict()),
             "discriminator": (a.D.state_dict(), b.D.state_dict())}
    if a.ema is not None:
        parts["EMA generator"] = (a.ema.shadow, b.ema.shadow)
    return [f"{part}.{k}" for part, (x, y) in parts.items() for k in x if not torch.equal(x[k], y[k])]


def run_through_trainer(s, training: Mapping[str, Any]) -> str:
    """Train, check the log, resume from step 2, compare; return the detail line or raise TrainerFail."""
    step_fn = s.plugin.train_step or standard_step
    records: list[tuple[int, dict[str, float]]] = []

    def probe(ctx, real, labels):
        out = step_fn(ctx, real, labels)
        if isinstance(out, Mapping) and ctx.step % 2 == 1:
            out = {**out, PROBE_KEY: float(ctx.step)}
        if isinstance(out, Mapping):
            try:
                records.append((ctx.step, _numbers(out)))
            except (TypeError, ValueError, RuntimeError):
                pass  # the trainer's own check says what is wrong with it
        return out

    plugin = dataclasses.replace(s.plugin, train_step=probe)
    try:
        cfg = _config(s, training)
    except GankitError as exc:
        raise TrainerFail(f"the kit's run config is refused: {exc}") from None
    images, labels = _data(s.spec, s.batch_size, s.seed)
    py_state, np_state = random.getstate(), np.random.get_state()  # the trainer seeds them
    try:
        with tempfile.TemporaryDirectory(prefix="gankit-check-run-") as tmp:
            seen = _Record()
            first = _KitTrainer(cfg, plugin, images, labels, Path(tmp) / "a", dataset_name="gankit.testing",
                                callbacks=seen, spec=s.spec)
            result = first.run()
            problems = _compare_rows(result.metrics, _expected_rows(records))
            if problems:
                raise TrainerFail("the log is not what the step returned: " + "; ".join(problems[:3]))
            if CHECKPOINT_EVERY not in seen.checkpoints:
                raise TrainerFail(f"no checkpoint was committed at step {CHECKPOINT_EVERY}")
            # The resumed run's folder holds that checkpoint, as a killed run's would.
            kept = Path(tmp) / "b" / "checkpoints" / seen.checkpoints[CHECKPOINT_EVERY].name
            shutil.copytree(seen.checkpoints[CHECKPOINT_EVERY], kept)
            state = load_checkpoint(kept)
            records.clear()
            second = _KitTrainer(cfg, plugin, images, labels, Path(tmp) / "b", dataset_name="gankit.testing",
                                 resume=state, spec=s.spec)
            resumed = second.run()
    except GankitError as exc:  # the trainer's run-time checks of the plugin, among others
        raise TrainerFail(" ".join(str(exc).split())) from None
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    different = _differences(first, second)
    if different:
        raise TrainerFail(f"resumed from its step-{CHECKPOINT_EVERY} checkpoint, the run ended with other weights "
                          f"than the uninterrupted run ({', '.join(different[:3])}); draw all randomness from "
                          "ctx.noise / ctx.torch_generator or torch's seeded RNG, and keep no state outside the nets")
    later = [r for r in without_timing(result.metrics) if r["step"] > CHECKPOINT_EVERY]
    if without_timing(resumed.metrics) != later:
        raise TrainerFail("the resumed run logged other rows than the uninterrupted run after its checkpoint")
    sparse = next((r for r in result.metrics if PROBE_KEY + COUNT_SUFFIX in r), None)
    return (f"{STEPS} steps through the trainer: {len([r for r in result.metrics if 'd_loss' in r])} log rows "
            f"(sparse key {PROBE_KEY!r} logged with its count {sparse[PROBE_KEY + COUNT_SUFFIX] if sparse else '-'}),"
            f" checkpoint at step {CHECKPOINT_EVERY}, resume bit-identical")
