"""The nets: the built-in MLP and DCGAN pairs (`builtin`) and K independent per-class nets in one set of tensors (`stacked`).

Heavy tier (torch). Pure modules: may import the config and the plugin contract, nothing
else of gankit. The public names (`build_nets`, `init_weights`, ...) are also reachable
as ``gankit.training.<name>``, which is the path plugin authors should use.
"""

from __future__ import annotations

import importlib

_NAMES = ("build_nets", "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator",
          "activation", "init_weights", "ACTIVATIONS", "init_layer_")


def __getattr__(name: str):
    # Lazily, so that importing `gankit.training.nets.stacked` does not build the builtin module twice.
    if name in _NAMES:
        return getattr(importlib.import_module("gankit.training.nets.builtin"), name)
    raise AttributeError(f"module 'gankit.training.nets' has no attribute {name!r}")
