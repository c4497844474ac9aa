"""The gankit plugin contract: everything a plugin author implements, in one module.

Light tier at import time (torch appears only in type hints, and the run-time checks
below look at tensors without importing torch); a plugin's `build` runs in the heavy
tier and returns torch modules. This docstring, the ones below and `RULES` are the
reference; docs/writing-a-plugin.md is the guided tour, and its rules section is
generated from `RULES` (``rules_markdown()``; a test keeps the two equal).

A plugin is a distribution that registers one `GanPlugin` object under the
entry-point group ``gankit.plugins``::

    [project.entry-points."gankit.plugins"]
    hinge = "gankit_hinge:plugin"

The built-in plugins (``unconditional``, ``per-digit``, ``conditional``) register the
same way, and their names are reserved (`BUILTIN_PLUGINS`). Beyond this module they use
the helpers `gankit.training` lists in its ``__all__`` (the built-in nets,
`standard_step`, `discriminator_scores`, the stacked per-class nets); those are public
too, and a third-party plugin may use them.

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
    The contract version the plugin was written for, as a literal (``api_version=2``).
    There is no default: a default would silently claim every future version. This
    gankit speaks `SUPPORTED_API_VERSIONS`: API 1 plugins (untyped ``default_options``,
    no ``d_regularizer``) keep working unchanged; ``options`` and ``d_regularizer``
    need API 2.

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
    nets are ``"mlp"`` and ``"dcgan"`` (`gankit.training.build_nets`); a plugin with
    nets of its own names them, e.g. ``supported_archs=("resnet",)``, instead of
    posing as one of those. The first entry is the plugin's default arch (used when
    neither ``--arch`` nor a preset sets one). Asking for another arch is a usage
    error before anything is built. A preset sets ``arch`` (``mlp`` or ``dcgan``), so
    presets combine only with plugins that build those.

``train_step(ctx, real, labels) -> dict`` (optional)
    Replace the default step (`gankit.training.standard_step`, which a plugin may
    call). ``ctx`` is a `StepContext`; ``real`` is ``float32[B, 1, S, S]`` on
    ``ctx.device``, already scaled to ``spec.value_range``, with B ``batch_size`` (or
    ``batch_size * len(spec.classes)`` for a ``per-class`` layout); ``labels`` is
    ``int64[B]``, digit values as above. What a step must do is `RULES` ("A training
    step", "Logging"); the trainer checks the first step's result against them.

``d_regularizer(ctx, real, labels, step, fake) -> dict | None`` (optional, API 2)
    A term for the discriminator's loss that `standard_step` (and so every step built
    on it) calls at each discriminator update, outside autocast (a gradient penalty is
    more accurate in float32): ``real`` / ``labels`` are that update's batch, ``fake``
    the generator's images for it (detached), ``step`` is ``ctx.step``. Return None
    (nothing this time: lazy regularisation) or a dict of named 0-d tensors; each is
    added to D's loss before its backward pass and logged under its name (detached).
    R1, R2 and a WGAN gradient penalty are a few lines each (see the guide).

``uses_loss`` (default True)
    False for a plugin whose step brings its own loss (hinge, WGAN): ``--loss`` and
    ``--ls-sigmoid`` then do not apply, and `gankit train` warns when they are given.

``export_module(generator) -> torch.nn.Module`` (optional)
    The module to trace for ONNX export, if the training generator is not directly
    exportable (for example one that dispatches per class). It must take
    ``(z, labels)`` and return the same images as the generator, within 1e-4. Export
    starts from the EMA weights when the run kept an EMA (``ema`` > 0), else from the
    generator's own.

``train_defaults`` (optional)
    Settings the plugin works best with, by their flat `gankit.config` names, trainer
    and net settings alike (e.g. ``{"batch_size": 64, "beta1": 0.5, "d_steps": 5}``).
    They replace gankit's defaults for this plugin; a ``--preset``, a ``--config``
    file and explicit command-line options win over them. `check_plugin` runs the
    plugin with them (net settings included), and ``gankit plugins show`` lists them.
    They are checked at load like a config file (names and values).

``options`` (API 2) / ``default_options`` and ``validate_options`` (API 1)
    Plugin-specific options (``--option key=value`` on the command line, an
    ``[options]`` table in a ``--config`` file) arrive in ``spec.options``, merged over
    the defaults. API 2 declares each one as an `Option` (type, default, help, allowed
    choices or bounds); gankit checks values against it (a usage error naming the
    option), converts an integer given for a float option, and shows the options in
    ``gankit plugins show`` and ``gankit train --plugin X --help``. ``default_options``
    is then filled from it. API 1 lists plain defaults in ``default_options``.
    Either way an unknown key is a usage error before training starts, and
    ``validate_options(options)`` (optional) may raise ``ValueError`` with a one-line
    reason for a combination the schema cannot express. A run's config.json keeps the
    merged options, so a later release that changes a default does not change how an
    old run is rebuilt.

Checking a plugin
-----------------
The registry checks every field of the object at load (`validate_plugin`); the trainer
checks the generator's output and the first step's result at run time
(`generator_output_problems`, `step_output_problems`). Plugin authors run
`gankit.testing.check_plugin(plugin)` in their own tests: it builds the nets, runs
training steps with the plugin's ``train_defaults`` (also under bf16 autocast), trains
a few steps through the real trainer (logging, a checkpoint and a resume), and exports
and reloads the generator the way gankit does.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional, Sequence

from gankit.config import NetConfig

if TYPE_CHECKING:  # pragma: no cover - type hints only; importing this module stays light
    import torch

GANKIT_PLUGIN_API = 2
SUPPORTED_API_VERSIONS: tuple[int, ...] = (1, 2)

LabelMode = Literal["none", "per-class", "conditional"]
BatchLayout = Literal["shuffled", "per-class"]
LABEL_MODES: tuple[str, ...] = ("none", "per-class", "conditional")
BATCH_LAYOUTS: tuple[str, ...] = ("shuffled", "per-class")

# The names gankit's own distribution registers; no other distribution may claim them.
BUILTIN_PLUGINS: tuple[str, ...] = ("unconditional", "per-digit", "conditional")
# Plugin and arch names: what a config file and the command line accept.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# Every step returns these; other keys may come and go.
REQUIRED_LOSSES: tuple[str, ...] = ("d_loss", "g_loss")
# A log row's key for how many steps of its window returned ``<key>``, when not all did.
COUNT_SUFFIX = "_count"
# Keys the trainer writes itself; a step may not return them.
RESERVED_LOG_KEYS: tuple[str, ...] = ("step", "steps_per_s", "elapsed_s")
EVAL_PREFIX = "eval/"
# Float rounding at the ends of tanh / sigmoid.
RANGE_SLACK = 1e-4
# train_defaults may not choose these: they pick the plugin, or have a field of their own.
NOT_TRAIN_DEFAULTS: tuple[str, ...] = ("plugin", "preset", "options")

OPTION_TYPES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str"}


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one short line, whatever the object does."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not break a message
        text = f"<unprintable {type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Option:
    """One typed plugin option (API 2): ``Option(float, 1.0, "the hinge margin", gt=0)``.

    ``type`` is ``int``, ``float``, ``bool`` or ``str``; ``default`` must satisfy the
    rest. ``choices`` lists the allowed values; ``ge`` / ``gt`` / ``le`` / ``lt`` bound a
    number (>=, >, <=, <). ``help`` is shown by ``gankit plugins show`` and
    ``gankit train --plugin X --help``.
    """

    type: Any
    default: Any
    help: str = ""
    choices: Optional[tuple] = None
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None

    def _bounds(self) -> list[tuple[str, Any]]:
        return [(op, b) for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                if b is not None]

    def describe(self) -> str:
        """What a value must be, in words: ``a positive number``, ``one of a, b``."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        if self.type is str:
            return "a string"
        noun = "integer" if self.type is int else "number"
        bounds = self._bounds()
        lower = [b for b in bounds if b[0] in (">=", ">")]
        words = f"a {noun}" if noun == "number" else f"an {noun}"
        if lower == [(">", 0)] or (noun == "integer" and lower == [(">=", 1)]):
            words, bounds = f"a positive {noun}", [b for b in bounds if b not in lower]
        elif lower == [(">=", 0)]:
            words, bounds = f"a non-negative {noun}", [b for b in bounds if b not in lower]
        return " ".join([words, *(f"{op} {b:g}" for op, b in bounds)])

    def check(self, name: str, value: Any) -> Any:
        """``value`` as this option's type (an int for a float option becomes a float); ValueError if it is not one."""
        given = value

        def bad() -> ValueError:
            return ValueError(f"option {name} must be {self.describe()}, got {_show(given)}")

        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            ok = _is_int(value)
        elif self.type is float:
            ok = _is_number(value) and math.isfinite(value)
            if ok:
                value = float(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise bad()
        if self.choices is not None and value not in self.choices:
            raise bad()
        for op, b in self._bounds():
            if not {">=": value >= b, ">": value > b, "<=": value <= b, "<": value < b}[op]:
                raise bad()
        return value

    def problems(self) -> list[str]:
        """Why this declaration cannot work (an unknown type, a default it refuses ...)."""
        if self.type not in OPTION_TYPES:
            return [f"type must be int, float, bool or str, got {_show(self.type)}"]
        out = []
        if not isinstance(self.help, str):
            out.append(f"help must be a string, got {_show(self.help)}")
        if self.choices is not None:
            if not isinstance(self.choices, tuple) or not self.choices:
                out.append(f"choices must be a non-empty tuple, got {_show(self.choices)}")
            else:
                for choice in self.choices:
                    try:
                        Option(self.type, choice).check("choice", choice)
                    except ValueError:
                        out.append(f"choice {_show(choice)} is not a {OPTION_TYPES[self.type]}")
                        break
        bounds = self._bounds()
        if bounds and self.type not in (int, float):
            out.append(f"bounds apply to int and float options, not {OPTION_TYPES[self.type]}")
        elif any(not _is_number(b) or not math.isfinite(b) for _, b in bounds):
            out.append("bounds must be finite numbers")
        if not out:
            try:
                self.check("default", self.default)
            except ValueError:
                out.append(f"its default {_show(self.default)} is not {self.describe()}")
        return out


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
      a string the plugin applies (`gankit.training.init_weights`), not a function,
      and nothing is returned.

    Added here:
        num_classes: number of classes in the data (10 for digits).
        classes: the digit values this run trains on, ascending (a per-class plugin
            builds one GAN for each).
        options: plugin-specific options, already merged with the defaults (and, for
            an API 2 plugin, checked against its ``options`` schema).
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
    """Everything a training step may touch. Built by `gankit.training.make_step_context`.

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
        d_regularizer: the plugin's ``d_regularizer`` (or None); `standard_step` calls it.
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
    d_regularizer: Optional[Callable[..., Any]] = None


TrainStep = Callable[[StepContext, Any, Any], Mapping[str, Any]]
DRegularizer = Callable[[StepContext, Any, Any, int, Any], Optional[Mapping[str, Any]]]
_LIST_SETTINGS = ("g_hidden", "d_hidden", "classes")


@dataclass(frozen=True)
class GanPlugin:
    """A plugin, as registered under the ``gankit.plugins`` entry-point group.

    ``name``, ``description``, ``build`` and ``api_version`` are required; see the
    module docstring for what each field means. With an ``options`` schema,
    ``default_options`` is filled from its defaults.
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
    options: Mapping[str, Option] = field(default_factory=dict)
    d_regularizer: Optional[DRegularizer] = None

    def __post_init__(self) -> None:
        # Never raises: a malformed field is `validate_plugin`'s to report, with the
        # distribution's name, not a bare TypeError at the plugin's import.
        try:
            if isinstance(self.options, Mapping) and self.options and not self.default_options:
                if all(isinstance(o, Option) for o in self.options.values()):
                    object.__setattr__(self, "default_options", {k: o.default for k, o in self.options.items()})
            if isinstance(self.train_defaults, Mapping) and any(
                    isinstance(self.train_defaults.get(k), list) for k in _LIST_SETTINGS):
                object.__setattr__(self, "train_defaults", {
                    k: tuple(v) if k in _LIST_SETTINGS and isinstance(v, list) else v
                    for k, v in self.train_defaults.items()})
        except Exception:  # noqa: BLE001 - see above
            pass


# ----- the rules, in one place (the guide's rules section is generated from these) ---------

RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Loading (the registry checks these when it loads a plugin)", (
        "The entry-point name and `plugin.name` match, and the name is letters, digits, `_`, `.` and `-`, "
        "starting with a letter or digit. Exported models record `plugin.name`; it has to lead back to the "
        "entry point.",
        "`api_version` is required, and a literal: the version the plugin was written for (`2`; API 1 plugins "
        "keep working). Not `gankit.plugin_api.GANKIT_PLUGIN_API`: that always equals the running gankit's "
        "version, so it would claim contracts the code has never seen. A version this gankit does not speak "
        "is refused, naming the distribution.",
        "A name belongs to one distribution. If two installed distributions register the same name, gankit "
        "loads neither and names both.",
        "The built-in names (`unconditional`, `per-digit`, `conditional`) are gankit's. A third-party plugin "
        "that claims one is refused with one line naming its distribution; the built-in keeps working.",
        "Every field of the `GanPlugin` is checked at load (types, names, `train_defaults` as a config file "
        "would be, the `options` schema), and the problems come in one message naming the distribution.",
        "A plugin that fails to import (even with `sys.exit()`) or breaks these rules never breaks gankit: "
        "`gankit plugins` shows it as a warning row, and every other plugin and command keeps working.",
    )),
    ("A training step", (
        "It calls `ctx.opt_d.step()` and `ctx.opt_g.step()` itself.",
        "It draws all randomness from `ctx.noise` / `ctx.torch_generator` (or torch's seeded global RNG), "
        "never from Python's `random` or numpy: the same seed gives the same run, and a resumed run continues "
        "bit for bit.",
        "It leaves each parameter's `requires_grad` as it found it: it may freeze D during the G update if it "
        "unfreezes it, and a sub-module that `build` froze stays frozen.",
        "It runs its forward passes inside `ctx.autocast()`, so `--precision bf16` works.",
        "It returns a dict with `d_loss` and `g_loss` on every step. Values are Python numbers or detached "
        "0-d tensors (tensors let the step run without waiting on the device), finite. Other keys may appear "
        "on any subset of steps.",
        "It calls the nets only through their `forward`: `ctx.generator(z, labels)`, "
        "`ctx.discriminator(images, labels)` (or with extra keyword arguments its nets take), never a "
        "submodule or another method. Under `--nproc N` the nets are wrapped in DistributedDataParallel, "
        "which synchronises gradients only for calls that go through `forward`.",
    )),
    ("Logging", (
        "A row of metrics.jsonl covers the steps since the previous row (`--log-every`). Each key holds its "
        "mean over the steps of that window that returned it.",
        "A key returned on only some steps of the window also gets `<key>_count`: how many steps returned "
        "it. A key returned on every step has no count (its count is the window's length); a key returned on "
        "none is absent from the row.",
        "`step`, `steps_per_s`, `elapsed_s`, keys ending in `_count` and keys starting with `eval/` are the "
        "trainer's; a step may not return them.",
    )),
    ("Checked at run time", (
        "Before the first step `gankit train` checks the generator's output on the sample-grid batch: "
        "`float32[N, 1, S, S]`, finite, inside `spec.value_range`.",
        "After the first step (of a run, and of each resume) it checks the step's result against the rules "
        "above, and that no parameter's `requires_grad` changed; later steps must still return a dict with "
        "`d_loss` and `g_loss`.",
        "A failure stops the run with one line that names the plugin and its distribution and says what to "
        "fix (exit status 1); the last checkpoint is kept.",
    )),
    ("Export", (
        "`gankit export` traces `plugin.export_module(G)` if the plugin gives one, else `G`, as "
        "`module(z, labels)`, with the EMA weights when the run kept an EMA (`--ema` > 0, or `ema` in "
        "`train_defaults`), else the generator's own weights.",
        "Outputs are clamped to `spec.value_range` in the exported graph, and 32x32 generators are resized to "
        "28x28 there; a plugin does neither itself.",
    )),
)


def rules_markdown() -> str:
    """`RULES` as the markdown the guide's rules section holds (between its ``rules`` markers)."""
    parts = []
    for title, rules in RULES:
        parts.append(f"**{title}**\n")
        parts.extend(f"{i}. {rule}" for i, rule in enumerate(rules, 1))
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


# ----- the load-time validator --------------------------------------------------------------

def _callable_or_none(problems: list[str], what: str, value: Any) -> None:
    if value is not None and not callable(value):
        problems.append(f"`{what}` must be a function or None, got {_show(value)}")


def _json_problem(value: Any) -> Optional[str]:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _options_problems(p: GanPlugin) -> list[str]:
    problems: list[str] = []
    if not isinstance(p.default_options, Mapping):
        return [f"default_options must be a dict of option defaults, got {_show(p.default_options)}"]
    bad_keys = [k for k in p.default_options if not isinstance(k, str) or not k]
    if bad_keys:
        problems.append(f"default_options keys must be names, got {_show(bad_keys[0])}")
    elif _json_problem(dict(p.default_options)):
        problems.append(f"default_options must hold JSON values (a run's config.json stores them): "
                        f"{_json_problem(dict(p.default_options))}")
    if not isinstance(p.options, Mapping):
        return problems + [f"options must be a dict of name -> gankit.plugin_api.Option, got {_show(p.options)}"]
    if p.options and p.api_version == 1:
        problems.append("an `options` schema needs api_version=2")
    for name, opt in p.options.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            problems.append(f"option name {_show(name)} is not a plain name")
        elif not isinstance(opt, Option):
            problems.append(f"option {name} must be a gankit.plugin_api.Option, got {_show(opt)}")
        else:
            problems.extend(f"option {name}: {why}" for why in opt.problems())
    if p.options and not problems and isinstance(p.default_options, Mapping) and \
            dict(p.default_options) != {k: o.default for k, o in p.options.items()}:
        problems.append("default_options disagrees with the `options` schema; give defaults in the schema only")
    return problems


def _train_defaults_problems(p: GanPlugin, archs_ok: bool) -> list[str]:
    from gankit.config import SETTINGS, TrainConfig

    td = p.train_defaults
    if not isinstance(td, Mapping):
        return [f"train_defaults must be a dict of gankit settings, got {_show(td)}"]
    bad = [k for k in td if not isinstance(k, str)]
    if bad:
        return [f"train_defaults keys must be setting names, got {_show(bad[0])}"]
    unknown = sorted(set(td) - set(SETTINGS))
    if unknown:
        return [f"train_defaults names settings gankit does not have: {', '.join(unknown)}"]
    chosen = sorted(set(td) & set(NOT_TRAIN_DEFAULTS))
    if chosen:
        return [f"train_defaults may not set {', '.join(chosen)} (options have their own field)"]
    none = sorted(k for k, v in td.items() if v is None)
    if none:
        return [f"train_defaults gives no value for {', '.join(none)}"]
    if not archs_ok:
        return []
    if "arch" in td and td["arch"] not in p.supported_archs:
        return [f"train_defaults sets arch {_show(td['arch'])}, which is not in supported_archs"]
    try:
        TrainConfig.make(**{"arch": p.supported_archs[0], **td}).validate()
    except Exception as exc:  # noqa: BLE001 - UsageError mostly; anything else is a bad value too
        return [f"train_defaults: {' '.join(str(exc).split()) or type(exc).__name__}"]
    return []


def _problems(p: GanPlugin) -> list[str]:
    problems: list[str] = []
    if not isinstance(p.name, str) or not re.fullmatch(NAME_PATTERN, p.name):
        problems.append(f"`name` must be a plugin name (letters, digits, '_', '.', '-'), got {_show(p.name)}")
    if not isinstance(p.description, str):
        problems.append(f"`description` must be a string, got {_show(p.description)}")
    if not _is_int(p.api_version):
        problems.append(f"`api_version` must be an integer literal such as 2, got {_show(p.api_version)}")
    elif p.api_version not in SUPPORTED_API_VERSIONS:
        problems.append(f"written for plugin API {p.api_version}, this gankit speaks API "
                        f"{' and '.join(map(str, SUPPORTED_API_VERSIONS))}")
    if not callable(p.build):
        problems.append("`build` is not callable")
    for what in ("train_step", "export_module", "validate_options", "d_regularizer"):
        _callable_or_none(problems, what, getattr(p, what))
    if p.d_regularizer is not None and p.api_version == 1:
        problems.append("`d_regularizer` needs api_version=2")
    if not isinstance(p.label_mode, str) or p.label_mode not in LABEL_MODES:
        problems.append(f"label_mode {_show(p.label_mode)} is not one of {', '.join(LABEL_MODES)}")
    if not isinstance(p.batch_layout, str) or p.batch_layout not in BATCH_LAYOUTS:
        problems.append(f"batch_layout {_show(p.batch_layout)} is not one of {', '.join(BATCH_LAYOUTS)}")
    archs = p.supported_archs
    archs_ok = isinstance(archs, tuple) and bool(archs) and all(
        isinstance(a, str) and re.fullmatch(NAME_PATTERN, a) for a in archs) and len(set(archs)) == len(archs)
    if not archs_ok:
        problems.append(f"supported_archs must be a non-empty tuple of distinct arch names, got {_show(archs)}")
    if not isinstance(p.uses_loss, bool):
        problems.append(f"uses_loss must be True or False, got {_show(p.uses_loss)}")
    problems.extend(_options_problems(p))
    problems.extend(_train_defaults_problems(p, archs_ok))
    return problems


def validate_plugin(obj: object, origin: str) -> GanPlugin:
    """Check every field of ``obj`` against this contract; return it, or raise one ValueError naming ``origin``.

    ``origin`` is shown in the message, e.g. ``"plugin 'hinge' from gankit-hinge 0.1.0"``.
    The message is one line listing every problem found; nothing but ValueError escapes.
    """
    if not isinstance(obj, GanPlugin):
        raise ValueError(
            f"{origin}: the entry point must be a gankit.plugin_api.GanPlugin, got {type(obj).__name__}")
    try:
        problems = _problems(obj)
    except Exception as exc:  # noqa: BLE001 - a field that breaks the checks is itself the problem
        problems = [f"a field could not be checked ({type(exc).__name__}: {_show(str(exc), 160)})"]
    if problems:
        raise ValueError(f"{origin}: " + "; ".join(" ".join(p.split()) for p in problems))
    return obj


# ----- options ------------------------------------------------------------------------------

def resolve_options(plugin: GanPlugin, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over the plugin's defaults, checked (and typed, for API 2); ValueError naming the plugin."""
    who = f"plugin {plugin.name!r}"
    known = dict(plugin.default_options)
    unknown = sorted(str(k) for k in set(given) - set(known))
    if unknown:
        raise ValueError(f"{who} has no option {', '.join(unknown)} (its options: {', '.join(known) or 'none'})")
    merged = {**known, **dict(given)}
    schema = plugin.options or {}
    for key in schema:
        try:
            merged[key] = schema[key].check(key, merged[key])
        except ValueError as exc:
            raise ValueError(f"{who}: {exc} (--option {key}=VALUE)") from None
    if not schema:
        problem = _json_problem(merged)
        if problem:
            raise ValueError(f"{who}: options must be JSON values (numbers, strings, true/false, lists): {problem}")
    if plugin.validate_options is not None:
        try:
            plugin.validate_options(dict(merged))
        except ValueError as exc:
            raise ValueError(f"{who}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - an untyped option's odd value can break the plugin's check
            raise ValueError(f"{who}: its validate_options could not check {_show(merged)} "
                             f"({type(exc).__name__}: {_show(str(exc), 160)})") from None
    return merged


def describe_options(plugin: GanPlugin) -> list[str]:
    """One line per option: ``margin = 1.0  (a positive number) the hinge margin``; API 1 ones untyped."""
    lines = []
    for name, default in plugin.default_options.items():
        opt = (plugin.options or {}).get(name)
        shown = json.dumps(default) if opt is None or opt.type is not str else default
        if opt is None:
            lines.append(f"{name} = {_show(default)}")
        else:
            lines.append(f"{name} = {shown}  ({OPTION_TYPES[opt.type]}: {opt.describe()})"
                         + (f"  {opt.help}" if opt.help else ""))
    return lines


# ----- run-time checks (the trainer and check_plugin use these) ------------------------------

def _is_tensor(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("numel", "requires_grad", "detach", "shape"))


def _value_problem(value: Any, check_finite: bool = True) -> Optional[str]:
    if isinstance(value, bool):
        return "is a bool, not a number"
    if _is_tensor(value):
        if value.numel() != 1:
            return f"is a tensor of shape {list(value.shape)}, not a scalar (return a 0-d tensor, e.g. loss.mean())"
        if value.requires_grad:
            return "still requires grad (return loss.detach())"
        x = float(value.detach().float().cpu())
    elif isinstance(value, numbers.Real):
        x = float(value)
    else:
        return f"is {type(value).__name__}, not a number or a 0-d tensor"
    return None if not check_finite or math.isfinite(x) else f"is not finite ({x})"


def reserved_key(key: str) -> bool:
    """Whether a log key is the trainer's own (see `RULES`, Logging)."""
    return key in RESERVED_LOG_KEYS or key.endswith(COUNT_SUFFIX) or key.startswith(EVAL_PREFIX)


def step_output_problems(out: Any, check_finite: bool = True) -> list[str]:
    """What is wrong with one step's result (empty when it honours the rules): dict, keys, scalar values.

    ``check_finite=False`` leaves non-finite ``d_loss`` / ``g_loss`` alone: the trainer reports
    a diverged loss itself, with advice on the settings, since it is rarely the plugin's fault.
    """
    if not isinstance(out, Mapping):
        return [f"its step returned {type(out).__name__}, not a dict; return "
                "{'d_loss': ..., 'g_loss': ...} with Python numbers or detached 0-d tensors"]
    problems = []
    missing = [k for k in REQUIRED_LOSSES if k not in out]
    if missing:
        problems.append(f"its step's result lacks {', '.join(missing)} (it returned keys "
                        f"{_show(sorted(map(str, out)), 200)})")
    for key, value in out.items():
        if not isinstance(key, str) or not key:
            problems.append(f"its step returned a key {_show(key)}; keys are non-empty strings")
        elif reserved_key(key):
            problems.append(f"its step returned {key!r}, a name the trainer's log uses itself; rename it")
        else:
            why = _value_problem(value, check_finite or key not in REQUIRED_LOSSES)
            if why:
                problems.append(f"its step's {key!r} {why}")
    return problems


def generator_output_problems(images: Any, n: int, spec: NetSpec) -> list[str]:
    """What is wrong with ``G(z, labels)`` for a batch of ``n`` (empty when it honours the contract)."""
    if not _is_tensor(images):
        return [f"its generator returned {type(images).__name__}, not a tensor"]
    size = spec.image_size
    problems = []
    if list(images.shape) != [n, 1, size, size]:
        problems.append(f"its generator returned shape {list(images.shape)}, expected [{n}, 1, {size}, {size}] "
                        "(N images of 1 channel)")
    if str(images.dtype) != "torch.float32":
        problems.append(f"its generator returned dtype {images.dtype}, expected torch.float32")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        low, high = spec.value_range
        if not (math.isfinite(lo) and math.isfinite(hi)):
            problems.append("its generator's images contain NaN or inf")
        # A ReLU output (the DL4J recipe) has no upper bound; the exported graph clamps it.
        elif lo < low - RANGE_SLACK or (spec.output_activation != "relu" and hi > high + RANGE_SLACK):
            problems.append(f"its generator's images lie in [{lo:.4g}, {hi:.4g}], outside value_range "
                            f"[{low:g}, {high:g}] (output activation {spec.output_activation}); end the "
                            "generator with that activation")
    return problems


__all__ = [
    "GANKIT_PLUGIN_API", "SUPPORTED_API_VERSIONS", "BUILTIN_PLUGINS", "LABEL_MODES", "BATCH_LAYOUTS",
    "REQUIRED_LOSSES", "COUNT_SUFFIX", "RULES", "GanPlugin", "Option", "NetSpec", "Nets", "StepContext",
    "TrainStep", "DRegularizer", "validate_plugin", "resolve_options", "describe_options", "rules_markdown",
    "step_output_problems", "generator_output_problems", "reserved_key",
]
