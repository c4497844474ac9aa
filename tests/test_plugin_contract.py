"""The plugin contract, round 2: one validator for every field, typed options, reserved names,
sparse log keys, the trainer's run-time checks, the regulariser hook, and one source for the rules.

Broken plugins here are real distributions (tests/helpers_dists.py) on sys.path or
PYTHONPATH; the guide's examples are taken from docs/writing-a-plugin.md itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from gankit import plugin_api, registry
from gankit.config import SETTINGS, TrainConfig
from gankit.errors import PluginError, TrainingError, UsageError
from gankit.plugin_api import GanPlugin, Option, resolve_options, validate_plugin
from helpers_dists import plugin_dist, write_dist

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "writing-a-plugin.md"
RULES_START = "<!-- rules: generated from gankit.plugin_api.RULES; do not edit by hand -->\n"
RULES_END = "<!-- end rules -->"
ONE_LINE_ENV = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def guide_example(path: str) -> str:
    """The ```python block that follows ``<!-- example: PATH -->`` in the guide."""
    text = GUIDE.read_text()
    match = re.search(rf"<!-- example: {re.escape(path)} -->\n```python\n(.*?)\n```\n", text, re.S)
    assert match, f"no example {path} in {GUIDE}"
    return match.group(1) + "\n"


def build_builtin(spec):
    from gankit.training import build_nets

    return build_nets(spec)


def good(**changes) -> GanPlugin:
    fields_ = dict(name="probe", description="A probe.", build=build_builtin, api_version=2)
    fields_.update(changes)
    return GanPlugin(**fields_)


@pytest.fixture
def on_path(monkeypatch, tmp_path):
    """Install fake distributions on sys.path (``on_path(name, source)``); forget their modules after."""
    added: list[str] = []

    def add(name: str, source: str, version: str = "1.0") -> Path:
        root = plugin_dist(tmp_path / "dists", name, source, version)
        monkeypatch.syspath_prepend(str(root))
        added.append("gk_" + name.replace("-", "_"))
        return root

    yield add
    for module in added:
        sys.modules.pop(module, None)


def gankit_with(args: list, dirs: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": os.pathsep.join(map(str, dirs)), **ONE_LINE_ENV}
    return run_cli(*args, cwd=cwd, env=env, timeout=600)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# ----- one source for the rules ------------------------------------------------------------

def test_the_guides_rules_are_generated_from_plugin_api():
    text = GUIDE.read_text()
    block = text[text.index(RULES_START) + len(RULES_START):text.index(RULES_END)]
    assert block == plugin_api.rules_markdown(), (
        "docs/writing-a-plugin.md's rules differ from gankit.plugin_api.RULES; regenerate the block between its "
        "rules markers with: python -c 'import gankit.plugin_api as p; print(p.rules_markdown(), end=\"\")'")
    # The rules say what the code does: the reserved names, the count suffix, the API versions.
    for name in plugin_api.BUILTIN_PLUGINS:
        assert f"`{name}`" in block
    assert f"`<key>{plugin_api.COUNT_SUFFIX}`" in block
    assert "requires_grad` as it found it" in block and "sub-module that `build` froze stays frozen" in block
    assert "EMA weights when the run kept an EMA" in block
    # and the old contradiction is gone everywhere
    assert "leave every parameter with `requires_grad=True`" not in text


def test_the_r1_example_is_a_complete_plugin_under_40_lines():
    code = guide_example("r1_gan/__init__.py")
    assert len(code.splitlines()) < 40, len(code.splitlines())
    assert "d_regularizer=r1_penalty" in code and "api_version=2" in code


# ----- the load-time validator: every field, one message naming the distribution ------------

class Hostile:
    """An object whose repr, str, eq and hash all raise."""

    def __repr__(self):
        raise RuntimeError("no repr")

    __str__ = __repr__

    def __eq__(self, other):
        raise RuntimeError("no eq")

    def __hash__(self):
        raise RuntimeError("no hash")


BAD_FIELDS = [
    ({"name": 3}, "`name` must be a plugin name"),
    ({"name": "my gan"}, "`name` must be a plugin name"),
    ({"description": None}, "`description` must be a string"),
    ({"build": None}, "`build` is not callable"),
    ({"api_version": "2"}, "`api_version` must be an integer literal"),
    ({"api_version": True}, "`api_version` must be an integer literal"),
    ({"api_version": 3}, "written for plugin API 3, this gankit speaks API 1 and 2"),
    ({"label_mode": ["none"]}, "label_mode ['none'] is not one of"),
    ({"batch_layout": "rows"}, "batch_layout 'rows' is not one of"),
    ({"train_step": "standard"}, "`train_step` must be a function or None"),
    ({"export_module": 1}, "`export_module` must be a function or None"),
    ({"validate_options": {}}, "`validate_options` must be a function or None"),
    ({"d_regularizer": 0.5}, "`d_regularizer` must be a function or None"),
    ({"api_version": 1, "d_regularizer": print}, "`d_regularizer` needs api_version=2"),
    ({"supported_archs": ["mlp"]}, "supported_archs must be a non-empty tuple"),
    ({"supported_archs": ()}, "supported_archs must be a non-empty tuple"),
    ({"supported_archs": ("mlp", "mlp")}, "distinct arch names"),
    ({"uses_loss": "yes"}, "uses_loss must be True or False"),
    ({"default_options": [("margin", 1)]}, "default_options must be a dict"),
    ({"api_version": 1, "default_options": {"when": object()}}, "default_options must hold JSON values"),
    ({"train_defaults": ("batch_size", 64)}, "train_defaults must be a dict"),
    ({"train_defaults": {"batch_size": "big"}}, "train_defaults: --batch-size must be a positive integer"),
    ({"train_defaults": {"lr_g": float("nan")}}, "train_defaults: --lr-g must be a finite number"),
    ({"train_defaults": {"g_hidden": "wide"}}, "train_defaults: --g-hidden must be a list of layer widths"),
    ({"train_defaults": {"bogus": 1}}, "train_defaults names settings gankit does not have: bogus"),
    ({"train_defaults": {"plugin": "other"}}, "train_defaults may not set plugin"),
    ({"train_defaults": {"z_dim": None}}, "train_defaults gives no value for z_dim"),
    ({"options": [1]}, "options must be a dict of name -> gankit.plugin_api.Option"),
    ({"options": {"m": 3}}, "option m must be a gankit.plugin_api.Option"),
    ({"options": {"m": Option(list, [])}}, "option m: type must be int, float, bool or str"),
    ({"options": {"m": Option(float, "x")}}, "option m: its default 'x' is not a number"),
    ({"options": {"m": Option(int, 0, ge=1)}}, "option m: its default 0 is not a positive integer"),
    ({"options": {"m": Option(str, "a", choices=("b",))}}, "option m: its default 'a' is not one of b"),
    ({"options": {"m": Option(str, "a", ge=0)}}, "bounds apply to int and float options"),
    ({"options": {"1 m": Option(int, 1)}}, "option name '1 m' is not a plain name"),
    ({"api_version": 1, "options": {"m": Option(int, 1)}}, "an `options` schema needs api_version=2"),
    ({"label_mode": Hostile()}, "label_mode <unprintable Hostile> is not one of"),
]


@pytest.mark.parametrize("changes, message", BAD_FIELDS, ids=[m for _, m in BAD_FIELDS])
def test_every_field_is_checked_in_one_line_naming_the_origin(changes, message):
    with pytest.raises(ValueError) as err:
        validate_plugin(good(**changes), "plugin 'probe' from gk-probe 1.0")
    text = str(err.value)
    assert text.startswith("plugin 'probe' from gk-probe 1.0: ") and "\n" not in text
    assert message in text, text


def test_all_problems_come_in_the_one_message():
    with pytest.raises(ValueError) as err:
        validate_plugin(good(uses_loss=1, batch_layout=2, train_defaults={"steps": 0}), "plugin 'probe'")
    text = str(err.value)
    assert "uses_loss" in text and "batch_layout" in text and "--steps must be a positive integer" in text


def test_list_widths_in_train_defaults_are_taken_as_tuples():
    plugin = validate_plugin(good(train_defaults={"g_hidden": [16, 32]}), "x")
    assert plugin.train_defaults == {"g_hidden": (16, 32)}


# Junk of every shape a plugin author (or a broken package) might put in a field.
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.binary(max_size=4)
    | st.sampled_from([print, float("inf"), (), [], {}, "mlp", "none", "shuffled"])
    | st.builds(object) | st.builds(Hostile),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3),
    max_leaves=6,
)
# Near misses for the fields with structure: known setting names with junk values, Options
# with junk parts, archs that are almost names.
NEAR = {
    "train_defaults": st.dictionaries(st.sampled_from(sorted(SETTINGS)), JUNK, max_size=3),
    "options": st.dictionaries(st.text(min_size=1, max_size=6), st.builds(
        Option, st.sampled_from([int, float, bool, str, list]), JUNK,
        choices=st.none() | st.tuples(JUNK) | JUNK, ge=st.none() | st.floats() | JUNK,
        le=st.none() | st.integers() | JUNK), max_size=2),
    "supported_archs": st.tuples(st.text(max_size=6)) | st.lists(st.text(max_size=6), max_size=2),
    "default_options": st.dictionaries(st.text(max_size=6) | st.integers(), JUNK, max_size=3),
    "api_version": st.integers(-2, 4) | JUNK,
}
FIELD_NAMES = [f.name for f in fields(GanPlugin)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), field=st.sampled_from(FIELD_NAMES), second=st.sampled_from(FIELD_NAMES))
def test_property_no_field_value_crashes_loading_or_what_follows(data, field, second):
    values = {field: data.draw(NEAR.get(field, JUNK) | JUNK, label=field)}
    values[second] = data.draw(NEAR.get(second, JUNK) | JUNK, label=second)
    plugin = good(**values)  # constructing a plugin never raises, whatever its fields hold
    try:
        validate_plugin(plugin, "plugin 'probe' from gk-probe 1.0")
    except ValueError as exc:
        text = str(exc)
        assert text.startswith("plugin 'probe' from gk-probe 1.0: ") and "\n" not in text
        return
    # Accepted: then everything gankit does with the fields before building works.
    assert isinstance(plugin.name, str) and isinstance(plugin.description, str)
    cfg = TrainConfig.make(plugin=plugin.name, **{"arch": plugin.supported_archs[0], **plugin.train_defaults})
    assert cfg.validate().net.arch in plugin.supported_archs
    options = resolve_options(plugin, {})
    json.dumps(options, allow_nan=False)  # a run's config.json can store them
    assert len(plugin_api.describe_options(plugin)) == len(plugin.default_options)
    assert plugin.label_mode in plugin_api.LABEL_MODES and plugin.batch_layout in plugin_api.BATCH_LAYOUTS


# ----- loading: never fatal, reserved names, API 1 -----------------------------------------

EXITS = '''
import sys
sys.exit(3)
'''
BASE_EXC = '''
class Weird(BaseException):
    pass

raise Weird("from a plugin")
'''
IMPOSTOR = '''
from gankit.plugin_api import GanPlugin
plugin = GanPlugin(name="conditional", description="Not the real one.", build=lambda spec: None, api_version=2)
'''
BAD_DEFAULTS = '''
from gankit.plugin_api import GanPlugin
plugin = GanPlugin(name="baddefaults", description="Wrong types.", build=lambda spec: None, api_version=2,
                   train_defaults={"batch_size": "big", "beta1": [0.5]}, uses_loss="no")
'''
API1 = '''
"""gk_old: a plugin written for plugin API 1 (untyped options)."""
from gankit.plugin_api import GanPlugin

def build(spec):
    from gankit.training import build_nets
    return build_nets(spec)

def check(options):
    if options["width"] < 1:
        raise ValueError("option width must be at least 1")

plugin = GanPlugin(name="old", description="An API 1 plugin.", build=build, api_version=1,
                   default_options={"width": 3}, validate_options=check, supported_archs=("mlp",))
'''


def test_import_time_exit_and_base_exceptions_are_reported_not_fatal(on_path):
    on_path("exits", EXITS)
    on_path("baseexc", BASE_EXC)
    with pytest.raises(PluginError, match=r"gk-exits 1.0 .*failed to import: SystemExit: the module called "
                                          r"sys.exit\(3\)"):
        registry.load_plugin("exits")
    with pytest.raises(PluginError, match="gk-baseexc 1.0 .*failed to import: Weird: from a plugin"):
        registry.load_plugin("baseexc")
    broken = {s.info.name: s.error for s in registry.survey_plugins() if not s.ok}
    assert {"exits", "baseexc"} <= set(broken)
    assert registry.load_plugin("unconditional").name == "unconditional"


def test_wrong_field_types_are_refused_at_load_naming_the_distribution(on_path):
    on_path("baddefaults", BAD_DEFAULTS)
    with pytest.raises(PluginError) as err:
        registry.load_plugin("baddefaults")
    text = str(err.value)
    assert text.startswith("plugin 'baddefaults' from gk-baddefaults 1.0 (gk_baddefaults:plugin): ")
    assert "uses_loss must be True or False" in text and "--batch-size must be a positive integer" in text


def test_an_api_1_plugin_still_loads_and_its_options_stay_untyped(on_path):
    on_path("old", API1)
    plugin = registry.load_plugin("old")
    assert plugin.api_version == 1 and plugin.options == {}
    assert resolve_options(plugin, {"width": 5}) == {"width": 5}
    with pytest.raises(ValueError, match="plugin 'old': option width must be at least 1"):
        resolve_options(plugin, {"width": 0})
    with pytest.raises(ValueError, match="plugin 'old' has no option depth"):
        resolve_options(plugin, {"depth": 1})
    assert plugin_api.describe_options(plugin) == ["width = 3"]


def test_plugins_command_survives_exits_and_names_every_broken_distribution(tmp_path):
    dirs = [plugin_dist(tmp_path / "d", name, source) for name, source in
            (("exits", EXITS), ("baseexc", BASE_EXC), ("baddefaults", BAD_DEFAULTS))]
    # The impostor registers the built-in name 'conditional'.
    dirs.append(write_dist(tmp_path / "d" / "impostor", "gk-impostor", "1.0", {"gk_impostor.py": IMPOSTOR},
                           {"conditional": "gk_impostor:plugin"}))
    result = gankit_with(["plugins"], dirs, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for text in ("gk-exits 1.0", "sys.exit(3)", "gk-baseexc 1.0", "Weird: from a plugin", "gk-impostor 1.0",
                 "reserved for gankit's built-in plugin", "gk-baddefaults 1.0", "uses_loss must be True or False"):
        assert text in result.stderr, text
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4, result.stderr  # one line each
    assert re.search(r"\bconditional\b.*\bgankit\b", result.stdout)  # the built-in is listed, loaded
    show = gankit_with(["plugins", "show", "conditional"], dirs, tmp_path)
    assert show.returncode == 0 and "gankit 0.1.0" in show.stdout and "gk-impostor" not in show.stdout


# ----- typed options -----------------------------------------------------------------------

SCHEMA = {
    "margin": Option(float, 1.0, "The margin.", gt=0),
    "mode": Option(str, "fast", "How.", choices=("fast", "exact")),
    "every": Option(int, 4, "How often.", ge=1, le=100),
    "flip": Option(bool, False, "Flip."),
}


@pytest.mark.parametrize("given, message", [
    ({"margin": 0}, "option margin must be a positive number, got 0"),
    ({"margin": "wide"}, "option margin must be a positive number, got 'wide'"),
    ({"margin": float("nan")}, "option margin must be a positive number, got nan"),
    ({"margin": True}, "option margin must be a positive number, got True"),
    ({"mode": "slow"}, "option mode must be one of fast, exact, got 'slow'"),
    ({"every": 2.5}, "option every must be a positive integer <= 100, got 2.5"),
    ({"every": 101}, "option every must be a positive integer <= 100, got 101"),
    ({"flip": 1}, "option flip must be true or false, got 1"),
    ({"width": 1}, "has no option width (its options: margin, mode, every, flip)"),
])
def test_option_values_are_checked_against_the_schema(given, message):
    plugin = good(options=SCHEMA)
    with pytest.raises(ValueError) as err:
        resolve_options(plugin, given)
    assert message in str(err.value) and str(err.value).startswith("plugin 'probe'")


def test_option_values_arrive_typed():
    plugin = validate_plugin(good(options=SCHEMA), "x")
    assert plugin.default_options == {"margin": 1.0, "mode": "fast", "every": 4, "flip": False}
    assert resolve_options(plugin, {"margin": 2, "flip": True}) == {"margin": 2.0, "mode": "fast", "every": 4,
                                                                  "flip": True}
    assert isinstance(resolve_options(plugin, {"margin": 2})["margin"], float)
    lines = plugin_api.describe_options(plugin)
    assert lines[0] == "margin = 1.0  (float: a positive number)  The margin."
    assert lines[3] == "flip = false  (bool: true or false)  Flip."


TYPED = '''
"""gk_typed: a plugin with a typed option schema (plugin API 2)."""
from gankit.plugin_api import GanPlugin, Option

def build(spec):
    from gankit.training import build_nets
    return build_nets(spec)

plugin = GanPlugin(name="typed", description="Typed options.", build=build, api_version=2,
                   options={"margin": Option(float, 1.0, "The hinge margin m.", gt=0),
                            "mode": Option(str, "fast", "How to do it.", choices=("fast", "exact"))})
'''


@pytest.mark.slow
def test_typed_options_end_to_end_help_command_line_and_config_file(tmp_path):
    dist = plugin_dist(tmp_path / "d", "typed", TYPED)
    small = ["--data", "synthetic", "--steps", "1", "--runs-dir", "runs"]
    bad_cli = gankit_with(["train", "--plugin", "typed", "-O", "margin=-1", *small], [dist], tmp_path)
    assert bad_cli.returncode == 2, bad_cli.stderr
    assert error_lines(bad_cli.stderr) == ["error: plugin 'typed': option margin must be a positive number, got -1 "
                                           "(--option margin=VALUE)"]
    (tmp_path / "run.toml").write_text('plugin = "typed"\n[options]\nmode = "slow"\n')
    bad_file = gankit_with(["train", "--config", "run.toml", *small], [dist], tmp_path)
    assert bad_file.returncode == 2, bad_file.stderr
    assert error_lines(bad_file.stderr) == ["error: plugin 'typed': option mode must be one of fast, exact, "
                                            "got 'slow' (--option mode=VALUE)"]
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    help_ = gankit_with(["train", "--plugin", "typed", "--help"], [dist], tmp_path)
    assert help_.returncode == 0
    assert "Options of plugin 'typed'" in help_.stdout
    assert "margin = 1.0  (float: a positive number)  The hinge margin m." in help_.stdout
    assert "mode = fast  (str: one of fast, exact)  How to do it." in help_.stdout
    show = gankit_with(["plugins", "show", "typed"], [dist], tmp_path)
    assert "margin = 1.0  (float: a positive number)" in show.stdout and re.search(r"plugin API\s+2", show.stdout)
    # A good value from a config file trains, and config.json keeps it, typed.
    (tmp_path / "ok.toml").write_text('plugin = "typed"\n[options]\nmargin = 2\n')
    ok = gankit_with(["train", "--config", "ok.toml", *small, "--name", "ok", "-q", "--g-hidden", "16,32",
                      "--d-hidden", "32,16"], [dist], tmp_path)
    assert ok.returncode == 0, ok.stderr
    saved = json.loads((tmp_path / "runs/ok/config.json").read_text())["options"]
    assert saved == {"margin": 2.0, "mode": "fast"} and isinstance(saved["margin"], float)


# ----- the trainer: sparse keys, run-time checks ---------------------------------------------

torch = pytest.importorskip("torch")

from gankit.training.engine.step import standard_step  # noqa: E402
from gankit.training.engine.trainer import Trainer, window_means  # noqa: E402


def random_digits(classes=tuple(range(10)), per_class: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(classes, dtype=np.int64), per_class)
    return rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8), labels


def tiny_config(plugin: GanPlugin, **settings) -> TrainConfig:
    base = dict(plugin=plugin.name, steps=6, batch_size=8, g_hidden=(16, 32), d_hidden=(32, 16), z_dim=8,
                log_every=4, checkpoint_every=3, sample_every=1000, device="cpu", precision="fp32", seed=1)
    base.update(settings)
    return TrainConfig.make(**base).validate()


def train(plugin: GanPlugin, run_dir: Path, resume=None, **settings):
    images, labels = random_digits()
    return Trainer(tiny_config(plugin, **settings), plugin, images, labels, run_dir, dataset_name="random",
                   resume=resume).run()


def sparse_step(ctx, real, labels):
    out = standard_step(ctx, real, labels)
    if ctx.step % 3 == 0:  # steps 0, 3, 6, ...
        out["lazy"] = torch.tensor(float(ctx.step))
    if ctx.step == 5:
        out["once"] = 7.5
    return out


def test_window_means_are_over_the_steps_that_returned_each_key():
    t = torch.tensor
    row = window_means([{"d_loss": t(1.0), "r1": t(4.0)}, {"d_loss": t(3.0)}, {"d_loss": t(5.0), "r1": t(2.0)}])
    assert row == {"d_loss": 3.0, "r1": 3.0, "r1_count": 2}
    assert window_means([{"a": 1.0}, {"a": t([2.0])}]) == {"a": 1.5}  # a number and a [1] tensor mix


def test_a_sparse_key_trains_and_its_window_mean_and_count_are_logged(tmp_path):
    plugin = good(name="sparse", train_step=sparse_step)
    result = train(plugin, tmp_path / "run", steps=8)
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8] and rows == result.metrics
    # Steps 0-3 returned 'lazy' on 0 and 3; steps 4-7 on 6 only, and 'once' on 5.
    assert rows[0]["lazy"] == 1.5 and rows[0]["lazy_count"] == 2 and "once" not in rows[0]
    assert rows[1]["lazy"] == 6.0 and rows[1]["lazy_count"] == 1
    assert rows[1]["once"] == 7.5 and rows[1]["once_count"] == 1
    assert "d_loss_count" not in rows[0] and "d_loss_count" not in rows[1]  # on every step: no count


def test_a_sparse_key_resumes_bit_identically(tmp_path):
    # The step-3 checkpoint holds steps 0-2, not logged yet, one of them with 'lazy'.
    plugin = good(name="sparse", train_step=sparse_step)
    straight = train(plugin, tmp_path / "a", steps=8, keep_checkpoints=5)
    from gankit.training.persist.checkpoint import load_checkpoint

    first = tmp_path / "b" / "checkpoints"
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000000003", first / "step-000000003")
    resumed = train(plugin, tmp_path / "b", steps=8, keep_checkpoints=5,
                    resume=load_checkpoint(first / "step-000000003"))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("steps_per_s", "elapsed_s")} for r in rows]  # noqa: E731
    assert strip(resumed.metrics) == strip(straight.metrics)


class WrongShape(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.lin = torch.nn.Linear(spec.z_dim, 28 * 28)

    def forward(self, z, labels):
        return torch.tanh(self.lin(z))  # [N, 784], not [N, 1, 28, 28]


def build_wrong_shape(spec):
    nets = build_builtin(spec)
    return plugin_api.Nets(WrongShape(spec), nets.discriminator)


def tuple_step(ctx, real, labels):
    out = standard_step(ctx, real, labels)
    return out["d_loss"], out["g_loss"]


def grad_step(ctx, real, labels):
    standard_step(ctx, real, labels)
    z = ctx.noise(4)
    return {"d_loss": ctx.discriminator(ctx.generator(z, labels[:4]), labels[:4]).mean(), "g_loss": 0.0}


def freeze_step(ctx, real, labels):
    out = standard_step(ctx, real, labels)
    ctx.discriminator.requires_grad_(False)  # ... and never unfrozen
    return out


def bad_regularizer(ctx, real, labels, step, fake):
    return [1.0]


RUNTIME_CASES = [
    (dict(train_step=tuple_step), "its step returned tuple, not a dict"),
    (dict(train_step=lambda c, r, l: {"d_loss": 1.0}), "its step's result lacks g_loss"),
    (dict(train_step=grad_step), "its step's 'd_loss' still requires grad (return loss.detach())"),
    (dict(train_step=lambda c, r, l: {**standard_step(c, r, l), "x": float("nan")}), "its step's 'x' is not finite"),
    (dict(train_step=lambda c, r, l: {**standard_step(c, r, l), "x": torch.ones(3)}), "is a tensor of shape [3]"),
    (dict(train_step=lambda c, r, l: {**standard_step(c, r, l), "r1_count": 1}), "'r1_count', a name the trainer"),
    (dict(train_step=freeze_step), "its step changed requires_grad of discriminator."),
    (dict(d_regularizer=bad_regularizer), "its d_regularizer returned list [1.0]; it must return None or a dict"),
    # 64 sample-grid images for an unconditional plugin
    (dict(build=build_wrong_shape), "its generator returned shape [64, 784], expected [64, 1, 28, 28]"),
]


@pytest.mark.parametrize("changes, message", RUNTIME_CASES, ids=[m[:40] for _, m in RUNTIME_CASES])
def test_the_trainer_checks_the_plugin_at_run_time(tmp_path, changes, message):
    with pytest.raises(TrainingError) as err:
        train(good(name="broken", **changes), tmp_path / "run")
    text = str(err.value)
    assert "\n" not in text and text.startswith("plugin 'broken': ")  # no distribution registers it
    assert message in text, text
    assert "Stopped at step 0; no checkpoint was written" in text
    assert not list((tmp_path / "run").glob("checkpoints/step-*"))


BREAKS_ON_RESUME = '''
"""gk_flaky: trains, until GK_BREAK is set; then its step returns a tuple."""
import os
from gankit.plugin_api import GanPlugin

def build(spec):
    from gankit.training import build_nets
    return build_nets(spec)

def step(ctx, real, labels):
    from gankit.training import standard_step
    out = standard_step(ctx, real, labels)
    return (out["d_loss"], out["g_loss"]) if os.environ.get("GK_BREAK") else out

plugin = GanPlugin(name="flaky", description="Breaks on demand.", build=build, api_version=2, train_step=step)
'''


def test_a_failure_after_resume_names_the_distribution_and_keeps_the_checkpoint(on_path, tmp_path, monkeypatch):
    on_path("flaky", BREAKS_ON_RESUME)
    plugin = registry.load_plugin("flaky")
    train(plugin, tmp_path / "run", steps=3)
    ckpt = tmp_path / "run/checkpoints/step-000000003"
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    from gankit.training.persist.checkpoint import load_checkpoint

    monkeypatch.setenv("GK_BREAK", "1")
    with pytest.raises(TrainingError) as err:
        train(plugin, tmp_path / "run", steps=6, resume=load_checkpoint(tmp_path / "run"))
    text = str(err.value)
    assert text.startswith("plugin 'flaky' from gk-flaky 1.0 (gk_flaky:plugin): its step returned tuple")
    assert f"Stopped at step 3; the last checkpoint ({ckpt}) is kept" in text and "\n" not in text
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["step-000000003"]


def test_a_frozen_sub_module_is_allowed(tmp_path):
    def build(spec):
        nets = build_builtin(spec)
        first = next(m for m in nets.discriminator.modules() if isinstance(m, torch.nn.Linear))
        first.requires_grad_(False)  # a fixed feature extractor
        return nets

    plugin = good(name="frozen", build=build)
    train(plugin, tmp_path / "run", steps=2)
    from gankit.testing import check_plugin

    assert check_plugin(plugin, classes=(0, 1), export=False).ok


# ----- the kit through the real trainer, net train_defaults ---------------------------------

def test_the_kit_trains_through_the_trainer_with_a_sparse_key():
    from gankit.testing import check_plugin

    report = check_plugin(good(), classes=(0, 1), export=False)
    detail = {r.name: r.detail for r in report.results}["trainer run"]
    assert "sparse key 'kit_probe' logged with its count 1" in detail and "resume bit-identical" in detail


def test_the_kit_catches_state_kept_outside_the_nets():
    from gankit.testing import PluginCheckError, check_plugin

    calls = []

    def drifting(ctx, real, labels):
        calls.append(1)  # a resume cannot restore this: the step's maths depends on it
        out = standard_step(ctx, real, labels)
        with torch.no_grad():
            next(ctx.generator.parameters()).add_(0.01 * len(calls))
        return out

    with pytest.raises(PluginCheckError) as err:
        check_plugin(good(train_step=drifting), classes=(0, 1), export=False)
    failures = {f.name: f.detail for f in err.value.report.failures}
    assert "other weights than the uninterrupted run" in failures["trainer run"]


def test_the_kit_honours_net_train_defaults_and_spec_overrides_win():
    from gankit.testing import check_plugin

    plugin = good(train_defaults={"z_dim": 5, "g_hidden": (12, 24), "d_dropout": 0.0})
    report = check_plugin(plugin, classes=(0, 1), export=False)
    assert (report.spec.z_dim, report.spec.g_hidden, report.spec.d_dropout) == (5, (12, 24), 0.0)
    assert report.spec.d_hidden == (64, 32)  # the kit's small width where the plugin says nothing
    report = check_plugin(plugin, classes=(0, 1), export=False, spec_overrides={"g_hidden": (8, 8)})
    assert report.spec.g_hidden == (8, 8) and report.spec.z_dim == 5


def test_an_arch_of_the_plugins_own_gets_gankits_default_widths_not_mlp_ones():
    from gankit.config import NetConfig
    from gankit.testing import small_spec

    spec = small_spec("tiny", (0, 1))
    assert (spec.g_hidden, spec.d_hidden) == (NetConfig.g_hidden, NetConfig.d_hidden)


# ----- the guide's examples, installed and trained --------------------------------------------

def guide_dist(tmp_path: Path, module: str, name: str) -> Path:
    return write_dist(tmp_path / name, f"gk-{name}", "1.0", {f"{module}/__init__.py": guide_example(
        f"{module}/__init__.py")}, {name: f"{module}:plugin"})


GUIDE_PLUGINS = {"my-gan": "my_gan", "r1-gan": "r1_gan", "wgan-gp": "wgan_gp"}


@pytest.fixture
def guide_plugins(monkeypatch, tmp_path):
    dirs = {name: guide_dist(tmp_path, module, name) for name, module in GUIDE_PLUGINS.items()}
    for d in dirs.values():
        monkeypatch.syspath_prepend(str(d))
    yield dirs
    for module in GUIDE_PLUGINS.values():
        sys.modules.pop(module, None)


def test_every_python_block_in_the_guide_parses():
    import ast

    blocks = re.findall(r"```python\n(.*?)\n```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 6
    for block in blocks:
        ast.parse(block)


def test_the_smallest_plugin_in_the_guide_loads_and_conforms(guide_plugins):
    from gankit.testing import check_plugin

    plugin = registry.load_plugin("my-gan")
    assert registry.origin_of("my-gan") == "plugin 'my-gan' from gk-my-gan 1.0 (my_gan:plugin)"
    assert check_plugin(plugin, classes=(0, 1), export=False).ok


def test_the_r1_example_conforms_and_logs_its_lazy_penalty(guide_plugins, tmp_path):
    from gankit.testing import check_plugin

    plugin = registry.load_plugin("r1-gan")
    report = check_plugin(plugin, classes=(0, 1), export=False, options={"every": 2})
    assert report.ok and all(("r1" in row) == (i % 2 == 0) for i, row in enumerate(report.losses))
    result = train(plugin, tmp_path / "run", steps=8, options={"every": 3})
    r1 = [(r["step"], r.get("r1_count")) for r in result.metrics]
    assert r1 == [(4, 2), (8, 1)]  # steps 0 and 3, then 6
    assert all(np.isfinite(r["r1"]) and r["r1"] >= 0 for r in result.metrics)


def test_the_wgan_gp_example_conforms(guide_plugins):
    from gankit.testing import check_plugin

    report = check_plugin(registry.load_plugin("wgan-gp"), classes=(0, 1), export=False)
    assert report.training["d_steps"] == 5 and all("gp" in row for row in report.losses)


@pytest.mark.slow
def test_the_r1_example_trains_from_the_command_line_with_sparse_rows(guide_plugins, tmp_path):
    # The two failures: a key on every 3rd step with --log-every 10 (was a KeyError), and one on
    # every 16th with --log-every 50 (was silently dropped); here every 16th with --log-every 10.
    result = gankit_with(["train", "--plugin", "r1-gan", "--data", "synthetic", "--steps", "40", "--log-every", "10",
                          "-O", "every=16", "--name", "r", "-q", "--g-hidden", "16,32", "--d-hidden", "32,16",
                          "--precision", "fp32"], list(guide_plugins.values()), tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "runs/r/metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("r1_count")) for r in rows] == [(10, 1), (20, 1), (30, None), (40, 1)]
    assert "r1" not in rows[2]


CLI_BROKEN = {
    "tuple": ('''
from gankit.plugin_api import GanPlugin

def build(spec):
    from gankit.training import build_nets
    return build_nets(spec)

def step(ctx, real, labels):
    from gankit.training import standard_step
    out = standard_step(ctx, real, labels)
    return out["d_loss"], out["g_loss"]

plugin = GanPlugin(name="tuple", description="Returns a tuple.", build=build, api_version=2, train_step=step)
''', "its step returned tuple, not a dict"),
    "flat": ('''
from gankit.plugin_api import GanPlugin, Nets

def build(spec):
    import torch
    from gankit.training import build_nets

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(spec.z_dim, 784)

        def forward(self, z, labels):
            return torch.tanh(self.lin(z))

    return Nets(Flat(), build_nets(spec).discriminator)

plugin = GanPlugin(name="flat", description="Flat images.", build=build, api_version=2)
''', "its generator returned shape [64, 784], expected [64, 1, 28, 28]"),
    "grad": ('''
from gankit.plugin_api import GanPlugin

def build(spec):
    from gankit.training import build_nets
    return build_nets(spec)

def step(ctx, real, labels):
    from gankit.training import standard_step
    out = standard_step(ctx, real, labels)
    return {"d_loss": out["d_loss"], "g_loss": ctx.discriminator(real, labels).mean()}

plugin = GanPlugin(name="grad", description="Forgets detach.", build=build, api_version=2, train_step=step)
''', "its step's 'g_loss' still requires grad (return loss.detach())"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLI_BROKEN))
def test_a_broken_plugin_ends_gankit_train_with_one_line_and_exit_1(tmp_path, name):
    source, message = CLI_BROKEN[name]
    dist = plugin_dist(tmp_path / "d", name, source)
    result = gankit_with(["train", "--plugin", name, "--data", "synthetic", "--steps", "3", "--name", "b", "-q",
                          "--g-hidden", "16,32", "--d-hidden", "32,16"], [dist], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: plugin '{name}' from gk-{name} 1.0 (gk_{name}:plugin): {message}"), line
    assert "Stopped at step 0; no checkpoint was written" in line


# ----- index-ready metadata --------------------------------------------------------------------

@pytest.mark.slow
def test_the_wheel_passes_twine_check(tmp_path):
    pytest.importorskip("twine")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in ("gankit", "plugins"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, (tmp_path / "dist").glob(
        "*.whl"))], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and "PASSED" in check.stdout, check.stdout + check.stderr
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"Homepage", "Source"} <= set(project["urls"]) and project["classifiers"]


def test_the_example_plugin_does_not_require_gankit_from_an_index():
    import tomllib

    project = tomllib.loads((REPO / "plugins/gankit-hinge/pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if re.match(r"gankit\b", d)]
    assert 'pip install -c /path/to/gankit/constraints.txt -e "/path/to/gankit[train]"' in GUIDE.read_text()


def test_usage_errors_stay_usage_errors():
    # A plugin's option problem is exit 2 wherever it surfaces (plan_run's error type).
    from gankit.training.engine.spec import spec_from_config

    with pytest.raises(UsageError, match="option margin must be a positive number"):
        spec_from_config(TrainConfig(plugin="probe", options={"margin": -1}), good(options=SCHEMA))
