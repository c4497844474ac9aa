"""Optimizers and the generator's weight average (EMA): how parameters move once a step has its gradients.

Heavy tier (torch).
"""

from __future__ import annotations

import torch

from gankit.config import TrainConfig


def make_optimizer(cfg: TrainConfig, params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    # The fused Adam kernel updates every parameter in one pass instead of a dozen
    # elementwise ops per tensor; same maths (see bench/bench_train_speed.py).
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True)


# The warm-up's constant: at update t the decay is at most (1 + t) / (EMA_WARMUP + t), as
# TensorFlow's ExponentialMovingAverage(num_updates) and timm's model EMA do. The average
# then spans about the last t / 10 updates early on, reaches 0.99 near update 900 and
# 0.999 near update 9,000, so a run of a few hundred steps averages its recent weights,
# not the random ones it started from.
EMA_WARMUP = 10


def ema_decay(decay: float, step: int, warmup: bool = True) -> float:
    """The decay the EMA update of 0-based ``step`` uses: ``decay``, capped during the warm-up."""
    if not warmup:
        return decay
    return min(decay, (1.0 + step) / (EMA_WARMUP + step))


class EMA:
    """Exponential moving average of the generator's parameters (buffers are copied).

    With ``warmup`` (the default), the update of step t uses `ema_decay` (decay capped by
    (1 + t) / (10 + t)). The decay is a function of the step alone, and the step is in
    every checkpoint, so a resumed run averages exactly as an uninterrupted one.
    """

    def __init__(self, module: torch.nn.Module, decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._names = [n for n, _ in module.named_parameters()]

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        """Average in ``module``'s weights after the 0-based training step ``step``."""
        params = dict(module.named_parameters())
        weight = 1.0 - ema_decay(self.decay, step, self.warmup)
        torch._foreach_lerp_([self.shadow[n] for n in self._names], [params[n].detach() for n in self._names],
                             weight)
        for name, buf in module.named_buffers():
            self.shadow[name].copy_(buf)
