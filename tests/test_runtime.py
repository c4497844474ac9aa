"""The light-tier runtime: hostile model files, digit choice, determinism, chunking, numbers.

Models are exported for real (see `helpers_models.exported_models`); the bad ones are made
from a good one with the `onnx` package, each broken in exactly one way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch

import gankit
from gankit import runtime
from gankit.errors import ModelFileError, UsageError
from gankit.images import to_uint8
from gankit.runtime import OnnxGenerator, load_generator
import hostile_models as hostile
from helpers_models import Z, exported_models, exported_module, make_bad_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def bad_models(models, tmp_path_factory):
    return make_bad_models(tmp_path_factory.mktemp("bad"), models["conditional"])


BAD_NAMES = ["missing", "text", "truncated", "empty", "directory", "no_metadata", "bad_metadata", "wrong_inputs",
             "fixed_batch", "wrong_z_dim", "external_outside", "external_absolute", "external_symlink",
             "external_missing", "external_inside", "too_big"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_files_are_refused_with_a_clear_message(bad_models, name):
    path, pattern = bad_models[name]
    with pytest.raises(ModelFileError, match=pattern) as err:
        load_generator(path)
    assert str(path.name) in str(err.value)


def test_external_data_is_refused_before_onnxruntime_opens_anything(bad_models, monkeypatch):
    import onnxruntime

    def boom(*args, **kwargs):
        raise AssertionError("onnxruntime was asked to open a model that should have been refused")

    monkeypatch.setattr(onnxruntime, "InferenceSession", boom)
    for name in ("external_outside", "external_absolute", "external_symlink", "external_missing", "external_inside"):
        with pytest.raises(ModelFileError, match="refers to external data.*one self-contained .onnx file"):
            load_generator(bad_models[name][0])


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
    monkeypatch.setattr(runtime.generator, "CHUNK", 7)  # 40 images -> 6 chunks, one stream of latents
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
    # the total is checked before any array is built: no MemoryError, no OverflowError
    ({"n": 10**12}, "1000000000000 images asked for"),
    ({"n": 2**64}, "18446744073709551616 images asked for"),
    ({"digit": [1, 2], "n": 600_000}, "1200000 images asked for"),
    ({"seed": -1}, "seed must be from 0 to 2\\*\\*64 - 1, got -1"),
    ({"seed": 2**70}, "seed must be from 0 to 2\\*\\*64 - 1"),
    ({"seed": 1.5}, "seed must be a whole number"),
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
    monkeypatch.setattr(runtime.generator, "__file__", str(fake_pkg / "runtime" / "generator.py"))
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


# -- hostile files (issue 9.1, 9.4, 9.9) ------------------------------------------------------

def test_function_attribute_pointing_outside_is_refused_and_nothing_is_opened(tmp_path):
    """A function's default tensor attribute stored as external data at ../../../etc/passwd.

    The old walker skipped FunctionProto.attribute_proto; onnxruntime 1.17-1.19 then read
    the file (measured). Under strace, no file outside the model's folder may be opened
    between the start and the end of the load.
    """
    folder = tmp_path / "a" / "b" / "c"
    (tmp_path / "secret.txt").write_text("outside the model's folder\n")
    for target in ("../../../" * 6 + "etc/passwd", "../../../secret.txt", str(tmp_path / "secret.txt")):
        model = hostile.write(folder / "leak.onnx", hostile.function_attribute_leak(target))
        with pytest.raises(ModelFileError, match="refers to external data"):
            load_generator(model)
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed: the no-open check needs it")
    script = (
        "import os, sys\n"
        "from gankit.runtime import load_generator\n"
        "from gankit.errors import ModelFileError\n"
        "import onnxruntime\n"  # loaded before the window: its own libraries are not the model's doing
        "try: os.stat('/gankit-strace-start')\n"
        "except OSError: pass\n"
        "try: load_generator(sys.argv[1])\n"
        "except ModelFileError as exc: print(exc)\n"
        "try: os.stat('/gankit-strace-end')\n"
        "except OSError: pass\n")
    trace = tmp_path / "trace.txt"
    model = hostile.write(folder / "leak.onnx", hostile.function_attribute_leak("../../../" * 6 + "etc/passwd"))
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2,stat,newfstatat,statx",
                           "-o", str(trace), sys.executable, "-c", script, str(model)],
                          capture_output=True, text=True, timeout=120)
    assert "refers to external data" in proc.stdout, proc.stderr
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "gankit-strace-start" in line)
    end = next(i for i, line in enumerate(lines) if "gankit-strace-end" in line)
    opened = [line for line in lines[start + 1:end] if "open" in line]
    outside = [line for line in opened if str(folder) not in line]
    assert opened and not outside, outside
    assert not any("passwd" in line or "secret" in line for line in lines[start:end])


def test_the_cause_of_an_onnxruntime_refusal_is_not_cut_off(models, tmp_path):
    model = onnx.load(str(models["conditional"]))
    model.ir_version = 99
    path = hostile.write(tmp_path / "ir99.onnx", model.SerializeToString())
    with pytest.raises(ModelFileError, match="Unsupported model IR version: 99") as err:
        load_generator(path)
    assert "onnxruntime_src" not in str(err.value) and ".cc:" not in str(err.value)


def test_a_model_that_fails_when_run_is_refused_at_load_with_one_line(models, tmp_path):
    path = hostile.write(tmp_path / "gather.onnx", hostile.fails_at_run_time(onnx.load(str(models["conditional"]))))
    with pytest.raises(ModelFileError, match=r"fails when run on a batch of 2 \(.*out of") as err:
        load_generator(path)
    assert "\n" not in str(err.value)


def test_run_time_memory_is_capped(models, tmp_path):
    def good():
        return onnx.load(str(models["conditional"]))

    # 400 GB on the two-row probe: refused at load, by the arena or by the allocator
    path = hostile.write(tmp_path / "huge.onnx", hostile.allocates(good(), 50_000_000_000))
    with pytest.raises(ModelFileError, match="fails when run on a batch of 2"):
        load_generator(path)
    # 400 MB per row: the probe (800 MB) runs, a batch of 8 (3.2 GB) is over the 2 GiB cap
    per_row = 100_000_000
    assert 2 * per_row * 4 < runtime.ARENA_BYTES < 8 * per_row * 4
    gen = load_generator(hostile.write(tmp_path / "big.onnx", hostile.allocates(good(), per_row)))
    assert gen._session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
    with pytest.raises(ModelFileError, match=r"fails when run on a batch of 8 \(.*(memory|allocate)"):
        gen.generate(3, n=8)


def test_metadata_that_is_not_utf8_is_refused(models, tmp_path):
    path = hostile.write(tmp_path / "utf8.onnx", hostile.invalid_utf8_metadata(onnx.load(str(models["conditional"]))))
    with pytest.raises(ModelFileError, match="metadata is not valid UTF-8"):
        load_generator(path)


def test_control_characters_in_metadata_are_stripped(models, tmp_path):
    model = hostile.set_meta(onnx.load(str(models["conditional"])), dataset="mnist\x1b[31m red\x07\u202e!")
    model.metadata_props.add(key="note\x1b]0;title\x07", value="a\rb\x9bc")
    gen = load_generator(hostile.write(tmp_path / "ctl.onnx", hostile.restamp(model)))
    assert gen.card.dataset == "mnist[31m red!"
    assert dict(gen.card.extra) == {"note]0;title": "abc"}


def test_a_flipped_bit_in_the_weights_is_refused(models, tmp_path):
    raw = models["conditional"].read_bytes()
    assert runtime.model_sha256(raw) == load_generator(models["conditional"]).card.weights_sha256
    path = hostile.write(tmp_path / "flip.onnx", hostile.flip_weight_bit(raw))
    with pytest.raises(ModelFileError, match="do not match the gankit.weights_sha256.*damaged or altered"):
        load_generator(path)


def test_the_shipped_models_carry_their_hash():
    for name in ("conditional.onnx", "per-digit.onnx"):
        path = runtime.shipped_model_path().parent.parent / "exports" / name
        if not path.is_file():
            path = runtime.shipped_model_path().with_name(name)
        if path.is_file():
            assert load_generator(path).card.weights_sha256 == runtime.model_sha256(path.read_bytes())


def test_metadata_claiming_too_many_classes_is_refused(models, tmp_path):
    model = hostile.set_meta(onnx.load(str(models["conditional"])), classes=json.dumps(list(range(100_000))))
    with pytest.raises(ModelFileError, match="claims 100,000 classes; at most 256"):
        load_generator(hostile.write(tmp_path / "classes.onnx", hostile.restamp(model)))
    model = hostile.set_meta(onnx.load(str(models["conditional"])), classes="[3, 300]")
    with pytest.raises(ModelFileError, match="not distinct ids from 0 to 255"):
        load_generator(hostile.write(tmp_path / "classes300.onnx", hostile.restamp(model)))


def test_a_padded_model_is_refused_quickly_before_onnxruntime_parses_it(models, tmp_path, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: pytest.fail("onnxruntime got it"))
    # 30 MB of empty records: onnxruntime's parser would build 15 million objects (~1.6 GB)
    path = hostile.write(tmp_path / "padded.onnx", hostile.padded(models["conditional"].read_bytes(), 15_000_000))
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match="more than 100,000 protobuf fields; padded"):
        load_generator(path)
    assert time.perf_counter() - started < 10  # ~1 s on a 2-core CI machine; the old walker took 46 s at 255 MB


def test_providers_and_threads_through_gankit_load(models):
    gen = gankit.load(models["conditional"], providers=["CPUExecutionProvider"], threads=1)
    assert gen._session.get_providers() == ["CPUExecutionProvider"]
    assert gen._session.get_session_options().intra_op_num_threads == 1
    assert np.array_equal(gen.generate(4, n=3), load_generator(models["conditional"]).generate(4, n=3))
    assert gankit.load(models["conditional"], providers=[("CPUExecutionProvider", {})]).generate(4, n=1).shape == (1, 28, 28)
    with pytest.raises(UsageError, match="'NoSuchExecutionProvider' is not available.*CPUExecutionProvider"):
        gankit.load(models["conditional"], providers=["NoSuchExecutionProvider"])
    for bad in ("CPUExecutionProvider", [], [("CPUExecutionProvider", "x")], [3]):
        with pytest.raises(UsageError, match="provider"):
            gankit.load(models["conditional"], providers=bad)
