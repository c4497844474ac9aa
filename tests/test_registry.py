"""Plugin discovery: listing without importing, loading one, isolating broken plugins.

Every fake plugin here is a real distribution as far as importlib.metadata is concerned:
a package plus a hand-written ``.dist-info`` (METADATA + entry_points.txt) in its own
folder, put on sys.path (in-process tests) or PYTHONPATH (subprocess tests). That is
what pip leaves behind, minus the seconds a pip install costs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from gankit import registry
from gankit.errors import PluginError, UsageError
from gankit.plugin_api import GanPlugin

GOOD = '''
"""gk_good: a small well-behaved plugin for the registry tests.

Second paragraph, not part of the summary.
"""
from gankit.plugin_api import GanPlugin

def build(spec):
    from gankit.training.nets.builtin import build_nets
    return build_nets(spec)

plugin = GanPlugin(name="good", description="A good test plugin.", build=build, api_version=1,
                   default_options={"width": 3}, supported_archs=("mlp",))
'''

BOOM = '''
raise RuntimeError("kaboom at import")
'''

FUTURE = '''
from gankit.plugin_api import GanPlugin
plugin = GanPlugin(name="future", description="From the future.", build=lambda spec: None,
                   api_version=99)
'''

NOBUILD = '''
from types import SimpleNamespace
from gankit.plugin_api import GanPlugin
plugin = GanPlugin(name="nobuild", description="Forgot build.", build=None, api_version=1)
notaplugin = SimpleNamespace(name="notaplugin", description="Not a GanPlugin at all.")
'''

DUP = '''
from gankit.plugin_api import GanPlugin
plugin = GanPlugin(name="unconditional", description="An impostor.", build=lambda spec: None,
                   api_version=1)
'''

NOAPI = '''
from gankit.plugin_api import GanPlugin
plugin = GanPlugin(name="noapi", description="Says no API version.", build=lambda spec: None)
'''

# Nets of its own under an arch name of its own, and a loss of its own (uses_loss=False).
TINY = '''
"""gk_tiny: a plugin with its own nets, declared as arch 'tiny'."""
from gankit.plugin_api import GanPlugin, Nets

def build(spec):
    import torch
    from torch import nn

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(spec.z_dim, spec.image_size * spec.image_size)

        def forward(self, z, labels):
            return torch.tanh(self.lin(z)).view(-1, 1, spec.image_size, spec.image_size)

    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(spec.image_size * spec.image_size, 1)

        def forward(self, images, labels):
            return self.lin(images.flatten(1)).squeeze(1)

    return Nets(G(), D())

plugin = GanPlugin(name="tiny", description="Own nets.", build=build, api_version=1,
                   supported_archs=("tiny",), uses_loss=False, train_defaults={"z_dim": 4, "d_steps": 2})
'''

# folder -> (distribution, version, module, source, entry points)
DISTS = {
    "good": ("gk-good", "1.0", "gk_good", GOOD, {"good": "gk_good:plugin"}),
    "boom": ("gk-boom", "2.0", "gk_boom", BOOM, {"boom": "gk_boom:plugin"}),
    "future": ("gk-future", "3.0", "gk_future", FUTURE, {"future": "gk_future:plugin"}),
    "nobuild": ("gk-nobuild", "4.0", "gk_nobuild", NOBUILD,
                {"nobuild": "gk_nobuild:plugin", "notaplugin": "gk_nobuild:notaplugin"}),
    "dup": ("gk-dup", "5.0", "gk_dup", DUP, {"unconditional": "gk_dup:plugin"}),
    "noapi": ("gk-noapi", "6.0", "gk_noapi", NOAPI, {"noapi": "gk_noapi:plugin"}),
    "tiny": ("gk-tiny", "7.0", "gk_tiny", TINY, {"tiny": "gk_tiny:plugin"}),
    "good2": ("gk-good2", "8.0", "gk_good2", GOOD, {"good": "gk_good2:plugin"}),
}
FAKE_MODULES = [d[2] for d in DISTS.values()]


def write_dist(root: Path, dist: str, version: str, module: str, source: str,
               entry_points: dict[str, str], *, egg_info: bool = False) -> Path:
    """A package plus its metadata folder, as an installer would leave them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    if egg_info:  # the stale leftover of an old `setup.py develop`
        meta = root / f"{dist.replace('-', '_')}.egg-info"
        meta.mkdir()
        (meta / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    else:
        meta = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (meta / "entry_points.txt").write_text(f"[gankit.plugins]\n{lines}")
    return root


@pytest.fixture(scope="module")
def dist_dirs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dists")
    return {key: write_dist(base / key, *spec) for key, spec in DISTS.items()}


@pytest.fixture
def on_path(monkeypatch, dist_dirs):
    """Put the named fake distributions on sys.path; forget their modules afterwards."""
    def add(*keys: str) -> None:
        for key in keys:
            monkeypatch.syspath_prepend(str(dist_dirs[key]))

    yield add
    for module in FAKE_MODULES:
        sys.modules.pop(module, None)


def gankit_with(args: list[str], dirs: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    """The real CLI with the given fake distributions on PYTHONPATH."""
    env = {"PYTHONPATH": os.pathsep.join(str(d) for d in dirs), "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    return run_cli(*args, cwd=cwd, env=env, timeout=300)


# ----- in-process: the registry API ------------------------------------------------------

def test_list_reads_metadata_only(on_path):
    on_path("good", "boom", "future")
    infos = {i.name: i for i in registry.list_plugins()}
    assert {"good", "boom", "future", "unconditional"} <= set(infos)
    good = infos["good"]
    assert (good.value, good.distribution, good.version, good.description) == \
        ("gk_good:plugin", "gk-good", "1.0", None)
    # Listing imported nothing, not even the plugin that would crash on import.
    assert not {"gk_good", "gk_boom", "gk_future"} & set(sys.modules)


def test_load_imports_only_the_chosen_plugin(on_path):
    on_path("good", "boom", "future", "nobuild")
    plugin = registry.load_plugin("good")
    assert isinstance(plugin, GanPlugin) and plugin.name == "good"
    assert "gk_good" in sys.modules
    assert not {"gk_boom", "gk_future", "gk_nobuild"} & set(sys.modules)


def test_unknown_name_is_a_usage_error_listing_installed(on_path):
    on_path("good")
    with pytest.raises(UsageError) as err:
        registry.load_plugin("godo")
    msg = str(err.value)
    assert "unknown plugin 'godo'" in msg
    assert "good" in msg and "unconditional" in msg
    assert "Did you mean 'good'?" in msg
    assert err.value.exit_code == 2


@pytest.mark.parametrize("name, expected", [
    ("boom", ["gk-boom 2.0", "failed to import", "RuntimeError: kaboom at import"]),
    ("future", ["gk-future 3.0", "plugin API 99", "speaks API 1 and 2"]),
    ("nobuild", ["gk-nobuild 4.0", "`build` is not callable"]),
    ("notaplugin", ["gk-nobuild 4.0", "must be a gankit.plugin_api.GanPlugin", "SimpleNamespace"]),
    ("noapi", ["gk-noapi 6.0", "failed to import", "api_version"]),
])
def test_broken_plugin_is_a_plugin_error_naming_its_distribution(on_path, name, expected):
    on_path("good", "boom", "future", "nobuild", "noapi")
    with pytest.raises(PluginError) as err:
        registry.load_plugin(name)
    for text in expected:
        assert text in str(err.value)
    assert err.value.exit_code == 1
    # One broken plugin does not stop the others.
    assert registry.load_plugin("good").name == "good"


def test_duplicate_name_is_refused_naming_both_distributions(on_path):
    on_path("good", "good2")
    with pytest.raises(PluginError) as err:
        registry.load_plugin("good")
    msg = str(err.value)
    assert "gk-good 1.0" in msg and "gk-good2 8.0" in msg and "more than one distribution" in msg
    # Both stay visible in the listing, so the user can see the clash.
    dists = sorted(i.distribution for i in registry.list_plugins() if i.name == "good")
    assert dists == ["gk-good", "gk-good2"]


def test_a_built_in_name_is_reserved_and_the_built_in_kept(on_path):
    # A third-party distribution claiming 'unconditional' is refused in one line naming
    # it; the built-in still loads, and is what the name means.
    on_path("dup")
    plugin = registry.load_plugin("unconditional")
    assert plugin.description.startswith("One GAN over all training images")
    assert registry.info_of("unconditional").distribution == "gankit"
    status = next(s for s in registry.survey_plugins() if s.info.distribution == "gk-dup")
    assert not status.ok and "\n" not in status.error
    assert "gk-dup 5.0" in status.error and "reserved for gankit's built-in plugin" in status.error
    assert "gk_dup" not in sys.modules  # refused before its code ran
    dists = sorted(i.distribution for i in registry.list_plugins() if i.name == "unconditional")
    assert dists == ["gankit", "gk-dup"]


def test_same_distribution_seen_twice_is_one_plugin(on_path, monkeypatch, tmp_path):
    # An installed copy plus the stale egg-info of an old develop install of the same
    # distribution: the same (name, target, distribution) must not count as a clash.
    on_path("good")
    stale = write_dist(tmp_path / "stale", *DISTS["good"], egg_info=True)
    monkeypatch.syspath_prepend(str(stale))
    assert [i.distribution for i in registry.list_plugins() if i.name == "good"] == ["gk-good"]
    assert registry.load_plugin("good").name == "good"


def test_survey_reports_each_broken_plugin(on_path):
    on_path("good", "boom", "future", "nobuild", "dup")
    broken = {s.info.name: s.error for s in registry.survey_plugins() if not s.ok}
    assert {"boom", "future", "nobuild", "notaplugin", "unconditional"} <= set(broken)
    assert "good" not in broken
    assert "gk-boom" in broken["boom"] and "gk-dup" in broken["unconditional"]
    good = next(s for s in registry.survey_plugins() if s.info.name == "good")
    assert good.ok and good.info.description == "A good test plugin."


def test_entry_point_name_must_match_plugin_name(on_path, tmp_path, monkeypatch):
    # Exported models record plugin.name; a mismatch would make them point nowhere.
    on_path()
    odd = write_dist(tmp_path / "odd", "gk-odd", "0.1", "gk_odd",
                     GOOD.replace('name="good"', 'name="other"').replace("gk_good", "gk_odd"),
                     {"odd": "gk_odd:plugin"})
    monkeypatch.syspath_prepend(str(odd))
    try:
        with pytest.raises(PluginError, match="named 'odd' but the plugin calls itself 'other'"):
            registry.load_plugin("odd")
    finally:
        sys.modules.pop("gk_odd", None)


# ----- subprocess: the real command --------------------------------------------------------

def test_gankit_plugins_lists_and_warns_but_exits_0(dist_dirs, tmp_path):
    result = gankit_with(["plugins"], [d for key, d in dist_dirs.items() if key != "good2"], tmp_path)
    assert result.returncode == 0, result.stderr
    out, err = result.stdout, result.stderr
    assert "Traceback" not in out + err
    assert "good" in out and "gk-good" in out and "A good test plugin." in out
    assert "unconditional" in out
    # Each broken plugin is a warning row in the table and a full line on stderr.
    for name, dist in (("boom", "gk-boom"), ("future", "gk-future"), ("nobuild", "gk-nobuild"),
                       ("notaplugin", "gk-nobuild"), ("unconditional", "gk-dup")):
        assert re.search(rf"\b{name}\b.*\b{dist}\b.*warning: cannot be loaded", out), name
    assert not re.search(r"\bgood\b.*warning", out)
    for text in ("plugin 'boom' from gk-boom 2.0", "kaboom at import",
                 "plugin 'future' from gk-future 3.0", "plugin API 99",
                 "plugin 'nobuild' from gk-nobuild 4.0", "gk-dup 5.0"):
        assert text in err, text


def test_gankit_plugins_show(dist_dirs, tmp_path):
    result = gankit_with(["plugins", "show", "good"], [dist_dirs["good"], dist_dirs["boom"]], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("A good test plugin.", "gk-good 1.0", "gk_good:plugin", "plugin API", "none (unconditional",
                 "shuffled", "mlp", "width = 3", "standard", "gk_good: a small well-behaved plugin"):
        assert text in out, text
    assert "Second paragraph" not in out


def test_gankit_plugins_show_errors_are_clean(dist_dirs, tmp_path):
    unknown = gankit_with(["plugins", "show", "nosuch"], [dist_dirs["good"]], tmp_path)
    assert unknown.returncode == 2
    assert "unknown plugin 'nosuch'" in unknown.stderr and "good" in unknown.stderr
    broken = gankit_with(["plugins", "show", "boom"], [dist_dirs["boom"]], tmp_path)
    assert broken.returncode == 1
    assert "gk-boom 2.0" in broken.stderr and "kaboom at import" in broken.stderr
    assert "Traceback" not in unknown.stderr + broken.stderr


def test_train_with_unknown_plugin_exits_2_listing_installed(dist_dirs, tmp_path):
    result = gankit_with(["train", "--plugin", "nosuch", "--steps", "1"], [dist_dirs["good"]], tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "unknown plugin 'nosuch'" in result.stderr
    assert "good" in result.stderr and "unconditional" in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before writing anything


def test_train_with_broken_plugin_names_its_distribution(dist_dirs, tmp_path):
    result = gankit_with(["train", "--plugin", "boom", "--steps", "1"], [dist_dirs["boom"]], tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "gk-boom 2.0" in result.stderr and "Traceback" not in result.stderr


def test_listing_plugins_stays_light(dist_dirs, tmp_path):
    # `gankit plugins` is a light-tier command: it must not drag torch in, neither
    # through gankit nor through the built-in plugins' modules.
    code = ("import sys\nfrom gankit.cli import app\n"
            "try:\n    app(args=['plugins'], standalone_mode=False)\nfinally:\n"
            "    print('TORCH' if 'torch' in sys.modules else 'LIGHT')\n")
    env = dict(os.environ, PYTHONPATH=str(dist_dirs["good"]), COLUMNS="250")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("LIGHT"), result.stdout


def test_plugin_with_its_own_arch_trains_and_warns_about_loss(dist_dirs, tmp_path):
    # supported_archs=("tiny",): no posing as dcgan; its first arch is its default, its
    # train_defaults may set net settings (z_dim) too, and --loss does not apply to it.
    result = gankit_with(["train", "--plugin", "tiny", "--data", "synthetic", "--steps", "2", "--name", "t",
                          "--loss", "ls", "-q"], [dist_dirs["tiny"]], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "plugin 'tiny' has its own loss; --loss does not apply" in result.stderr.replace("\n", " ")
    import json

    cfg = json.loads((tmp_path / "runs/t/config.json").read_text())
    assert cfg["net"]["arch"] == "tiny" and cfg["net"]["z_dim"] == 4 and cfg["d_steps"] == 2
    wrong = gankit_with(["train", "--plugin", "tiny", "--arch", "mlp", "--steps", "1", "--runs-dir", "r2"],
                        [dist_dirs["tiny"]], tmp_path)
    assert wrong.returncode == 2 and "unknown arch 'mlp' for plugin 'tiny'; choose one of: tiny" in wrong.stderr
    assert not (tmp_path / "r2").exists()
    show = gankit_with(["plugins", "show", "tiny"], [dist_dirs["tiny"]], tmp_path)
    assert "z_dim=4, d_steps=2" in show.stdout and "its own (--loss does not apply)" in show.stdout
