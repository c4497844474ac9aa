"""Model builders the test modules share (a helper module, not a test file).

`exported_models` exports small real models with the real exporter, once per test
session; `make_bad_models` breaks a good one in each way the runtime must refuse.
Heavy tier: needs torch, onnx and onnxruntime (the tests that use these run in the
main environment, even the torch-free ones, which only run the exported files).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import torch
from torch import nn

from gankit import runtime
from gankit.contract import CONTRACT_VERSION, ModelCard
from gankit.training.export.to_onnx import export_generator
from gankit.training.nets.stacked import GroupedMLP

from builders_stacked import grouped_from_sizes

__all__ = ["Z", "make_card", "TinyConditional", "TinyUnconditional", "tiny_grouped", "exported_models",
           "exported_module", "externalise", "make_bad_models"]

Z = 8


def make_card(**changes) -> ModelCard:
    card = ModelCard(gankit_version="0.1.0", contract_version=CONTRACT_VERSION, plugin="test",
                     label_mode="conditional", arch="mlp", z_dim=Z, noise="normal", classes=tuple(range(10)),
                     image_size=28, value_range=(-1.0, 1.0), training_steps=3, dataset="synthetic",
                     created="", weights_sha256="")
    return dataclasses.replace(card, **changes)


class TinyConditional(nn.Module):
    """A (z, labels) MLP generator: the label enters through an embedding."""

    def __init__(self, z_dim: int = Z, size: int = 28):
        super().__init__()
        self.size = size
        self.embed = nn.Embedding(10, 4)
        self.net = nn.Sequential(nn.Linear(z_dim + 4, 32), nn.LeakyReLU(0.2), nn.Linear(32, size * size), nn.Tanh())

    def forward(self, z, labels):
        return self.net(torch.cat([z, self.embed(labels)], 1)).view(-1, 1, self.size, self.size)


class TinyUnconditional(nn.Module):
    """Ignores labels; sigmoid output in [0, 1]."""

    def __init__(self, z_dim: int = Z):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, 32), nn.ReLU(), nn.Linear(32, 784), nn.Sigmoid())

    def forward(self, z, labels):
        return self.net(z).view(-1, 1, 28, 28)


def tiny_grouped(classes=(3, 7), seed: int = 0) -> GroupedMLP:
    return grouped_from_sizes([Z, 24, 784], ["leaky_relu", "tanh"], classes=classes, out_shape=(1, 28, 28),
                              generator=torch.Generator().manual_seed(seed)).eval()


_MODELS: dict[str, Path] = {}
_MODULES: dict[str, nn.Module] = {}


def exported_models(folder: Path) -> dict[str, Path]:
    """Export the shared test models once per test session (into the first folder given).

    ``conditional`` (normal noise, classes 0-9), ``per_class`` (a GroupedMLP for digits 3
    and 7) and ``unconditional`` (uniform noise, sigmoid output in [0, 1]), all Z=8.
    """
    if not _MODELS:
        torch.manual_seed(0)
        folder.mkdir(parents=True, exist_ok=True)
        specs = {
            "conditional": (TinyConditional(), make_card()),
            "per_class": (tiny_grouped(), make_card(label_mode="per-class", classes=(3, 7), plugin="per-digit")),
            "unconditional": (TinyUnconditional(), make_card(label_mode="none", noise="uniform", plugin="unconditional",
                                                             value_range=(0.0, 1.0))),
        }
        for name, (module, card) in specs.items():
            export_generator(module.eval(), card, folder / f"{name}.onnx")
            _MODELS[name] = folder / f"{name}.onnx"
            _MODULES[name] = module
    return dict(_MODELS)


def exported_module(name: str) -> nn.Module:
    """The torch module behind ``exported_models()[name]``."""
    return _MODULES[name]



def externalise(model: onnx.ModelProto, location: str, data_file: Path) -> onnx.ModelProto:
    """Move the largest initializer's bytes to ``data_file``, referenced as ``location``."""
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    data_file.parent.mkdir(parents=True, exist_ok=True)
    data_file.write_bytes(tensor.raw_data)
    onnx.external_data_helper.set_external_data(tensor, location=location)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    return model


def make_bad_models(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model path, regex the ModelFileError message must match)."""
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    raw = good.read_bytes()
    out: dict[str, tuple[Path, str]] = {}

    def save(name: str, model: onnx.ModelProto, pattern: str) -> None:
        path = models / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        out[name] = (path, pattern)

    def fresh() -> onnx.ModelProto:
        return onnx.load_from_string(raw)

    out["missing"] = (models / "missing.onnx", "no such model file")
    (models / "text.onnx").write_text("this is not a model\n" * 20)
    out["text"] = (models / "text.onnx", "not a valid ONNX file|cannot load it as an ONNX model")
    (models / "truncated.onnx").write_bytes(raw[: len(raw) * 3 // 5])
    out["truncated"] = (models / "truncated.onnx", r"not a valid ONNX file \(corrupt or truncated")
    (models / "empty.onnx").write_bytes(b"")
    out["empty"] = (models / "empty.onnx", "the file is empty")
    out["directory"] = (models, "not a file")

    model = fresh()
    del model.metadata_props[:]
    save("no_metadata", model, r"not a gankit model \(missing gankit metadata: gankit.version")

    model = fresh()
    for prop in model.metadata_props:
        if prop.key == "gankit.classes":
            prop.value = "three and seven"
    save("bad_metadata", model, r"not a gankit model \(malformed gankit metadata")

    model = fresh()
    model.graph.input[0].name = "noise"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == "z":
                node.input[i] = "noise"
    save("wrong_inputs", model, r"does not match the gankit ONNX contract: inputs are \['label', 'noise'\]")

    model = fresh()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 7
    save("fixed_batch", model, r"input z is tensor\(float\) \[7, 8\], expected .* with a dynamic N")

    model = fresh()
    for prop in model.metadata_props:
        if prop.key == "gankit.z_dim":
            prop.value = str(Z + 1)
    save("wrong_z_dim", model, r"expected tensor\(float\) \[N, 9\] \(z_dim from its metadata\)")

    outside = folder / "outside" / "w.bin"
    # External data is refused outright (the contract is one self-contained file), wherever it points.
    refused = "refusing a model that refers to external data"
    outside = folder / "outside" / "w.bin"
    save("external_outside", externalise(fresh(), "../outside/w.bin", outside), refused)
    save("external_absolute", externalise(fresh(), str(outside), outside), refused)
    (models / "link.bin").symlink_to(outside)
    save("external_symlink", externalise(fresh(), "link.bin", outside), refused)
    save("external_missing", externalise(fresh(), "gone.bin", folder / "scratch" / "gone.bin"), refused)
    save("external_inside", externalise(fresh(), "inside.bin", models / "inside.bin"), refused)

    big = models / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(runtime.MAX_MODEL_BYTES + 1)  # sparse: costs no disk
    out["too_big"] = (big, "larger than 256 MiB")
    return out
