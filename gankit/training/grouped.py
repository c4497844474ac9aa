"""Per-class MLP generators stored as stacked weights, run by grouping the batch by label.

Heavy tier (torch). A per-class GAN trains K independent MLP generators, one per class.
`GroupedMLP` keeps layer ``i`` of all K of them as one tensor ``[K, in, out]`` (and a bias
``[K, out]``) so that:

* `GroupedMLP.forward_blocks` runs all K nets at once with ``torch.bmm`` on a block
  ``z[K, B, Z]`` (B samples for each class), the fast path for per-class training;
* `GroupedMLP.forward` takes a mixed batch ``(z[N, Z], labels[N])`` and computes each
  sample with its own class's weights. It does so by grouping: for each class it picks
  the rows with that label (``nonzero``), runs them through that class's layers, then
  writes all groups back into batch order with a single scatter. Work is one MLP pass per
  sample, never a weight matrix gathered per sample (which would cost N copies of every
  layer in memory and turn the matmuls into slow batched matvecs).

`forward` exports with the dynamo ONNX exporter (``torch.onnx.export(..., dynamo=True)``)
with a dynamic batch: ``nonzero`` has a data-dependent length, which the exporter
handles as an unbacked size, and the class loop is unrolled (K is fixed). The ONNX graph
is K branches of ``Equal -> NonZero -> Gather -> MatMul/Add/activation...`` joined by one
``Concat`` and one ``ScatterND``. Classes with no sample in the batch simply give empty
branches. Rows whose label is not one of ``classes`` come out as zeros in the exported
graph (eager mode raises instead); the runtime refuses such digits before calling it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["GroupedMLP", "ACTIVATIONS"]


def _leaky_relu(x: torch.Tensor) -> torch.Tensor:
    # 0.2 is the slope every built-in net uses (gankit.training.nets.activation).
    return torch.nn.functional.leaky_relu(x, 0.2)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": _leaky_relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


class GroupedMLP(nn.Module):
    """K stacked MLPs; sample i is computed by the MLP of class ``labels[i]``.

    Args:
        weights: one tensor per layer, shaped ``[K, in, out]`` (note: the transpose of
            ``nn.Linear.weight``), so layer i computes ``x @ weights[i][k] + biases[i][k]``.
        biases: one tensor per layer, shaped ``[K, out]``.
        activations: one name per layer from `ACTIVATIONS` (``None`` means identity).
        classes: the class id each of the K nets draws, ascending (default ``0..K-1``).
        out_shape: shape of one sample's output (default ``(out,)``; a generator uses
            ``(1, 28, 28)``).

    The weights become trainable parameters ``weight_0, bias_0, weight_1, ...``.
    """

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 activations: Sequence[str | None], classes: Sequence[int] | None = None,
                 out_shape: Sequence[int] | None = None):
        super().__init__()
        if not weights or len(weights) != len(biases) or len(weights) != len(activations):
            raise ValueError("need one weight, one bias and one activation per layer")
        k = weights[0].shape[0]
        prev = weights[0].shape[1]
        for i, (w, b) in enumerate(zip(weights, biases)):
            if w.dim() != 3 or w.shape[0] != k or w.shape[1] != prev or tuple(b.shape) != (k, w.shape[2]):
                raise ValueError(f"layer {i}: weight {tuple(w.shape)} / bias {tuple(b.shape)} do not chain "
                                 f"as [K={k}, in={prev}, out] / [K, out]")
            prev = w.shape[2]
        names = [a or "identity" for a in activations]
        unknown = [a for a in names if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activation(s) {unknown}; known: {', '.join(ACTIVATIONS)}")
        classes = tuple(range(k)) if classes is None else tuple(int(c) for c in classes)
        if len(classes) != k or len(set(classes)) != k:
            raise ValueError(f"need {k} distinct classes, got {classes}")
        out_shape = (prev,) if out_shape is None else tuple(int(s) for s in out_shape)
        if math.prod(out_shape) != prev:
            raise ValueError(f"out_shape {out_shape} does not hold {prev} values")

        self.num_groups = k
        self.in_features = weights[0].shape[1]
        self.classes = classes
        self.out_shape = out_shape
        self.activations = tuple(names)
        self.num_layers = len(weights)
        for i, (w, b) in enumerate(zip(weights, biases)):
            self.register_parameter(f"weight_{i}", nn.Parameter(w.detach().clone().float()))
            self.register_parameter(f"bias_{i}", nn.Parameter(b.detach().clone().float()))

    # -- construction helpers -------------------------------------------------------

    @classmethod
    def from_sizes(cls, sizes: Sequence[int], activations: Sequence[str | None], *,
                   classes: Sequence[int], out_shape: Sequence[int] | None = None,
                   generator: torch.Generator | None = None) -> "GroupedMLP":
        """Fresh nets with widths ``sizes`` (input first), initialised like ``nn.Linear``.

        Each of the K nets gets its own independent draw, as K separate ``nn.Linear``
        stacks would.
        """
        k = len(classes)
        weights, biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # nn.Linear's default: kaiming_uniform(a=sqrt(5)) reduces to U(-1/sqrt(in), 1/sqrt(in)).
            bound = 1.0 / math.sqrt(fan_in)
            weights.append((torch.rand(k, fan_in, fan_out, generator=generator) * 2 - 1) * bound)
            biases.append((torch.rand(k, fan_out, generator=generator) * 2 - 1) * bound)
        return cls(weights, biases, activations, classes=classes, out_shape=out_shape)

    @classmethod
    def from_sequentials(cls, nets: Sequence[nn.Sequential], *, classes: Sequence[int] | None = None,
                         out_shape: Sequence[int] | None = None) -> "GroupedMLP":
        """Stack K ``nn.Sequential`` MLPs of identical structure (Linear, activation, ...).

        Activation modules recognised: ReLU, LeakyReLU(0.2), Tanh, Sigmoid, Identity; a
        Linear directly followed by another Linear gets the identity.
        """
        layouts = [_sequential_layout(net) for net in nets]
        if not layouts:
            raise ValueError("need at least one net")
        acts = layouts[0][1]
        if any(a != acts for _, a in layouts):
            raise ValueError("the nets use different activations")
        n_layers = len(layouts[0][0])
        weights = [torch.stack([lin[i].weight.detach().t() for lin, _ in layouts]) for i in range(n_layers)]
        biases = [torch.stack([_bias(lin[i]) for lin, _ in layouts]) for i in range(n_layers)]
        return cls(weights, biases, acts, classes=classes, out_shape=out_shape)

    def group(self, index: int) -> nn.Sequential:
        """Net ``index`` (0..K-1) as a stand-alone ``nn.Sequential`` (a copy of its weights)."""
        layers: list[nn.Module] = []
        for i in range(self.num_layers):
            w = getattr(self, f"weight_{i}")[index]
            lin = nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(w.t())
                lin.bias.copy_(getattr(self, f"bias_{i}")[index])
            layers.append(lin)
            layers.append(_activation_module(self.activations[i]))
        return nn.Sequential(*layers)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
        """``(weight [K, in, out], bias [K, out], activation)`` for each layer."""
        return [(getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}"), self.activations[i])
                for i in range(self.num_layers)]

    # -- compute ---------------------------------------------------------------------

    def _run_group(self, x: torch.Tensor, k: int) -> torch.Tensor:
        for w, b, act in self.layers():
            x = ACTIVATIONS[act](torch.addmm(b[k], x, w[k]))
        return x

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``z[N, in]``, ``labels[N]`` (class ids) -> ``[N, *out_shape]``, per-sample class nets."""
        labels = labels.to(torch.int64).reshape(-1)
        if not torch.compiler.is_exporting():
            known = torch.tensor(self.classes, dtype=torch.int64, device=labels.device)
            stray = labels[~torch.isin(labels, known)]
            if stray.numel():
                raise ValueError(f"labels {sorted(set(stray.tolist()))} are not among this model's "
                                 f"classes {list(self.classes)}")
        outs, rows = [], []
        for k, cls_id in enumerate(self.classes):
            idx = torch.nonzero(labels == cls_id).reshape(-1)
            outs.append(self._run_group(z.index_select(0, idx), k))
            rows.append(idx)
        grouped = torch.cat(outs, 0)
        order = torch.cat(rows, 0)
        out = z.new_zeros((z.shape[0], grouped.shape[1]))
        # One scatter back into batch order, instead of K scatters each copying the whole batch.
        out = out.index_put((order,), grouped)
        return out.reshape(z.shape[0], *self.out_shape)

    def forward_blocks(self, z: torch.Tensor) -> torch.Tensor:
        """``z[K, B, in]`` (block k for class ``classes[k]``) -> ``[K, B, *out_shape]`` via bmm."""
        if z.dim() != 3 or z.shape[0] != self.num_groups:
            raise ValueError(f"expected z of shape [K={self.num_groups}, B, {self.in_features}], "
                             f"got {tuple(z.shape)}")
        x = z
        for w, b, act in self.layers():
            x = ACTIVATIONS[act](torch.baddbmm(b.unsqueeze(1), x, w))
        return x.reshape(z.shape[0], z.shape[1], *self.out_shape)


def _bias(lin: nn.Linear) -> torch.Tensor:
    return lin.bias.detach() if lin.bias is not None else torch.zeros(lin.out_features)


def _activation_name(module: nn.Module) -> str:
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.LeakyReLU):
        if not math.isclose(module.negative_slope, 0.2):
            raise ValueError(f"LeakyReLU slope {module.negative_slope} unsupported (only 0.2)")
        return "leaky_relu"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Identity):
        return "identity"
    raise ValueError(f"cannot stack a {type(module).__name__} layer")


def _activation_module(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "identity": nn.Identity}[name]()


def _sequential_layout(net: nn.Sequential) -> tuple[list[nn.Linear], list[str]]:
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
