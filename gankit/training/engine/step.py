"""The default training step (n discriminator updates, then one generator update).

Heavy tier (torch). Plugins may call `standard_step` from their own ``train_step``; its
keyword arguments adapt it to batches that are not one flat ``[N, ...]`` batch (the
per-digit plugin's class blocks) without copying the update. It calls the nets only
through their ``forward``, so a DistributedDataParallel wrapper sees every call.

Where the time goes, and what this step does about it (see bench/bench_train_speed.py):
* The generator's output from the last D update is reused for the G update, so G runs
  forward once per step (as the PyTorch DCGAN example does).
* D's input to the D loss is ``fake.detach()``: no backward through G in the D update.
* During the G update D's parameters are frozen (``requires_grad_(False)``), so its
  backward computes only the input gradient, not weight gradients nobody will use; the
  ones a plugin froze itself stay frozen afterwards.
* For a D without batch norm, real and fake go through D in one concatenated batch:
  one larger matrix multiply instead of two small ones. With batch norm they stay
  separate, because mixing them changes the batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from gankit.errors import PluginError
from gankit.plugin_api import REQUIRED_LOSSES, StepContext


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

    With one, `standard_step` calls ``D(images, labels, aux=True) -> (scores, aux)``
    instead of ``D(images, labels)``, adds ``weight * d_term(aux_real, aux_fake, labels)``
    to D's loss and ``weight * g_term(aux_fake, labels)`` to G's, and reports both as
    ``d_<name>`` / ``g_<name>``.
    """

    name: str
    weight: float
    d_term: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    g_term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


GForward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DForward = Callable[..., Any]


def _d_pass(d_forward: DForward, images: torch.Tensor, labels: torch.Tensor, aux: bool):
    return d_forward(images, labels, aux=True) if aux else (d_forward(images, labels), None)


def _scores(d_forward: DForward, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, aux: bool,
            split: bool, dim: int):
    """(scores, aux or None) on real and on fake; one pass over both joined along ``dim`` unless ``split``."""
    if split:
        return _d_pass(d_forward, real, labels, aux), _d_pass(d_forward, fake, labels, aux)
    n, m = real.shape[dim], fake.shape[dim]
    scores, extra = _d_pass(d_forward, torch.cat([real, fake], dim), torch.cat([labels, labels], dim), aux)
    s_real, s_fake = scores.narrow(dim, 0, n), scores.narrow(dim, n, m)
    if extra is None:
        return (s_real, None), (s_fake, None)
    return (s_real, extra.narrow(dim, 0, n)), (s_fake, extra.narrow(dim, n, m))


def discriminator_scores(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                         aux: bool = False):
    """``((scores_real, aux_real), (scores_fake, aux_fake))`` from ``d``'s forward, aux None unless ``aux``.

    Real and fake go through D as one concatenated batch when that is the same maths (D
    has no batch norm), else separately. With ``aux`` D is called as
    ``d(images, labels, aux=True)`` and must return ``(scores, aux outputs)``.
    """
    return _scores(d, real, fake, labels, aux, has_batchnorm(d), 0)


def regularizer_terms(ctx: StepContext, real: torch.Tensor, labels: torch.Tensor,
                      fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """The plugin's ``d_regularizer`` terms for one discriminator update ({} when it has none, or skips it).

    Called outside autocast (a gradient penalty is more accurate in float32) with the
    update's batch and the generator's images for it, detached.
    """
    if ctx.d_regularizer is None:
        return {}
    terms = ctx.d_regularizer(ctx, real, labels, ctx.step, fake.detach())
    if terms is None:
        return {}
    if not isinstance(terms, Mapping) or not all(isinstance(k, str) and k and torch.is_tensor(v)
                                                 for k, v in terms.items()):
        raise PluginError(f"its d_regularizer returned {type(terms).__name__} {_brief(terms)}; it must return "
                          "None or a dict of named 0-d loss tensors, e.g. {'r1': penalty}")
    clash = sorted(set(terms) & set(REQUIRED_LOSSES))
    if clash:
        raise PluginError(f"its d_regularizer returned {', '.join(clash)}, which the step reports itself; "
                          "name its terms otherwise (e.g. 'r1', 'gp')")
    return dict(terms)


def _brief(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def standard_step(ctx: StepContext, real: torch.Tensor, labels: torch.Tensor,
                  auxiliary: AuxiliaryLoss | None = None, *, g_forward: GForward | None = None,
                  d_forward: DForward | None = None, batch_dim: int = 0,
                  reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One generator step: ``ctx.d_steps`` discriminator updates, then one generator update.

    Returns detached tensors ``d_loss`` and ``g_loss`` (the trainer turns them into
    numbers only when it logs, so the step never waits on the device), plus the
    auxiliary terms when ``auxiliary`` is given.

    The keyword arguments let a step whose batch is not one flat ``[N, ...]`` batch
    (per-digit's ``[K, B, ...]`` class blocks) reuse this update instead of copying it.
    Every call to the nets goes through their ``forward`` (``ctx.generator(...)``,
    ``ctx.discriminator(...)``), so a DistributedDataParallel wrapper sees each one:

    * ``g_forward(real, labels) -> fake``: draws the latent batch from ``ctx.noise`` and
      runs G; default ``ctx.generator(ctx.noise(real.shape[0]), labels)``. It is called
      inside ``ctx.autocast()``, under ``torch.no_grad()`` for all but the last D update.
    * ``d_forward(images, labels) -> scores`` (and, with ``auxiliary``,
      ``d_forward(images, labels, aux=True) -> (scores, aux)``); default ``ctx.discriminator``.
    * ``batch_dim``: the dimension along which real, fake and labels hold samples; real and
      fake are joined along it for one D pass when D has no batch norm.
    * ``reduce(loss) -> 0-d loss``: what each update backpropagates, for loss functions
      that return several losses (per-digit: ``[K]`` class losses, summed); by default the
      loss functions' 0-d results themselves. The returned ``d_loss`` / ``g_loss`` are the
      losses before ``reduce``.

    ``ctx.d_regularizer`` (the plugin's, if any) is called at each discriminator update
    (`regularizer_terms`); its terms are added to D's loss before ``reduce`` and the
    backward pass, and each is returned under its own name (the mean over the updates
    of this step that returned it), detached. ``d_loss`` stays the adversarial loss alone.
    """
    G, D = ctx.generator, ctx.discriminator
    if g_forward is None:
        def g_forward(real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return G(ctx.noise(real.shape[0]), labels)
    d_forward = D if d_forward is None else d_forward
    use_aux = auxiliary is not None
    split = has_batchnorm(D)  # batch norm: real and fake must not share a batch
    fake = None
    d_loss = d_aux = None
    reg_terms: dict[str, list[torch.Tensor]] = {}
    for i in range(ctx.d_steps):
        if i > 0:
            real, labels = ctx.next_batch()
        last = i == ctx.d_steps - 1
        with ctx.autocast():
            if last:
                fake = g_forward(real, labels)  # keeps its graph for the G update below
            else:
                with torch.no_grad():
                    fake = g_forward(real, labels)
            (s_real, a_real), (s_fake, a_fake) = _scores(d_forward, real, fake.detach(), labels, use_aux,
                                                         split, batch_dim)
            d_loss = ctx.d_loss_fn(s_real.float(), s_fake.float())
            if use_aux:
                d_aux = auxiliary.d_term(a_real, a_fake, labels)
                d_loss = d_loss + auxiliary.weight * d_aux
        d_total = d_loss
        for name, term in regularizer_terms(ctx, real, labels, fake).items():
            d_total = d_total + term
            reg_terms.setdefault(name, []).append(term.detach())
        ctx.opt_d.zero_grad(set_to_none=True)
        (d_total if reduce is None else reduce(d_total)).backward()
        ctx.opt_d.step()

    # Only what requires grad now is frozen, and unfrozen after: a sub-module the plugin
    # froze in build stays frozen.
    trainable = [p for p in D.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        with ctx.autocast():
            s_fake, a_fake = _d_pass(d_forward, fake, labels, use_aux)
            g_loss = ctx.g_loss_fn(s_fake.float())
            if use_aux:
                g_aux = auxiliary.g_term(a_fake, labels)
                g_loss = g_loss + auxiliary.weight * g_aux
        ctx.opt_g.zero_grad(set_to_none=True)
        (g_loss if reduce is None else reduce(g_loss)).backward()
        ctx.opt_g.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    out = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
    if use_aux:
        out[f"d_{auxiliary.name}"] = d_aux.detach()
        out[f"g_{auxiliary.name}"] = g_aux.detach()
    for name, terms in reg_terms.items():
        out[name] = terms[0] if len(terms) == 1 else torch.stack(terms).mean(0)
    return out
