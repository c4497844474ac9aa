"""The conditional plugin's torch half: label-conditioned nets around gankit's MLP / DCGAN, and its step.

Heavy tier (torch); `gankit_plugins.conditional` imports it only when it builds or trains.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from gankit.plugin_api import NetSpec, Nets, StepContext
from gankit.training import build_nets
from gankit.training import AuxiliaryLoss, standard_step

__all__ = ["ConditionalGenerator", "ConditionalDiscriminator", "build", "conditional_step"]


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
    ``forward(images, labels, aux=True)`` returns ``(scores, class logits [N, classes])``
    (the logits are None unless ``mode`` is ``acgan``), which is how `standard_step`'s
    auxiliary-loss hook asks for them.
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

    def forward(self, images: torch.Tensor, labels: torch.Tensor, aux: bool = False):
        cond = self.embed(labels) if self.mode == "concat" else None
        h = self.net.features(images, cond)
        logits = self.classifier(h) if aux and self.mode == "acgan" else None
        score = self.net.head(h).squeeze(1)
        if self.mode == "projection":
            score = score + (self.embed(labels) * h).sum(1)
        return (score, logits) if aux else score


def _feature_dim(spec: NetSpec, d_net: nn.Module) -> int:
    return d_net.feature_dim if spec.arch == "dcgan" else spec.d_hidden[-1]


def build(spec: NetSpec, options: Mapping[str, Any]) -> Nets:
    """gankit's MLP or DCGAN nets with label conditioning per the (validated, merged) ``options``."""
    mode, embed_dim = options["d_cond"], int(options["embed_dim"])
    # G always takes [z, embed(y)]; D takes an input-side embedding only for concat.
    g_net = build_nets(spec, cond_dim=embed_dim).generator
    d_net = build_nets(spec, cond_dim=embed_dim if mode == "concat" else 0).discriminator
    generator = ConditionalGenerator(g_net, spec.num_classes, embed_dim)
    discriminator = ConditionalDiscriminator(d_net, mode, spec.num_classes, embed_dim, _feature_dim(spec, d_net))
    return Nets(generator, discriminator)


def _acgan_loss(options: Mapping[str, Any]) -> AuxiliaryLoss:
    """The AC-GAN class terms for `standard_step` (see gankit_plugins.conditional's docstring)."""
    on_fake = bool(options["ac_fake"])

    def d_term(logits_real, logits_fake, labels):
        loss = F.cross_entropy(logits_real.float(), labels)
        if on_fake:
            loss = loss + F.cross_entropy(logits_fake.float(), labels)
        return loss

    def g_term(logits_fake, labels):
        return F.cross_entropy(logits_fake.float(), labels)

    return AuxiliaryLoss("class_loss", float(options["ac_weight"]), d_term, g_term)


def conditional_step(ctx: StepContext, real: torch.Tensor, labels: torch.Tensor,
                     options: Mapping[str, Any]) -> dict[str, Any]:
    """gankit's standard step; for ``acgan`` with the class terms added through its ``auxiliary`` hook."""
    if options["d_cond"] == "acgan":
        return standard_step(ctx, real, labels, auxiliary=_acgan_loss(options))
    return standard_step(ctx, real, labels)
