"""The default training step (n discriminator updates, then one generator update).

Heavy tier (torch). Plugins may call `standard_step` from their own ``train_step``.

Where the time goes, and what this step does about it (see bench/bench_train_speed.py):
* The generator's output from the last D update is reused for the G update, so G runs
  forward once per step (as the PyTorch DCGAN example does).
* D's input to the D loss is ``fake.detach()``: no backward through G in the D update.
* During the G update D's parameters are frozen (``requires_grad_(False)``), so its
  backward computes only the input gradient, not weight gradients nobody will use.
* For a D without batch norm, real and fake go through D in one concatenated batch:
  one larger matrix multiply instead of two small ones. With batch norm they stay
  separate, because mixing them changes the batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from gankit.plugin_api import StepContext


def has_batchnorm(module: nn.Module) -> bool:
    """Whether any submodule normalises over the batch (so real and fake must not be mixed)."""
    cached = getattr(module, "_gankit_has_bn", None)
    if cached is None:
        cached = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
        module._gankit_has_bn = cached
    return cached


@dataclass(frozen=True)
class AuxiliaryLoss:
    """Extra loss terms on a discriminator's second output (e.g. AC-GAN class logits).

    With one, `standard_step` calls ``D.scores_and_aux(images, labels) -> (scores, aux)``
    instead of ``D(images, labels)``, adds ``weight * d_term(aux_real, aux_fake, labels)``
    to D's loss and ``weight * g_term(aux_fake, labels)`` to G's, and reports both as
    ``d_<name>`` / ``g_<name>``.
    """

    name: str
    weight: float
    d_term: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    g_term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _d_pass(d: nn.Module, images: torch.Tensor, labels: torch.Tensor, aux: bool):
    return d.scores_and_aux(images, labels) if aux else (d(images, labels), None)


def discriminator_scores(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                         aux: bool = False):
    """D's (scores, aux outputs or None) on real and on fake, in one pass when that is the same maths."""
    if has_batchnorm(d):
        return _d_pass(d, real, labels, aux), _d_pass(d, fake, labels, aux)
    n = real.shape[0]
    scores, extra = _d_pass(d, torch.cat([real, fake]), torch.cat([labels, labels]), aux)
    if extra is None:
        return (scores[:n], None), (scores[n:], None)
    return (scores[:n], extra[:n]), (scores[n:], extra[n:])


def standard_step(ctx: StepContext, real: torch.Tensor, labels: torch.Tensor,
                  auxiliary: AuxiliaryLoss | None = None) -> dict[str, torch.Tensor]:
    """One generator step: ``ctx.d_steps`` discriminator updates, then one generator update.

    Returns 0-d detached tensors ``d_loss`` and ``g_loss`` (the trainer turns them into
    numbers only when it logs, so the step never waits on the device), plus the
    auxiliary terms when ``auxiliary`` is given.
    """
    G, D = ctx.generator, ctx.discriminator
    use_aux = auxiliary is not None
    fake = None
    d_loss = d_aux = None
    for i in range(ctx.d_steps):
        if i > 0:
            real, labels = ctx.next_batch()
        z = ctx.noise(real.shape[0])
        last = i == ctx.d_steps - 1
        with ctx.autocast():
            if last:
                fake = G(z, labels)  # keeps its graph for the G update below
            else:
                with torch.no_grad():
                    fake = G(z, labels)
            (s_real, a_real), (s_fake, a_fake) = discriminator_scores(D, real, fake.detach(), labels, use_aux)
            d_loss = ctx.d_loss_fn(s_real.float(), s_fake.float())
            if use_aux:
                d_aux = auxiliary.d_term(a_real, a_fake, labels)
                d_loss = d_loss + auxiliary.weight * d_aux
        ctx.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        ctx.opt_d.step()

    D.requires_grad_(False)
    try:
        with ctx.autocast():
            s_fake, a_fake = _d_pass(D, fake, labels, use_aux)
            g_loss = ctx.g_loss_fn(s_fake.float())
            if use_aux:
                g_aux = auxiliary.g_term(a_fake, labels)
                g_loss = g_loss + auxiliary.weight * g_aux
        ctx.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        ctx.opt_g.step()
    finally:
        D.requires_grad_(True)
    out = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
    if use_aux:
        out[f"d_{auxiliary.name}"] = d_aux.detach()
        out[f"g_{auxiliary.name}"] = g_aux.detach()
    return out
