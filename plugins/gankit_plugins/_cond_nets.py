"""Label-conditioned wrappers around gankit's MLP / DCGAN nets, for the conditional plugin.

Heavy tier (torch); imported only when the conditional plugin builds its nets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ConditionalGenerator", "ConditionalDiscriminator"]


class ConditionalGenerator(nn.Module):
    """``G(z, y) = net([z, embed(y)])`` for gankit's MLP or DCGAN generator built with ``cond_dim``."""

    def __init__(self, net: nn.Module, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = net

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(z, labels, cond=self.embed(labels))


class ConditionalDiscriminator(nn.Module):
    """gankit's MLP or DCGAN discriminator, using the label as ``mode`` says.

    ``forward(images, labels)`` returns the real/fake scores ``[N]`` (the plugin contract);
    ``scores_and_aux`` also returns class logits ``[N, classes]`` (``acgan``; else None).
    """

    def __init__(self, net: nn.Module, mode: str, num_classes: int, embed_dim: int, feature_dim: int):
        super().__init__()
        self.net = net
        self.mode = mode
        if mode == "concat":
            self.embed = nn.Embedding(num_classes, embed_dim)
        elif mode == "projection":
            self.embed = nn.Embedding(num_classes, feature_dim)
            # nn.Embedding's N(0, 1) would make the label term <embed(y), phi(x)> about
            # sqrt(feature_dim) times the unconditional head's scale at the start; this
            # scale keeps both terms comparable, so neither swamps the other early on.
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(feature_dim))
        elif mode == "acgan":
            self.classifier = nn.Linear(feature_dim, num_classes)
        else:
            raise ValueError(f"unknown discriminator conditioning {mode!r}")

    def _features(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cond = self.embed(labels) if self.mode == "concat" else None
        return self.net.features(images, cond)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self._features(images, labels)
        score = self.net.head(h).squeeze(1)
        if self.mode == "projection":
            score = score + (self.embed(labels) * h).sum(1)
        return score

    def scores_and_aux(self, images: torch.Tensor, labels: torch.Tensor):
        h = self._features(images, labels)
        logits = self.classifier(h) if self.mode == "acgan" else None
        return self.net.head(h).squeeze(1), logits
