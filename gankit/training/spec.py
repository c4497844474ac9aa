"""Turn a TrainConfig plus its plugin into the NetSpec the plugin builds from.

Heavy-tier package, but this module itself imports no torch.
"""

from __future__ import annotations

from gankit.config import TrainConfig
from gankit.errors import UsageError
from gankit.plugin_api import GanPlugin, NetSpec


def spec_from_config(cfg: TrainConfig, plugin: GanPlugin) -> NetSpec:
    """Merge the plugin's default options with the run's; unknown options are a usage error."""
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
    if cfg.arch not in plugin.supported_archs:
        raise UsageError(
            f"plugin {plugin.name!r} supports --arch {', '.join(plugin.supported_archs)}, not {cfg.arch!r}"
        )
    return NetSpec(
        arch=cfg.arch,
        z_dim=cfg.z_dim,
        image_size=cfg.image_size,
        num_classes=10,
        classes=tuple(sorted(cfg.classes)),
        g_hidden=tuple(cfg.g_hidden),
        d_hidden=tuple(cfg.d_hidden),
        g_activation=cfg.g_activation,
        d_activation=cfg.d_activation,
        output_activation=cfg.output_activation,
        d_dropout=cfg.d_dropout,
        init=cfg.init,
        options=options,
    )
