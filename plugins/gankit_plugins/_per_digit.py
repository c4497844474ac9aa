"""The per-digit plugin's torch half: building the stacked nets, the training step, one digit's nets.

Heavy tier (torch); `gankit_plugins.per_digit` imports it only when it builds or trains.
Why the K GANs stay exactly independent is explained in that module's docstring.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from gankit.plugin_api import NetSpec, Nets, StepContext
from gankit.training import build_nets
from gankit.training import build_stacked, class_generators, copy_class_into, derive_seed, dropout_masks
from gankit.training import dropout_shapes
from gankit.training import standard_step

# Stream ids for `class_generators`: 0 and 1 seed the G and D initial weights, 2 dropout.
_DROPOUT_STREAM = 2


def build(spec: NetSpec) -> Nets:
    """Stacked generator and discriminator with one independent net per class in ``spec.classes``."""
    # One draw from the global RNG (seeded by the trainer) seeds every class's own init
    # generator, so class c's initial weights do not depend on the other classes.
    base = int(torch.randint(0, 2**62, (1,), device="cpu").item())  # cpu: also under torch.device("meta")
    generator, discriminator = build_stacked(spec, base)
    return Nets(generator, discriminator)


_INDEX_CACHE: dict = {}


def _class_index(classes: tuple[int, ...], device) -> torch.Tensor:
    """``classes`` as a long tensor on ``device``, made once (not a host-to-device copy every step)."""
    key = (classes, str(device))
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = torch.tensor(classes, dtype=torch.long, device=device)
    return _INDEX_CACHE[key]


def _check_layout(labels: torch.Tensor, classes: tuple[int, ...], per_class: int) -> None:
    want = torch.tensor(classes, dtype=labels.dtype, device=labels.device).repeat_interleave(per_class)
    if labels.shape != want.shape or not torch.equal(labels, want):
        raise ValueError("the per-digit step needs batches of batch_size images of each class, grouped in "
                         f"class order {list(classes)} (batch layout 'per-class')")


_PER_CLASS: dict[int, tuple] = {}


def _per_class(loss_fn):
    """`_batched_losses` for ``loss_fn``, made once per loss function (the context's are made once per run)."""
    cached = _PER_CLASS.get(id(loss_fn))
    if cached is None or cached[0] is not loss_fn:
        if len(_PER_CLASS) > 64:
            _PER_CLASS.clear()
        cached = _PER_CLASS[id(loss_fn)] = (loss_fn, _batched_losses(loss_fn))
    return cached[1]


def _batched_losses(loss_fn):
    """``loss_fn`` applied to each class's row of ``[K, B]`` score tensors, giving ``[K]`` losses.

    torch.func.vmap runs the K losses as one batched computation (a loss is a handful of
    tiny ops, so a Python loop would cost K times the kernel launches and autograd
    nodes); a loss function vmap cannot trace falls back to the loop. Same numbers. The
    wrapper is made once per loss function: building the vmapped function at every call
    doubled its cost.
    """
    batched = torch.func.vmap(loss_fn)

    def losses(*scores: torch.Tensor) -> torch.Tensor:
        try:
            return batched(*scores)
        except Exception:  # noqa: BLE001 - e.g. a plugin loss with data-dependent control flow
            return torch.stack([loss_fn(*(s[j] for s in scores)) for j in range(scores[0].shape[0])])

    return losses


def per_digit_step(ctx: StepContext, real: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """`standard_step` on ``[K, B, ...]`` class blocks, minimising the sum of the K per-class losses.

    The nets are called through ``forward`` only: ``G(z[K, B, Z])`` and
    ``D(images[K, B, 1, S, S], dropout_gens=...)`` (`gankit.training.nets.stacked`).
    """
    spec = ctx.spec
    classes = tuple(spec.classes)
    k = len(classes)
    if real.shape[0] % k:
        raise ValueError(f"a per-digit batch holds the same number of images for each of {k} classes; "
                         f"got {real.shape[0]} images")
    if ctx.step == 0:  # once per run: a per-step check would wait on the device every step
        _check_layout(labels, classes, real.shape[0] // k)
    index = _class_index(classes, real.device)
    # Dropout masks per class, from generators that depend only on (run seed, step, class):
    # no draw from the shared stream, so resume repeats them and other classes cannot shift them.
    gens = None
    if spec.d_dropout > 0:
        step_seed = derive_seed(ctx.torch_generator.initial_seed(), ctx.step)
        gens = class_generators(step_seed, classes, _DROPOUT_STREAM, real.device)
    G, D = ctx.generator, ctx.discriminator

    def blocks(images: torch.Tensor, digits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images.view(k, -1, *images.shape[1:]), digits.view(k, -1)

    def g_forward(real_blocks: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
        b = real_blocks.shape[1]
        # Noise for all ten digits in a fixed order; each class keeps its own rows.
        z = ctx.noise(spec.num_classes * b).view(spec.num_classes, b, -1).index_select(0, index)
        return G(z)

    def d_forward(images: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
        if gens is None:
            return D(images)
        # The masks are drawn here, from the same generators in the same order as D would
        # draw them, so D's forward holds no generator and can be compiled whole.
        masks = dropout_masks(gens, dropout_shapes(spec, images.shape[1]), spec.d_dropout, images.device)
        return D(images, dropout_masks=masks)

    block_ctx = dataclasses.replace(
        ctx, d_loss_fn=_per_class(ctx.d_loss_fn), g_loss_fn=_per_class(ctx.g_loss_fn),
        next_batch=lambda: blocks(*ctx.next_batch()))
    # Sum, not mean, over classes: see gankit_plugins.per_digit's docstring.
    out = standard_step(block_ctx, *blocks(real, labels), g_forward=g_forward, d_forward=d_forward,
                        batch_dim=1, reduce=torch.sum)
    d_losses, g_losses = out["d_loss"], out["g_loss"]
    result: dict[str, Any] = {"d_loss": d_losses.mean(), "g_loss": g_losses.mean()}
    for j, c in enumerate(classes):
        result[f"d_loss_{c}"] = d_losses[j]
        result[f"g_loss_{c}"] = g_losses[j]
    return result


def class_nets(nets: Nets, spec: NetSpec, digit: int) -> Nets:
    """One digit's GAN as the standard gankit nets (`gankit.training.nets.builtin`), weights copied out."""
    if digit not in spec.classes:
        raise ValueError(f"digit {digit} is not one of this model's classes {list(spec.classes)}")
    k = spec.classes.index(digit)
    with torch.random.fork_rng(devices=[]):  # the throwaway init must not move the caller's RNG
        single = build_nets(spec)
    copy_class_into(nets.generator, k, single.generator)
    copy_class_into(nets.discriminator, k, single.discriminator)
    return single
