"""The gankit plugin contract: everything a plugin author implements, in one module.

Light tier at import time (torch appears only in type hints); a plugin's `build`
runs in the heavy tier and returns torch modules. This docstring and the ones below
are the reference; docs/writing-a-plugin.md is the guided tour.

A plugin is a distribution that registers one `GanPlugin` object under the
entry-point group ``gankit.plugins``::

    [project.entry-points."gankit.plugins"]
    hinge = "gankit_hinge:plugin"

The built-in plugins (``unconditional``, ``per-digit``, ``conditional``) register the
same way. Beyond this module they use the helpers `gankit.training` lists in its
``__all__`` (the built-in nets, `standard_step`, `discriminator_scores`, the stacked
per-class nets); those are public too, and a third-party plugin may use them.

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
    * Labels are digit values (``3`` means the digit 3), never indexes into
      ``spec.classes``: with ``--digits 3,8`` the labels are 3 and 8. A net that keeps
      one row per trained class maps them itself (``spec.classes.index(digit)``), or
      sizes its table by ``spec.num_classes`` (10) and ignores the unused rows.

``api_version`` (required)
    The contract version the plugin was written for, as a literal (``api_version=1``).
    There is no default: a default would silently claim every future version.

``label_mode``
    How labels are used: ``"none"`` (unconditional; labels are ignored),
    ``"per-class"`` (one independent GAN per class, each seeing only its class), or
    ``"conditional"`` (one GAN that takes the label as input).

``batch_layout``
    ``"shuffled"`` (default): batches are uniform random draws from the data.
    ``"per-class"``: every batch holds ``batch_size`` images of each trained class,
    grouped class by class in ``spec.classes`` order (what per-class GANs need).

``supported_archs``
    The values of ``--arch`` (``spec.arch``) this plugin builds nets for. The built-in
    nets are ``"mlp"`` and ``"dcgan"`` (`gankit.training.nets.build_nets`); a plugin
    with nets of its own names them, e.g. ``supported_archs=("resnet",)``, instead of
    posing as one of those. The first entry is the plugin's default arch (used when
    neither ``--arch`` nor a preset sets one). Asking for another arch is a usage
    error before anything is built.

``train_step(ctx, real, labels) -> dict[str, float]`` (optional)
    Replace the default step (`gankit.training.step.standard_step`, which a plugin
    may call). ``ctx`` is a `StepContext`.

    * ``real``: ``float32[B, 1, spec.image_size, spec.image_size]`` on ``ctx.device``,
      already scaled to ``spec.value_range`` (e.g. [-1, 1] for a tanh generator); B is
      ``batch_size``, or ``batch_size * len(spec.classes)`` for a ``per-class`` layout.
    * ``labels``: ``int64[B]`` on ``ctx.device``, digit values as above.
    * The step updates ``ctx.opt_d`` and ``ctx.opt_g`` itself, runs its forward passes
      inside ``ctx.autocast()`` (bf16 under ``--precision bf16``), draws all
      randomness from ``ctx.noise`` / ``ctx.torch_generator`` (so runs are reproducible
      and resume exactly), leaves every parameter with ``requires_grad`` as it found
      it, and returns at least ``{"d_loss": ..., "g_loss": ...}`` as Python floats or
      detached 0-d tensors (tensors let the step run without waiting on the device).
      Other keys are logged too.
    * A step calls the nets only through ``forward``: ``ctx.generator(...)`` and
      ``ctx.discriminator(...)``, never another method or a submodule of theirs. gankit
      may wrap the nets (DistributedDataParallel synchronises gradients only for calls
      that go through ``forward``). A net with several uses takes them as ``forward``
      arguments: the stacked per-class nets (`gankit.training.stacked`) take
      ``[K, B, ...]`` class blocks when called without labels, and a discriminator with
      auxiliary outputs returns ``(scores, aux)`` for ``D(images, labels, aux=True)``
      (`gankit.training.step.AuxiliaryLoss`).

``uses_loss`` (default True)
    False for a plugin whose step brings its own loss (hinge, WGAN): ``--loss`` and
    ``--ls-sigmoid`` then do not apply, and `gankit train` warns when they are given.

``export_module(generator) -> torch.nn.Module`` (optional)
    The module to trace for ONNX export, if the training generator is not directly
    exportable (for example one that dispatches per class). It must take
    ``(z, labels)`` and return the same images as the generator, within 1e-4.

``train_defaults`` (optional)
    Settings the plugin works best with, by their flat `gankit.config` names, trainer
    and net settings alike (e.g. ``{"batch_size": 64, "beta1": 0.5, "d_steps": 5}``).
    They replace gankit's defaults for this plugin; a ``--preset``, a ``--config``
    file and explicit command-line options win over them. `check_plugin` runs the
    plugin with them, and ``gankit plugins show`` lists them.

``default_options`` / ``validate_options``
    Plugin-specific options (``--option key=value`` on the command line) arrive in
    ``spec.options``, already merged over ``default_options``. ``default_options``
    lists every key the plugin understands with its default; an unknown key is a
    usage error before any training starts. ``validate_options(options)`` raises
    ``ValueError`` with a one-line reason for a bad value. A run's config.json keeps
    the merged options, so a later release that changes a default does not change
    how an old run is rebuilt.

Versioning
----------
``GANKIT_PLUGIN_API`` is the contract version. The registry refuses a plugin whose
``api_version`` differs, naming its distribution.

Checking a plugin
-----------------
Plugin authors run `gankit.testing.check_plugin(plugin)` in their own tests: it
builds the nets, runs training steps with the plugin's ``train_defaults`` (also under
bf16 autocast), and exports and reloads the generator the way gankit does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional, Sequence

from gankit.config import NetConfig

if TYPE_CHECKING:  # pragma: no cover - type hints only; importing this module stays light
    import torch

GANKIT_PLUGIN_API = 1

LabelMode = Literal["none", "per-class", "conditional"]
BatchLayout = Literal["shuffled", "per-class"]
LABEL_MODES: tuple[str, ...] = ("none", "per-class", "conditional")
BATCH_LAYOUTS: tuple[str, ...] = ("shuffled", "per-class")


@dataclass(frozen=True)
class NetSpec(NetConfig):
    """What the trainer asks a plugin to build: the run's `NetConfig` plus its classes and options.

    The net fields are declared once, in `gankit.config.NetConfig` (one setting each
    on the command line, ``net`` in a run's config.json):

    * ``arch``: one of the plugin's ``supported_archs`` (built-in nets: ``"mlp"``,
      ``"dcgan"``).
    * ``z_dim``: latent size.
    * ``image_size``: side of the square images the nets work at (28, or 32 for the
      Paddle recipe; exported models are always resized to 28).
    * ``g_hidden`` / ``d_hidden``: layer widths (MLP) or channel counts (DCGAN).
    * ``g_activation`` / ``d_activation``: ``"relu"``, ``"leaky_relu"`` (slope 0.2),
      ``"tanh"`` or ``"sigmoid"``.
    * ``output_activation``: ``"tanh"`` (images in [-1, 1]), ``"sigmoid"`` or
      ``"relu"`` ([0, 1]; relu outputs are clamped to 1 on export).
    * ``d_dropout``: dropout probability in the discriminator (0 disables it).
    * ``init``: the weight-init scheme by name: ``"default"`` (torch's own),
      ``"xavier"``, ``"he"`` or ``"dcgan"`` (N(0, 0.02), batch-norm scales N(1, 0.02));
      a string the plugin applies (`gankit.training.nets.init_weights`), not a
      function, and nothing is returned.

    Added here:
        num_classes: number of classes in the data (10 for digits).
        classes: the digit values this run trains on, ascending (a per-class plugin
            builds one GAN for each).
        options: plugin-specific options, already merged with ``default_options``.
    """

    num_classes: int = 10
    classes: tuple[int, ...] = tuple(range(10))
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_net(cls, net: NetConfig, *, classes: Sequence[int], options: Mapping[str, Any],
                 num_classes: int = 10) -> "NetSpec":
        """The spec for ``net`` training ``classes`` (sorted here) with merged ``options``."""
        values = {f.name: getattr(net, f.name) for f in fields(NetConfig)}
        return cls(**values, num_classes=num_classes, classes=tuple(sorted(classes)), options=dict(options))

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
    """Everything a training step may touch. Built by `gankit.training.context.make_step_context`.

    Attributes:
        generator / discriminator: the nets being trained, in train mode, on ``device``.
        opt_g / opt_d: their optimizers.
        g_loss_fn(scores_fake) -> loss and d_loss_fn(scores_real, scores_fake) -> loss:
            the configured adversarial loss (BCE or least squares) on raw float32
            scores ``[N]``, each a 0-d mean.
        noise(n) -> z: a fresh ``float32[n, spec.z_dim]`` latent batch on ``device``
            from the configured distribution.
        d_steps: discriminator updates per generator update.
        step: index of the step being taken (0-based).
        spec: the NetSpec the nets were built from.
        torch_generator: the run's seeded ``torch.Generator``; it lives on ``device``
            (a CUDA generator in a CUDA run), so draw with ``device=ctx.device``.
        autocast: a context manager factory for mixed precision (no-op in fp32).
        next_batch() -> (real, labels): another batch, for extra discriminator steps,
            of the same form as the step's own ``real`` and ``labels``.
        device: the ``torch.device`` training runs on.
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
    device: Any = None


TrainStep = Callable[[StepContext, Any, Any], Mapping[str, float]]


@dataclass(frozen=True)
class GanPlugin:
    """A plugin, as registered under the ``gankit.plugins`` entry-point group.

    ``name``, ``description``, ``build`` and ``api_version`` are required; see the
    module docstring for what each field means.
    """

    name: str
    description: str
    build: Callable[[NetSpec], Nets]
    api_version: int
    label_mode: str = "none"
    batch_layout: str = "shuffled"
    train_step: Optional[TrainStep] = None
    export_module: Optional[Callable[[Any], Any]] = None
    default_options: Mapping[str, Any] = field(default_factory=dict)
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    validate_options: Optional[Callable[[Mapping[str, Any]], None]] = None
    supported_archs: tuple[str, ...] = ("mlp", "dcgan")
    uses_loss: bool = True


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
    archs = obj.supported_archs
    if not isinstance(archs, tuple) or not archs or not all(isinstance(a, str) and a for a in archs):
        problems.append(f"supported_archs must be a non-empty tuple of names, got {archs!r}")
    if not isinstance(obj.uses_loss, bool):
        problems.append(f"uses_loss must be True or False, got {obj.uses_loss!r}")
    from gankit.config import SETTINGS

    unknown = sorted(set(obj.train_defaults) - set(SETTINGS))
    if unknown:
        problems.append(f"train_defaults names settings gankit does not have: {', '.join(unknown)}")
    if not obj.name or not isinstance(obj.name, str):
        problems.append("`name` is empty")
    if problems:
        raise ValueError(f"{origin}: " + "; ".join(problems))
    return obj
