"""Stacked per-class nets: K independent generators or discriminators held in one set of tensors.

Heavy tier (torch). The per-digit plugin trains one GAN per class with these; a
third-party per-class plugin may use them too (`gankit.training` lists them).

Class k's net is slice k of every parameter, so all K nets run in one pass:

* MLP layers keep their weights as ``[K, in, out]`` (the transpose of ``nn.Linear.weight``)
  and run as ``torch.baddbmm`` over a block ``x[K, B, in]``: `GroupedMLP` (the generator,
  any widths and activations) and `StackedMLPDiscriminator` (with dropout and a head).
* DCGAN convolutions stack the K nets' channels side by side and run as one grouped
  convolution (``groups=K``): input ``[B, K*Cin, H, W]``, weight ``[K*Cout, Cin, 3, 3]``;
  group k sees only class k's channels. Batch norm over ``K*C`` channels normalises each
  channel over its own class's B samples, exactly what K separate batch norms do.

Every net is called through ``forward`` only (so a DistributedDataParallel wrapper sees
every call), in one of two forms:

``net(blocks)`` (no labels)
    The training form: class blocks ``[K, B, ...]``, block k for ``classes[k]``.
    A generator maps ``z[K, B, Z]`` to ``[K, B, 1, S, S]``; a discriminator maps
    ``images[K, B, 1, S, S]`` to scores ``[K, B]`` and takes ``dropout_gens=``, one
    ``torch.Generator`` per class for its dropout masks, or ``dropout_masks=``, the same
    masks drawn beforehand by `dropout_masks` (so a compiled forward holds no generator).
``net(x, labels)``
    The plugin contract's form, any batch of labels (sampling, export, checks):
    `by_class` groups the batch by label, runs each class's rows through that class's
    slice of the weights, and scatters the results back into batch order. Each sample
    costs one pass of its own net; no weight is ever gathered per sample. The
    generators export with the dynamo ONNX exporter: the class loop unrolls into K
    branches of ``Equal -> NonZero -> Gather -> ...`` joined by one ``Concat`` and one
    ``ScatterND``, ``nonzero`` becoming an unbacked dynamic size. Rows whose label is not
    one of ``classes`` come out as zeros in the exported graph (eager mode raises
    instead); the runtime refuses such digits before calling it.

Independence needs care only where randomness enters: initial weights come from one
``torch.Generator`` per (class, net) (`class_generators`, `build_stacked`), so class c's
numbers are the same whichever other classes are built beside it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gankit.plugin_api import NetSpec
from gankit.training.nets.builtin import ACTIVATIONS, init_layer_

__all__ = ["GroupedMLP", "StackedMLPDiscriminator", "StackedDCGANGenerator", "StackedDCGANDiscriminator",
           "build_stacked", "by_class", "class_generators", "derive_seed", "copy_class_into", "dropout_masks",
           "dropout_shapes"]

_MASK64 = (1 << 64) - 1
# Keras BatchNormalization(momentum=0.8, eps=1e-3), as gankit.training.nets.builtin uses for DCGAN.
_BN_MOMENTUM, _BN_EPS = 0.2, 1e-3

Generators = Optional[Sequence[torch.Generator]]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from small integers (splitmix64 over the parts), well spread for nearby inputs."""
    h = 0x243F6A8885A308D3
    for p in parts:
        h = (h + (int(p) & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def class_generators(base: int, classes: Sequence[int], stream: int,
                     device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One seeded generator per class; class c's depends on (base, c, stream) only."""
    return [torch.Generator(device=device).manual_seed(derive_seed(base, c, stream)) for c in classes]


# ----------------------------------------------------------------------------- grouping
def by_class(x: torch.Tensor, labels: torch.Tensor, classes: tuple[int, ...],
             run: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """``run(x[rows of class classes[k]], k)`` for each k, the results scattered back into batch order.

    Eager mode refuses a label outside ``classes``; under export that check cannot be
    traced, and such rows stay zero.
    """
    labels = labels.to(torch.int64).reshape(-1)
    if not torch.compiler.is_exporting():
        known = torch.tensor(classes, dtype=torch.int64, device=labels.device)
        stray = labels[~torch.isin(labels, known)]
        if stray.numel():
            raise ValueError(f"labels {sorted(set(stray.tolist()))} are not among this model's "
                             f"classes {list(classes)}")
    outs, rows = [], []
    for k, cls_id in enumerate(classes):
        idx = torch.nonzero(labels == cls_id).reshape(-1)
        outs.append(run(x.index_select(0, idx), k))
        rows.append(idx)
    grouped = torch.cat(outs, 0)
    order = torch.cat(rows, 0)
    out = grouped.new_zeros((x.shape[0], *grouped.shape[1:]))
    # One scatter back into batch order rather than K scatters over the whole batch.
    return out.index_put((order,), grouped)


def _check_blocks(x: torch.Tensor, k: int, dims: int, what: str) -> None:
    if x.dim() != dims or x.shape[0] != k:
        raise ValueError(f"without labels, expected {what} blocks of shape [K={k}, B, ...] ({dims} dims), "
                         f"got {tuple(x.shape)}")


# ----------------------------------------------------------------------------- init
def _linear(gens: Sequence[torch.Generator], fan_in: int, fan_out: int,
            scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked ``[K, in, out]`` weight and ``[K, out]`` bias, one independent draw per class.

    Each slice is filled in place from its class's generator (no per-class temporaries:
    ten 1024x784 layers would otherwise cost seconds of copying at build time). The
    entries are i.i.d., so drawing in ``[in, out]`` order is the same distribution as
    nn.Linear's ``[out, in]``.
    """
    k = len(gens)
    w, b = torch.empty(k, fan_in, fan_out), torch.empty(k, fan_out)
    for i, g in enumerate(gens):
        init_layer_(w[i], b[i], fan_in, fan_out, scheme, g)
    return w, b


def _conv(gens: Sequence[torch.Generator], cin: int, cout: int, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped-conv weight ``[K*cout, cin, 3, 3]`` and bias ``[K*cout]``, one draw per class."""
    k = len(gens)
    w, b = torch.empty(k * cout, cin, 3, 3), torch.empty(k * cout)
    for i, g in enumerate(gens):
        sl = slice(i * cout, (i + 1) * cout)
        init_layer_(w[sl], b[sl], cin * 9, cout * 9, scheme, g)
    return w, b


# ----------------------------------------------------------------------------- pieces
def dropout_masks(gens: Sequence[torch.Generator], shapes: Sequence[Sequence[int]], p: float,
                  device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """One 0/1 keep-mask ``[K, *shape]`` per dropout layer, class k's drawn from ``gens[k]``.

    The draws are the ones a discriminator given ``dropout_gens=gens`` makes inside its
    forward (each generator draws its layers in order, each mask contiguously, 0/1 the
    same in any float dtype), so passing the result as ``dropout_masks=`` gives the same
    numbers; ``shapes`` is `dropout_shapes` for the discriminator's spec and block size.

    On a CPU each generator draws serially (one Mersenne-Twister number per element, the
    slowest part of a DCGAN discriminator's step), so the classes are drawn on up to
    ``torch.get_num_threads()`` threads at once: each generator still draws its own
    layers in order on one thread, so the masks are the same whatever the thread count.
    """
    masks = [torch.empty((len(gens), *shape), device=device) for shape in shapes]

    def draw(k: int) -> None:
        for buf in masks:
            buf[k].bernoulli_(1.0 - p, generator=gens[k])

    workers = min(len(gens), torch.get_num_threads())
    if torch.device(device).type == "cpu" and workers > 1 and sum(m.numel() for m in masks) >= _PARALLEL_DRAWS:
        list(_mask_pool(workers).map(draw, range(len(gens))))
    else:
        for k in range(len(gens)):
            draw(k)
    return masks


# Below this many mask elements a step's draws take less time than handing them to threads.
_PARALLEL_DRAWS = 1 << 15
_POOLS: dict[int, Any] = {}


def _mask_pool(workers: int):
    """A lasting thread pool for `dropout_masks` (bernoulli_ releases the GIL while it draws)."""
    pool = _POOLS.get(workers)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="gankit-masks")
    return pool


def _dcgan_d_sides(spec: NetSpec) -> list[int]:
    """The DCGAN discriminator's feature-map side after each block (strides 2, 2, 2, then 1)."""
    sides, size = [], spec.image_size
    for i in range(len(spec.d_hidden)):
        stride = 2 if i < 3 else 1
        size = (size + 2 - 3) // stride + 1
        if i == 1:  # Keras' ZeroPadding2D(((0,1),(0,1))) after the second conv
            size += 1
        sides.append(size)
    return sides


def dropout_shapes(spec: NetSpec, n: int) -> list[tuple[int, ...]]:
    """One class's dropout-mask shape per layer of ``spec``'s stacked discriminator, for blocks of n samples."""
    if spec.arch == "mlp":
        return [(n, w) for w in spec.d_hidden]
    return [(n, c, side, side) for c, side in zip(spec.d_hidden, _dcgan_d_sides(spec))]


def _dropout(x: torch.Tensor, p: float, gens: Generators, class_dim: int, training: bool,
             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Dropout; with ``gens`` each class's mask comes from its own generator (see the module doc).

    ``mask`` is that mask drawn beforehand (`dropout_masks`, classes first).
    """
    if p <= 0 or not training:
        return x
    if mask is not None:
        return x * mask.to(x.dtype).movedim(0, class_dim) * (1.0 / (1.0 - p))
    if gens is None:
        return F.dropout(x, p, True)
    k = x.shape[class_dim]
    shape = list(x.shape)
    del shape[class_dim]
    # Each class's mask is drawn contiguously from its own generator, so it does not depend
    # on how many other classes sit beside it; then the masks are stacked into place.
    masks = [torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=g) for g in gens]
    if len(masks) != k:
        raise ValueError(f"{len(masks)} dropout generators for {k} classes")
    return x * torch.stack(masks, class_dim) * (1.0 / (1.0 - p))


def _bn_slice(bn: nn.BatchNorm2d, x: torch.Tensor, k: int, training: bool) -> torch.Tensor:
    """Class k's channels of a stacked batch norm, applied to class k's samples alone."""
    c = x.shape[1]
    sl = slice(k * c, (k + 1) * c)
    if training:
        # The running-stat slices are views, so this updates class k's running
        # statistics in place, as the class's own BatchNorm2d would.
        return F.batch_norm(x, bn.running_mean[sl], bn.running_var[sl], bn.weight[sl], bn.bias[sl],
                            True, bn.momentum, bn.eps)
    # Eval mode is a per-channel affine map. Written out rather than F.batch_norm, whose
    # empty-input check cannot be traced when a class has no rows (an unbacked batch size).
    scale = bn.weight[sl] * torch.rsqrt(bn.running_var[sl] + bn.eps)
    shift = bn.bias[sl] - bn.running_mean[sl] * scale
    return x * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)


def _conv_layout(x: torch.Tensor) -> torch.Tensor:
    """The class blocks' feature maps in the layout their grouped convolutions run fastest in.

    On a CPU that is channels-last (NHWC): oneDNN's grouped convolutions run about 1.3-1.5x
    faster on it for these nets (bench/results/per_digit.md); elsewhere the layout is left
    as it is. Same numbers up to float rounding.
    """
    if x.device.type == "cpu" and _CPU_CHANNELS_LAST:
        return x.contiguous(memory_format=torch.channels_last)
    return x


_CPU_CHANNELS_LAST = True


def _stacked_bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM, eps=_BN_EPS)


# ----------------------------------------------------------------------------- MLP G
class _StackedDiscriminator(nn.Module):
    """What both stacked discriminators share: one ``forward`` for class blocks or a labelled batch.

    Subclasses provide ``_blocks(x[K, B, 1, S, S], dropout_gens, masks) -> [K, B]`` and
    ``_run_class(x[n, 1, S, S], k) -> [n]``, plus ``classes`` and ``num_groups``.
    """

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                dropout_gens: Generators = None,
                dropout_masks: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """``images[N, 1, S, S]`` with ``labels[N]`` -> scores ``[N]``; ``images[K, B, 1, S, S]`` alone -> ``[K, B]``."""
        if labels is None:
            _check_blocks(images, self.num_groups, 5, "image")
            return self._blocks(images, dropout_gens, dropout_masks)
        return by_class(images, labels, self.classes, self._run_class)


class GroupedMLP(nn.Module):
    """K stacked MLPs; sample i is computed by the MLP of class ``labels[i]``.

    Args:
        weights: one tensor per layer, shaped ``[K, in, out]`` (note: the transpose of
            ``nn.Linear.weight``), so layer i computes ``x @ weights[i][k] + biases[i][k]``.
        biases: one tensor per layer, shaped ``[K, out]``.
        activations: one name per layer from `gankit.training.nets.builtin.ACTIVATIONS`
            (``None`` means identity).
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

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
        """``(weight [K, in, out], bias [K, out], activation)`` for each layer."""
        return [(getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}"), self.activations[i])
                for i in range(self.num_layers)]

    def _run_class(self, x: torch.Tensor, k: int) -> torch.Tensor:
        for w, b, act in self.layers():
            x = ACTIVATIONS[act](torch.addmm(b[k], x, w[k]))
        return x

    def _blocks(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        for w, b, act in self.layers():
            x = ACTIVATIONS[act](torch.baddbmm(b.unsqueeze(1), x, w))
        return x.reshape(z.shape[0], z.shape[1], *self.out_shape)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z[N, in]`` with ``labels[N]`` -> ``[N, *out_shape]``; ``z[K, B, in]`` alone -> ``[K, B, *out_shape]``."""
        if labels is None:
            _check_blocks(z, self.num_groups, 3, "z")
            return self._blocks(z)
        out = by_class(z, labels, self.classes, self._run_class)
        return out.reshape(z.shape[0], *self.out_shape)


# ----------------------------------------------------------------------------- MLP D
class StackedMLPDiscriminator(_StackedDiscriminator):
    """K MLP discriminators (gankit.training.nets.builtin.MLPDiscriminator's layout), weights ``[K, in, out]``."""

    def __init__(self, spec: NetSpec, gens: Sequence[torch.Generator]):
        super().__init__()
        self.classes = tuple(spec.classes)
        self.num_groups = len(self.classes)
        self.act = spec.d_activation
        self.p = float(spec.d_dropout)
        widths = (spec.image_size ** 2, *spec.d_hidden)
        self.num_layers = len(widths) - 1
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            w, b = _linear(gens, fan_in, fan_out, spec.init)
            self.register_parameter(f"weight_{i}", nn.Parameter(w))
            self.register_parameter(f"bias_{i}", nn.Parameter(b))
        w, b = _linear(gens, widths[-1], 1, spec.init)
        self.head_weight = nn.Parameter(w)
        self.head_bias = nn.Parameter(b)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}")) for i in range(self.num_layers)]

    def _blocks(self, x: torch.Tensor, gens: Generators, masks: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        act = ACTIVATIONS[self.act]
        h = x.reshape(x.shape[0], x.shape[1], -1)
        for i, (w, b) in enumerate(self.layers()):
            h = _dropout(act(torch.baddbmm(b.unsqueeze(1), h, w)), self.p, gens, 0, self.training,
                         None if masks is None else masks[i])
        return torch.baddbmm(self.head_bias.unsqueeze(1), h, self.head_weight).squeeze(2)

    def _run_class(self, x: torch.Tensor, k: int) -> torch.Tensor:
        act = ACTIVATIONS[self.act]
        h = x.reshape(x.shape[0], -1)
        for w, b in self.layers():
            h = F.dropout(act(torch.addmm(b[k], h, w[k])), self.p, self.training and self.p > 0)
        return torch.addmm(self.head_bias[k], h, self.head_weight[k]).squeeze(1)



# ----------------------------------------------------------------------------- DCGAN
class StackedDCGANGenerator(nn.Module):
    """K DCGAN generators (gankit.training.nets.builtin.DCGANGenerator's layout) as grouped convolutions."""

    def __init__(self, spec: NetSpec, gens: Sequence[torch.Generator]):
        super().__init__()
        if spec.image_size != 28:
            raise ValueError("the DCGAN nets work at 28x28 only")
        self.classes = tuple(spec.classes)
        self.num_groups = k = len(self.classes)
        self.c0 = c0 = spec.g_hidden[0]
        self.act = spec.g_activation
        self.out_act = spec.output_activation
        scheme = spec.init
        w, b = _linear(gens, spec.z_dim, c0 * 49, scheme)
        self.fc_weight, self.fc_bias = nn.Parameter(w), nn.Parameter(b)
        # Per block: (upsample before the conv?, output channels); the same plan as DCGANGenerator.
        self.plan: list[tuple[bool, int]] = [(i < 2, out_ch) for i, out_ch in enumerate(spec.g_hidden)]
        self.final_upsample = len(spec.g_hidden) < 2
        self.conv_weights = nn.ParameterList()
        self.conv_biases = nn.ParameterList()
        self.norms = nn.ModuleList()
        in_ch = c0
        for _, out_ch in self.plan:
            w, b = _conv(gens, in_ch, out_ch, scheme)
            self.conv_weights.append(nn.Parameter(w))
            self.conv_biases.append(nn.Parameter(b))
            self.norms.append(_stacked_bn(k * out_ch))
            in_ch = out_ch
        w, b = _conv(gens, in_ch, 1, scheme)
        self.out_weight, self.out_bias = nn.Parameter(w), nn.Parameter(b)

    def _body(self, h: torch.Tensor, conv: Callable, norm: Callable) -> torch.Tensor:
        act = ACTIVATIONS[self.act]
        for i, (up, _) in enumerate(self.plan):
            if up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = act(norm(i, conv(h, self.conv_weights[i], self.conv_biases[i])))
        if self.final_upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        return ACTIVATIONS[self.out_act](conv(h, self.out_weight, self.out_bias))

    def _blocks(self, z: torch.Tensor) -> torch.Tensor:
        k, n = z.shape[0], z.shape[1]
        h = torch.relu(torch.baddbmm(self.fc_bias.unsqueeze(1), z, self.fc_weight))
        # [K, B, c0*49] -> [B, K*c0, 7, 7]: class k owns channels k*c0 .. (k+1)*c0-1.
        h = _conv_layout(h.view(k, n, self.c0, 7, 7).transpose(0, 1).reshape(n, k * self.c0, 7, 7))
        out = self._body(h, lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=k),
                         lambda i, x: self.norms[i](x))
        return out.transpose(0, 1).unsqueeze(2)  # [B, K, 28, 28] -> [K, B, 1, 28, 28]

    def _run_class(self, z: torch.Tensor, k: int) -> torch.Tensor:
        h = torch.relu(torch.addmm(self.fc_bias[k], z, self.fc_weight[k])).view(-1, self.c0, 7, 7)

        def conv(x, w, b):
            cout = w.shape[0] // self.num_groups
            return F.conv2d(x, w[k * cout:(k + 1) * cout], b[k * cout:(k + 1) * cout], padding=1)

        return self._body(h, conv, lambda i, x: _bn_slice(self.norms[i], x, k, self.training))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z[N, Z]`` with ``labels[N]`` -> ``[N, 1, 28, 28]``; ``z[K, B, Z]`` alone -> ``[K, B, 1, 28, 28]``."""
        if labels is None:
            _check_blocks(z, self.num_groups, 3, "z")
            return self._blocks(z)
        return by_class(z, labels, self.classes, self._run_class)


class StackedDCGANDiscriminator(_StackedDiscriminator):
    """K DCGAN discriminators (gankit.training.nets.builtin.DCGANDiscriminator's layout) as grouped convolutions."""

    def __init__(self, spec: NetSpec, gens: Sequence[torch.Generator]):
        super().__init__()
        self.classes = tuple(spec.classes)
        self.num_groups = k = len(self.classes)
        self.act = spec.d_activation
        self.p = float(spec.d_dropout)
        scheme = spec.init
        self.plan: list[tuple[int, bool, bool]] = []  # (stride, zero-pad after, batch norm)
        self.conv_weights = nn.ParameterList()
        self.conv_biases = nn.ParameterList()
        self.norms = nn.ModuleDict()
        in_ch, sides = 1, _dcgan_d_sides(spec)
        for i, out_ch in enumerate(spec.d_hidden):
            stride = 2 if i < 3 else 1
            w, b = _conv(gens, in_ch, out_ch, scheme)
            self.conv_weights.append(nn.Parameter(w))
            self.conv_biases.append(nn.Parameter(b))
            if i > 0:
                self.norms[str(i)] = _stacked_bn(k * out_ch)
            self.plan.append((stride, i == 1, i > 0))
            in_ch = out_ch
        self.feature_dim = in_ch * sides[-1] * sides[-1]
        w, b = _linear(gens, self.feature_dim, 1, scheme)
        self.head_weight, self.head_bias = nn.Parameter(w), nn.Parameter(b)

    def _body(self, h: torch.Tensor, conv: Callable, norm: Callable, dropout: Callable) -> torch.Tensor:
        act = ACTIVATIONS[self.act]
        for i, (stride, pad, has_bn) in enumerate(self.plan):
            h = conv(h, self.conv_weights[i], self.conv_biases[i], stride)
            if pad:
                h = F.pad(h, (0, 1, 0, 1))
            if has_bn:
                h = norm(i, h)
            h = dropout(i, act(h))
        return h

    def _blocks(self, x: torch.Tensor, gens: Generators, masks: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        k, n = x.shape[0], x.shape[1]
        h = _conv_layout(x.reshape(k, n, x.shape[-2], x.shape[-1]).transpose(0, 1))  # [N, K, 28, 28]: one channel per class
        h = self._body(
            h, lambda t, w, b, s: F.conv2d(t, w, b, stride=s, padding=1, groups=k),
            lambda i, t: self.norms[str(i)](t),
            # Dropout masks per class: view channels as [N, K, C, H, W] so class k's block is contiguous per mask.
            lambda i, t: _dropout(t.view(n, k, -1, *t.shape[2:]), self.p, gens, 1, self.training,
                                  None if masks is None else masks[i]).reshape(t.shape))
        feats = h.reshape(n, k, -1).transpose(0, 1)  # [K, N, C*s*s] in (C, s, s) order, as flatten(1)
        return torch.baddbmm(self.head_bias.unsqueeze(1), feats, self.head_weight).squeeze(2)

    def _run_class(self, x: torch.Tensor, k: int) -> torch.Tensor:
        def conv(t, w, b, stride):
            cout = w.shape[0] // self.num_groups
            return F.conv2d(t, w[k * cout:(k + 1) * cout], b[k * cout:(k + 1) * cout], stride=stride, padding=1)

        h = self._body(x, conv, lambda i, t: _bn_slice(self.norms[str(i)], t, k, self.training),
                       lambda i, t: F.dropout(t, self.p, self.training and self.p > 0))
        return torch.addmm(self.head_bias[k], h.flatten(1), self.head_weight[k]).squeeze(1)



# ----------------------------------------------------------------------------- build
def build_stacked(spec: NetSpec, base_seed: int) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for ``spec.arch``; class c's initial weights depend on (base_seed, c) only."""
    g_gens = class_generators(base_seed, spec.classes, 0)
    d_gens = class_generators(base_seed, spec.classes, 1)
    if spec.arch == "mlp":
        widths = (spec.z_dim, *spec.g_hidden, spec.image_size ** 2)
        weights, biases = [], []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            w, b = _linear(g_gens, fan_in, fan_out, spec.init)
            weights.append(w)
            biases.append(b)
        acts = [spec.g_activation] * len(spec.g_hidden) + [spec.output_activation]
        generator = GroupedMLP(weights, biases, acts, classes=spec.classes,
                               out_shape=(1, spec.image_size, spec.image_size))
        return generator, StackedMLPDiscriminator(spec, d_gens)
    if spec.arch == "dcgan":
        return StackedDCGANGenerator(spec, g_gens), StackedDCGANDiscriminator(spec, d_gens)
    raise ValueError(f"unknown architecture {spec.arch!r}")


# ----------------------------------------------------------------------------- unstack
def _class_tensors(module: nn.Module, k: int) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Class k's slice of a stacked net, as the Linear / Conv2d / BatchNorm2d tensors of one standard net, in order."""
    linear: list[tuple[torch.Tensor, ...]] = []
    conv: list[tuple[torch.Tensor, ...]] = []
    norm: list[tuple[torch.Tensor, ...]] = []

    def conv_slice(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cout = w.shape[0] // module.num_groups
        return w[k * cout:(k + 1) * cout], b[k * cout:(k + 1) * cout]

    def bn_slice(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, ...]:
        c = bn.num_features // module.num_groups
        sl = slice(k * c, (k + 1) * c)
        return bn.weight[sl], bn.bias[sl], bn.running_mean[sl], bn.running_var[sl]

    if isinstance(module, GroupedMLP):
        linear = [(w[k].t(), b[k]) for w, b, _ in module.layers()]
    elif isinstance(module, StackedMLPDiscriminator):
        linear = [(w[k].t(), b[k]) for w, b in module.layers()]
        linear.append((module.head_weight[k].t(), module.head_bias[k]))
    elif isinstance(module, StackedDCGANGenerator):
        linear = [(module.fc_weight[k].t(), module.fc_bias[k])]
        conv = [conv_slice(w, b) for w, b in zip(module.conv_weights, module.conv_biases)]
        conv.append(conv_slice(module.out_weight, module.out_bias))
        norm = [bn_slice(bn) for bn in module.norms]
    elif isinstance(module, StackedDCGANDiscriminator):
        conv = [conv_slice(w, b) for w, b in zip(module.conv_weights, module.conv_biases)]
        norm = [bn_slice(module.norms[str(i)]) for i in range(len(module.plan)) if str(i) in module.norms]
        linear = [(module.head_weight[k].t(), module.head_bias[k])]
    else:
        raise TypeError(f"not a stacked per-class net: {type(module).__name__}")
    return {"linear": linear, "conv": conv, "norm": norm}


@torch.no_grad()
def copy_class_into(stacked: nn.Module, k: int, target: nn.Module) -> nn.Module:
    """Copy class k's weights (and batch-norm statistics) from ``stacked`` into a standard gankit net."""
    src = _class_tensors(stacked, k)
    dst = {
        "linear": [m for m in target.modules() if isinstance(m, nn.Linear)],
        "conv": [m for m in target.modules() if isinstance(m, nn.Conv2d)],
        "norm": [m for m in target.modules() if isinstance(m, nn.BatchNorm2d)],
    }
    for kind in ("linear", "conv", "norm"):
        if len(src[kind]) != len(dst[kind]):
            raise ValueError(f"layer mismatch: {len(src[kind])} stacked {kind} layers, {len(dst[kind])} in the target")
        for tensors, m in zip(src[kind], dst[kind]):
            names = ("weight", "bias", "running_mean", "running_var")[:len(tensors)]
            for name, t in zip(names, tensors):
                getattr(m, name).copy_(t)
    return target
