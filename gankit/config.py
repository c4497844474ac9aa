"""The training configuration: every setting declared once, typed, validated, saved as JSON.

Light tier (standard library only), so `gankit train --help` and option checking never
load torch. Two frozen dataclasses hold everything a run is:

* `NetConfig`: what the nets are (arch, latent size, widths, activations, ...). The
  plugin contract's `NetSpec` extends it, so these fields exist in one place only.
* `TrainConfig`: the run (plugin, data, optimiser, schedule, outputs) with its nets
  nested as ``cfg.net``, the way nanoGPT keeps its model args in the checkpoint.

Each field carries its command-line help, choices and text parser as metadata
(`Setting`); `gankit train` derives its options from them, and a TOML file or a run's
config.json can set any of them by the same flat name (``z_dim``, ``batch_size``...).
Checkpoints store the config, which is what lets a run be rebuilt and resumed from its
folder alone. Old files with the net settings at the top level still load.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from gankit.errors import UsageError
from gankit.inputs import bounded

ARCHS = ("mlp", "dcgan")  # the built-in nets; a plugin with its own declares supported_archs
LOSSES = ("bce", "ls")
OPTIMIZERS = ("adam", "sgd")
NOISES = ("normal", "uniform")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid", "relu")
INITS = ("default", "xavier", "he", "dcgan")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("off", "auto", "default", "reduce-overhead")
IMAGE_SIZES = (28, 32)

# Far above any digit GAN, far below what makes the allocator fail with a traceback.
MAX_WIDTH = 65536
# torch seeds are uint64, and the trainer derives a few more seeds by adding small offsets.
MAX_SEED = 2**62
# Discriminator steps per generator step: the recipes use 1-10 (WGAN critics 5). A huge
# value would make one step outlast any --max-seconds, which is only checked between steps.
MAX_D_STEPS = 1000
# Layers per net: the recipes use 3 or 4; each layer is a module, so the count is bounded too.
MAX_LAYERS = 64
# Images per in-training evaluation: `gankit evaluate --samples` has the same ceiling.
MAX_EVAL_SAMPLES = 1_000_000
# A --config file is a few hundred bytes; past this it is not one (a device, a log, an attack).
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class Setting:
    """How one config field appears to users: help text, fixed choices, text parser.

    ``flag`` and ``short`` name the command-line option when it is not ``--field-name``;
    ``parse`` turns command-line text into the field's value (lists of integers);
    ``panel`` groups options in `--help`.
    """

    help: str
    choices: Optional[tuple[Any, ...]] = None
    flag: Optional[str] = None
    short: Optional[str] = None
    parse: Optional[Callable[[str], Any]] = None
    panel: str = "Training"


def setting(default: Any = None, help: str = "", *, default_factory: Any = None, **meta: Any) -> Any:
    """A dataclass field with its `Setting` attached."""
    info = {"gankit": Setting(help=help, **meta)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=info)
    return field(default=default, metadata=info)


def setting_of(f) -> Setting:
    return f.metadata.get("gankit") or Setting(help="")


def parse_int_list(text: str, what: str, example: str = "256,512") -> tuple[int, ...]:
    """Parse '256,512,1024' into a tuple, or raise UsageError naming the option."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty; give comma-separated integers, e.g. {example}")
    return values


def parse_digits(text: str) -> tuple[int, ...]:
    """Parse '--digits 3,8' strictly: distinct digits 0-9, returned sorted."""
    values = parse_int_list(text, "--digits", "3,8")
    bad = [v for v in values if not 0 <= v <= 9]
    if bad:
        raise UsageError(f"--digits takes digits 0-9; {bad[0]} is not one")
    if len(set(values)) != len(values):
        raise UsageError(f"--digits lists a digit twice: {text!r}")
    return tuple(sorted(values))


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """Parse repeated '--option key=value' into a dict; values are JSON when they parse."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option takes key=value, got {pair!r}")
        try:
            options[key] = bounded.loads(raw)
        except bounded.InputError as exc:
            if "nested" in str(exc):  # deep JSON is refused, not kept as text
                raise UsageError(f"--option {key}: {exc}") from None
            options[key] = raw
    return options


def _widths(what: str) -> Callable[[str], tuple[int, ...]]:
    return lambda text: parse_int_list(text, what)


NETS = "Nets"
OPT = "Optimisation"
OUT = "Outputs"


@dataclass(frozen=True)
class NetConfig:
    """What the nets are. Defaults are the PyTorch seed's recipe (an MLP GAN)."""

    arch: str = setting("mlp", "Nets: mlp or dcgan (built in), or an arch the plugin declares.", panel=NETS)
    z_dim: int = setting(100, "Latent size.", panel=NETS)
    image_size: int = setting(28, "Image side the nets work at: 28, or 32 (the Paddle recipe).",
                              choices=IMAGE_SIZES, panel=NETS)
    g_hidden: tuple[int, ...] = setting((256, 512, 1024), "Generator widths (MLP) or channels (DCGAN).",
                                        parse=_widths("--g-hidden"), panel=NETS)
    d_hidden: tuple[int, ...] = setting((1024, 512, 256), "Discriminator widths (MLP) or channels (DCGAN).",
                                        parse=_widths("--d-hidden"), panel=NETS)
    g_activation: str = setting("leaky_relu", "Generator hidden activation (leaky_relu has slope 0.2).",
                                choices=ACTIVATIONS, panel=NETS)
    d_activation: str = setting("leaky_relu", "Discriminator hidden activation.", choices=ACTIVATIONS, panel=NETS)
    output_activation: str = setting("tanh", "Generator output: tanh (images in [-1, 1]), sigmoid or relu ([0, 1]).",
                                     choices=OUTPUT_ACTIVATIONS, panel=NETS)
    d_dropout: float = setting(0.3, "Dropout probability in the discriminator (0 = none).", panel=NETS)
    init: str = setting("default", "Weight init: default (torch's), xavier, he, or dcgan (N(0, 0.02)).",
                        choices=INITS, panel=NETS)


NET_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(NetConfig))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the nets are ``net``. Defaults: the PyTorch seed."""

    plugin: str = setting("unconditional", "Plugin to train (see `gankit plugins`).", panel="Run")
    preset: str = setting("", "A seed recipe (dl4j-mlp, keras-dcgan, paddle-lsgan, tf1-mlp, pytorch-mlp); "
                          "options given beside it override it.", panel="Run")
    data: str = setting("default", "IDX folder, 'mnist', 'fashion-mnist', 'synthetic', or 'default' "
                        "(local MNIST, else synthetic).", panel="Run")
    net: NetConfig = field(default_factory=NetConfig)
    loss: str = setting("bce", "Adversarial loss: bce (non-saturating) or ls (least squares).",
                        choices=LOSSES, panel=OPT)
    # Least-squares on sigmoid outputs, as the Paddle seed does (MSE after a sigmoid);
    # plain LSGAN (Mao et al.) applies the squares to raw scores.
    ls_sigmoid: bool = setting(False, "With --loss ls: squares on sigmoid outputs (the Paddle seed).", panel=OPT)
    optimizer: str = setting("adam", "Optimiser for both nets.", choices=OPTIMIZERS, panel=OPT)
    lr_g: float = setting(2e-4, "Generator learning rate.", panel=OPT)
    lr_d: float = setting(2e-4, "Discriminator learning rate.", panel=OPT)
    beta1: float = setting(0.9, "Adam beta1.", panel=OPT)
    beta2: float = setting(0.999, "Adam beta2.", panel=OPT)
    momentum: float = setting(0.0, "SGD momentum.", panel=OPT)
    batch_size: int = setting(32, "Batch size (per digit for per-digit).", short="-b", panel=OPT)
    steps: int = setting(2000, "Generator steps to train (total, also when resuming).")
    d_steps: int = setting(1, "Discriminator steps per generator step.", panel=OPT)
    noise: str = setting("normal", "Latent distribution: normal, or uniform on [-1, 1].", choices=NOISES)
    ema: float = setting(0.0, "EMA decay of the generator's weights (0 = off).", panel=OPT)
    ema_warmup: bool = setting(True, "Warm the EMA up: at step t its decay is at most (1+t)/(10+t), so a short "
                               "run's average holds its recent weights, not its initial ones.", panel=OPT)
    seed: int = setting(0, "Seed; a CPU run with the same seed is bit-for-bit repeatable.")
    device: str = setting("auto", "Training device.", choices=DEVICES)
    precision: str = setting("auto", "auto (bf16 autocast only where the device has native bf16 and a timed "
                             "trial step is faster; else fp32), fp32, or bf16.", choices=PRECISIONS)
    compile: str = setting("auto", "torch.compile the nets the step calls: off, default, reduce-overhead (CUDA "
                           "graphs on a GPU), or auto (what the bench measured fastest for the device; "
                           "eager on a CPU). Falls back to eager where compiling fails.", choices=COMPILE_MODES)
    classes: tuple[int, ...] = setting(tuple(range(10)), "Train on these digits only, e.g. 3,8.",
                                       flag="--digits", parse=parse_digits)
    sample_every: int = setting(500, "Write a sample grid every K steps.", panel=OUT)
    checkpoint_every: int = setting(1000, "Commit a checkpoint every K steps.", panel=OUT)
    keep_checkpoints: int = setting(2, "Checkpoints to keep.", panel=OUT)
    log_every: int = setting(50, "Log losses every K steps.", panel=OUT)
    eval_every: int = setting(0, "Evaluate quality every K steps and keep the best checkpoint (0 = off).",
                              panel=OUT)
    eval_samples: int = setting(2000, "Images per evaluation.", panel=OUT)
    # Stop (with a checkpoint) once this much wall-clock time has passed; 0 = no limit.
    max_seconds: float = setting(0.0, "Stop after this much wall-clock time (0 = no limit).")
    tb_histograms: bool = setting(False, "TensorBoard: weight histograms at every checkpoint.", panel=OUT)
    tb_graph: bool = setting(False, "TensorBoard: the generator's graph, once at the start.", panel=OUT)
    options: Mapping[str, Any] = setting(None, "Plugin option key=value (repeatable).", flag="--option",
                                         short="-O", default_factory=dict, panel="Run")

    # ----- flat names: how the CLI, TOML files, presets and train_defaults name settings ----
    def __getattr__(self, name: str) -> Any:
        # Reading cfg.z_dim keeps working for code written before the nets were nested.
        if name in NET_FIELDS:
            return getattr(self.net, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def make(cls, **settings: Any) -> "TrainConfig":
        """A config from flat setting names (net settings included), e.g. ``make(z_dim=16, steps=5)``."""
        return cls().with_overrides(**settings)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with the given (non-None) settings replaced; net settings go into ``net``.

        Lists of widths or digits become tuples; types and ranges are `validate`'s.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - set(SETTINGS) - {"net"})
        if unknown:
            raise UsageError(f"unknown setting {', '.join(unknown)}")
        given = {k: tuple(v) if isinstance(v, list) and _kind_of(SETTINGS[k]) == "ints" else v
                 for k, v in given.items()}
        net = given.pop("net", self.net)
        net_values = {k: given.pop(k) for k in list(given) if k in NET_FIELDS}
        if net_values:
            net = replace(net, **net_values)
        return replace(self, net=net, **given)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "net"}
        values.update({name: getattr(self.net, name) for name in NET_FIELDS})
        return values

    # ----- checks -----------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Raise UsageError on any impossible value; return self so calls chain."""
        def bad(msg: str) -> None:
            raise UsageError(msg)

        s = self.flat()
        for name in ("steps", "batch_size", "d_steps", "z_dim", "sample_every", "checkpoint_every",
                     "keep_checkpoints", "log_every", "eval_samples", "image_size"):
            value = s[name]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                bad(f"{flag_of(name)} must be a positive integer, got {value!r}")
        for name in ("eval_every", "seed"):
            value = s[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                bad(f"{flag_of(name)} must be 0 or a positive integer, got {value!r}")
        if self.seed > MAX_SEED:
            bad(f"--seed must be at most 2**62 ({MAX_SEED}), got {self.seed}")
        if self.d_steps > MAX_D_STEPS:
            bad(f"--d-steps must be at most {MAX_D_STEPS}, got {self.d_steps}")
        if self.eval_samples > MAX_EVAL_SAMPLES:
            bad(f"--eval-samples must be at most {MAX_EVAL_SAMPLES:,}, got {self.eval_samples}")
        if self.net.z_dim > MAX_WIDTH:
            bad(f"--z-dim must be at most {MAX_WIDTH}, got {self.net.z_dim}")
        for name in ("lr_g", "lr_d", "beta1", "beta2", "momentum", "ema", "max_seconds", "d_dropout"):
            value = s[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                bad(f"{flag_of(name)} must be a finite number, got {value!r}")
        for name in ("ls_sigmoid", "ema_warmup", "tb_histograms", "tb_graph"):
            if not isinstance(s[name], bool):
                bad(f"{flag_of(name)} is a flag (true or false), got {s[name]!r}")
        if self.max_seconds < 0:
            bad(f"--max-seconds must be 0 (no limit) or positive, got {self.max_seconds}")
        for f in (*fields(NetConfig), *fields(TrainConfig)):
            choices = setting_of(f).choices
            if choices and s[f.name] not in choices:
                what = f.name.replace("_", " ")
                bad(f"unknown {what} {s[f.name]!r}; choose one of: {', '.join(map(str, choices))}")
        for name in ("plugin", "arch"):
            if not isinstance(s[name], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", s[name]):
                bad(f"unknown {name} {s[name]!r}")
        for name in ("preset", "data"):
            if not isinstance(s[name], str):
                bad(f"{flag_of(name)} must be text, got {s[name]!r}")
        if self.net.arch == "dcgan" and self.net.image_size != 28:
            bad("the DCGAN nets work at 28x28 only; use --image-size 28")
        for name in ("g_hidden", "d_hidden"):
            widths = s[name]
            if not isinstance(widths, tuple) or not widths or not all(
                isinstance(w, int) and not isinstance(w, bool) for w in widths
            ):
                bad(f"{flag_of(name)} must be a list of layer widths, got {widths!r}")
            if min(widths) <= 0 or max(widths) > MAX_WIDTH:
                bad(f"{flag_of(name)}: layer widths must be integers from 1 to {MAX_WIDTH}, got {list(widths)}")
            if len(widths) > MAX_LAYERS:
                bad(f"{flag_of(name)}: at most {MAX_LAYERS} layers, got {len(widths)}")
        if not 0.0 <= self.net.d_dropout < 1.0:
            bad(f"--d-dropout must be in [0, 1), got {self.net.d_dropout}")
        if not 0.0 <= self.ema < 1.0:
            bad(f"--ema must be in [0, 1) (0 turns it off), got {self.ema}")
        for name in ("lr_g", "lr_d"):
            if not s[name] > 0:
                bad(f"{flag_of(name)} must be positive")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            bad("Adam betas must be in [0, 1)")
        if self.momentum < 0:
            bad(f"--momentum must be 0 or positive, got {self.momentum}")
        if not isinstance(self.classes, tuple) or not self.classes or len(set(self.classes)) != len(self.classes) \
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 9 for c in self.classes):
            bad(f"--digits must be distinct digits 0-9, got {self.classes!r}")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            bad(f"plugin options must be a table of key = value, got {self.options!r}")
        return self

    # ----- files ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists), the nets nested under ``net``."""
        data = asdict(self)
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Rebuild from `to_json` output, or from an older flat config.json.

        Unknown keys are an error (a newer gankit wrote the file); keys a file lacks
        take today's defaults.
        """
        if not isinstance(data, Mapping):
            raise UsageError(f"a config must be a JSON object / TOML table, got {type(data).__name__}")
        values = dict(data)
        nested = values.pop("net", None) or {}
        if not isinstance(nested, Mapping):
            raise UsageError(f"the config's 'net' must be a table of net settings, got {nested!r}")
        clash = sorted(set(nested) & set(values))
        if clash:
            raise UsageError(f"the config sets {', '.join(clash)} both at the top level and under 'net'")
        unknown = sorted((set(values) - set(SETTINGS)) | (set(nested) - set(NET_FIELDS)))
        if unknown:
            raise UsageError(f"config has keys this gankit does not know: {', '.join(unknown)}")
        values.update(nested)
        for name in ("g_hidden", "d_hidden", "classes"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls.make(**values)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def _settings() -> dict[str, Any]:
    """Flat name -> dataclass field, net settings included, in declaration order."""
    out: dict[str, Any] = {}
    for f in fields(TrainConfig):
        if f.name == "net":
            out.update({g.name: g for g in fields(NetConfig)})
        else:
            out[f.name] = f
    return out


SETTINGS: dict[str, Any] = _settings()
# Settings whose option is not --their-name, by the option's name (digits -> classes).
ALIASES: dict[str, str] = {setting_of(f).flag[2:].replace("-", "_"): name
                           for name, f in SETTINGS.items() if setting_of(f).flag}


def flag_of(name: str) -> str:
    """The command-line option that sets a flat setting (``classes`` -> ``--digits``)."""
    f = SETTINGS.get(name)
    return (f is not None and setting_of(f).flag) or "--" + name.replace("_", "-")


def _kind_of(f) -> str:
    """What a setting's value must be, from its field's annotation."""
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"int": "int", "float": "float", "str": "str", "bool": "bool"}.get(annotation) or (
        "ints" if annotation.startswith("tuple") else "table" if annotation.startswith("Mapping") else "any")


_KIND_TEXT = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false",
              "ints": "a list of whole numbers", "table": "a table of key = value"}


def check_types(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """``values`` (flat setting names) if each has its setting's type, else UsageError naming the first.

    The one type check for every layer of settings: command-line values (already typed by
    their options), a ``--config`` file, a preset, a plugin's train_defaults, a saved
    config.json. Ranges and choices are `TrainConfig.validate`'s.
    """
    for name, value in values.items():
        f = SETTINGS.get(name)
        if f is None or value is None:
            continue
        kind = _kind_of(f)
        plain_int = isinstance(value, int) and not isinstance(value, bool)
        ok = {"int": plain_int,
              "float": plain_int or isinstance(value, float),
              "str": isinstance(value, str),
              "bool": isinstance(value, bool),
              "ints": isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in value),
              "table": isinstance(value, Mapping) and all(isinstance(k, str) for k in value),
              }.get(kind, True)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            where = f"{source}: " if source else ""
            raise UsageError(f"{where}{flag_of(name)} must be {_KIND_TEXT[kind]}, got {shown}")
    return dict(values)


def _parse_file(path: Path, raw: bytes) -> Any:
    """The table a --config file holds: JSON for ``.json``, else TOML; at most `bounded.MAX_DEPTH` deep."""
    if path.suffix.lower() == ".json":
        return bounded.loads(raw, limit=MAX_CONFIG_BYTES)
    import tomllib

    try:
        return bounded.check_depth(tomllib.loads(raw.decode("utf-8")))
    except RecursionError:  # tomllib recurses per level of nested arrays and inline tables
        raise bounded.InputError(f"nested more than {bounded.MAX_DEPTH} levels deep") from None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a ``--config`` file: TOML (``run.toml``) or JSON (a run's config.json). Flat keys.

    Returns the raw key/value table (nets flattened), every setting's value type-checked
    (`check_types`); the caller decides which other keys are command-line-only (``name``,
    ``runs_dir`` ...) and checks them. Only a regular file of at most `MAX_CONFIG_BYTES`
    is read: a FIFO or a device such as /dev/zero is refused, not read forever.
    """
    path = Path(path)
    try:
        raw = bounded.read_regular(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except bounded.InputError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc})") from None
    try:
        data = _parse_file(path, raw)
    except (UnicodeDecodeError, ValueError) as exc:  # InputError, TOMLDecodeError are ValueErrors
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise UsageError(f"--config {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a table of settings, got {type(data).__name__}")
    nested = data.pop("net", None) or {}
    if not isinstance(nested, dict):
        raise UsageError(f"--config {path}: 'net' must be a table of net settings")
    clash = sorted(set(nested) & set(data))
    if clash:
        raise UsageError(f"--config {path} sets {', '.join(clash)} both at the top level and under [net]")
    bad_net = sorted(set(nested) - set(NET_FIELDS))
    if bad_net:
        raise UsageError(f"--config {path}: [net] has no setting {', '.join(bad_net)}")
    data.update(nested)
    # The command-line spelling works too: digits = [3, 8] is classes, option = {...} is options.
    for alias, name in ALIASES.items():
        if alias in data:
            if name in data:
                raise UsageError(f"--config {path} sets both {alias} and {name}")
            data[name] = data.pop(alias)
    for name in ("g_hidden", "d_hidden", "classes"):
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
        elif isinstance(data.get(name), str):
            data[name] = setting_of(SETTINGS[name]).parse(data[name])
    return check_types({k: v for k, v in data.items() if k in SETTINGS}, f"--config {path}") | \
        {k: v for k, v in data.items() if k not in SETTINGS}


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: no path separators, not '.' or '..', not empty."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name \
            or name != name.strip() or name.startswith("-"):
        raise UsageError(f"--name must be a plain folder name (no '/', not '..'), got {name!r}")
    if len(name.encode("utf-8", "surrogateescape")) > 255:  # the file systems' limit for one name
        raise UsageError(f"--name is longer than a folder name may be (255 bytes): {name[:40]!r}...")
    return name
