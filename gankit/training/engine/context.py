"""The one way to build a `StepContext`: used by the trainer, the conformance kit and tests.

Heavy tier (torch). A step sees the same context whoever runs it, so a plugin checked
by `gankit.testing.check_plugin` meets exactly what `gankit train` gives it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Union

import torch

from gankit.plugin_api import NetSpec, Nets, StepContext
from gankit.training.engine.losses import get_losses

NoiseFn = Callable[[int], torch.Tensor]


def draw_latent(n: int, z_dim: int, kind: str, generator: torch.Generator,
                device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """``n`` latent vectors from the configured distribution: normal, or uniform on [-1, 1]."""
    if kind == "uniform":
        return torch.rand(n, z_dim, generator=generator, device=device).mul_(2).sub_(1)
    if kind == "normal":
        return torch.randn(n, z_dim, generator=generator, device=device)
    raise ValueError(f"unknown noise {kind!r}")


def autocast_factory(precision: str, device: Union[str, torch.device]) -> Callable[[], Any]:
    """``ctx.autocast``: bf16 autocast on the training device, or a no-op for fp32."""
    if precision == "bf16":
        device_type = torch.device(device).type
        return lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext
    raise ValueError(f"unknown precision {precision!r}")


def make_step_context(
    nets: Nets,
    spec: NetSpec,
    *,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    loss: str = "bce",
    ls_sigmoid: bool = False,
    noise: Union[str, NoiseFn] = "normal",
    torch_generator: Optional[torch.Generator] = None,
    seed: int = 0,
    d_steps: int = 1,
    precision: str = "fp32",
    device: Union[str, torch.device] = "cpu",
    step: int = 0,
    d_regularizer: Optional[Callable[..., Any]] = None,
) -> StepContext:
    """A StepContext over ``nets`` (already on ``device``) and their optimizers.

    ``noise`` names the latent distribution (drawn from ``torch_generator``) or is a
    function ``n -> z`` of your own. ``torch_generator`` defaults to a generator on
    ``device`` seeded with ``seed + 1``, as the trainer seeds its own. ``d_regularizer``
    is the plugin's (`standard_step` calls it at each discriminator update).
    """
    device = torch.device(device)
    if torch_generator is None:
        torch_generator = torch.Generator(device=device).manual_seed(seed + 1)
    if callable(noise):
        noise_fn = noise
    else:
        kind, gen, z_dim = noise, torch_generator, spec.z_dim
        if kind not in ("normal", "uniform"):  # fail here, not in the middle of a step
            raise ValueError(f"unknown noise {kind!r}")

        def noise_fn(n: int) -> torch.Tensor:
            return draw_latent(n, z_dim, kind, gen, device)

    d_loss_fn, g_loss_fn = get_losses(loss, ls_sigmoid)
    return StepContext(
        generator=nets.generator, discriminator=nets.discriminator, opt_g=opt_g, opt_d=opt_d,
        g_loss_fn=g_loss_fn, d_loss_fn=d_loss_fn, noise=noise_fn, d_steps=d_steps, step=step, spec=spec,
        torch_generator=torch_generator, autocast=autocast_factory(precision, device),
        next_batch=next_batch, device=device, d_regularizer=d_regularizer)
