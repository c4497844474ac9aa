"""The `unconditional` plugin: one GAN over all digits, labels ignored (the seeds' recipe).

Heavy tier when built (the nets are torch modules); importing this module is light.
"""

from __future__ import annotations

from gankit.plugin_api import GanPlugin, NetSpec, Nets


def build(spec: NetSpec) -> Nets:
    from gankit.training import build_nets

    return build_nets(spec)


plugin = GanPlugin(
    name="unconditional",
    api_version=2,
    description="One GAN over all training images; labels are ignored (MLP or DCGAN nets).",
    build=build,
    label_mode="none",
)
