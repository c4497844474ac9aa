"""The resolved run plan: a validated config, its loaded plugin and the NetSpec, built once.

Heavy-tier package, but this module imports torch only inside `build_checked`.
`plan_run` is the one place a config meets its plugin: options merged over the plugin's
defaults (and checked), the arch checked against ``supported_archs``, the spec built.
The CLI, the trainer, export and evaluation take the plan (or its parts) instead of
redoing this, and every one of them builds the nets through `build_checked`, the one
guard between a config's numbers and the memory they would take.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from gankit.config import TrainConfig
from gankit.errors import GankitError, UsageError
from gankit.plugin_api import GanPlugin, NetSpec, Nets, resolve_options

# Parameters and buffers of both nets together: 4 GiB of float32 weights, ~17 GB with
# Adam's moments and the gradients. The largest built-in recipe (per-digit DCGAN, ten
# digits) has 137 million; a config past this is a typo or an attack.
MAX_PARAMETERS = 1 << 30


@dataclass(frozen=True)
class RunPlan:
    """What a run is: ``config`` (its options already merged), ``plugin`` and ``spec``."""

    config: TrainConfig
    plugin: GanPlugin
    spec: NetSpec


def merged_options(cfg: TrainConfig, plugin: GanPlugin) -> dict:
    """The run's plugin options over the plugin's defaults, checked against its schema
    (`gankit.plugin_api.resolve_options`); unknown or bad ones are usage errors."""
    try:
        return resolve_options(plugin, cfg.options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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


def _numel(nets: Nets) -> int:
    return sum(t.numel() for net in (nets.generator, nets.discriminator)
               for t in (*net.parameters(), *net.buffers()))


def build_checked(plugin: GanPlugin, spec: NetSpec, *, error: type[GankitError],
                  fits: Optional[Callable[[Nets], None]] = None) -> Nets:
    """``plugin.build(spec)`` as one guarded step: a build that fails for lack of memory
    (widths too large for this machine) is ``error``, never a traceback.

    With ``fits`` (export, whose config comes from a checkpoint that may lie), the nets are
    first built dry, on torch's meta device (no memory): they must hold at most
    `MAX_PARAMETERS` numbers and ``fits(dry_nets)`` (a comparison with the checkpoint's
    tensors: names, shapes, dtypes) must pass before anything real is allocated, so what
    export builds is never larger than what the checkpoint holds on disk. The dry build
    runs on copies of every RNG state, so the real build draws what it would have drawn
    alone; a plugin whose build cannot run on the meta device skips it (and ``fits`` is
    the caller's to run on the real nets). Training builds from a config that
    `TrainConfig.validate` bounded (widths, layers) and skips the dry build: on the meta
    device, ``nn.init.normal_`` imports torch's compiler stack, seconds per run.
    """
    import random

    import numpy as np
    import torch

    dry: Any = None
    if fits is not None:
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        try:
            with torch.device("meta"):
                dry = plugin.build(spec)
        except Exception:  # noqa: BLE001 - e.g. .item() on a meta tensor: measure nothing, build for real
            dry = None
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])
    if isinstance(dry, Nets):
        count = _numel(dry)
        if count > MAX_PARAMETERS:
            raise error(f"plugin {plugin.name!r} would build nets of {count:,} parameters for this config "
                        f"(at most {MAX_PARAMETERS:,}); check the widths (g_hidden, d_hidden, z_dim)")
        fits(dry)
    try:
        return plugin.build(spec)
    except (MemoryError, RuntimeError) as exc:  # e.g. widths too large for this machine's memory
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise error(f"plugin {plugin.name!r} could not build its nets: {first}") from None
