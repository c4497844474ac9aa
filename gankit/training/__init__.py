"""The heavy tier: everything that needs torch (nets, losses, steps, trainer, checkpoints, export).

Rooms (sub-packages, each with its idea and import rules in its docstring; see
docs/architecture.md): `engine`, `nets`, `persist`, `export`, `distributed`,
`conformance`, `classifier`.

Nothing outside this package imports torch at module level. `__all__` is what plugins
may use; everything else here (the trainer, checkpoints, export, plots) is gankit's own
machinery and may change between releases. The names are resolved on first use, so
``import gankit.training`` itself stays cheap and loads no torch.

* nets: `build_nets` (the built-in MLP / DCGAN pair for a `NetSpec`), the four net
  classes, `activation` / `ACTIVATIONS` (the one activation table), `init_weights` /
  `init_layer_` (the one weight-init implementation);
* stacked per-class nets (K independent nets in one set of tensors, called as
  ``net(blocks)`` or ``net(x, labels)``): `build_stacked`, `GroupedMLP`,
  `StackedMLPDiscriminator`, `StackedDCGANGenerator`, `StackedDCGANDiscriminator`,
  `by_class`, `copy_class_into`, `class_generators` / `derive_seed` (class-keyed random streams),
  `dropout_masks` / `dropout_shapes` (a stacked discriminator's per-class dropout masks, drawn
  ahead of its forward);
* losses: `get_losses` (a `LossPair` by name), `bce_d`, `bce_g`;
* steps: `standard_step` (the default update, which a plugin's ``train_step`` may call),
  `discriminator_scores`, `AuxiliaryLoss`, `has_batchnorm`;
* contexts: `make_step_context` (a `StepContext` as the trainer builds it), `draw_latent`.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "build_nets": "nets.builtin",
    "MLPGenerator": "nets.builtin",
    "MLPDiscriminator": "nets.builtin",
    "DCGANGenerator": "nets.builtin",
    "DCGANDiscriminator": "nets.builtin",
    "activation": "nets.builtin",
    "init_weights": "nets.builtin",
    "ACTIVATIONS": "nets.builtin",
    "init_layer_": "nets.builtin",
    "build_stacked": "nets.stacked",
    "GroupedMLP": "nets.stacked",
    "StackedMLPDiscriminator": "nets.stacked",
    "StackedDCGANGenerator": "nets.stacked",
    "StackedDCGANDiscriminator": "nets.stacked",
    "by_class": "nets.stacked",
    "copy_class_into": "nets.stacked",
    "class_generators": "nets.stacked",
    "derive_seed": "nets.stacked",
    "dropout_masks": "nets.stacked",
    "dropout_shapes": "nets.stacked",
    "get_losses": "engine.losses",
    "bce_d": "engine.losses",
    "bce_g": "engine.losses",
    "standard_step": "engine.step",
    "discriminator_scores": "engine.step",
    "AuxiliaryLoss": "engine.step",
    "has_batchnorm": "engine.step",
    "make_step_context": "engine.context",
    "draw_latent": "engine.context",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gankit.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gankit.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
