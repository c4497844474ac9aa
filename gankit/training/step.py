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


def discriminator_scores(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor):
    """D's raw scores on (real, fake), in one pass when that is the same maths."""
    if has_batchnorm(d):
        return d(real, labels), d(fake, labels)
    scores = d(torch.cat([real, fake]), torch.cat([labels, labels]))
    return scores[: real.shape[0]], scores[real.shape[0]:]


def standard_step(ctx: StepContext, real: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """One generator step: ``ctx.d_steps`` discriminator updates, then one generator update.

    Returns 0-d detached tensors ``d_loss`` and ``g_loss`` (the trainer turns them into
    numbers only when it logs, so the step never waits on the device).
    """
    G, D = ctx.generator, ctx.discriminator
    fake = None
    d_loss = None
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
            s_real, s_fake = discriminator_scores(D, real, fake.detach(), labels)
            d_loss = ctx.d_loss_fn(s_real.float(), s_fake.float())
        ctx.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        ctx.opt_d.step()

    D.requires_grad_(False)
    try:
        with ctx.autocast():
            g_loss = ctx.g_loss_fn(D(fake, labels).float())
        ctx.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        ctx.opt_g.step()
    finally:
        D.requires_grad_(True)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
