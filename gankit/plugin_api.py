"""The gankit plugin contract: everything a plugin author implements, in one module.

Light tier at import time (torch appears only in type hints); a plugin's `build`
runs in the heavy tier and returns torch modules.

A plugin is a distribution that registers one `GanPlugin` object under the
entry-point group ``gankit.plugins``::

    [project.entry-points."gankit.plugins"]
    hinge = "gankit_hinge:plugin"

The built-in plugins (``unconditional``, ``per-digit``, ``conditional``) register the
same way and use nothing beyond this module and the public helpers it names.

What a plugin provides
----------------------
``build(spec) -> Nets``
    Make a generator and a discriminator for a `NetSpec`. This is the only function a
    plugin must implement.

    * The generator is called as ``G(z, labels)`` with ``z: float32[N, spec.z_dim]`` and
      ``labels: int64[N]`` and returns ``float32[N, 1, spec.image_size, spec.image_size]``
      in ``spec.value_range``. A plugin that ignores labels still takes them: one
      signature for every generator is what lets every exported model have the same
      ONNX inputs.
    * The discriminator is called as ``D(images, labels)`` and returns raw scores
      ``float32[N]`` (logits: no sigmoid; the loss applies what it needs).

``label_mode``
    How labels are used: ``"none"`` (unconditional; labels are ignored),
    ``"per-class"`` (one independent GAN per class, each seeing only its class), or
    ``"conditional"`` (one GAN that takes the label as input).

``batch_layout``
    ``"shuffled"`` (default): batches are uniform random draws from the data.
    ``"per-class"``: every batch holds ``batch_size`` images of each trained class,
    grouped class by class in ``spec.classes`` order (what per-class GANs need).

``train_step(ctx, real, labels) -> dict[str, float]`` (optional)
    Replace the default step. ``ctx`` is a `StepContext`. The step must update
    ``ctx.opt_d`` and ``ctx.opt_g`` itself, draw all randomness from ``ctx.noise``
    / ``ctx.torch_generator`` (so runs are reproducible and resume exactly), and return
    at least ``{"d_loss": ..., "g_loss": ...}`` as Python floats or detached 0-d
    tensors (tensors let the step run without waiting on the device). The default step is
    `gankit.training.step.standard_step`; a plugin may call it.

``export_module(generator) -> torch.nn.Module`` (optional)
    The module to trace for ONNX export, if the training generator is not directly
    exportable (for example one that dispatches per class). It must take
    ``(z, labels)`` and return the same images as the generator, within 1e-4.

``train_defaults`` (optional)
    Trainer settings the plugin works best with, as TrainConfig field names (e.g.
    ``{"batch_size": 64, "beta1": 0.5, "ema": 0.999}``). They replace gankit's defaults
    for this plugin; a ``--preset`` and explicit command-line options still win.

``default_options`` / ``validate_options``
    Plugin-specific options (``--option key=value`` on the command line) arrive in
    ``spec.options``. ``default_options`` lists every key the plugin understands with
    its default; an unknown key is a usage error before any training starts.

Versioning
----------
``GANKIT_PLUGIN_API`` is the contract version. A plugin states the version it was
written for in ``api_version``; the registry refuses a plugin whose version differs,
naming its distribution.

Checking a plugin
-----------------
Plugin authors run `gankit.testing.check_plugin(plugin)` in their own tests: it
builds the nets, runs a training step, and checks shapes, dtypes and the export
contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional

if TYPE_CHECKING:  # pragma: no cover - type hints only; importing this module stays light
    import torch

GANKIT_PLUGIN_API = 1

LabelMode = Literal["none", "per-class", "conditional"]
BatchLayout = Literal["shuffled", "per-class"]
LABEL_MODES: tuple[str, ...] = ("none", "per-class", "conditional")
BATCH_LAYOUTS: tuple[str, ...] = ("shuffled", "per-class")


@dataclass(frozen=True)
class NetSpec:
    """What the trainer asks a plugin to build. Everything here comes from the run's config.

    Attributes:
        arch: ``"mlp"`` or ``"dcgan"`` (a plugin may support only some; say so in
            ``validate_options`` or raise ``ValueError`` from ``build``).
        z_dim: latent size.
        image_size: side of the square images the nets work at (28, or 32 for the
            Paddle recipe; exported models are always resized to 28).
        num_classes: number of classes in the data (10 for digits).
        classes: the class ids this run trains on, ascending (a per-class plugin builds
            one GAN for each).
        g_hidden / d_hidden: layer widths (MLP) or channel counts (DCGAN).
        g_activation / d_activation: ``"relu"``, ``"leaky_relu"`` (slope 0.2) ...
        output_activation: ``"tanh"`` (images in [-1, 1]) or ``"sigmoid"`` ([0, 1]).
        d_dropout: dropout probability in the discriminator (0 disables it).
        options: plugin-specific options, already merged with ``default_options``.
    """

    arch: str = "mlp"
    z_dim: int = 100
    image_size: int = 28
    num_classes: int = 10
    classes: tuple[int, ...] = tuple(range(10))
    g_hidden: tuple[int, ...] = (256, 512, 1024)
    d_hidden: tuple[int, ...] = (1024, 512, 256)
    g_activation: str = "leaky_relu"
    d_activation: str = "leaky_relu"
    output_activation: str = "tanh"
    d_dropout: float = 0.3
    init: str = "default"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def value_range(self) -> tuple[float, float]:
        """The range the generator's images lie in, set by its output activation."""
        # relu outputs (the DL4J recipe) are clipped to [0, 1] like sigmoid ones.
        return (-1.0, 1.0) if self.output_activation == "tanh" else (0.0, 1.0)


@dataclass
class Nets:
    """The pair a plugin's ``build`` returns. Both are ``torch.nn.Module``."""

    generator: "torch.nn.Module"
    discriminator: "torch.nn.Module"


@dataclass
class StepContext:
    """Everything a training step may touch. Built by the trainer, passed to ``train_step``.

    Attributes:
        generator / discriminator: the nets being trained.
        opt_g / opt_d: their optimizers.
        g_loss_fn(scores_fake) -> loss and d_loss_fn(scores_real, scores_fake) -> loss:
            the configured adversarial loss (BCE or least squares), each a mean.
        noise(n) -> z: a fresh latent batch from the configured distribution.
        d_steps: discriminator updates per generator update.
        step: index of the step being taken (0-based).
        spec: the NetSpec the nets were built from.
        torch_generator: the run's seeded torch.Generator for any extra randomness.
        autocast: a context manager factory for mixed precision (no-op in fp32).
        next_batch() -> (real, labels): another batch, for extra discriminator steps.
    """

    generator: "torch.nn.Module"
    discriminator: "torch.nn.Module"
    opt_g: Any
    opt_d: Any
    g_loss_fn: Callable[..., Any]
    d_loss_fn: Callable[..., Any]
    noise: Callable[[int], Any]
    d_steps: int
    step: int
    spec: NetSpec
    torch_generator: Any
    autocast: Callable[[], Any]
    next_batch: Callable[[], tuple[Any, Any]]


TrainStep = Callable[[StepContext, Any, Any], Mapping[str, float]]


@dataclass(frozen=True)
class GanPlugin:
    """A plugin, as registered under the ``gankit.plugins`` entry-point group.

    Only ``name``, ``description`` and ``build`` are required; see the module
    docstring for what each field means.
    """

    name: str
    description: str
    build: Callable[[NetSpec], Nets]
    label_mode: str = "none"
    batch_layout: str = "shuffled"
    api_version: int = GANKIT_PLUGIN_API
    train_step: Optional[TrainStep] = None
    export_module: Optional[Callable[[Any], Any]] = None
    default_options: Mapping[str, Any] = field(default_factory=dict)
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    validate_options: Optional[Callable[[Mapping[str, Any]], None]] = None
    supported_archs: tuple[str, ...] = ("mlp", "dcgan")


def validate_plugin(obj: object, origin: str) -> GanPlugin:
    """Check that ``obj`` honours this contract; return it, or raise ValueError naming ``origin``.

    ``origin`` is shown in the message, e.g. ``"plugin 'hinge' from gankit-hinge 0.1.0"``.
    """
    problems: list[str] = []
    if not isinstance(obj, GanPlugin):
        raise ValueError(
            f"{origin}: the entry point must be a gankit.plugin_api.GanPlugin, got {type(obj).__name__}"
        )
    if obj.api_version != GANKIT_PLUGIN_API:
        problems.append(
            f"written for plugin API {obj.api_version}, this gankit speaks API {GANKIT_PLUGIN_API}"
        )
    if not callable(obj.build):
        problems.append("`build` is not callable")
    if obj.train_step is not None and not callable(obj.train_step):
        problems.append("`train_step` is not callable")
    if obj.export_module is not None and not callable(obj.export_module):
        problems.append("`export_module` is not callable")
    if obj.label_mode not in LABEL_MODES:
        problems.append(f"label_mode {obj.label_mode!r} is not one of {', '.join(LABEL_MODES)}")
    if obj.batch_layout not in BATCH_LAYOUTS:
        problems.append(f"batch_layout {obj.batch_layout!r} is not one of {', '.join(BATCH_LAYOUTS)}")
    from gankit.config import TrainConfig

    unknown = sorted(set(obj.train_defaults) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        problems.append(f"train_defaults names settings gankit does not have: {', '.join(unknown)}")
    if not obj.name or not isinstance(obj.name, str):
        problems.append("`name` is empty")
    if problems:
        raise ValueError(f"{origin}: " + "; ".join(problems))
    return obj
