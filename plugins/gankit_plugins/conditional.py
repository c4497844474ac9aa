"""The `conditional` plugin: one GAN whose generator and discriminator both take the digit label.

Heavy tier when built or trained (torch); importing this module is light (the torch
half is `gankit_plugins._conditional`).

The generator always gets a learned label embedding concatenated to z (the ``cond_dim``
hook of `gankit.training.nets`). How the discriminator uses the label is the option
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

import math
from typing import Any, Mapping

from gankit.plugin_api import GanPlugin, NetSpec, Nets, StepContext

__all__ = ["plugin", "build", "conditional_step", "D_CONDS", "DEFAULT_OPTIONS"]

D_CONDS = ("projection", "concat", "acgan")
DEFAULT_OPTIONS: dict[str, Any] = {"d_cond": "projection", "embed_dim": 32, "ac_weight": 1.0, "ac_fake": False}


def validate_options(options: Mapping[str, Any]) -> None:
    """Reject option values that cannot work (gankit reports them as usage errors, exit 2)."""
    if options["d_cond"] not in D_CONDS:
        raise ValueError(f"option d_cond must be one of {', '.join(D_CONDS)}, got {options['d_cond']!r}")
    dim = options["embed_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"option embed_dim must be a positive integer, got {dim!r}")
    w = options["ac_weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise ValueError(f"option ac_weight must be a non-negative number, got {w!r}")
    if not isinstance(options["ac_fake"], bool):
        raise ValueError(f"option ac_fake must be true or false, got {options['ac_fake']!r}")


def build(spec: NetSpec) -> Nets:
    """gankit's MLP or DCGAN nets with label conditioning per ``spec.options``."""
    from gankit_plugins import _conditional

    options = {**DEFAULT_OPTIONS, **spec.options}
    validate_options(options)
    return _conditional.build(spec, options)


def conditional_step(ctx: StepContext, real, labels) -> dict[str, Any]:
    """gankit's standard step; for ``acgan`` with the class terms added through its ``auxiliary`` hook."""
    from gankit_plugins import _conditional

    return _conditional.conditional_step(ctx, real, labels, {**DEFAULT_OPTIONS, **ctx.spec.options})


plugin = GanPlugin(
    name="conditional",
    api_version=1,
    description="One GAN conditioned on the digit: label embedding beside z; D by projection "
                "(default), concatenation or an auxiliary classifier (--option d_cond=...).",
    build=build,
    label_mode="conditional",
    batch_layout="shuffled",
    train_step=conditional_step,
    # Measured in bench/compare_conditional.py: with these, the MLP nets pass 95% digit
    # accuracy in 2-3 minutes of 2-core CPU training (bench/time_to_quality.py).
    train_defaults={"batch_size": 64, "beta1": 0.5, "ema": 0.999},
    default_options=DEFAULT_OPTIONS,
    validate_options=validate_options,
)
