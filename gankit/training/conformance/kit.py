"""`check_plugin`: the plugin author's entry point to the conformance kit.

Heavy tier (torch). Validates the arguments against what the plugin claims, builds the
spec (small nets, then the plugin's net ``train_defaults``, then ``spec_overrides``) and
the `Subject`, runs every check in `checks` (the real trainer's among them, from
`trainer_run`), and raises one `PluginCheckError` listing every failure.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import torch

from gankit.config import NET_FIELDS
from gankit.errors import UsageError
from gankit.plugin_api import GanPlugin, NetSpec, resolve_options, validate_plugin
from gankit.training.conformance.checks import KIT_TRAINING, Subject, run_checks, small_spec
from gankit.training.conformance.report import FAIL, PASS, CheckReport, CheckResult, PluginCheckError


# NetSpec fields that check_plugin sets through its own keywords, not through spec_overrides.
OWN_KEYWORDS = ("arch", "classes", "image_size", "options")


def _training_settings(plugin: GanPlugin, d_steps: Optional[int]) -> dict[str, Any]:
    """The kit's optimiser settings with the plugin's train_defaults over them (d_steps too)."""
    t = dict(KIT_TRAINING)
    defaults = plugin.train_defaults if isinstance(plugin.train_defaults, Mapping) else {}
    t.update({k: v for k, v in defaults.items() if k in KIT_TRAINING})
    if d_steps is not None:
        t["d_steps"] = d_steps
    return t


def check_plugin(
    plugin: GanPlugin | str,
    *,
    arch: Optional[str] = None,
    classes: Sequence[int] = tuple(range(10)),
    steps: int = 2,
    options: Optional[Mapping[str, Any]] = None,
    d_steps: Optional[int] = None,
    batch_size: int = 4,
    image_size: Optional[int] = None,
    export: bool = True,
    seed: int = 0,
    spec_overrides: Optional[Mapping[str, Any]] = None,
) -> CheckReport:
    """Check that ``plugin`` honours the gankit plugin contract; return the report or raise.

    Args:
        plugin: the GanPlugin object (or the name of an installed plugin).
        arch: architecture to build; one of ``plugin.supported_archs`` (default: the
            plugin's ``train_defaults`` arch, else its first supported arch, as
            `gankit train` chooses).
        classes: class ids the small test run trains on.
        steps: real training steps to run (through ``plugin.train_step`` or the
            standard step, exactly as the trainer calls them), in fp32 and again under
            bf16 autocast.
        options: plugin options, merged over ``plugin.default_options``.
        d_steps: discriminator updates per step (``ctx.d_steps``); default: the
            plugin's ``train_defaults`` (e.g. a WGAN's critic steps), else 1. The
            optimiser, loss and EMA settings in ``train_defaults`` are honoured too.
        batch_size: images per batch (per class for a ``per-class`` batch layout).
        image_size: 28, or 32 to check a plugin at the Paddle recipe's size; default:
            the plugin's ``train_defaults``, else 28.
        export: also export to ONNX with gankit's exporter and reload it with gankit's
            runtime (`gankit.runtime.load_generator`).
        seed: seeds every random draw, so a failing check fails the same way again.
        spec_overrides: `NetSpec` fields to set last, e.g. ``{"g_hidden": (32, 64)}``.
            The spec is built in layers: small nets for the built-in archs (`small_spec`;
            gankit's default widths for an arch of the plugin's own), then the net
            settings of the plugin's ``train_defaults`` (``z_dim``, widths,
            activations ...), then these. Use them to shrink a plugin's large default
            nets for a quick check, or to check it with a recipe's nets (arch, classes,
            image_size and options have their own keywords).

    Besides the nets' outputs and direct steps, it trains a few steps through the real
    `Trainer` (``log_every`` 3, a checkpoint every 2 steps, a sparse extra key added to
    the step's results), checks the logged means and counts, and resumes from the
    step-2 checkpoint, which must end bit-identical to the uninterrupted run.

    Raises:
        PluginCheckError: one or more checks failed; the message lists each of them.
        UsageError: the arguments ask for something the plugin does not claim to support.
    """
    if isinstance(plugin, str):
        from gankit.registry import load_plugin

        plugin = load_plugin(plugin)
    if steps < 1:
        raise UsageError(f"check_plugin needs steps >= 1, got {steps}")
    name = getattr(plugin, "name", None) or repr(plugin)
    report = CheckReport(plugin=str(name), spec=small_spec(arch or "mlp", classes, image_size=image_size or 28))
    try:
        validate_plugin(plugin, f"plugin {name!r}")
    except ValueError as exc:
        report.results.append(CheckResult("contract", FAIL, str(exc)))
        if not (isinstance(plugin, GanPlugin) and callable(plugin.build)):
            raise PluginCheckError(report) from None  # nothing more can be tried on this object
    else:
        report.results.append(CheckResult(
            "contract", PASS, f"label mode {plugin.label_mode}, batch layout {plugin.batch_layout}, "
                              f"API {plugin.api_version}"))
    archs = tuple(plugin.supported_archs or ())
    defaults = plugin.train_defaults if isinstance(plugin.train_defaults, Mapping) else {}
    net_defaults = {k: v for k, v in defaults.items() if k in NET_FIELDS}
    arch = arch or net_defaults.get("arch") or (archs[0] if archs else "mlp")
    image_size = image_size or net_defaults.get("image_size") or 28
    if arch not in archs:
        raise UsageError(f"plugin {name!r} supports arch {', '.join(archs) or '(none)'}, "
                         f"not {arch!r}; call check_plugin(..., arch=...) with one of those")
    unknown = sorted(set(options or {}) - set(plugin.default_options))
    if unknown:
        raise UsageError(f"plugin {name!r} has no option {', '.join(unknown)} "
                         f"(its options: {', '.join(plugin.default_options) or 'none'})")
    overrides = dict(spec_overrides or {})
    own = [k for k in OWN_KEYWORDS if k in overrides]
    if own:
        raise UsageError(f"spec_overrides cannot set {', '.join(own)}; "
                         f"use check_plugin(..., {own[0]}=...) instead")
    spec_fields = {f.name for f in dataclasses.fields(NetSpec)}
    unknown = sorted(set(overrides) - spec_fields)
    if unknown:
        raise UsageError(f"spec_overrides: NetSpec has no field {', '.join(unknown)} "
                         f"(its fields: {', '.join(sorted(spec_fields - set(OWN_KEYWORDS)))})")
    try:
        merged = resolve_options(plugin, options or {})
    except ValueError:  # the "options" check reports it
        merged = {**plugin.default_options, **(options or {})}
    spec = small_spec(arch, classes, image_size=image_size, options=merged)
    layered = {k: v for k, v in net_defaults.items() if k not in OWN_KEYWORDS}
    spec = dataclasses.replace(spec, **{**layered, **overrides})
    report.spec = spec
    training = _training_settings(plugin, d_steps)
    report.training = dict(training)
    if isinstance(training["d_steps"], bool) or not isinstance(training["d_steps"], int) or training["d_steps"] < 1:
        raise UsageError(f"check_plugin needs d_steps >= 1, got {training['d_steps']!r}")

    gen = torch.Generator().manual_seed(seed + 3)
    labels = torch.tensor(spec.classes, dtype=torch.long).repeat_interleave(2)
    subject = Subject(plugin=plugin, spec=spec, steps=steps, batch_size=batch_size, seed=seed,
                      training=training, export=export, report=report,
                      z=torch.randn(len(labels), spec.z_dim, generator=gen), labels=labels)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        run_checks(subject)
    if not report.ok:
        raise PluginCheckError(report)
    return report
