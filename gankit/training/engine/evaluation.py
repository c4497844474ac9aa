"""Quality checks during training (`gankit train --eval-every K`).

Heavy tier (torch for sampling; the scoring itself is `gankit.eval`, onnxruntime). Every
evaluation asks the generator for the images `gankit evaluate RUN -n EVAL_SAMPLES` asks
for: latents and labels from `gankit.eval.protocol.evaluation_inputs` with the protocol's
default seed (a numpy stream of its own, so it never disturbs training randomness), then
`evaluate_images` with that seed. The ``best`` checkpoint is therefore chosen on exactly
the images, and by exactly the numbers, that `gankit evaluate` reports. ``score``
(`selection_score`) picks it and sees diversity: minus the Fréchet distance, divided by
the digit accuracy for models that take a digit (an image read as no digit is wrong).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from gankit.config import TrainConfig
from gankit.plugin_api import GanPlugin


def evaluation_inputs(cfg: TrainConfig, label_mode: str, n: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """The protocol's latent batch for this run, and the digits asked for (None when the model takes no digit)."""
    from gankit.eval.protocol import DEFAULT_SEED
    from gankit.eval.protocol import evaluation_inputs as protocol_inputs

    z, labels = protocol_inputs(n, z_dim=cfg.z_dim, noise=cfg.noise, digits=cfg.classes, seed=DEFAULT_SEED)
    return torch.from_numpy(z), None if label_mode == "none" else labels


@torch.no_grad()
def sample_uint8(generator: torch.nn.Module, z: torch.Tensor, labels: np.ndarray | None,
                 value_range: tuple[float, float], image_size: int, batch: int = 1000) -> np.ndarray:
    """Generate uint8 [N, 28, 28] images in chunks (resized from 32x32 where the nets work there)."""
    from gankit.images import to_uint8

    device = next(generator.parameters()).device
    lab = torch.as_tensor(labels if labels is not None else np.zeros(len(z), np.int64), dtype=torch.long)
    out = []
    for i in range(0, len(z), batch):
        images = generator(z[i:i + batch].to(device), lab[i:i + batch].to(device)).float()
        if image_size != 28:
            images = torch.nn.functional.interpolate(images, size=(28, 28), mode="area")
        out.append(images.cpu().numpy())
    return to_uint8(np.concatenate(out), value_range)


def selection_score(values: dict[str, float]) -> float:
    """The number ``best`` maximises: minus the Fréchet distance, divided by the digit accuracy when there is one.

    FD sees diversity: a generator that repeats a few good images scores badly, which
    accuracy alone does not see (late in a run these GANs trade diversity for accuracy).
    Dividing by the accuracy keeps a model that draws the wrong digits from winning on a
    well-spread pool of images: with every image read as the digit asked for, the score is
    minus the FD; with 90% read right, the FD counts 1/0.9 as much.
    """
    fd = values["frechet_distance"]
    if "digit_accuracy" in values:
        return -fd / max(values["digit_accuracy"], 0.01)
    return -fd


def make_training_evaluator(cfg: TrainConfig, plugin: GanPlugin) -> Callable[[torch.nn.Module, int], dict[str, Any]]:
    """A function (generator, step) -> flat dict of metric values plus ``score``."""
    from gankit.eval.protocol import DEFAULT_SEED
    from gankit.eval.report import evaluate_images
    from gankit.training.engine.spec import spec_from_config

    spec = spec_from_config(cfg, plugin)
    z, labels = evaluation_inputs(cfg, plugin.label_mode, cfg.eval_samples)

    def evaluate(generator: torch.nn.Module, step: int) -> dict[str, Any]:
        images = sample_uint8(generator, z, labels, spec.value_range, cfg.image_size)
        report = evaluate_images(images, labels, seed=DEFAULT_SEED)
        values = {name: float(m.value) for name, m in report.metrics.items()}
        values["score"] = selection_score(values)
        return values

    return evaluate
