"""Test-only constructors for `gankit.training.nets.stacked.GroupedMLP` (a helper module, not a test file).

Heavy tier (torch). Training builds its stacked nets with `build_stacked`; the tests also
need them from plain widths, stacked from K ``nn.Sequential`` MLPs (to compare against a
loop over separate nets), and one class unstacked back into an ``nn.Sequential``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gankit.training.nets.builtin import Activation, activation
from gankit.training.nets.stacked import GroupedMLP

__all__ = ["grouped_from_sizes", "grouped_from_sequentials", "grouped_class_net"]

_TORCH_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}


def grouped_from_sizes(sizes: Sequence[int], activations: Sequence[str | None], *, classes: Sequence[int],
                       out_shape: Sequence[int] | None = None,
                       generator: torch.Generator | None = None) -> GroupedMLP:
    """Fresh nets with widths ``sizes`` (input first), each class its own U(-1/sqrt(in), 1/sqrt(in)) draw."""
    k = len(classes)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        weights.append((torch.rand(k, fan_in, fan_out, generator=generator) * 2 - 1) * bound)
        biases.append((torch.rand(k, fan_out, generator=generator) * 2 - 1) * bound)
    return GroupedMLP(weights, biases, activations, classes=classes, out_shape=out_shape)


def _activation_name(module: nn.Module) -> str:
    if isinstance(module, Activation):
        return module.name
    if isinstance(module, nn.LeakyReLU):
        if not math.isclose(module.negative_slope, 0.2):
            raise ValueError(f"LeakyReLU slope {module.negative_slope} unsupported (only 0.2)")
        return "leaky_relu"
    for cls, name in _TORCH_ACTIVATIONS.items():
        if isinstance(module, cls):
            return name
    raise ValueError(f"cannot stack a {type(module).__name__} layer")


def _layout(net: nn.Sequential) -> tuple[list[nn.Linear], list[str]]:
    """The Linear layers of an MLP and the activation after each (identity where none follows)."""
    linears: list[nn.Linear] = []
    acts: list[str] = []
    for module in net:
        if isinstance(module, nn.Linear):
            if len(acts) < len(linears):
                acts.append("identity")
            linears.append(module)
        elif isinstance(module, (nn.Dropout, nn.Flatten, nn.Unflatten)):
            continue  # no effect in eval mode / on 2-D inputs; the output is reshaped anyway
        else:
            if len(acts) != len(linears) - 1:
                raise ValueError("activation without a preceding Linear")
            acts.append(_activation_name(module))
    if len(acts) < len(linears):
        acts.append("identity")
    return linears, acts


def grouped_from_sequentials(nets: Sequence[nn.Sequential], *, classes: Sequence[int] | None = None,
                             out_shape: Sequence[int] | None = None) -> GroupedMLP:
    """Stack K ``nn.Sequential`` MLPs of identical structure (Linear, activation, ...)."""
    layouts = [_layout(net) for net in nets]
    if not layouts:
        raise ValueError("need at least one net")
    acts = layouts[0][1]
    if any(a != acts for _, a in layouts):
        raise ValueError("the nets use different activations")
    n_layers = len(layouts[0][0])

    def bias(lin: nn.Linear) -> torch.Tensor:
        return lin.bias.detach() if lin.bias is not None else torch.zeros(lin.out_features)

    weights = [torch.stack([lin[i].weight.detach().t() for lin, _ in layouts]) for i in range(n_layers)]
    biases = [torch.stack([bias(lin[i]) for lin, _ in layouts]) for i in range(n_layers)]
    return GroupedMLP(weights, biases, acts, classes=classes, out_shape=out_shape)


def grouped_class_net(grouped: GroupedMLP, index: int) -> nn.Sequential:
    """Net ``index`` (0..K-1) as a stand-alone ``nn.Sequential`` (a copy of its weights)."""
    layers: list[nn.Module] = []
    for w, b, act in grouped.layers():
        lin = nn.Linear(w.shape[1], w.shape[2])
        with torch.no_grad():
            lin.weight.copy_(w[index].t())
            lin.bias.copy_(b[index])
        layers += [lin, activation(act)]
    return nn.Sequential(*layers)
