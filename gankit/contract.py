"""The ONNX export contract: input/output names, metadata keys, and the ModelCard.

Light tier (standard library only). The exporter (heavy tier) writes models that honour
this contract; the runtime (light tier) reads them back through `ModelCard`.

Every exported gankit model has:

* inputs ``z: float32[N, Z]`` and ``label: int64[N]`` (always both; an unconditional
  model ignores the label), with a dynamic batch dimension ``N``;
* output ``image: float32[N, 1, 28, 28]`` in ``value_range`` (see the metadata);
* one self-contained ``.onnx`` file (no external data: the runtime refuses any file that
  contains the external-data key ``location``);
* the metadata properties listed in `METADATA_KEYS`, all strings (JSON where noted);
* ``gankit.weights_sha256``: sha256 over the file's top-level protobuf records (fields of
  ModelProto) in file order, leaving out the ``metadata_props`` records (field 14), which
  hold the hash itself. It thus covers the weights, the graph, the doc string and any
  functions; `gankit.runtime.model_sha256` computes it, and every load checks it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Mapping

CONTRACT_VERSION = 1

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
        """Parse metadata_props; raise ValueError naming the first missing or bad key."""
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            raise ValueError(f"missing gankit metadata: {', '.join(missing)}")
        try:
            card = cls(
                gankit_version=meta["gankit.version"],
                contract_version=int(meta["gankit.contract_version"]),
                plugin=meta["gankit.plugin"],
                label_mode=meta["gankit.label_mode"],
                arch=meta["gankit.arch"],
                z_dim=int(meta["gankit.z_dim"]),
                noise=meta["gankit.noise"],
                classes=tuple(int(c) for c in json.loads(meta["gankit.classes"])),
                image_size=int(meta["gankit.image_size"]),
                value_range=tuple(float(v) for v in json.loads(meta["gankit.value_range"])),
                training_steps=int(meta["gankit.training_steps"]),
                dataset=meta["gankit.dataset"],
                created=meta["gankit.created"],
                weights_sha256=meta["gankit.weights_sha256"],
                extra={k: v for k, v in meta.items() if k not in METADATA_KEYS},
            )
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed gankit metadata: {exc}") from None
        if card.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"model uses export contract {card.contract_version}; this gankit reads {CONTRACT_VERSION}"
            )
        if card.noise not in ("normal", "uniform"):
            raise ValueError(f"unknown noise distribution {card.noise!r}")
        if card.z_dim <= 0 or not card.classes or len(card.value_range) != 2:
            raise ValueError("metadata has an empty latent, no classes or a bad value range")
        return card

    def as_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)
