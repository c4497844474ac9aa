"""The ONNX export contract: input/output names, metadata keys, and the ModelCard.

Light tier (standard library; numpy for `sample_latent` only). The exporter (heavy tier)
writes models that honour this contract; the runtime (light tier) reads them back
through `ModelCard`. How a model's latent ``z`` is drawn is part of the contract too:
`sample_latent` is the one rule that `gankit generate`, `gankit.load().generate()`,
`gankit evaluate` and the trainer's evaluator all use, so one seed gives one picture.

Every exported gankit model has:

* inputs ``z: float32[N, Z]`` and ``label: int64[N]`` (always both; an unconditional
  model ignores the label), with a dynamic batch dimension ``N``;
* output ``image: float32[N, 1, 28, 28]`` in ``value_range`` (see the metadata);
* one self-contained ``.onnx`` file (no external data: the runtime refuses any file with a
  tensor whose ``data_location`` is EXTERNAL or that has ``external_data`` entries), with
  no control flow (no graph-valued attribute: Loop, Scan, If);
* the metadata properties listed in `METADATA_KEYS`, all strings (JSON where noted);
* ``gankit.weights_sha256``: sha256 over the file's top-level protobuf records (fields of
  ModelProto) in file order, leaving out the ``metadata_props`` records (field 14), which
  hold the hash itself. It thus covers the weights, the graph, the doc string and any
  functions; `gankit.runtime.model_sha256` computes it, and every load checks it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from gankit.inputs import bounded

CONTRACT_VERSION = 1

# The latent distributions a model card may name (`gankit.noise`).
NOISES = ("normal", "uniform")

INPUT_Z = "z"
INPUT_LABEL = "label"
OUTPUT_IMAGE = "image"
IMAGE_SIZE = 28
# Marks a file that is derived from a gankit model but is not one (`gankit export
# --torch-fidelity`); the runtime refuses such files with a message saying what they are.
ADAPTER_KEY = "gankit.adapter"

# metadata key -> what it holds. Keys are prefixed so they never clash with other tools'.
METADATA_KEYS: dict[str, str] = {
    "gankit.version": "gankit version that exported the model",
    "gankit.contract_version": "version of this contract (integer)",
    "gankit.plugin": "plugin that built the nets",
    "gankit.label_mode": "none | per-class | conditional",
    "gankit.arch": "mlp | dcgan | plugin-specific",
    "gankit.z_dim": "latent size Z (integer)",
    "gankit.noise": "latent distribution: normal | uniform (uniform is on [-1, 1])",
    "gankit.classes": "JSON list of class ids the model can draw",
    "gankit.image_size": "side of the output image (28)",
    "gankit.value_range": "JSON [low, high] of the output pixels",
    "gankit.training_steps": "generator steps trained (integer)",
    "gankit.dataset": "data set the model was trained on",
    "gankit.created": "UTC creation time, ISO 8601",
    "gankit.weights_sha256": "sha256 of the file without its metadata (gankit.runtime.model_sha256)",
}


# The numbers a card may hold: `ModelCard.from_metadata` refuses anything outside these
# before the runtime sizes an array from it.
LABEL_MODES = ("none", "per-class", "conditional")
# gankit's data sets have 10 classes; a card claiming thousands is not one of ours, and
# `generate --all` draws one grid row per class.
MAX_CLASSES = 256
# The widest latent `gankit train` accepts (gankit.config.MAX_WIDTH): the load check's probe
# is two rows of it, a generate chunk 1024 rows.
MAX_Z_DIM = 65536
# Pixel ranges are (-1, 1) or (0, 1); a bound keeps high - low finite.
MAX_ABS_PIXEL = 1e6
MAX_STEPS = 2**63 - 1
# One metadata value: `gankit.classes` for MAX_CLASSES classes is ~1.3 KB; past this
# (e.g. a list of 100,000 classes) the value is measured, never kept.
MAX_META_CHARS = 1 << 20


def _whole(value: str, what: str, low: int, high: int) -> int:
    """An int written in decimal, within [low, high]; ValueError otherwise."""
    text = value.strip()
    if not text.lstrip("+-").isdigit() or len(text) > 40:
        raise ValueError(f"{what} {value[:40]!r} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{what} {number} is not from {low} to {high}")
    return number


def _json_list(value: str, what: str) -> list:
    try:
        data = bounded.loads(value, limit=MAX_META_CHARS, max_depth=2, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{what} is not a JSON list ({exc})") from None
    if not isinstance(data, list):
        raise ValueError(f"{what} is not a JSON list")
    return data


def check_numbers(meta: Mapping[str, str]) -> dict[str, Any]:
    """The numeric metadata of a card, parsed and within bounds; ValueError naming the first bad one.

    The one validator for every number the runtime may size something from: ``z_dim``
    (1 to `MAX_Z_DIM`), ``classes`` (1 to `MAX_CLASSES` distinct ids from 0 to 255),
    ``value_range`` (finite low < high, |v| <= `MAX_ABS_PIXEL`), ``image_size`` (the
    contract's 28), ``contract_version`` and ``training_steps``.
    """
    classes = _json_list(meta["gankit.classes"], "classes")
    if not classes:
        raise ValueError("classes is empty")
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"it claims {len(classes):,} classes; at most {MAX_CLASSES} are allowed")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < MAX_CLASSES for c in classes) \
            or len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes} are not distinct ids from 0 to {MAX_CLASSES - 1}")
    value_range = _json_list(meta["gankit.value_range"], "value_range")
    if len(value_range) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                        and math.isfinite(v) and abs(v) <= MAX_ABS_PIXEL for v in value_range) \
            or not value_range[0] < value_range[1]:
        raise ValueError(f"value_range {value_range} is not a finite low < high within +-{MAX_ABS_PIXEL:g}")
    image_size = _whole(meta["gankit.image_size"], "image_size", 1, 1 << 16)
    if image_size != IMAGE_SIZE:
        raise ValueError(f"image_size is {image_size}, the contract says {IMAGE_SIZE}")
    return {
        "contract_version": _whole(meta["gankit.contract_version"], "contract_version", 0, 1 << 16),
        "z_dim": _whole(meta["gankit.z_dim"], "z_dim", 1, MAX_Z_DIM),
        "classes": tuple(classes),
        "image_size": image_size,
        "value_range": (float(value_range[0]), float(value_range[1])),
        "training_steps": _whole(meta["gankit.training_steps"], "training_steps", 0, MAX_STEPS),
    }


@dataclass(frozen=True)
class ModelCard:
    """What a gankit ONNX file says about itself, parsed and checked."""

    gankit_version: str
    contract_version: int
    plugin: str
    label_mode: str
    arch: str
    z_dim: int
    noise: str
    classes: tuple[int, ...]
    image_size: int
    value_range: tuple[float, float]
    training_steps: int
    dataset: str
    created: str
    weights_sha256: str
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """The metadata_props to write into the ONNX file (all values strings)."""
        meta = {
            "gankit.version": self.gankit_version,
            "gankit.contract_version": str(self.contract_version),
            "gankit.plugin": self.plugin,
            "gankit.label_mode": self.label_mode,
            "gankit.arch": self.arch,
            "gankit.z_dim": str(self.z_dim),
            "gankit.noise": self.noise,
            "gankit.classes": json.dumps(list(self.classes)),
            "gankit.image_size": str(self.image_size),
            "gankit.value_range": json.dumps(list(self.value_range)),
            "gankit.training_steps": str(self.training_steps),
            "gankit.dataset": self.dataset,
            "gankit.created": self.created,
            "gankit.weights_sha256": self.weights_sha256,
        }
        meta.update({k: str(v) for k, v in self.extra.items()})
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "ModelCard":
        """Parse metadata_props; raise ValueError naming the first missing or bad key.

        Every number goes through `check_numbers`, so nothing built from a card (a latent,
        a label table, a grid) can be sized by an absurd value in the file.
        """
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            raise ValueError(f"missing gankit metadata: {', '.join(missing)}")
        try:
            numbers = check_numbers(meta)
        except ValueError as exc:
            raise ValueError(f"malformed gankit metadata: {exc}") from None
        card = cls(
            gankit_version=meta["gankit.version"],
            plugin=meta["gankit.plugin"],
            label_mode=meta["gankit.label_mode"],
            arch=meta["gankit.arch"],
            noise=meta["gankit.noise"],
            dataset=meta["gankit.dataset"],
            created=meta["gankit.created"],
            weights_sha256=meta["gankit.weights_sha256"],
            extra={k: v for k, v in meta.items() if k not in METADATA_KEYS},
            **numbers,
        )
        if card.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"model uses export contract {card.contract_version}; this gankit reads {CONTRACT_VERSION}"
            )
        if card.noise not in NOISES:
            raise ValueError(f"unknown noise distribution {card.noise!r}")
        if card.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode {card.label_mode!r} is not one of {', '.join(LABEL_MODES)}")
        return card

    def as_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)


def sample_latent(n: int, z_dim: int, noise: str, seed=0):
    """``n`` latent vectors float32 [n, z_dim] from ``noise``: "normal" or "uniform" on [-1, 1].

    ``seed`` is an int, a numpy Generator (drawing from it advances it, so chunks drawn in
    turn from one Generator equal one big draw) or None for fresh entropy.
    """
    import numpy as np  # here, so that reading the contract's names needs only the standard library

    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if noise == "uniform":
        return rng.uniform(-1.0, 1.0, size=(int(n), int(z_dim))).astype(np.float32)
    return rng.standard_normal(size=(int(n), int(z_dim)), dtype=np.float32)
