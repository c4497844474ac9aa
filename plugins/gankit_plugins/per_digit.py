"""The `per-digit` plugin: one independent GAN per digit, all trained together in one vectorised pass.

Heavy tier when built or trained (torch); importing this module is light.

``gankit train --plugin per-digit --digits 3,8`` trains two GANs, one that only ever sees
3s and one that only sees 8s. Rather than looping over ten small nets, the K nets are
stacked (`gankit.training.nets.stacked`): MLP layers are ``[K, in, out]`` weights run with
``torch.baddbmm``, DCGAN layers are grouped convolutions (``groups=K``). Each training
batch holds ``batch_size`` images of every trained digit in class order (batch layout
"per-class"), which reshapes for free into the ``[K, B, ...]`` blocks those ops take.

Why the K GANs stay exactly independent (tests/test_per_digit.py checks each point):

* Class k's loss is the mean over its own B samples, and the step minimises the **sum**
  of the K class losses. The gradient of class k's weights is then exactly the gradient
  of its own loss. Adam works element by element, so the update equals K separate runs;
  a mean over classes would scale every gradient by 1/K, which Adam mostly cancels but
  not where ``eps`` is comparable to the gradient, so it would not be the same run.
* Batch norm (DCGAN) normalises each stacked channel over its own class's samples.
* Randomness is drawn per class in a fixed order: initial weights from one generator per
  (class, net) seeded from one draw of the run's seeded RNG; the latent noise as one
  draw of ``ctx.noise(10 * B)`` from which each class takes its own fixed rows; dropout
  masks from one generator per class per step, seeded from the run's noise seed and the
  step number. So digit 3 trained alone (``--digits 3``) gets the same initial weights,
  noise, dropout masks and (from the sampler's per-class streams) data as digit 3 in a
  ten-digit run with the same seed, and ends with the same weights up to float rounding.

The step reports ``d_loss`` / ``g_loss`` as the mean over the K GANs (one GAN's scale,
comparable with the other plugins) plus ``d_loss_<digit>`` / ``g_loss_<digit>`` for each
digit, which the trainer draws into ``loss_curve_per_class.png``. The step is
`gankit.training.standard_step` itself, given the blocks' forward calls and a sum
over classes; it calls the nets through ``forward`` only, on ``[K, B, ...]`` blocks. The
generator's ``forward(z, labels)`` takes any mix of labels by grouping the batch by
label, and exports to ONNX as it is. `class_nets` turns one digit's slice back into the
standard gankit nets.

This entry module stays torch-free; the torch half is `gankit_plugins._per_digit`.
"""

from __future__ import annotations

from typing import Any

from gankit.plugin_api import GanPlugin, NetSpec, Nets, StepContext

__all__ = ["plugin", "build", "per_digit_step", "class_nets"]


def build(spec: NetSpec) -> Nets:
    """Stacked generator and discriminator with one independent net per class in ``spec.classes``."""
    from gankit_plugins import _per_digit

    return _per_digit.build(spec)


def per_digit_step(ctx: StepContext, real, labels) -> dict[str, Any]:
    """``ctx.d_steps`` discriminator updates, then one generator update, for all K GANs at once."""
    from gankit_plugins import _per_digit

    return _per_digit.per_digit_step(ctx, real, labels)


def class_nets(nets: Nets, spec: NetSpec, digit: int) -> Nets:
    """One digit's GAN as the standard gankit nets (`gankit.training.nets.builtin`), weights copied out.

    ``nets`` is what `build` returned (trained or not) for ``spec``.
    """
    from gankit_plugins import _per_digit

    return _per_digit.class_nets(nets, spec, digit)


plugin = GanPlugin(
    name="per-digit",
    api_version=2,
    description="One independent GAN per digit (MLP or DCGAN), all trained at once with stacked "
                "weights (batched matmuls / grouped convolutions).",
    build=build,
    label_mode="per-class",
    batch_layout="per-class",
    train_step=per_digit_step,
    # Chosen by bench/sweep_per_digit.py (table in bench/results/sweep_per_digit.md): smaller
    # nets than the seed's, so ten of them step fast on a CPU, batch 32 per digit, beta1 0.5
    # and an EMA of G's weights, which keeps accuracy steady where the same nets without it
    # swing by 20 points between checks. 18,000 steps by default: bench/time_to_quality.py
    # showed accuracy dipping below 95% around 8,000-9,000 steps and then climbing to 98.3%
    # with FD 5.05 at 18,000 (95.5% and FD 9.8 at 6,300), 6.1 minutes in bf16 on a 2-core
    # Zen 4 and about 8 in fp32.
    # lr 4e-4 for both nets, with the EMA warm-up (--ema-warmup, on by default):
    # bench/results/time_to_quality_defaults.md, three seeds at equal steps, FD 7.12 +- 0.36
    # against lr 2e-4's 10.37 +- 0.03 at step 6,000 at the same accuracy, and 82% accuracy
    # at step 500 where lr 2e-4 without the warm-up reads 0%. Wider nets (256-512) were
    # 1.7x slower per step for no lower FD at equal time, so the widths stay.
    train_defaults={"g_hidden": (128, 256), "d_hidden": (256, 128), "batch_size": 32, "beta1": 0.5,
                    "lr_g": 4e-4, "lr_d": 4e-4, "ema": 0.999, "steps": 18000},
)
