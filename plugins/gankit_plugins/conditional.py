"""The `conditional` plugin: one GAN whose generator and discriminator both take the digit label.

Heavy tier when built or trained (torch); importing this module is light (the torch
half is `gankit_plugins._conditional`).

The generator always gets a learned label embedding concatenated to z (the ``cond_dim``
hook of `gankit.training.nets.builtin`). How the discriminator uses the label is the option
``d_cond`` (``--option d_cond=...``):

``projection`` (the default)
    Projection discriminator (Miyato & Koyama 2018): ``D(x, y) = psi(phi(x)) +
    <embed(y), phi(x)>``, where ``phi`` is the net's feature extractor and ``psi`` its
    usual one-unit head. The label enters as an inner product with the features, so D
    judges "is this a realistic image *of this digit*" directly.
``concat``
    The classic cGAN: a label embedding concatenated beside the flattened image (MLP) or
    beside the conv features before the head (DCGAN).
``acgan``
    Auxiliary classifier GAN (Odena et al. 2017): an unconditional real/fake head plus a
    class head on the same features. ``ac_weight`` x cross-entropy is added to D's loss
    (on real images; also on fakes with ``ac_fake=true``, as in the original paper) and
    to G's loss (on its fakes, with the label they were drawn for).

Why projection is the default: bench/compare_conditional.py trains the three for the
same time and reads the generated digits with a digit classifier; projection reached the
highest mean per-digit accuracy soonest with the MLP nets, and the MLP AC-GAN collapses to
one image per digit. The measured tables are in bench/results/compare_conditional.md.

Training settings that go with it (trainer options, not plugin options, set through
``train_defaults``): batch 64, Adam betas (0.5, 0.999), EMA 0.999, with the default lr
and MLP nets. How long it takes to reach a given digit accuracy is measured by
bench/time_to_quality.py (results in bench/results/).

Other options: ``embed_dim`` (size of the label embedding given to G, and to D for
``concat``), ``ac_weight`` and ``ac_fake`` (``acgan`` only).
"""

from __future__ import annotations

from typing import Any

from gankit.plugin_api import GanPlugin, NetSpec, Nets, Option, StepContext

__all__ = ["plugin", "build", "conditional_step", "D_CONDS", "DEFAULT_OPTIONS", "OPTIONS"]

# Far above any useful embedding; keeps a typo from allocating gigabytes.
MAX_EMBED_DIM = 4096

D_CONDS = ("projection", "concat", "acgan")
# Typed options (plugin API 2): gankit checks --option values and config files against
# them, and shows them in `gankit plugins show conditional` and `gankit train --help`.
OPTIONS: dict[str, Option] = {
    "d_cond": Option(str, "projection", "How D uses the label: projection, concat or acgan.", choices=D_CONDS),
    "embed_dim": Option(int, 32, "Size of the label embedding given to G (and to D for concat).",
                        ge=1, le=MAX_EMBED_DIM),
    "ac_weight": Option(float, 1.0, "acgan: weight of the class cross-entropy terms.", ge=0),
    "ac_fake": Option(bool, False, "acgan: also train D's class head on fakes (as the AC-GAN paper does)."),
}
DEFAULT_OPTIONS: dict[str, Any] = {name: opt.default for name, opt in OPTIONS.items()}


def build(spec: NetSpec) -> Nets:
    """gankit's MLP or DCGAN nets with label conditioning per ``spec.options``."""
    from gankit_plugins import _conditional

    return _conditional.build(spec, {**DEFAULT_OPTIONS, **spec.options})


def conditional_step(ctx: StepContext, real, labels) -> dict[str, Any]:
    """gankit's standard step; for ``acgan`` with the class terms added through its ``auxiliary`` hook."""
    from gankit_plugins import _conditional

    return _conditional.conditional_step(ctx, real, labels, {**DEFAULT_OPTIONS, **ctx.spec.options})


plugin = GanPlugin(
    name="conditional",
    api_version=2,
    description="One GAN conditioned on the digit: label embedding beside z; D by projection "
                "(default), concatenation or an auxiliary classifier (--option d_cond=...).",
    build=build,
    label_mode="conditional",
    batch_layout="shuffled",
    train_step=conditional_step,
    # Measured in bench/compare_conditional.py: with these, the MLP nets pass 95% digit
    # accuracy in 2-3 minutes of 2-core CPU training (bench/time_to_quality.py).
    train_defaults={"batch_size": 64, "beta1": 0.5, "ema": 0.999},
    options=OPTIONS,
)
