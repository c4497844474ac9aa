"""The plugin kit end to end: a third-party plugin installed with pip, used by every command,
and the conformance checker (`gankit.testing.check_plugin`) run on every registered plugin
and shown to catch broken ones.

The example plugin (plugins/gankit-hinge) is pip-installed into a fresh virtualenv made
from the base interpreter. That venv sees this environment's packages (torch, gankit
itself as installed here) through a ``.pth`` file that calls ``site.addsitedir`` on our
site-packages, which also runs the ``.pth`` hooks there (gankit's editable install),
so nothing is downloaded and the plugin is still a real, separately installed
distribution.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from gankit import registry
from gankit.plugin_api import GanPlugin, Nets

torch = pytest.importorskip("torch")

from gankit.testing import CheckReport, PluginCheckError, check_plugin  # noqa: E402
from gankit.training.nets.builtin import build_nets  # noqa: E402
from gankit.training.engine.step import standard_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HINGE_SRC = REPO / "plugins" / "gankit-hinge"

pytestmark = pytest.mark.slow


# ----- the example plugin, installed for real ----------------------------------------------

@pytest.fixture(scope="module")
def hinge_venv(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("hinge")
    venv = tmp / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    our_site = sysconfig.get_paths()["purelib"]
    # addsitedir (unlike a plain path line) also processes our site's own .pth files.
    Path(venv_site, "_gankit_parent_env.pth").write_text(f"import site; site.addsitedir({our_site!r})\n")
    # Build from a copy, so setuptools' build/ and egg-info never land in the checkout.
    src = tmp / "gankit-hinge"
    shutil.copytree(HINGE_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "--no-input", str(src)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return {"python": python, "site": Path(venv_site), "src": src, "tmp": tmp}


def gankit(env: dict, *args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(env["python"]), "-m", "gankit.cli", *args], capture_output=True, text=True,
                          cwd=cwd or env["tmp"], timeout=timeout,
                          env=dict(os.environ, COLUMNS="250", NO_COLOR="1", PYTHONPATH=""))


def test_hinge_is_a_separate_installed_distribution(hinge_venv):
    code = ("import importlib.metadata as m, gankit_hinge\n"
            "print(m.distribution('gankit-hinge').version, gankit_hinge.__file__)")
    out = subprocess.run([str(hinge_venv["python"]), "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH="")).stdout.split()
    assert out[0] == "0.1.0"
    assert Path(out[1]).is_relative_to(hinge_venv["site"])  # the installed copy, not the source tree


def test_gankit_plugins_lists_hinge(hinge_venv):
    listing = gankit(hinge_venv, "plugins")
    assert listing.returncode == 0, listing.stderr
    assert "hinge" in listing.stdout and "gankit-hinge" in listing.stdout and "hinge loss" in listing.stdout
    assert "unconditional" in listing.stdout  # the built-ins are still there
    show = gankit(hinge_venv, "plugins", "show", "hinge")
    assert show.returncode == 0, show.stderr
    for text in ("gankit-hinge 0.1.0", "gankit_hinge:plugin", "margin = 1.0", "gankit_hinge.hinge_step",
                 "mlp, dcgan", "The `hinge` plugin: an unconditional GAN trained with the hinge loss.",
                 "its own (--loss does not apply)", "(none: gankit's defaults)"):
        assert text in show.stdout, text


def test_hinge_train_export_generate(hinge_venv, tmp_path):
    small = ["--data", "synthetic", "--batch-size", "16", "--g-hidden", "32,64", "--d-hidden", "64,32",
             "--z-dim", "16", "--runs-dir", "runs", "--log-every", "1", "-q"]
    train = gankit(hinge_venv, "train", "--plugin", "hinge", "--steps", "20", "--name", "h", *small,
                   cwd=tmp_path)
    assert train.returncode == 0, train.stdout + train.stderr
    rows = [json.loads(line) for line in (tmp_path / "runs/h/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "d_loss" in r][-1] == 20
    # The hinge step really ran: fresh nets score almost everything inside the margin,
    # where the hinge D loss is exactly 2 (BCE would start near 1.39), and G's -D(G(z))
    # starts near 0 (BCE: near 0.69).
    assert 1.75 < rows[0]["d_loss"] < 2.25
    assert abs(rows[0]["g_loss"]) < 0.3

    export = gankit(hinge_venv, "export", "runs/h", "-o", "h.onnx", cwd=tmp_path)
    assert export.returncode == 0, export.stdout + export.stderr
    info = gankit(hinge_venv, "info", "h.onnx", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "hinge" in info.stdout

    generate = gankit(hinge_venv, "generate", "-m", "h.onnx", "-n", "4", "-o", "out.npy", cwd=tmp_path)
    assert generate.returncode == 0, generate.stdout + generate.stderr
    import numpy as np

    images = np.load(tmp_path / "out.npy", allow_pickle=False)
    assert images.dtype == np.uint8 and images.shape[-2:] == (28, 28) and images.shape[0] >= 4


@pytest.mark.parametrize("option, message", [
    ("margin=-1", "margin must be a positive number"),
    ("width=3", "has no option width"),
])
def test_hinge_bad_option_is_a_usage_error(hinge_venv, tmp_path, option, message):
    result = gankit(hinge_venv, "train", "--plugin", "hinge", "--steps", "1", "--data", "synthetic",
                    "--option", option, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_hinge_own_test_suite_passes(hinge_venv):
    # What the plugin's author runs: its tests, against the installed plugin.
    result = subprocess.run([str(hinge_venv["python"]), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(hinge_venv["src"] / "tests")], capture_output=True, text=True,
                            cwd=hinge_venv["src"], timeout=300, env=dict(os.environ, PYTHONPATH=""))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


# ----- conformance of every registered plugin (a new one is tested for free) ---------------

def _registered() -> list[tuple[str, str]]:
    cases = []
    for name in sorted({info.name for info in registry.list_plugins()}):
        try:
            archs = registry.load_plugin(name).supported_archs
        except Exception:  # noqa: BLE001 - a broken plugin still gets a (failing) case
            archs = ("mlp",)
        cases += [(name, arch) for arch in archs]
    return cases


@pytest.mark.parametrize("name, arch", _registered())
def test_registered_plugin_conforms(name, arch):
    classes = tuple(range(10)) if arch == "mlp" else (3, 8)
    # check_plugin honours a plugin's net train_defaults (per-digit's MLP widths); as DCGAN
    # channel counts those would make this the slowest test, so DCGAN runs get small ones.
    small = {"g_hidden": (16, 8), "d_hidden": (8, 16)} if arch == "dcgan" else None
    report = check_plugin(registry.load_plugin(name), arch=arch, classes=classes, steps=2, spec_overrides=small)
    assert report.ok, report.summary()


def test_relu_output_generator_conforms_like_the_dl4j_preset():
    # The DL4J recipe's generator ends in ReLU: unbounded above, clamped to [0, 1] by the
    # exported graph. check_plugin must compare onnxruntime with the clamped torch output,
    # not fail the plugin because its raw images go past 1.
    import dataclasses
    from dataclasses import fields

    from gankit.presets import get_preset
    from gankit.training.engine.spec import spec_from_config

    plugin = registry.load_plugin("unconditional")
    dl4j = spec_from_config(get_preset("dl4j-mlp").config, plugin)
    assert dl4j.output_activation == "relu" and dl4j.value_range == (0.0, 1.0)
    overrides = {f.name: getattr(dl4j, f.name) for f in fields(dl4j)
                 if f.name not in ("arch", "classes", "image_size", "options")}
    report = check_plugin(plugin, arch=dl4j.arch, classes=dl4j.classes, steps=2, spec_overrides=overrides)
    assert report.ok, report.summary()
    assert report.spec.output_activation == "relu" and report.spec.g_hidden == dl4j.g_hidden
    results = {r.name: r for r in report.results}
    assert results["onnx export"].status == "pass" and "matches torch within" in results["onnx export"].detail

    # Small fresh nets stay below 1, so also run the same plugin with its last layer
    # scaled up: raw images well past 1, which only the clamped comparison accepts.
    def hot_build(spec):
        nets = plugin.build(spec)
        last = [m for m in nets.generator.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(8.0)
            last.bias.fill_(0.5)
        return nets

    hot = dataclasses.replace(plugin, name="unconditional-hot", build=hot_build)
    report = check_plugin(hot, arch=dl4j.arch, classes=dl4j.classes, steps=2, spec_overrides=overrides)
    assert report.ok, report.summary()
    detail = {r.name: r.detail for r in report.results}["generator output"]
    assert float(detail.rsplit("max ", 1)[1]) > 1.5, detail  # the raw output really goes past the range
    assert "matches torch within" in {r.name: r.detail for r in report.results}["onnx export"]

    from gankit.errors import UsageError

    with pytest.raises(UsageError, match="spec_overrides cannot set arch"):
        check_plugin(plugin, spec_overrides={"arch": "dcgan"})
    with pytest.raises(UsageError, match="NetSpec has no field bogus"):
        check_plugin(plugin, spec_overrides={"bogus": 1})


# ----- the checker catches what it claims to catch -----------------------------------------

def _plugin(**overrides) -> GanPlugin:
    fields = dict(name="probe", description="a test probe", build=build_nets, api_version=1)
    fields.update(overrides)
    return GanPlugin(**fields)


def _failed(plugin: GanPlugin, **kwargs) -> dict[str, str]:
    with pytest.raises(PluginCheckError) as err:
        check_plugin(plugin, export=False, **kwargs)
    report = err.value.report
    assert isinstance(report, CheckReport)
    for failure in report.failures:  # every failure is in the one message, in words
        assert f"- {failure.name}: {failure.detail}" in str(err.value)
    return {f.name: f.detail for f in report.failures}


def test_a_good_plugin_passes_every_check():
    report = check_plugin(_plugin(), classes=(1, 7), export=False)
    assert report.ok and len(report.losses) == 2
    statuses = {r.name: r.status for r in report.results}
    assert statuses["training steps"] == "pass" and statuses["export"] == "skip"


def test_every_failure_is_reported_not_just_the_first():
    class BadG(torch.nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.lin = torch.nn.Linear(spec.z_dim, 28 * 28)

        def forward(self, z, labels):
            return (self.lin(z) * 10).double()  # flat, float64, far outside [-1, 1]

    class BadD(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(28 * 28, 1)

        def forward(self, images, labels):
            return self.lin(images.float().flatten(1))  # [N, 1], not [N]

    failed = _failed(_plugin(build=lambda spec: Nets(BadG(spec), BadD()), api_version=99))
    assert "plugin API 99" in failed["contract"]
    detail = failed["generator output"]
    assert "shape [20, 784], expected [20, 1, 28, 28]" in detail
    assert "dtype torch.float64" in detail and "outside value_range [-1, 1]" in detail


def test_scores_of_wrong_shape_are_reported():
    def build(spec):
        nets = build_nets(spec)
        head = nets.discriminator.head
        nets.discriminator.forward = lambda images, labels=None: head(nets.discriminator.features(images))
        return nets

    failed = _failed(_plugin(build=build), classes=(0, 1))
    assert "shape [4, 1], expected [4]" in failed["discriminator output"]


def test_conditional_plugin_that_ignores_labels_is_caught():
    failed = _failed(_plugin(label_mode="conditional"), classes=(2, 5, 9))
    assert "give the same image for the same z" in failed["label handling"]


def test_unconditional_plugin_that_uses_labels_is_caught():
    def build(spec):
        nets = build_nets(spec)
        g = nets.generator
        original = g.forward
        g.forward = lambda z, labels: torch.clamp(original(z) + 0.1 * labels[:, None, None, None], -1, 1)
        return nets

    failed = _failed(_plugin(build=build), classes=(0, 1))
    assert "label changes the image" in failed["label handling"]


def test_step_that_forgets_optimizers_and_unfreezing_is_caught():
    def lazy_step(ctx, real, labels):
        ctx.discriminator.requires_grad_(False)  # ... and never turned back on
        return {"d_loss": torch.tensor(1.0), "g_loss": 1.0}

    failed = _failed(_plugin(train_step=lazy_step), classes=(0, 1))
    assert "no longer require grad" in failed["training steps"]
    assert "weights change" not in failed  # skipped: it needs the training check


def test_step_without_updates_or_with_missing_losses_is_caught():
    failed = _failed(_plugin(train_step=lambda ctx, real, labels: {"d_loss": 0.5, "g_loss": 0.5}),
                     classes=(0, 1))
    assert "no generator weight changed" in failed["weights change"]
    assert "no discriminator weight changed" in failed["weights change"]
    failed = _failed(_plugin(train_step=lambda ctx, real, labels: {"loss": 0.5}), classes=(0, 1))
    assert "lacks d_loss, g_loss" in failed["training steps"]


def test_unseeded_randomness_is_caught():
    import numpy as np

    def numpy_noise_step(ctx, real, labels):
        import dataclasses

        noise = lambda n: torch.from_numpy(np.random.randn(n, ctx.spec.z_dim)).float()  # noqa: E731
        return standard_step(dataclasses.replace(ctx, noise=noise), real, labels)

    failed = _failed(_plugin(train_step=numpy_noise_step), classes=(0, 1))
    assert "two runs with the same seeds gave different losses" in failed["reproducible"]


def test_export_module_that_disagrees_with_the_generator_is_caught():
    class Darker(torch.nn.Module):
        def __init__(self, g):
            super().__init__()
            self.g = g

        def forward(self, z, labels):
            return self.g(z, labels) * 0.5

    with pytest.raises(PluginCheckError) as err:
        check_plugin(_plugin(export_module=Darker), classes=(0, 1))
    failed = {f.name: f.detail for f in err.value.report.failures}
    assert "differ from the generator's" in failed["export module"]
    assert "onnx export" not in failed  # not attempted after the module failed


def test_bad_arguments_are_usage_errors():
    from gankit.errors import UsageError

    with pytest.raises(UsageError, match="supports arch mlp, not 'dcgan'"):
        check_plugin(_plugin(supported_archs=("mlp",)), arch="dcgan")
    with pytest.raises(UsageError, match="has no option margin"):
        check_plugin(_plugin(), options={"margin": 2})


def test_not_a_plugin_at_all_fails_cleanly():
    with pytest.raises(PluginCheckError, match="must be a gankit.plugin_api.GanPlugin, got dict"):
        check_plugin({"name": "nope"})


def test_train_defaults_are_honoured_by_the_check():
    # A WGAN-style plugin asks for 5 critic steps; the kit must run the step with them.
    seen = []

    def step(ctx, real, labels):
        seen.append(ctx.d_steps)
        return standard_step(ctx, real, labels)

    report = check_plugin(_plugin(train_step=step, train_defaults={"d_steps": 5, "beta1": 0.0}),
                          classes=(0, 1), export=False)
    assert report.training["d_steps"] == 5 and report.training["beta1"] == 0.0
    assert set(seen) == {5}
    assert "d_steps 5" in {r.name: r.detail for r in report.results}["training steps"]
    # An explicit argument still wins.
    seen.clear()
    check_plugin(_plugin(train_step=step, train_defaults={"d_steps": 5}), classes=(0, 1), export=False, d_steps=2)
    assert set(seen) == {2}


def test_step_that_breaks_under_bf16_autocast_is_caught():
    # The D only works on float32 input: fine in fp32, but under autocast the generator's
    # images arrive in bfloat16. Only the bf16 check may fail.
    def build(spec):
        nets = build_nets(spec)
        forward = nets.discriminator.forward

        def strict(images, labels=None):
            if images.dtype != torch.float32:
                raise TypeError(f"D got {images.dtype}")
            return forward(images, labels)

        nets.discriminator.forward = strict
        return nets

    failed = _failed(_plugin(build=build), classes=(0, 1))
    assert list(failed) == ["bf16 autocast"] and "bfloat16" in failed["bf16 autocast"]


def test_default_arch_is_the_plugins_first():
    report = check_plugin(_plugin(supported_archs=("dcgan", "mlp")), classes=(3, 8), export=False)
    assert report.spec.arch == "dcgan"


def test_one_step_context_factory_is_what_the_trainer_and_kit_use():
    import inspect

    from gankit.training.conformance import checks
    from gankit.training.engine import trainer
    from gankit.training.engine.context import make_step_context

    assert "make_step_context(" in inspect.getsource(trainer.Trainer)
    assert "make_step_context(" in inspect.getsource(checks.train_fresh)
    nets = build_nets(small_spec_for_test())
    opt = torch.optim.SGD(nets.generator.parameters(), lr=0.1)
    ctx = make_step_context(nets, small_spec_for_test(), opt_g=opt, opt_d=opt, next_batch=lambda: None,
                            noise="uniform", seed=4)
    z = ctx.noise(500)
    assert z.shape == (500, 8) and z.device == ctx.device == torch.device("cpu")
    assert float(z.min()) >= -1 and float(z.max()) <= 1 and float(z.min()) < -0.9
    assert ctx.torch_generator.device == ctx.device


def small_spec_for_test():
    from gankit.testing import small_spec

    return small_spec("mlp", (0, 1))
