"""The training configuration: one typed, validated dataclass, saved as JSON in every run.

Light tier (standard library only), so `gankit train --help` and option checking
never load torch. Anything a user can set on the command line lives here; checkpoints
store it, which is what lets a run be rebuilt and resumed from its folder alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from gankit.errors import UsageError

ARCHS = ("mlp", "dcgan")
LOSSES = ("bce", "ls")
OPTIMIZERS = ("adam", "sgd")
NOISES = ("normal", "uniform")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid", "relu")
INITS = ("default", "xavier", "he", "dcgan")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the PyTorch seed's recipe."""

    plugin: str = "unconditional"
    data: str = "default"
    arch: str = "mlp"
    z_dim: int = 100
    image_size: int = 28
    g_hidden: tuple[int, ...] = (256, 512, 1024)
    d_hidden: tuple[int, ...] = (1024, 512, 256)
    g_activation: str = "leaky_relu"
    d_activation: str = "leaky_relu"
    output_activation: str = "tanh"
    d_dropout: float = 0.3
    init: str = "default"
    loss: str = "bce"
    # Least-squares on sigmoid outputs, as the Paddle seed does (MSE after a sigmoid);
    # plain LSGAN (Mao et al.) applies the squares to raw scores.
    ls_sigmoid: bool = False
    optimizer: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.0
    batch_size: int = 32
    steps: int = 2000
    d_steps: int = 1
    noise: str = "normal"
    ema: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    classes: tuple[int, ...] = tuple(range(10))
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 50
    eval_every: int = 0
    eval_samples: int = 2000
    # Stop (with a checkpoint) once this much wall-clock time has passed; 0 = no limit.
    max_seconds: float = 0.0
    preset: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Raise UsageError on any impossible value; return self so calls chain."""
        def bad(msg: str) -> None:
            raise UsageError(msg)

        for name in ("steps", "batch_size", "d_steps", "z_dim", "sample_every", "checkpoint_every",
                     "keep_checkpoints", "log_every", "eval_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                bad(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.max_seconds < 0:
            bad(f"--max-seconds must be 0 (no limit) or positive, got {self.max_seconds}")
        if self.eval_every < 0:
            bad(f"--eval-every must be 0 (off) or positive, got {self.eval_every}")
        for name, allowed in (("arch", ARCHS), ("loss", LOSSES), ("optimizer", OPTIMIZERS),
                              ("noise", NOISES), ("g_activation", ACTIVATIONS),
                              ("d_activation", ACTIVATIONS),
                              ("output_activation", OUTPUT_ACTIVATIONS), ("init", INITS),
                              ("device", DEVICES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                bad(f"unknown {name.replace('_', ' ')} {getattr(self, name)!r}; choose one of: {', '.join(allowed)}")
        if self.image_size not in (28, 32):
            bad(f"--image-size must be 28 or 32, got {self.image_size}")
        if self.arch == "dcgan" and self.image_size != 28:
            bad("the DCGAN nets work at 28x28 only; use --image-size 28")
        if not self.g_hidden or not self.d_hidden or min(self.g_hidden + self.d_hidden) <= 0:
            bad("layer widths must be positive integers")
        if not 0.0 <= self.d_dropout < 1.0:
            bad(f"--d-dropout must be in [0, 1), got {self.d_dropout}")
        if not 0.0 <= self.ema < 1.0:
            bad(f"--ema must be in [0, 1) (0 turns it off), got {self.ema}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                bad(f"--{name.replace('_', '-')} must be positive")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            bad("Adam betas must be in [0, 1)")
        if not self.classes or len(set(self.classes)) != len(self.classes) or not all(
            isinstance(c, int) and 0 <= c <= 9 for c in self.classes
        ):
            bad(f"--digits must be distinct digits 0-9, got {list(self.classes)}")
        return self

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with the given (non-None) fields replaced."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Rebuild from `to_json` output; unknown keys are an error (a newer gankit wrote it)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"config has keys this gankit does not know: {', '.join(unknown)}")
        values = dict(data)
        for name in ("g_hidden", "d_hidden", "classes"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """Parse '256,512,1024' into a tuple, or raise UsageError naming the option."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    return values


def parse_digits(text: str) -> tuple[int, ...]:
    """Parse '--digits 3,8' strictly: distinct digits 0-9, ascending order kept as given sorted."""
    values = parse_int_list(text, "--digits")
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
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options
