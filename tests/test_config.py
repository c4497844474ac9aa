"""The run configuration: net settings declared once, old flat files still load, the CLI derived
from the fields, and every impossible value refused by the config itself."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from gankit.config import NET_FIELDS, SETTINGS, NetConfig, TrainConfig, flag_of, load_config_file
from gankit.errors import UsageError
from gankit.plugin_api import NetSpec
from gankit.presets import PRESETS


def test_net_settings_are_declared_once_and_nested():
    # NetSpec extends NetConfig: the ten net fields exist in one class only.
    assert NET_FIELDS == tuple(f.name for f in fields(NetConfig))
    assert set(NET_FIELDS) <= {f.name for f in fields(NetSpec)}
    assert not set(NET_FIELDS) & {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig.make(z_dim=16, g_hidden=(8, 4), steps=3)
    assert cfg.net == NetConfig(z_dim=16, g_hidden=(8, 4)) and cfg.steps == 3
    assert cfg.z_dim == 16  # flat reads still work
    spec = NetSpec.from_net(cfg.net, classes=(8, 3), options={})
    assert all(getattr(spec, name) == getattr(cfg.net, name) for name in NET_FIELDS)
    assert spec.classes == (3, 8)


def test_old_flat_config_json_still_loads():
    cfg = TrainConfig.make(arch="dcgan", z_dim=12, d_hidden=(4, 8, 8, 8), batch_size=7, classes=(1, 2))
    flat = json.loads(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.flat().items()}))
    assert "net" not in flat and flat["z_dim"] == 12
    assert TrainConfig.from_json(flat) == cfg
    nested = cfg.to_json()
    assert nested["net"]["z_dim"] == 12 and "z_dim" not in nested
    assert TrainConfig.from_json(json.loads(json.dumps(nested))) == cfg
    # A file from an older gankit that lacks newer settings takes today's defaults.
    flat.pop("tb_graph")
    assert TrainConfig.from_json(flat).tb_graph is False


@pytest.mark.parametrize("data, needle", [
    ({"bogus": 1}, "does not know: bogus"),
    ({"net": {"steps": 3}}, "does not know: steps"),
    ({"z_dim": 3, "net": {"z_dim": 4}}, "both at the top level and under 'net'"),
])
def test_bad_config_files_are_usage_errors(data, needle):
    with pytest.raises(UsageError, match=needle):
        TrainConfig.from_json(data)


def test_every_preset_validates_and_flat_names_are_unique():
    for preset in PRESETS.values():
        preset.config.validate()
    assert len(SETTINGS) == len(fields(TrainConfig)) - 1 + len(NET_FIELDS)
    assert flag_of("classes") == "--digits" and flag_of("z_dim") == "--z-dim"


@pytest.mark.parametrize("settings, needle", [
    ({"g_hidden": ()}, "--g-hidden"),
    ({"g_hidden": (64, 10**6)}, "from 1 to 65536"),
    ({"z_dim": 10**12}, "--z-dim must be at most 65536"),
    ({"seed": 2**70}, "--seed must be at most 2\\*\\*62"),
    ({"seed": -1}, "--seed must be 0 or a positive"),
    ({"max_seconds": float("nan")}, "--max-seconds must be a finite number"),
    ({"lr_g": float("inf")}, "--lr-g must be a finite number"),
    ({"classes": ()}, "--digits"),
    ({"loss": "wgan"}, "unknown loss 'wgan'"),
    ({"image_size": 30}, "choose one of: 28, 32"),
    ({"arch": "dcgan", "image_size": 32}, "28x28 only"),
    ({"arch": "../x"}, "unknown arch"),
    ({"steps": True}, "--steps must be a positive integer"),
    ({"ls_sigmoid": "yes"}, "is a flag"),
])
def test_impossible_values_are_refused_by_the_config(settings, needle):
    with pytest.raises(UsageError, match=needle):
        TrainConfig.make(**settings).validate()


def test_toml_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('steps = 7\ng_hidden = [64, 32]\ndigits_are = "x"\n[net]\nz_dim = 9\n[options]\nmargin = 2.0\n')
    data = load_config_file(path)
    assert data["steps"] == 7 and data["g_hidden"] == (64, 32) and data["z_dim"] == 9
    assert data["options"] == {"margin": 2.0}
    path.write_text("steps = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config_file(path)
    path.write_text("[net]\nsteps = 3\n")
    with pytest.raises(UsageError, match=r"\[net\] has no setting steps"):
        load_config_file(path)
    with pytest.raises(UsageError, match="cannot read it"):
        load_config_file(tmp_path / "missing.toml")


def test_cli_options_are_derived_from_the_fields():
    import typer

    from gankit.cli import app

    app.load(["train"])
    command = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in command.params}
    assert set(SETTINGS) <= set(params)  # a new setting is a new option for free
    for name, f in SETTINGS.items():
        assert flag_of(name) in params[name].opts
    assert params["loss"].display_type(None) == "<bce|ls>"  # fixed choices are choices
    assert params["device"].display_type(None) == "<auto|cpu|cuda>"
    assert params["ls_sigmoid"].is_flag and params["tb_graph"].is_flag
    assert "-b" in params["batch_size"].opts and "-O" in params["options"].opts
