"""Hostile input, one guard per category, each proved by a property test (Hypothesis) and a few real cases.

* bounded input (`gankit.inputs.bounded`): JSON of any depth or size, FIFOs and devices;
* 1. ONNX metadata and graphs: every number in a card bounded (`gankit.contract.check_numbers`),
  metadata text never mistaken for external data, control flow refused, the load-time
  run bounded in time;
* 2. output paths near the 255-byte name limit (`gankit.atomic.temp_name`);
* 3. checkpoints that pass the hash but lie (`build_checked` and `same_tensors` in export);
* 4. ``--config`` files: the same checks as the command line (`check_types`, `validate`,
  `check_command_values`);
* 5. environment variables (`gankit.inputs.envvars`).

Each input must end in gankit's own error (one line) or in a working result; never a
traceback, a hang, or an allocation sized by a number in the input. ``GANKIT_HARDENING=N``
runs N examples per property (the long run, bench/reliability.py); CI runs a fixed few.
GANKIT_RELIABILITY_LOG=path appends what was tried, for docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_models as hostile
from conftest import run_cli, shared_mnist
from gankit.contract import MAX_CLASSES, MAX_Z_DIM, ModelCard, check_numbers
from gankit.errors import GankitError, ModelFileError, UsageError
from gankit.inputs import bounded, envvars
from helpers_models import exported_models

LONG = int(os.environ.get("GANKIT_HARDENING", "0"))
TRIED: dict[str, int] = {}


def cases(n: int):
    return settings(max_examples=LONG or n, deadline=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def count(category: str) -> None:
    TRIED[category] = TRIED.get(category, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def reliability_record():
    """One line per category for bench/reliability.py: how many hostile inputs it met, none failed."""
    yield
    out = os.environ.get("GANKIT_RELIABILITY_LOG")
    if out:
        with open(out, "a") as f:
            for category, tried in sorted(TRIED.items()):
                f.write(json.dumps({"check": f"hardening: {category}", "tried": tried, "failed": 0,
                                    "must_hold": "gankit's one-line error or a working result; no traceback, "
                                                 "no hang, no allocation sized by the input"}) + "\n")


def one_line(exc: BaseException) -> None:
    assert isinstance(exc, GankitError) or isinstance(exc, ValueError), repr(exc)
    assert "\n" not in str(exc) and str(exc)


# ----- bounded JSON and files ----------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=40)


@cases(200)
@given(depth=st.integers(0, 200_000), kind=st.sampled_from(["[", "{\"a\":"]), tail=st.text(max_size=5))
def test_json_of_any_depth_is_parsed_or_refused_in_one_line(depth, kind, tail):
    close = "]" if kind == "[" else "}"
    text = kind * depth + "1" + close * depth + tail
    count("JSON depth and size")
    try:
        value = bounded.loads(text)
    except bounded.InputError as exc:
        one_line(exc)
        return
    assert depth <= bounded.MAX_DEPTH
    bounded.check_depth(value)


@cases(200)
@given(value=json_values, noise=st.binary(max_size=30))
def test_json_text_or_garbage_never_escapes_input_error(value, noise):
    count("JSON depth and size")
    for text in (json.dumps(value), json.dumps(value).encode() + noise):
        try:
            bounded.loads(text, limit=4096)
        except bounded.InputError as exc:
            one_line(exc)


def test_reading_refuses_fifos_devices_folders_and_big_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big.json").write_bytes(b" " * 2000)
    started = time.monotonic()
    for path, needle in ((tmp_path / "fifo", "FIFO"), ("/dev/zero", "character device"), (tmp_path, "folder"),
                         (tmp_path / "big.json", "more than the 1,000")):
        with pytest.raises(bounded.InputError, match=needle):
            bounded.read_regular(path, 1000)
    assert time.monotonic() - started < 5  # the FIFO was not waited on


# ----- 1. ONNX metadata and graphs ---------------------------------------------------------------
GOOD_META = {
    "gankit.version": "0.1.0", "gankit.contract_version": "1", "gankit.plugin": "p", "gankit.label_mode": "conditional",
    "gankit.arch": "mlp", "gankit.z_dim": "8", "gankit.noise": "normal", "gankit.classes": "[0, 1, 2]",
    "gankit.image_size": "28", "gankit.value_range": "[-1.0, 1.0]", "gankit.training_steps": "3",
    "gankit.dataset": "d", "gankit.created": "", "gankit.weights_sha256": "0" * 64,
}
NUMERIC_KEYS = ["gankit.z_dim", "gankit.classes", "gankit.value_range", "gankit.image_size",
                "gankit.contract_version", "gankit.training_steps"]
hostile_numbers = st.one_of(
    st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e999", "-0", "nan", "inf", "9" * 5000, " 8 ", "1_000", "0x10", "", "٣"]),
    st.lists(st.integers(-2**40, 2**40), max_size=300).map(json.dumps),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3).map(json.dumps),
    st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n),
    json_values.map(json.dumps), st.text(max_size=30))


@cases(400)
@given(key=st.sampled_from(NUMERIC_KEYS), value=hostile_numbers)
def test_every_number_in_a_card_is_bounded(key, value):
    count("ONNX metadata values")
    meta = {**GOOD_META, key: value}
    try:
        card = ModelCard.from_metadata(meta)
    except ValueError as exc:
        one_line(exc)
        return
    assert 1 <= card.z_dim <= MAX_Z_DIM
    assert 1 <= len(card.classes) <= MAX_CLASSES and all(0 <= c < MAX_CLASSES for c in card.classes)
    low, high = card.value_range
    assert math.isfinite(low) and math.isfinite(high) and low < high
    assert card.image_size == 28 and card.contract_version == 1 and 0 <= card.training_steps < 2**63
    assert check_numbers(meta)["z_dim"] == card.z_dim


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("models"))


def _load(path: Path):
    from gankit.runtime import load_generator

    return load_generator(path, threads=1)


@cases(12)
@given(key=st.sampled_from(["dataset", "plugin", "arch", "version", "created"]),
       text=st.text(max_size=40).map(lambda t: f"{t}location{t}"))
def test_metadata_text_holding_location_is_not_external_data(models, tmp_path_factory, key, text):
    """The old byte search refused any file holding b'location' (e.g. a data folder's name)."""
    count("ONNX external-data check")
    model = hostile.set_meta(onnx.load(str(models["conditional"])), **{key: text})
    path = hostile.write(tmp_path_factory.mktemp("meta") / "m.onnx", hostile.restamp(model))
    gen = _load(path)
    assert gen.generate(3, n=2).shape == (2, 28, 28)


@pytest.mark.parametrize("location, entries", [(True, False), (False, True), (True, True)])
def test_a_tensor_marked_external_is_refused_however_it_is_marked(models, tmp_path, location, entries):
    count("ONNX external-data check")
    model = onnx.load(str(models["conditional"]))
    path = hostile.write(tmp_path / "m.onnx", hostile.external_flag_only(model, location=location, entries=entries))
    with pytest.raises(ModelFileError, match="refers to external data"):
        _load(path)


@cases(30)
@given(z_dim=st.integers(MAX_Z_DIM + 1, 2**62))
def test_a_huge_latent_in_the_metadata_and_the_graph_allocates_nothing(models, tmp_path_factory, z_dim):
    count("ONNX metadata values")
    model = onnx.load(str(models["conditional"]))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = z_dim
    path = hostile.write(tmp_path_factory.mktemp("z") / "m.onnx", hostile.restamp(hostile.set_meta(model, z_dim=str(z_dim))))
    with pytest.raises(ModelFileError, match=f"z_dim {z_dim} is not from 1 to {MAX_Z_DIM}"):
        _load(path)


def test_a_loop_with_a_huge_trip_count_is_refused_at_once(models, tmp_path):
    count("ONNX graphs that run on")
    path = hostile.write(tmp_path / "loop.onnx", hostile.endless_loop(onnx.load(str(models["conditional"]))))
    started = time.monotonic()
    with pytest.raises(ModelFileError, match="control flow"):
        _load(path)
    assert time.monotonic() - started < 5


def test_a_slow_graph_is_stopped_by_the_probe_budget(models, tmp_path, monkeypatch):
    from gankit.runtime import generator

    count("ONNX graphs that run on")
    path = hostile.write(tmp_path / "slow.onnx", hostile.slow_chain(onnx.load(str(models["conditional"]))))
    monkeypatch.setattr(generator, "PROBE_SECONDS", 0.05)
    started = time.monotonic()
    with pytest.raises(ModelFileError, match="load-time check .* ran for more than"):
        _load(path)
    assert time.monotonic() - started < 15


def test_a_huge_constant_chain_costs_no_folding(models, tmp_path):
    """Constant folding at session creation would run the chain unbudgeted (tens of seconds, measured)."""
    count("ONNX graphs that run on")
    path = hostile.write(tmp_path / "slow.onnx", hostile.slow_chain(onnx.load(str(models["conditional"]))))
    started = time.monotonic()
    try:
        _load(path).generate(None, n=2)
    except ModelFileError as exc:
        one_line(exc)
    assert time.monotonic() - started < 15


@pytest.mark.slow
def test_one_endless_kernel_ends_the_cli_within_30_seconds(models, tmp_path):
    count("ONNX graphs that run on")
    path = hostile.write(tmp_path / "long.onnx", hostile.one_long_node(onnx.load(str(models["conditional"])), 11000))
    started = time.monotonic()
    proc = run_cli("info", path, timeout=60)
    assert time.monotonic() - started < 30
    # 2.7 TFLOP in one kernel: on a small machine the load gives up; a big one may finish it.
    assert proc.returncode == 0 or proc.returncode == 1 and "without finishing" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ----- 2. output paths ------------------------------------------------------------------------------
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=300)


@cases(300)
@given(name=names)
def test_a_file_name_up_to_the_limit_is_written_and_no_temporary_is_left(tmp_path_factory, name):
    from gankit.atomic import write_atomic

    count("output path lengths")
    folder = tmp_path_factory.mktemp("names")
    if name in (".", ".."):
        return
    try:
        write_atomic(folder / name, b"data")
    except GankitError as exc:
        one_line(exc)
        assert len(os.fsencode(name)) > 255, exc
    else:
        assert (folder / name).read_bytes() == b"data"
    assert [p.name for p in folder.iterdir()] == ([name] if len(os.fsencode(name)) <= 255 else [])


@pytest.mark.parametrize("length", [250, 254, 255, 256])
def test_generate_writes_an_output_name_near_the_limit(tmp_path, length):
    count("output path lengths")
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".png"
    assert len(name.encode()) == length
    proc = run_cli("generate", "-d", "3", "-n", "2", "-o", tmp_path / name)
    assert "Traceback" not in proc.stderr
    if length <= 255:
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / name).is_file()
    else:
        assert proc.returncode == 1 and "too long" in proc.stderr.lower(), proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ([name] if length <= 255 else [])


# ----- 3. checkpoints that pass the hash but lie -----------------------------------------------------
TINY = ["--steps", "4", "--checkpoint-every", "2", "--log-every", "1", "--sample-every", "1000", "-b", "8",
        "--g-hidden", "16", "--d-hidden", "16", "--quiet", "--precision", "fp32"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    run_cli("train", "--data", shared_mnist(), "--runs-dir", runs, "--name", "tiny", *TINY, check=True)
    return runs / "tiny"


def _copy(run: Path, where: Path) -> tuple[Path, Path]:
    import shutil

    from gankit.training.persist import checkpoint as ckpt

    shutil.copytree(run, where / "run")
    return where / "run", ckpt.committed(where / "run" / "checkpoints")[-1]


def _rehash(ck: Path) -> None:
    manifest = json.loads((ck / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (ck / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ck / "manifest.json").write_text(json.dumps(manifest))


def _edit_config(ck: Path, **changes) -> None:
    state = json.loads((ck / "state.json").read_text())
    state["config"]["net"].update(changes)
    (ck / "state.json").write_text(json.dumps(state))
    _rehash(ck)


@cases(15)
@given(g_hidden=st.lists(st.integers(1, 2**17), min_size=1, max_size=6), z_dim=st.integers(1, 2**17))
def test_export_of_a_checkpoint_whose_config_lies_builds_nothing_big(tiny_run, tmp_path_factory, g_hidden, z_dim):
    from gankit.training.export.source import load_export_source

    count("checkpoints that lie")
    run, ck = _copy(tiny_run, tmp_path_factory.mktemp("lie"))
    _edit_config(ck, g_hidden=g_hidden, z_dim=z_dim)
    try:
        load_export_source(run)
    except GankitError as exc:
        one_line(exc)
        return
    assert g_hidden == [16] and z_dim == 100  # only the truth fits the stored tensors


@pytest.mark.slow
@pytest.mark.parametrize("widths, needle", [
    ([65536, 65536, 65536], "parameters"),  # 8.6 billion: past the budget, whatever the tensors say
    ([16384, 16384], "does not fit"),  # 1 GB of weights the 16-wide checkpoint does not hold
])
def test_export_of_huge_widths_is_one_line_and_allocates_little(tiny_run, tmp_path, widths, needle):
    count("checkpoints that lie")
    run, ck = _copy(tiny_run, tmp_path)
    _edit_config(ck, g_hidden=widths)
    script = ("import resource, subprocess, sys\n"
              "p = subprocess.run([sys.executable, '-m', 'gankit.cli', 'export', sys.argv[1], '-o', sys.argv[2]],"
              " capture_output=True, text=True)\n"
              "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stderr.strip())\n")
    out = subprocess.run([sys.executable, "-c", script, str(run), str(tmp_path / "m.onnx")],
                         capture_output=True, text=True, timeout=600).stdout
    code, max_rss_kb, err = out.split(" ", 2)
    assert code == "1" and needle in err and "Traceback" not in err, out
    assert int(max_rss_kb) < 800_000, f"export used {int(max_rss_kb) / 1e6:.1f} GB"  # torch itself is ~300 MB


@pytest.mark.slow
def test_export_refuses_tensors_of_the_wrong_dtype_as_resume_does(tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file

    count("checkpoints that lie")
    run, ck = _copy(tiny_run, tmp_path)
    tensors = load_file(str(ck / "tensors.safetensors"))
    save_file({k: (v.double() if k.startswith(("g.", "ema.")) and v.is_floating_point() else v)
               for k, v in tensors.items()}, str(ck / "tensors.safetensors"))
    _rehash(ck)
    for proc in (run_cli("export", run, "-o", tmp_path / "m.onnx"), run_cli("train", "--resume", run, "--steps", "6")):
        assert proc.returncode == 1 and "torch.float64" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_a_deeply_nested_metrics_line_is_skipped_on_resume(tiny_run, tmp_path):
    count("checkpoints that lie")
    run, _ = _copy(tiny_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    proc = run_cli("train", "--resume", run, "--steps", "6", "--quiet")
    assert proc.returncode == 0, proc.stderr
    from gankit.training.persist import runlog

    assert [r["step"] for r in runlog.read_rows(run / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


@cases(300)
@given(line=st.one_of(st.text(max_size=200), json_values.map(json.dumps),
                      st.integers(0, 10_000).map(lambda n: '{"step": 1, "a": ' + "[" * n + "]" * n + "}")))
def test_a_metrics_line_is_a_row_or_skipped(line):
    from gankit.training.persist import runlog

    count("checkpoints that lie")
    row = runlog.parse_row(line)
    assert row is None or isinstance(row["step"], int)


# ----- 4. --config files ----------------------------------------------------------------------------
def _setting_names() -> list[str]:
    from gankit.cli.train import FILE_CLI_KEYS
    from gankit.config import SETTINGS

    return sorted(SETTINGS) + list(FILE_CLI_KEYS) + ["net", "digits", "option", "no_such_key"]


config_values = st.one_of(
    st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.booleans(), st.text(max_size=20),
    st.lists(st.integers(-5, 70_000), max_size=5), st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    st.sampled_from(["mlp", "dcgan", "cpu", "fp32", "normal", "ls", "unconditional", "per-digit", "3,8", "x" * 300]))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _resolve_file(path: Path):
    from gankit.cli.train import _file_layer, check_command_values, resolve

    settings_, cli = _file_layer(path)
    check_command_values(cli)
    return resolve({}, settings_)


@cases(150)
@given(table=st.dictionaries(st.sampled_from(_setting_names()), config_values, min_size=1, max_size=4),
       fmt=st.sampled_from(["toml", "json"]))
def test_config_files_end_in_a_usage_error_or_a_valid_config(tmp_path_factory, table, fmt):
    count("--config values")
    path = tmp_path_factory.mktemp("cfg") / f"run.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(table))
    else:
        if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63 for v in table.values()):
            return  # TOML integers are 64-bit
        path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items()))
    try:
        cfg, _ = _resolve_file(path)
    except GankitError as exc:
        one_line(exc)
        return
    assert cfg.validate() is cfg


@cases(150)
@given(name=st.sampled_from(sorted(__import__("gankit.config", fromlist=["SETTINGS"]).SETTINGS)), value=config_values)
def test_a_value_gets_one_verdict_from_a_file_and_from_the_command_line(name, value):
    """One validation path: a setting's value is accepted from a file exactly when it is from the command line."""
    from gankit.cli.train import resolve

    count("--config values")
    if isinstance(value, list):
        value = tuple(value)

    def verdict(given, file_settings):
        try:
            return resolve(given, file_settings)[0]
        except GankitError as exc:
            one_line(exc)
            return "refused"

    from_cli, from_file = verdict({name: value}, {}), verdict({}, {name: value})
    assert (from_cli == "refused") == (from_file == "refused")
    if from_cli != "refused":
        assert from_cli == from_file


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("make, needle", [
    (lambda p: os.mkfifo(p) or p, "FIFO"),
    (lambda p: Path("/dev/zero"), "character device"),
    (lambda p: _written(p, "a = " + "[" * 5000 + "]" * 5000), "nested more than"),
    (lambda p: _written(p.with_suffix(".json"), "{\"a\": " + "[" * 5000 + "]" * 5000 + "}"), "nested more than"),
    (lambda p: _written(p, "name = 5"), "--name must be text"),
    (lambda p: _written(p, "quiet = \"yes\""), "--quiet is a flag"),
    (lambda p: _written(p, "progress_seconds = -1"), "--progress-seconds must be a positive number"),
    (lambda p: _written(p, "options = \"x\""), "must be a table"),
    (lambda p: _written(p, "plugin = 5"), "--plugin must be text"),
])
def test_hostile_config_files_exit_2_in_one_line(tmp_path, make, needle):
    count("--config values")
    path = make(tmp_path / "run.toml")
    started = time.monotonic()
    proc = run_cli("train", "--config", path, "--steps", "1", "--runs-dir", tmp_path / "runs", timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# ----- 5. environment variables ------------------------------------------------------------------
env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80)


def _readers():
    from gankit.data.download import mirrors_for
    from gankit.data.sources import candidate_folders
    from gankit.training.distributed.roles import dist_timeout, env_world, launcher_pid
    from gankit.training.persist.runlog import fault_setting

    return {
        "GANKIT_DIST_TIMEOUT": dist_timeout,
        "GANKIT_MNIST_MIRRORS": lambda: mirrors_for("mnist"),
        "GANKIT_FASHION_MNIST_MIRRORS": lambda: mirrors_for("fashion-mnist"),
        "GANKIT_DATA": lambda: candidate_folders("mnist"),
        "XDG_CACHE_HOME": lambda: candidate_folders("mnist"),
        "WORLD_SIZE": env_world,
        "RANK": env_world,  # read with WORLD_SIZE=4
        "GANKIT_LAUNCHER_PID": launcher_pid,
        "GANKIT_FAULT_KILL_AT": fault_setting,
    }


@cases(60)
@given(name=st.sampled_from(sorted(_readers())), value=env_text)
def test_environment_variables_give_a_value_or_one_usage_error(monkeypatch, name, value):
    count("environment variables")
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    if name == "RANK":
        monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv(name, value)
    try:
        _readers()[name]()
    except UsageError as exc:
        one_line(exc)
        assert name in str(exc) or "RANK" in str(exc)
    finally:
        for var in (name, "WORLD_SIZE"):
            monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "0", "inf", "1e400", "99999999999"])
def test_dist_timeout_values(monkeypatch, value):
    from gankit.training.distributed.roles import dist_timeout

    count("environment variables")
    monkeypatch.setenv("GANKIT_DIST_TIMEOUT", value)
    with pytest.raises(UsageError, match="GANKIT_DIST_TIMEOUT"):
        dist_timeout()
    monkeypatch.setenv("GANKIT_DIST_TIMEOUT", "12.5")
    assert dist_timeout() == 12.5


@pytest.mark.parametrize("env, args, needle", [
    ({"GANKIT_DIST_TIMEOUT": "soon"}, ["--nproc", "2"], "GANKIT_DIST_TIMEOUT='soon' is not a positive number"),
    ({"GANKIT_MNIST_MIRRORS": "ftp://example.org/,http://[::1"}, ["--data", "mnist"], "GANKIT_MNIST_MIRRORS"),
    ({"GANKIT_DATA": "x" * 300}, ["--data", "mnist"], "GANKIT_DATA"),
])
def test_malformed_environment_variables_exit_2_in_one_line(tmp_path, env, args, needle):
    count("environment variables")
    cache = tmp_path / "cache"  # no MNIST there, so --data mnist reaches the mirrors
    proc = run_cli("train", *args, "--steps", "1", "--runs-dir", tmp_path / "runs", timeout=300,
                   env={"XDG_CACHE_HOME": str(cache), "GANKIT_DATA": "", **env})
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_env_helpers_bounds():
    count("environment variables")
    os.environ.pop("GANKIT_TEST_VALUE", None)
    assert envvars.number("GANKIT_TEST_VALUE", 3.0, low=0, high=10) == 3.0
    assert envvars.integer("GANKIT_TEST_VALUE", None, low=0, high=10) is None
    assert envvars.path("GANKIT_TEST_VALUE") is None


def test_resource_module_is_available():
    # The allocation checks above read ru_maxrss; a platform without it would pass them vacuously.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
    assert np.__version__
