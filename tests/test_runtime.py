"""The light-tier runtime: hostile model files, digit choice, determinism, chunking, numbers.

Models are exported for real (see `helpers_models.exported_models`); the bad ones are made
from a good one with the `onnx` package, each broken in exactly one way.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import gankit
from gankit import runtime
from gankit.errors import ModelFileError, UsageError
from gankit.images import to_uint8
from gankit.runtime import OnnxGenerator, load_generator
from helpers_models import Z, exported_models, exported_module, externalise, make_bad_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def bad_models(models, tmp_path_factory):
    return make_bad_models(tmp_path_factory.mktemp("bad"), models["conditional"])


BAD_NAMES = ["missing", "text", "truncated", "empty", "directory", "no_metadata", "bad_metadata", "wrong_inputs",
             "fixed_batch", "wrong_z_dim", "external_outside", "external_absolute", "external_symlink",
             "external_missing", "too_big"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_files_are_refused_with_a_clear_message(bad_models, name):
    path, pattern = bad_models[name]
    with pytest.raises(ModelFileError, match=pattern) as err:
        load_generator(path)
    assert str(path.name) in str(err.value)


def test_external_data_outside_is_refused_before_onnxruntime_opens_it(bad_models, monkeypatch):
    import onnxruntime

    def boom(*args, **kwargs):
        raise AssertionError("onnxruntime was asked to open a model that should have been refused")

    monkeypatch.setattr(onnxruntime, "InferenceSession", boom)
    for name in ("external_outside", "external_absolute", "external_symlink"):
        with pytest.raises(ModelFileError, match="refusing external data"):
            load_generator(bad_models[name][0])


def test_external_data_inside_the_folder_is_fine(models, tmp_path):
    model = externalise(onnx.load(str(models["conditional"])), "weights.bin", tmp_path / "weights.bin")
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    ext = load_generator(tmp_path / "m.onnx")
    assert np.array_equal(ext.generate(4, n=5, seed=1), load_generator(models["conditional"]).generate(4, n=5, seed=1))


def test_card_and_io_are_read_back(models):
    gen = load_generator(models["per_class"])
    assert gen.card.label_mode == "per-class" and gen.card.classes == (3, 7) and gen.card.z_dim == Z
    assert [i["name"] for i in gen.inputs] == ["z", "label"]
    assert gen.outputs[0]["shape"][1:] == [1, 28, 28]
    assert gen.size_bytes == models["per_class"].stat().st_size
    assert "per-class" in repr(gen)


def test_generate_matches_torch_through_to_uint8(models):
    """The pixels are the torch generator's, for the runtime's own latent and labels."""
    gen = load_generator(models["conditional"])
    images = gen.generate(7, n=12, seed=3)
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    z = gen.sample_latent(12, seed=3)
    with torch.no_grad():
        want = exported_module("conditional")(torch.from_numpy(z), torch.full((12,), 7)).numpy()
    expected = to_uint8(want, (-1.0, 1.0))
    # torch and onnxruntime differ by ~1e-7, which may flip a pixel sitting on a rounding edge.
    diff = np.abs(images.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_same_seed_same_pixels_and_chunking_does_not_change_them(models, monkeypatch):
    gen = load_generator(models["conditional"])
    a = gen.generate(2, n=40, seed=11)
    assert np.array_equal(a, gen.generate(2, n=40, seed=11))
    assert not np.array_equal(a, gen.generate(2, n=40, seed=12))
    assert not np.array_equal(gen.generate(2, n=4, seed=None), gen.generate(2, n=4, seed=None))
    monkeypatch.setattr(runtime, "CHUNK", 7)  # 40 images -> 6 chunks, one stream of latents
    assert np.array_equal(a, gen.generate(2, n=40, seed=11))
    # a prefix of a bigger request is the smaller request
    assert np.array_equal(gen.generate(2, n=5, seed=11), a[:5])


def test_big_request_runs_in_chunks(models, monkeypatch):
    gen = load_generator(models["conditional"])
    calls = []
    real_run = gen._run
    monkeypatch.setattr(gen, "_run", lambda z, labels: calls.append(len(z)) or real_run(z, labels))
    out = gen.generate(None, n=2500, seed=0)
    assert out.shape == (2500, 28, 28) and calls == [1024, 1024, 452]


def test_digit_lists_and_spread(models):
    gen = load_generator(models["conditional"])
    assert np.array_equal(gen.labels_for([3, 1], 3), [3, 3, 3, 1, 1, 1])
    assert np.array_equal(gen.labels_for(None, 12), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    both = gen.generate([3, 1], n=3, seed=5)
    z = gen.sample_latent(6, seed=5)
    floats = gen.generate_float(z, np.array([3, 3, 3, 1, 1, 1]))
    assert np.array_equal(both, to_uint8(floats, (-1.0, 1.0)))
    # the label matters in a conditional model
    assert not np.array_equal(gen.generate(3, n=3, seed=5), gen.generate(1, n=3, seed=5))


def test_per_class_model_refuses_untrained_digits(models):
    gen = load_generator(models["per_class"])
    assert gen.generate(3, n=2).shape == (2, 28, 28)
    assert gen.generate(None, n=4).shape == (4, 28, 28)
    with pytest.raises(UsageError, match=r"trained on digit\(s\) 3, 7 only; it cannot draw 5"):
        gen.generate(5)
    with pytest.raises(UsageError, match="cannot draw 4"):
        gen.generate([3, 4])


def test_unconditional_uniform_model(models):
    gen = load_generator(models["unconditional"])
    z = gen.sample_latent(4096, seed=0)
    assert z.dtype == np.float32 and z.min() >= -1 and z.max() <= 1 and abs(z.mean()) < 0.02
    assert abs(z.std() - 1 / np.sqrt(3)) < 0.01
    assert gen.generate(None, n=3).shape == (3, 28, 28)
    with pytest.raises(UsageError, match="unconditional model"):
        gen.generate(7)


def test_normal_latent_statistics(models):
    z = load_generator(models["conditional"]).sample_latent(4096, seed=0)
    assert z.shape == (4096, Z) and abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


@pytest.mark.parametrize("kwargs, pattern", [
    ({"digit": 10}, "not one this model can draw"),
    ({"digit": -1}, "not one this model can draw"),
    ({"digit": "7"}, "digit must be a whole number"),
    ({"digit": True}, "must be a whole number"),
    ({"digit": []}, "list of digits is empty"),
    ({"n": 0}, "positive whole number"),
    ({"n": runtime.MAX_IMAGES + 1}, "at most 1000000 per call"),
])
def test_bad_requests_are_usage_errors(models, kwargs, pattern):
    with pytest.raises(UsageError, match=pattern):
        load_generator(models["conditional"]).generate(**kwargs)


def test_generate_float_checks_its_arrays(models):
    gen = load_generator(models["conditional"])
    with pytest.raises(UsageError, match=r"z must be \[N, 8\]"):
        gen.generate_float(np.zeros((2, 3)), np.zeros(2, dtype=np.int64))
    with pytest.raises(UsageError, match="labels must be integers"):
        gen.generate_float(np.zeros((2, Z)), np.zeros(3, dtype=np.int64))
    out = gen.generate_float(np.zeros((2, Z), dtype=np.float64), np.array([1, 2], dtype=np.int32))
    assert out.shape == (2, 1, 28, 28) and out.dtype == np.float32


def test_shipped_model_lookup(models, tmp_path, monkeypatch):
    fake_pkg = tmp_path / "site" / "gankit"
    (fake_pkg / "assets").mkdir(parents=True)
    monkeypatch.setattr(runtime, "__file__", str(fake_pkg / "runtime.py"))
    with pytest.raises(ModelFileError, match="no shipped model found.*--model PATH"):
        load_generator()
    # a source checkout: exports/ beside the package
    (tmp_path / "site" / "exports").mkdir()
    (tmp_path / "site" / "exports" / "conditional.onnx").write_bytes(models["conditional"].read_bytes())
    assert load_generator().path == tmp_path / "site" / "exports" / "conditional.onnx"
    # installed: package data wins
    (fake_pkg / "assets" / "conditional.onnx").write_bytes(models["per_class"].read_bytes())
    gen = gankit.load()
    assert isinstance(gen, OnnxGenerator) and gen.path == fake_pkg / "assets" / "conditional.onnx"


def test_session_is_tuned_for_a_small_cpu_model(models):
    opts = load_generator(models["conditional"])._session.get_session_options()
    assert opts.intra_op_num_threads == runtime.default_threads() >= 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(UsageError, match="threads must be a positive whole number"):
        load_generator(models["conditional"], threads=0)
    one = load_generator(models["conditional"], threads=1)
    assert one._session.get_session_options().intra_op_num_threads == 1
    assert np.array_equal(one.generate(4, n=3), load_generator(models["conditional"]).generate(4, n=3))
