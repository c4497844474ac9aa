"""The `hinge` plugin: an unconditional GAN trained with the hinge loss.

Hinge loss (Lim & Ye 2017; used by SAGAN and BigGAN): the discriminator minimises
``mean(relu(margin - D(x))) + mean(relu(margin + D(G(z))))`` and the generator
minimises ``-mean(D(G(z)))``. The discriminator stops being pushed on samples it
already classifies beyond the margin, which tends to keep its scores bounded.

An example third-party plugin: it uses only the public API (`gankit.plugin_api`,
`gankit.training.nets`, `gankit.training.step`). Importing this module is light
(no torch), so `gankit plugins` can list it without the training tier; torch is
imported only when the nets are built or trained.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from gankit.plugin_api import GanPlugin, NetSpec, Nets, StepContext

__version__ = "0.1.0"
__all__ = ["plugin", "build", "hinge_step", "hinge_d_loss", "hinge_g_loss"]

DEFAULT_OPTIONS = {"margin": 1.0}


def validate_options(options: Mapping[str, Any]) -> None:
    """Reject a margin that is not a positive finite number (gankit reports it as a usage error)."""
    margin = options["margin"]
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) \
            or not math.isfinite(margin) or margin <= 0:
        raise ValueError(f"option margin must be a positive number, got {margin!r}")


def build(spec: NetSpec) -> Nets:
    """The built-in MLP or DCGAN pair: the hinge loss changes training, not the nets."""
    from gankit.training.nets import build_nets

    return build_nets(spec)


def hinge_d_loss(scores_real, scores_fake, margin: float = 1.0):
    """Discriminator hinge loss on raw scores (a batch mean)."""
    import torch.nn.functional as F

    return F.relu(margin - scores_real).mean() + F.relu(margin + scores_fake).mean()


def hinge_g_loss(scores_fake):
    """Generator loss: raise D's raw score on fakes (no log, no margin)."""
    return -scores_fake.mean()


def hinge_step(ctx: StepContext, real, labels) -> dict:
    """One step with the hinge losses in place of the run's configured loss.

    Rather than re-implementing the update, it hands gankit's standard step a copy of
    the context whose loss functions are the hinge ones: the standard step already
    does the d_steps loop, the optimizer calls, D-freezing during the G update and
    mixed precision, and keeps doing so as gankit improves it. The run's --loss
    option does not apply, which the plugin declares with ``uses_loss=False``.
    """
    from gankit.training.step import standard_step

    margin = float(ctx.spec.options.get("margin", DEFAULT_OPTIONS["margin"]))
    hinge_ctx = dataclasses.replace(
        ctx,
        d_loss_fn=lambda real_scores, fake_scores: hinge_d_loss(real_scores, fake_scores, margin),
        g_loss_fn=hinge_g_loss,
    )
    return standard_step(hinge_ctx, real, labels)


plugin = GanPlugin(
    name="hinge",
    description="Unconditional GAN trained with the hinge loss (D: relu(m - D(x)) + relu(m + D(G(z))); G: -D(G(z))).",
    build=build,
    label_mode="none",
    batch_layout="shuffled",
    # The contract version this code was written against, as a literal: using
    # gankit.plugin_api.GANKIT_PLUGIN_API here would claim every future version too.
    api_version=1,
    train_step=hinge_step,
    default_options=DEFAULT_OPTIONS,
    validate_options=validate_options,
    supported_archs=("mlp", "dcgan"),
    # hinge_step brings its own loss, so --loss does not apply (gankit warns when given).
    uses_loss=False,
)
