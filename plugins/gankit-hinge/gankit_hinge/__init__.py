"""The `hinge` plugin: an unconditional GAN trained with the hinge loss.

Hinge loss (Lim & Ye 2017; used by SAGAN and BigGAN): the discriminator minimises
``mean(relu(margin - D(x))) + mean(relu(margin + D(G(z))))`` and the generator
minimises ``-mean(D(G(z)))``. The discriminator stops being pushed on samples it
already classifies beyond the margin, which tends to keep its scores bounded.

An example third-party plugin: it uses only the public API (`gankit.plugin_api`,
`gankit.training`). Importing this module is light
(no torch), so `gankit plugins` can list it without the training tier; torch is
imported only when the nets are built or trained.
"""

from __future__ import annotations

import dataclasses

from gankit.plugin_api import GanPlugin, NetSpec, Nets, Option, StepContext

__version__ = "0.1.0"
__all__ = ["plugin", "build", "hinge_step", "hinge_d_loss", "hinge_g_loss", "OPTIONS"]

# Typed options (plugin API 2): gankit refuses `--option margin=-1` or `margin = "wide"`
# in a config file with a usage error naming the option, before anything is built.
OPTIONS = {"margin": Option(float, 1.0, "The hinge margin m: D is pushed on scores inside it.", gt=0)}


def build(spec: NetSpec) -> Nets:
    """The built-in MLP or DCGAN pair: the hinge loss changes training, not the nets."""
    from gankit.training import build_nets

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
    from gankit.training import standard_step

    margin = ctx.spec.options["margin"]  # a float > 0: gankit checked it against OPTIONS
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
    api_version=2,
    train_step=hinge_step,
    options=OPTIONS,
    supported_archs=("mlp", "dcgan"),
    # hinge_step brings its own loss, so --loss does not apply (gankit warns when given).
    uses_loss=False,
)
