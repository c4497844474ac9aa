"""Export to ONNX (heavy tier): parity gate, contract, metadata, no leftovers; grouped per-class nets.

The small real models the runtime, CLI and torch-free tests share (`exported_models`)
live in helpers_models.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import run_cli
from gankit.contract import ModelCard
from gankit.errors import ModelFileError
from gankit.training.export.to_onnx import (card_for, default_export_path, export_from_checkpoint, export_generator,
                                    weights_sha256)
from gankit.training.nets.stacked import GroupedMLP
from builders_stacked import grouped_class_net, grouped_from_sequentials
from helpers_models import Z, TinyConditional, exported_models, exported_module, make_card


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


def ort_run(path: Path, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"z": z.astype(np.float32), "label": labels.astype(np.int64)})[0]


# -- export_generator ----------------------------------------------------------------------

def test_export_is_one_self_contained_file_with_the_contract(models):
    path = models["conditional"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["conditional.onnx", "per_class.onnx", "unconditional.onnx"]
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    (z, label), (image,) = model.graph.input, model.graph.output
    assert (z.name, z.type.tensor_type.elem_type) == ("z", onnx.TensorProto.FLOAT)
    assert (label.name, label.type.tensor_type.elem_type) == ("label", onnx.TensorProto.INT64)
    assert image.name == "image" and dims(image)[1:] == [1, 28, 28]
    batch = dims(z)[0]
    assert isinstance(batch, str) and dims(label) == [batch] and dims(image)[0] == batch


def test_metadata_is_the_card_with_the_weights_hash(models):
    model = onnx.load(str(models["conditional"]))
    meta = {p.key: p.value for p in model.metadata_props}
    card = ModelCard.from_metadata(meta)
    assert card.weights_sha256 == weights_sha256(model) and len(card.weights_sha256) == 64
    stamped = dataclasses.replace(make_card(), created=card.created, weights_sha256=card.weights_sha256)
    assert meta == stamped.to_metadata()
    assert card.created.endswith("+00:00")
    # The hash covers the weights: changing one value changes it.
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    assert weights_sha256(model) != card.weights_sha256


def test_onnxruntime_matches_torch_on_other_batch_sizes(models):
    module = exported_module("conditional")
    for n in (2, 33, 1000):
        z = torch.randn(n, Z)
        labels = torch.randint(0, 10, (n,))
        with torch.no_grad():
            want = module(z, labels).clamp(-1, 1).numpy()
        got = ort_run(models["conditional"], z.numpy(), labels.numpy())
        assert got.shape == (n, 1, 28, 28)
        assert np.abs(got - want).max() < 1e-5


def test_parity_report_numbers(tmp_path):
    report = export_generator(TinyConditional(), make_card(), tmp_path / "m.onnx", parity_batches=(1, 7, 256))
    assert sorted(report.max_abs_diff) == [1, 7, 256]
    assert all(0 <= d < 1e-5 for d in report.max_abs_diff.values())
    assert report.worst == max(report.max_abs_diff.values()) and report.tolerance == 1e-4
    assert report.size_bytes == (tmp_path / "m.onnx").stat().st_size
    assert report.resized_from is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


class DiffersWhenExported(nn.Module):
    """Eager torch and the traced graph disagree by 0.01: the parity gate must catch it."""

    def __init__(self):
        super().__init__()
        self.inner = TinyConditional()

    def forward(self, z, labels):
        out = self.inner(z, labels) * 0.5
        if torch.compiler.is_exporting():
            out = out + 0.01
        return out


def test_parity_failure_raises_and_leaves_no_file(tmp_path):
    target = tmp_path / "out" / "m.onnx"
    with pytest.raises(ModelFileError, match=r"differs from torch by more than 0.0001.*no file written") as err:
        export_generator(DiffersWhenExported(), make_card(), target)
    assert "batch 1: 0.01" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor the folder the export created


def test_tolerance_is_the_gate(tmp_path):
    report = export_generator(DiffersWhenExported(), make_card(), tmp_path / "m.onnx", tolerance=0.02)
    assert all(abs(d - 0.01) < 1e-6 for d in report.max_abs_diff.values())


def test_wrong_output_shape_is_refused_before_export(tmp_path):
    class Flat(nn.Module):
        def forward(self, z, labels):
            return torch.zeros(z.shape[0], 784)

    with pytest.raises(ModelFileError, match=r"\[N, 1, 28\|32, 28\|32\], got \(2, 784\)"):
        export_generator(Flat(), make_card(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_is_a_clean_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ModelFileError, match="Cannot write ONNX file .*m.onnx"):
        export_generator(TinyConditional(), make_card(), tmp_path / "file" / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_32px_generator_is_area_resized_to_28_in_the_graph(tmp_path):
    torch.manual_seed(1)
    module = TinyConditional(size=32).eval()
    report = export_generator(module, make_card(), tmp_path / "m.onnx")
    assert report.resized_from == 32
    z = torch.randn(5, Z)
    labels = torch.arange(5)
    with torch.no_grad():
        want = F.interpolate(module(z, labels), size=(28, 28), mode="area").numpy()
    # Area resizing 32 -> 28 averages the 32-grid cells each 28-grid cell covers: check one by hand.
    with torch.no_grad():
        raw = module(z, labels).numpy()
    assert np.isclose(want[0, 0, 0, 0], raw[0, 0, 0:2, 0:2].mean(), atol=1e-6)
    got = ort_run(tmp_path / "m.onnx", z.numpy(), labels.numpy())
    assert got.shape == (5, 1, 28, 28) and np.abs(got - want).max() < 1e-5


def test_output_is_clamped_to_the_value_range(tmp_path):
    class Loud(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(Z, 784)

        def forward(self, z, labels):
            return (self.lin(z) * 100).view(-1, 1, 28, 28)  # ReLU-free and unbounded

    export_generator(Loud(), make_card(value_range=(0.0, 1.0)), tmp_path / "m.onnx")
    out = ort_run(tmp_path / "m.onnx", np.random.default_rng(0).standard_normal((16, Z)), np.zeros(16))
    assert out.min() == 0.0 and out.max() == 1.0


def test_unconditional_model_keeps_the_label_input(models):
    model = onnx.load(str(models["unconditional"]))
    assert [i.name for i in model.graph.input] == ["z", "label"]
    z = np.random.default_rng(0).uniform(-1, 1, (4, Z)).astype(np.float32)
    a = ort_run(models["unconditional"], z, np.zeros(4))
    b = ort_run(models["unconditional"], z, np.full(4, 9))
    assert np.array_equal(a, b)


def test_export_from_checkpoint_with_a_real_training_run(tmp_path):
    """Train two steps for real, export through the CLI (default output path), then in-process."""
    proc = run_cli("train", "--data", "synthetic", "--steps", 2, "--g-hidden", "16,32", "--d-hidden", "32,16",
                   "--runs-dir", tmp_path / "runs", "--name", "tiny", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("export", tmp_path / "runs" / "tiny", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parity batch 256" in proc.stdout and "passed" in proc.stdout
    out = tmp_path / "exports" / "tiny.onnx"
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["gankit.plugin"] == "unconditional" and meta["gankit.training_steps"] == "2"
    assert meta["gankit.label_mode"] == "none" and meta["gankit.z_dim"] == "100"

    from gankit.training.export.source import load_export_source

    ckpt = tmp_path / "runs" / "tiny" / "checkpoints" / "step-000000002"
    report = export_from_checkpoint(ckpt, tmp_path / "again.onnx")
    assert report.worst < 1e-5 and report.card.training_steps == 2
    assert report.weights_sha256 == meta["gankit.weights_sha256"]  # same weights, same hash
    source = load_export_source(ckpt)
    z = torch.randn(3, 100)
    with torch.no_grad():
        want = source.generator(z, torch.zeros(3, dtype=torch.int64)).numpy()
    assert np.abs(ort_run(out, z.numpy(), np.zeros(3)) - want).max() < 1e-5
    assert card_for(source).dataset == meta["gankit.dataset"]


def test_export_cli_errors(tmp_path):
    proc = run_cli("export", tmp_path / "nope", cwd=tmp_path)
    assert proc.returncode == 1 and "no such run folder or checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_cli("export", tmp_path / "empty", cwd=tmp_path)
    assert proc.returncode == 1 and "no committed checkpoint" in proc.stderr
    proc = run_cli("export", tmp_path / "empty", "-o", tmp_path / "x.txt", cwd=tmp_path)
    assert proc.returncode == 2 and "must end in .onnx" in proc.stderr
    assert not (tmp_path / "exports").exists()


def test_default_export_path():
    assert default_export_path("runs/mnist-a") == Path("exports/mnist-a.onnx")
    assert default_export_path("runs/mnist-a/checkpoints/step-000000010") == Path("exports/mnist-a.onnx")
    assert default_export_path("/x/y/my-run/checkpoints/step-000000010") == Path("exports/my-run.onnx")


# -- GroupedMLP ----------------------------------------------------------------------------

CLASSES = (0, 2, 5, 9)


def separate_mlps(seed: int = 0) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Linear(Z, 24), nn.LeakyReLU(0.2), nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 784),
                          nn.Tanh()).eval() for _ in CLASSES]


def loop_reference(nets, z, labels):
    """Sample by sample, the MLP of its class: the definition GroupedMLP must match."""
    with torch.no_grad():
        rows = [nets[CLASSES.index(int(c))](z[i:i + 1])[0] for i, c in enumerate(labels)]
        return torch.stack(rows).view(-1, 1, 28, 28)


LABEL_BATCHES = {
    "mixed": torch.tensor([9, 0, 2, 5, 5, 0, 9, 2, 2, 0, 5]),
    "single-class": torch.full((6,), 5),
    "missing-classes": torch.tensor([9, 0, 9, 9, 0]),
    "one-sample": torch.tensor([2]),
}


@pytest.mark.parametrize("kind", sorted(LABEL_BATCHES))
def test_grouped_equals_a_loop_over_separate_mlps(kind):
    nets = separate_mlps()
    grouped = grouped_from_sequentials(nets, classes=CLASSES, out_shape=(1, 28, 28)).eval()
    labels = LABEL_BATCHES[kind]
    z = torch.randn(len(labels), Z)
    with torch.no_grad():
        got = grouped(z, labels)
    assert got.shape == (len(labels), 1, 28, 28)
    assert (got - loop_reference(nets, z, labels)).abs().max() < 1e-5


def test_block_forward_equals_each_class_net():
    nets = separate_mlps(1)
    grouped = grouped_from_sequentials(nets, classes=CLASSES, out_shape=(1, 28, 28))
    z = torch.randn(len(CLASSES), 6, Z)
    with torch.no_grad():
        got = grouped(z)
        want = torch.stack([net(z[k]) for k, net in enumerate(nets)]).view(len(CLASSES), 6, 1, 28, 28)
        mixed = grouped(z.reshape(-1, Z), torch.tensor(CLASSES).repeat_interleave(6))
    assert got.shape == (4, 6, 1, 28, 28) and (got - want).abs().max() < 1e-5
    assert (mixed.view(4, 6, 1, 28, 28) - got).abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"expected z blocks of shape \[K=4"):
        grouped(torch.randn(3, 6, Z))


def test_grouped_gradients_reach_only_the_classes_in_the_batch():
    grouped = grouped_from_sequentials(separate_mlps(), classes=CLASSES, out_shape=(1, 28, 28))
    grouped(torch.randn(8, Z), torch.tensor([2, 9] * 4)).square().mean().backward()
    per_class = grouped.weight_0.grad.abs().sum(dim=(1, 2))
    assert per_class[0] == 0 and per_class[2] == 0 and per_class[1] > 0 and per_class[3] > 0


def test_grouped_round_trip_and_errors():
    nets = separate_mlps(2)
    grouped = grouped_from_sequentials(nets, classes=CLASSES)
    z = torch.randn(3, Z)
    with torch.no_grad():
        assert torch.allclose(grouped_class_net(grouped, 2)(z), nets[2](z), atol=1e-6)
    with pytest.raises(ValueError, match=r"labels \[4\] are not among this model's classes"):
        grouped(z, torch.tensor([0, 4, 9]))
    with pytest.raises(ValueError, match="do not chain"):
        GroupedMLP([torch.zeros(2, 3, 4), torch.zeros(2, 5, 6)], [torch.zeros(2, 4), torch.zeros(2, 6)], ["relu", None])
    with pytest.raises(ValueError, match="unknown activation"):
        GroupedMLP([torch.zeros(2, 3, 4)], [torch.zeros(2, 4)], ["gelu"])


def test_grouped_onnx_parity_and_graph_groups_by_label(tmp_path):
    nets = separate_mlps(3)
    grouped = grouped_from_sequentials(nets, classes=CLASSES, out_shape=(1, 28, 28)).eval()
    card = make_card(label_mode="per-class", classes=CLASSES)
    report = export_generator(grouped, card, tmp_path / "g.onnx", parity_batches=(1, 7, 256))
    assert sorted(report.max_abs_diff) == [1, 7, 256] and report.worst < 1e-5

    for labels in LABEL_BATCHES.values():
        z = torch.randn(len(labels), Z)
        got = ort_run(tmp_path / "g.onnx", z.numpy(), labels.numpy())
        assert np.abs(got - loop_reference(nets, z, labels).numpy()).max() < 1e-5

    # Grouping, not per-sample weights: one NonZero per class, and every Gather that reads
    # a weight tensor does so with a constant index (a class), never with a per-sample one.
    model = onnx.load(str(tmp_path / "g.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("NonZero") == len(CLASSES) and ops.count("ScatterND") == 1
    constants = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                              for o in n.output}
    weights = {i.name for i in model.graph.initializer if len(i.dims) >= 2}
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[0] in weights:
            assert node.input[1] in constants, f"{node.name} gathers weights with a data-dependent index"


def test_missing_export_tools_give_the_install_hint(tmp_path, monkeypatch):
    import importlib.util

    from gankit.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"needs onnxscript.*pip install.*\[train\]"):
        export_generator(TinyConditional(), make_card(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
