"""`gankit export --torch-fidelity`: the adapter torch-fidelity's GenerativeModelONNX loads.

The contract checked here is torch-fidelity's, as its ``GenerativeModelONNX`` and its
sampling loop (``utils.get_featuresdict_from_generative_model``) use a model: positional
inputs in graph order, noise float32 [B, z_size] then, when ``num_classes > 0``, class
indices int64 [B] in 0..num_classes-1; the first output is uint8 [B, 3, H, W].

torch-fidelity itself needs torchvision, which this machine's index does not have, so
its package ``__init__`` (which imports every feature extractor) cannot run here. Where
the wheel is installed (`.ci/run` installs it without dependencies) the test loads its
real ``generative_model_onnx`` and ``noise`` modules, which need only torch and numpy,
through a namespace stand-in for the package, and calls the model the way its sampling
loop does; elsewhere that one test is skipped and the contract tests still run.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import run_cli
from gankit import runtime
from gankit.errors import ModelFileError
from gankit.images import to_uint8
from gankit.training.export.fidelity import adapt_for_torch_fidelity, default_adapter_path
from helpers_models import Z, exported_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def adapters(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    return {name: adapt_for_torch_fidelity(path, folder / f"{name}.tf.onnx") for name, path in models.items()}


def io_of(path):
    model = onnx.load(str(path))

    def describe(v):
        t = v.type.tensor_type
        return onnx.TensorProto.DataType.Name(t.elem_type), [d.dim_param or d.dim_value for d in t.shape.dim]

    return [describe(i) for i in model.graph.input], [describe(o) for o in model.graph.output]


def test_signature_follows_torch_fidelity(adapters):
    ins, outs = io_of(adapters["conditional"].path)
    assert ins == [("FLOAT", ["N", Z]), ("INT64", ["N"])]
    assert outs == [("UINT8", ["N", 3, 28, 28])]
    ins, outs = io_of(adapters["unconditional"].path)
    assert ins == [("FLOAT", ["N", Z])]  # torch-fidelity passes noise alone when num_classes == 0
    assert outs == [("UINT8", ["N", 3, 28, 28])]
    a = adapters["conditional"]
    assert (a.z_size, a.z_type, a.num_classes) == (Z, "normal", 10)
    u = adapters["unconditional"]
    assert (u.z_type, u.num_classes) == ("uniform_0_1", 0)
    assert a.loader_call() == (f"torch_fidelity.GenerativeModelONNX({str(a.path)!r}, z_size={Z}, "
                               "z_type='normal', num_classes=10)")


def test_pixels_are_gankit_generates_bytes_in_three_channels(models, adapters):
    """Same latents, same digits: the adapter's grey levels are `gankit generate`'s (within 1 level)."""
    gen = runtime.load_generator(models["conditional"])
    rng = np.random.default_rng(5)
    z = gen.sample_latent(300, rng)
    index = rng.integers(0, 10, 300)
    got = ort.InferenceSession(str(adapters["conditional"].path)).run(None, {"z": z, "class_index": index})[0]
    want = to_uint8(gen.generate_float(z, index), gen.card.value_range)
    assert got.dtype == np.uint8 and got.shape == (300, 3, 28, 28)
    assert np.array_equal(got[:, 0], got[:, 1]) and np.array_equal(got[:, 0], got[:, 2])
    diff = np.abs(got[:, 0].astype(int) - want.astype(int))
    # float32 scaling in the graph vs float64 in gankit: a pixel on a rounding boundary may move one level.
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size * 1e-3
    assert 0 < got.mean() < 255  # real pictures, not a constant


def test_class_index_picks_the_models_class_ids(models, adapters):
    """A model of digits 3 and 7: torch-fidelity's index 0 draws a 3, index 1 a 7."""
    a = adapters["per_class"]
    assert a.num_classes == 2 and a.classes == (3, 7)
    gen = runtime.load_generator(models["per_class"])
    z = gen.sample_latent(8, 1)
    index = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    got = ort.InferenceSession(str(a.path)).run(None, {"z": z, "class_index": index})[0][:, 0]
    want = to_uint8(gen.generate_float(z, np.array([3, 7])[index]), gen.card.value_range)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    other = to_uint8(gen.generate_float(z, np.array([7, 3])[index]), gen.card.value_range)
    assert np.abs(got.astype(int) - other.astype(int)).max() > 1  # the mapping matters


def test_uniform_noise_is_torch_fidelitys_uniform_0_1(models, adapters):
    """gankit's uniform latent is on [-1, 1]; the adapter takes u on [0, 1] and maps it to 2u - 1."""
    gen = runtime.load_generator(models["unconditional"])
    z = gen.sample_latent(16, 2)
    got = ort.InferenceSession(str(adapters["unconditional"].path)).run(None, {"z": (z + 1) / 2})[0][:, 0]
    want = gen.generate(None, 16, seed=2)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_gankit_refuses_the_adapter_by_name(adapters):
    with pytest.raises(ModelFileError, match="torch-fidelity adapter .*not a gankit model"):
        runtime.load_generator(adapters["conditional"].path)


def test_adapter_of_a_damaged_model_is_refused_and_nothing_written(models, tmp_path):
    data = bytearray(models["conditional"].read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: the hash no longer matches
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        adapt_for_torch_fidelity(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(ModelFileError, match="overwrite"):
        adapt_for_torch_fidelity(models["conditional"], models["conditional"])


def test_cli_writes_the_adapter_from_a_model_and_from_a_run(models, tmp_path):
    proc = run_cli("export", models["per_class"], "--torch-fidelity", "-o", tmp_path / "pc.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "num_classes=2" in proc.stdout and "class_index i draws digit [3, 7][i]" in proc.stdout
    assert io_of(tmp_path / "pc.onnx")[1] == [("UINT8", ["N", 3, 28, 28])]

    proc = run_cli("export", models["conditional"], cwd=tmp_path)  # an .onnx without the flag: usage error
    assert proc.returncode == 2 and "already an ONNX model" in proc.stderr and "Traceback" not in proc.stderr

    proc = run_cli("train", "--data", "synthetic", "--steps", 2, "--g-hidden", "16,32", "--d-hidden", "32,16",
                   "--runs-dir", tmp_path / "runs", "--name", "tiny", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("export", tmp_path / "runs" / "tiny", "--torch-fidelity", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "exports" / "tiny.onnx").is_file()  # the gankit model, as without the flag
    adapter = tmp_path / "exports" / "tiny.torch-fidelity.onnx"
    assert default_adapter_path(tmp_path / "exports" / "tiny.onnx") == adapter
    assert io_of(adapter)[0] == [("FLOAT", ["N", 100])] and "num_classes=0" in proc.stdout


def _torch_fidelity_modules():
    """torch-fidelity's own GenerativeModelONNX and noise modules, without its package __init__."""
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch-fidelity is not installed (.ci/run installs it with --no-deps)")
    if "torch_fidelity" not in sys.modules:
        stand_in = types.ModuleType("torch_fidelity")
        stand_in.__path__ = list(spec.submodule_search_locations)
        sys.modules["torch_fidelity"] = stand_in
    from torch_fidelity.generative_model_onnx import GenerativeModelONNX
    from torch_fidelity.noise import random_normal

    return GenerativeModelONNX, random_normal


def test_torch_fidelitys_own_loader_runs_it(models, adapters):
    """GenerativeModelONNX loads the adapter and, fed as its sampling loop feeds it, returns gankit's digits."""
    import torch

    GenerativeModelONNX, random_normal = _torch_fidelity_modules()
    a = adapters["conditional"]
    model = GenerativeModelONNX(str(a.path), a.z_size, a.z_type, a.num_classes)
    assert (model.z_size, model.z_type, model.num_classes) == (Z, "normal", 10)
    rng = np.random.RandomState(0)  # torch-fidelity's sampling loop draws from a RandomState
    noise = random_normal(rng, (64, model.z_size))
    labels = torch.from_numpy(rng.randint(low=0, high=model.num_classes, size=(64,)).astype(np.int64))
    out = model(noise, labels)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and tuple(out.shape) == (64, 3, 28, 28)
    gen = runtime.load_generator(models["conditional"])
    want = to_uint8(gen.generate_float(noise.numpy(), labels.numpy()), gen.card.value_range)
    assert np.abs(out.numpy()[:, 0].astype(int) - want.astype(int)).max() <= 1
