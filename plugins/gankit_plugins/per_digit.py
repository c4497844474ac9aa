"""The `per-digit` plugin: one independent GAN per digit, all trained together in one vectorised pass.

Heavy tier when built or trained (torch); importing this module is light.

``gankit train --plugin per-digit --digits 3,8`` trains two GANs, one that only ever sees
3s and one that only sees 8s. Rather than looping over ten small nets, the K nets are
stacked (`gankit_plugins._stacked`): MLP layers are ``[K, in, out]`` weights run with
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
digit, which the trainer draws into ``loss_curve_per_class.png``. The generator's
``forward(z, labels)`` takes any mix of labels by grouping the batch by label, and
exports to ONNX as it is. `class_nets` turns one digit's slice back into the standard
gankit nets.
"""

from __future__ import annotations

from typing import Any

from gankit.plugin_api import GanPlugin, NetSpec, Nets, StepContext

__all__ = ["plugin", "build", "per_digit_step", "class_nets"]

# Stream ids for `class_generators`: 0 and 1 seed the G and D initial weights, 2 dropout.
_DROPOUT_STREAM = 2


def build(spec: NetSpec) -> Nets:
    """Stacked generator and discriminator with one independent net per class in ``spec.classes``."""
    import torch

    from gankit_plugins._stacked import build_stacked

    # One draw from the global RNG (seeded by the trainer) seeds every class's own init
    # generator, so class c's initial weights do not depend on the other classes.
    base = int(torch.randint(0, 2**62, (1,)).item())
    generator, discriminator = build_stacked(spec, base)
    return Nets(generator, discriminator)


_INDEX_CACHE: dict = {}


def _class_index(classes: tuple[int, ...], device):
    """``classes`` as a long tensor on ``device``, made once (not a host-to-device copy every step)."""
    import torch

    key = (classes, str(device))
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = torch.tensor(classes, dtype=torch.long, device=device)
    return _INDEX_CACHE[key]


def _check_layout(labels, classes: tuple[int, ...], per_class: int) -> None:
    import torch

    want = torch.tensor(classes, dtype=labels.dtype, device=labels.device).repeat_interleave(per_class)
    if labels.shape != want.shape or not torch.equal(labels, want):
        raise ValueError("the per-digit step needs batches of batch_size images of each class, grouped in "
                         f"class order {list(classes)} (batch layout 'per-class')")


def _per_class(loss_fn, *scores):
    """``[K]`` losses, ``loss_fn`` applied to each class's row of the ``[K, B]`` score tensors.

    torch.func.vmap runs the K losses as one batched computation (a loss is a handful of
    tiny ops, so a Python loop would cost K times the kernel launches and autograd
    nodes); a loss function vmap cannot trace falls back to the loop. Same numbers.
    """
    import torch

    try:
        return torch.func.vmap(loss_fn)(*scores)
    except Exception:  # noqa: BLE001 - e.g. a plugin loss with data-dependent control flow
        return torch.stack([loss_fn(*(s[j] for s in scores)) for j in range(scores[0].shape[0])])


def per_digit_step(ctx: StepContext, real, labels) -> dict[str, Any]:
    """``ctx.d_steps`` discriminator updates, then one generator update, for all K GANs at once.

    Mirrors `gankit.training.step.standard_step` (fake reused for the G update, D frozen
    during it, real and fake in one D pass when D has no batch norm), on ``[K, B, ...]``
    blocks, minimising the sum of the K per-class losses.
    """
    import torch

    from gankit.training.step import has_batchnorm
    from gankit_plugins._stacked import class_generators, derive_seed

    G, D, spec = ctx.generator, ctx.discriminator, ctx.spec
    classes = tuple(spec.classes)
    k = len(classes)
    if real.shape[0] % k:
        raise ValueError(f"a per-digit batch holds the same number of images for each of {k} classes; "
                         f"got {real.shape[0]} images")
    b = real.shape[0] // k
    if ctx.step == 0:  # once per run: a per-step check would wait on the device every step
        _check_layout(labels, classes, b)
    device = real.device
    index = _class_index(classes, device)
    # Dropout masks per class, from generators that depend only on (run seed, step, class):
    # no draw from the shared stream, so resume repeats them and other classes cannot shift them.
    gens = None
    if spec.d_dropout > 0:
        step_seed = derive_seed(ctx.torch_generator.initial_seed(), ctx.step)
        gens = class_generators(step_seed, classes, _DROPOUT_STREAM, device)
    split = has_batchnorm(D)  # batch norm: real and fake must not share a batch

    fake = d_losses = None
    for i in range(ctx.d_steps):
        if i > 0:
            real, labels = ctx.next_batch()
        # Noise for all ten digits in a fixed order; each class keeps its own rows.
        z = ctx.noise(spec.num_classes * b).view(spec.num_classes, b, -1).index_select(0, index)
        real_blocks = real.view(k, b, *real.shape[1:])
        last = i == ctx.d_steps - 1
        with ctx.autocast():
            if last:
                fake = G.forward_blocks(z)  # keeps its graph for the G update below
            else:
                with torch.no_grad():
                    fake = G.forward_blocks(z)
            if split:
                s_real = D.forward_blocks(real_blocks, gens)
                s_fake = D.forward_blocks(fake.detach(), gens)
            else:
                scores = D.forward_blocks(torch.cat([real_blocks, fake.detach()], 1), gens)
                s_real, s_fake = scores[:, :b], scores[:, b:]
            d_losses = _per_class(ctx.d_loss_fn, s_real.float(), s_fake.float())
        ctx.opt_d.zero_grad(set_to_none=True)
        d_losses.sum().backward()  # sum, not mean: see the module docstring
        ctx.opt_d.step()

    D.requires_grad_(False)
    try:
        with ctx.autocast():
            scores = D.forward_blocks(fake, gens)
            g_losses = _per_class(ctx.g_loss_fn, scores.float())
        ctx.opt_g.zero_grad(set_to_none=True)
        g_losses.sum().backward()
        ctx.opt_g.step()
    finally:
        D.requires_grad_(True)

    d_losses, g_losses = d_losses.detach(), g_losses.detach()
    out: dict[str, Any] = {"d_loss": d_losses.mean(), "g_loss": g_losses.mean()}
    for j, c in enumerate(classes):
        out[f"d_loss_{c}"] = d_losses[j]
        out[f"g_loss_{c}"] = g_losses[j]
    return out


def class_nets(nets: Nets, spec: NetSpec, digit: int) -> Nets:
    """One digit's GAN as the standard gankit nets (`gankit.training.nets`), weights copied out.

    ``nets`` is what `build` returned (trained or not) for ``spec``.
    """
    import torch

    from gankit.training.nets import build_nets
    from gankit_plugins._stacked import copy_class_into

    if digit not in spec.classes:
        raise ValueError(f"digit {digit} is not one of this model's classes {list(spec.classes)}")
    k = spec.classes.index(digit)
    with torch.random.fork_rng(devices=[]):  # the throwaway init must not move the caller's RNG
        single = build_nets(spec)
    copy_class_into(nets.generator, k, single.generator)
    copy_class_into(nets.discriminator, k, single.discriminator)
    return single


plugin = GanPlugin(
    name="per-digit",
    description="One independent GAN per digit (MLP or DCGAN), all trained at once with stacked "
                "weights (batched matmuls / grouped convolutions).",
    build=build,
    label_mode="per-class",
    batch_layout="per-class",
    train_step=per_digit_step,
)
