"""The built-in generator and discriminator nets: MLP (any widths) and DCGAN at 28x28.

Heavy tier (torch). Every generator is called as ``G(z, labels)`` and every
discriminator as ``D(images, labels)`` (see `gankit.plugin_api`); these unconditional
nets ignore the labels. ``cond_dim`` lets a conditional plugin feed a label embedding
in beside z (generator) or beside the flattened image (MLP discriminator) without
rewriting the nets.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gankit.plugin_api import NetSpec, Nets

__all__ = ["MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator",
           "build_nets", "ACTIVATIONS", "Activation", "activation", "init_layer_", "init_weights"]


def _leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)  # the seeds' slope, used by every built-in net


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# The one activation table: the standard nets wrap it in `Activation` modules, the
# stacked per-class nets (gankit.training.nets.stacked) call it directly.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": _leaky_relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": _identity,
}


class Activation(nn.Module):
    """An `ACTIVATIONS` entry as a module, so nn.Sequential nets and the stacked nets share one table."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.name](x)

    def extra_repr(self) -> str:
        return self.name


def activation(name: str) -> nn.Module:
    """The activation module for a config name (LeakyReLU uses the seeds' slope 0.2)."""
    return Activation(name)


class MLPGenerator(nn.Module):
    """z (+ optional condition vector) -> hidden widths -> image, reshaped to [N, 1, S, S]."""

    def __init__(self, spec: NetSpec, cond_dim: int = 0):
        super().__init__()
        self.image_size = spec.image_size
        widths = (spec.z_dim + cond_dim, *spec.g_hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), activation(spec.g_activation)]
        layers += [nn.Linear(widths[-1], spec.image_size ** 2), activation(spec.output_activation)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        x = z if cond is None else torch.cat([z, cond], dim=1)
        return self.net(x).view(-1, 1, self.image_size, self.image_size)


class MLPDiscriminator(nn.Module):
    """Flattened image (+ optional condition vector) -> hidden widths -> one raw score."""

    def __init__(self, spec: NetSpec, cond_dim: int = 0):
        super().__init__()
        widths = (spec.image_size ** 2 + cond_dim, *spec.d_hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), activation(spec.d_activation)]
            if spec.d_dropout > 0:
                layers.append(nn.Dropout(spec.d_dropout))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], 1)

    def features(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = images.flatten(1)
        if cond is not None:
            x = torch.cat([x, cond], dim=1)
        return self.body(x)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(images, cond)).squeeze(1)


def _keras_bn(channels: int) -> nn.BatchNorm2d:
    # Keras BatchNormalization(momentum=0.8) keeps 0.8 of the old running mean;
    # torch's momentum is the weight of the new batch, so 0.2. Keras' eps is 1e-3.
    return nn.BatchNorm2d(channels, momentum=0.2, eps=1e-3)


class DCGANGenerator(nn.Module):
    """The Keras seed's generator: Dense -> 7x7xC0, (upsample, conv3x3, BN, act) per width, conv -> 1, output act."""

    def __init__(self, spec: NetSpec, cond_dim: int = 0):
        super().__init__()
        c0 = spec.g_hidden[0]
        self.c0 = c0
        self.fc = nn.Sequential(nn.Linear(spec.z_dim + cond_dim, c0 * 7 * 7), activation("relu"))
        blocks: list[nn.Module] = []
        in_ch = c0
        for i, out_ch in enumerate(spec.g_hidden):
            if i < 2:  # two 2x upsamplings take 7x7 to 28x28
                blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1), _keras_bn(out_ch), activation(spec.g_activation)]
            in_ch = out_ch
        if len(spec.g_hidden) < 2:
            blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
        blocks += [nn.Conv2d(in_ch, 1, 3, padding=1), activation(spec.output_activation)]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        x = z if cond is None else torch.cat([z, cond], dim=1)
        return self.body(self.fc(x).view(-1, self.c0, 7, 7))


class DCGANDiscriminator(nn.Module):
    """The Keras seed's discriminator: strided 3x3 convs (stride 2 on the first three), LeakyReLU, dropout, BN."""

    def __init__(self, spec: NetSpec, cond_dim: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, size = 1, spec.image_size
        for i, out_ch in enumerate(spec.d_hidden):
            stride = 2 if i < 3 else 1
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1))
            size = (size + 2 - 3) // stride + 1
            if i == 1:
                # Keras' ZeroPadding2D(((0,1),(0,1))) after the second conv: 7x7 -> 8x8.
                layers.append(nn.ZeroPad2d((0, 1, 0, 1)))
                size += 1
            if i > 0:
                layers.append(_keras_bn(out_ch))
            layers.append(activation(spec.d_activation))
            if spec.d_dropout > 0:
                layers.append(nn.Dropout(spec.d_dropout))
            in_ch = out_ch
        self.body = nn.Sequential(*layers)
        self.feature_dim = in_ch * size * size
        self.head = nn.Linear(self.feature_dim + cond_dim, 1)

    def features(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.body(images).flatten(1)
        return x if cond is None else torch.cat([x, cond], dim=1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(images, cond)).squeeze(1)


@torch.no_grad()
def init_layer_(weight: torch.Tensor, bias: Optional[torch.Tensor], fan_in: int, fan_out: int, scheme: str,
                generator: Optional[torch.Generator] = None) -> None:
    """Draw one Linear/Conv layer's weight and bias in place under ``scheme``, from ``generator``.

    The fans are given rather than read off the weight's shape, so a stacked per-class
    net can draw one class's slice (a transposed ``[in, out]`` Linear weight included)
    exactly as the single layer would be drawn. Schemes: ``'default'`` (what nn.Linear /
    nn.Conv2d draw themselves: their kaiming_uniform_(a=sqrt(5)) reduces to
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and so does their bias), ``'xavier'`` (DL4J;
    nn.init.xavier_uniform_'s arithmetic), ``'he'`` (the TF1 seed's normal,
    N(0, 1/sqrt(fan_in/2))), ``'dcgan'`` N(0, 0.02). All but ``'default'`` zero the bias.
    """
    if scheme == "default":
        bound = 1.0 / math.sqrt(fan_in)
        weight.uniform_(-bound, bound, generator=generator)
        if bias is not None:
            bias.uniform_(-bound, bound, generator=generator)
        return
    if scheme == "xavier":
        a = math.sqrt(3.0) * math.sqrt(2.0 / float(fan_in + fan_out))
        weight.uniform_(-a, a, generator=generator)
    elif scheme == "he":
        weight.normal_(0.0, 1.0 / math.sqrt(fan_in / 2.0), generator=generator)
    elif scheme == "dcgan":
        weight.normal_(0.0, 0.02, generator=generator)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")
    if bias is not None:
        bias.zero_()


def init_weights(module: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear/Conv layer per `init_layer_`; ``'default'`` keeps torch's own draw."""
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            receptive = m.weight[0][0].numel()
            init_layer_(m.weight, m.bias, m.weight.shape[1] * receptive, m.weight.shape[0] * receptive, scheme)


def build_nets(spec: NetSpec, cond_dim: int = 0) -> Nets:
    """The built-in pair for ``spec.arch`` ('mlp' or 'dcgan'), initialised per ``spec.init``."""
    if spec.arch == "mlp":
        nets = Nets(MLPGenerator(spec, cond_dim), MLPDiscriminator(spec, cond_dim))
    elif spec.arch == "dcgan":
        if spec.image_size != 28:
            raise ValueError("the DCGAN nets work at 28x28 only")
        nets = Nets(DCGANGenerator(spec, cond_dim), DCGANDiscriminator(spec, cond_dim))
    else:
        raise ValueError(f"unknown architecture {spec.arch!r}")
    init_weights(nets.generator, spec.init)
    init_weights(nets.discriminator, spec.init)
    return nets
