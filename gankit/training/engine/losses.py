"""Adversarial losses on raw discriminator scores: BCE (non-saturating G) and least squares.

Heavy tier (torch). Each loss is a pair of functions returning batch means:
``d_loss(scores_real, scores_fake)`` and ``g_loss(scores_fake)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossPair = tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # softplus(-x) == BCE(sigmoid(x), 1) and softplus(x) == BCE(sigmoid(x), 0), without
    # the overflow a separate sigmoid + log would risk.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def bce_g(fake: torch.Tensor) -> torch.Tensor:
    # Non-saturating: G maximises log D(G(z)) instead of minimising log(1 - D(G(z))).
    return F.softplus(-fake).mean()


def _ls_pair(squash: bool) -> LossPair:
    def s(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) if squash else x

    def ls_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (s(real) - 1).pow(2).mean() + s(fake).pow(2).mean()

    def ls_g(fake: torch.Tensor) -> torch.Tensor:
        return (s(fake) - 1).pow(2).mean()

    return ls_d, ls_g


def get_losses(name: str, ls_sigmoid: bool = False) -> LossPair:
    """(d_loss_fn, g_loss_fn) for 'bce' or 'ls' (least squares, optionally on sigmoid outputs)."""
    if name == "bce":
        return bce_d, bce_g
    if name == "ls":
        return _ls_pair(ls_sigmoid)
    raise ValueError(f"unknown loss {name!r}")
