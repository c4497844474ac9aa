"""What export starts from: a run's generator rebuilt from its checkpoint (EMA weights when kept), with what the ONNX metadata needs.

Heavy tier (torch). Used by `gankit export` and by `gankit evaluate` on a checkpoint.
Export uses the EMA weights when the run kept an EMA (``--ema`` > 0), else the raw
generator's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gankit.config import TrainConfig
from gankit.errors import ModelFileError
from gankit.plugin_api import Nets
from gankit.registry import load_plugin
from gankit.training.engine.spec import build_checked, spec_from_config
from gankit.training.persist.checkpoint import find_checkpoint, load_checkpoint, same_tensors


@dataclass
class ExportSource:
    """A trained generator ready for export, with what the ONNX metadata needs."""

    generator: torch.nn.Module
    export_module: Any
    spec: Any
    plugin: str
    label_mode: str
    noise: str
    steps: int
    dataset: str
    config: TrainConfig


def _load_latest(path: Path):
    """The checkpoint at ``path``; a run folder's newest one, read again if a live run prunes it meanwhile."""
    for attempt in range(3):
        chosen = find_checkpoint(path)
        try:
            return load_checkpoint(chosen)
        except ModelFileError:
            if attempt == 2 or chosen.exists() or chosen == Path(path):
                raise


def load_export_source(path: Path) -> ExportSource:
    """Rebuild a run's generator (EMA weights when the run kept them) in eval mode on the CPU.

    The stored config has passed `TrainConfig.validate` (in `load_checkpoint`); the nets
    are then built through `build_checked`, which first builds them on torch's meta
    device and compares them with the checkpoint's generator tensors (names, shapes and
    dtypes), so a config that lies about the widths, or tensors of another dtype, are
    one ModelFileError before any memory is spent, as `--resume` refuses them.
    """
    state = _load_latest(path)
    cfg = state.config
    plugin = load_plugin(cfg.plugin)
    spec = spec_from_config(cfg, plugin)
    weights = state.ema if state.ema else state.generator

    def fits(dry: Nets) -> None:
        try:
            same_tensors(weights, dry.generator.state_dict(), "generator")
        except ValueError as exc:
            raise ModelFileError(f"{path}: checkpoint does not fit the nets plugin {cfg.plugin!r} builds: {exc}") from None

    nets = build_checked(plugin, spec, error=ModelFileError, fits=fits)
    fits(nets)  # again on the real nets: a plugin that cannot build on the meta device is checked here
    try:
        nets.generator.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit the nets plugin {cfg.plugin!r} builds ({exc})") from None
    nets.generator.eval()
    return ExportSource(
        generator=nets.generator,
        export_module=plugin.export_module,
        spec=spec,
        plugin=cfg.plugin,
        label_mode=plugin.label_mode,
        noise=cfg.noise,
        steps=state.step,
        dataset=state.extra.get("dataset", cfg.data),
        config=cfg,
    )
