"""The models a server serves: each loaded and checked at start-up, named by its file stem.

Light tier (numpy, onnxruntime). `load_models` goes through `gankit.runtime.load_generator`,
the same checks as `gankit generate` and `gankit info`, for every file before anything is
served: one bad file stops the server at start-up with its one-line `ModelFileError`
(exit 1), so a server never runs with part of its models. No file given means the
shipped conditional model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gankit.contract import IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE
from gankit.errors import UsageError

# A model's name goes into URLs (/v2/models/{name}) and metric labels.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class ServedModel:
    """One loaded model, its public name and what the routes say about it."""

    name: str
    generator: Any  # gankit.runtime.OnnxGenerator

    @property
    def card(self):
        return self.generator.card

    @property
    def classes(self) -> list[int]:
        return list(self.card.classes)

    def info(self) -> dict[str, Any]:
        """What `gankit info --json` prints for the file, with the name it is served under."""
        return {"name": self.name, **self.generator.describe()}

    def oip_metadata(self) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata: its tensors, -1 for the batch dimension."""
        z = self.card.z_dim
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": INPUT_Z, "datatype": "FP32", "shape": [-1, z]},
                       {"name": INPUT_LABEL, "datatype": "INT64", "shape": [-1]}],
            "outputs": [{"name": OUTPUT_IMAGE, "datatype": "FP32", "shape": [-1, 1, IMAGE_SIZE, IMAGE_SIZE]}],
            "parameters": {"label_mode": self.card.label_mode, "classes": self.classes,
                           "noise": self.card.noise, "value_range": list(self.card.value_range)},
        }


def model_name(path: Path) -> str:
    """The name a file is served under: its stem (``exports/per-digit.onnx`` -> ``per-digit``)."""
    name = Path(path).stem
    if not _NAME.match(name):
        raise UsageError(f"{path}: a served model is named by its file stem, and {name!r} cannot be one "
                         "(letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit); "
                         "rename the file")
    return name


def load_models(paths: Sequence[str | os.PathLike] = (), threads: int | None = None) -> dict[str, ServedModel]:
    """Load every model (the shipped one when none is given); raise on the first bad one."""
    from gankit.runtime import load_generator, shipped_model_path

    files = [Path(p) for p in paths] or [shipped_model_path()]
    names: dict[str, Path] = {}
    for path in files:
        name = model_name(path)
        if name in names:
            raise UsageError(f"two models would both be served as {name!r}: {names[name]} and {path}; "
                             "give them different file names")
        names[name] = path
    return {name: ServedModel(name, load_generator(path, threads=threads)) for name, path in names.items()}
