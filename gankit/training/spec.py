"""The resolved run plan: a validated config, its loaded plugin and the NetSpec, built once.

Heavy-tier package, but this module itself imports no torch. `plan_run` is the one
place a config meets its plugin: options merged over the plugin's defaults (and
checked), the arch checked against ``supported_archs``, the spec built. The CLI, the
trainer, export and evaluation take the plan (or its parts) instead of redoing this.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from gankit.config import TrainConfig
from gankit.errors import UsageError
from gankit.plugin_api import GanPlugin, NetSpec


@dataclass(frozen=True)
class RunPlan:
    """What a run is: ``config`` (its options already merged), ``plugin`` and ``spec``."""

    config: TrainConfig
    plugin: GanPlugin
    spec: NetSpec


def merged_options(cfg: TrainConfig, plugin: GanPlugin) -> dict:
    """The run's plugin options over the plugin's defaults; unknown or bad ones are usage errors."""
    unknown = sorted(set(cfg.options) - set(plugin.default_options))
    if unknown:
        known = ", ".join(plugin.default_options) or "none"
        raise UsageError(f"plugin {plugin.name!r} has no option {', '.join(unknown)} (its options: {known})")
    options = {**plugin.default_options, **cfg.options}
    if plugin.validate_options is not None:
        try:
            plugin.validate_options(options)
        except ValueError as exc:
            raise UsageError(f"plugin {plugin.name!r}: {exc}") from None
    return options


def spec_from_config(cfg: TrainConfig, plugin: GanPlugin) -> NetSpec:
    """The NetSpec ``plugin`` builds for ``cfg``; usage errors for unknown options or arch."""
    options = merged_options(cfg, plugin)
    if cfg.net.arch not in plugin.supported_archs:
        raise UsageError(
            f"unknown arch {cfg.net.arch!r} for plugin {plugin.name!r}; "
            f"choose one of: {', '.join(plugin.supported_archs)}"
        )
    return NetSpec.from_net(cfg.net, classes=cfg.classes, options=options)


def plan_run(cfg: TrainConfig, plugin: Optional[GanPlugin] = None) -> RunPlan:
    """Validate ``cfg``, load its plugin (unless given) and build the spec, once."""
    cfg.validate()
    if plugin is None:
        from gankit.registry import load_plugin

        plugin = load_plugin(cfg.plugin)
    spec = spec_from_config(cfg, plugin)
    return RunPlan(config=replace(cfg, options=dict(spec.options)), plugin=plugin, spec=spec)
