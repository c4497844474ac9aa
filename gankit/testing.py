"""Conformance checks for gankit plugins: `check_plugin(plugin)` for plugin authors' own tests.

Light tier to import: this is the public name only, and the kit itself
(`gankit.training.conformance`, heavy tier: torch, onnx, onnxruntime) loads on first
use. The kit builds small nets (with the net settings of the plugin's
``train_defaults``), checks what they return, runs real training steps through the
trainer's own step context (with the plugin's ``train_defaults``, in fp32 and under
bf16 autocast), trains a few steps through the real trainer (logging with a sparse key,
a checkpoint and a bit-identical resume), exports the generator and reloads it with
gankit's runtime. If any check fails, one `PluginCheckError` lists every failure in
plain words.

    from gankit.testing import check_plugin
    from my_plugin import plugin

    def test_conforms():
        check_plugin(plugin)                       # first supported arch, digits 0-9, 2 steps
        check_plugin(plugin, arch="dcgan", classes=(3, 8))
        check_plugin(plugin, spec_overrides={"output_activation": "relu"})  # NetSpec fields, set last
        check_plugin(plugin, spec_overrides={"g_hidden": (32, 64)})  # shrink large default nets
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_plugin", "CheckReport", "CheckResult", "PluginCheckError", "small_spec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gankit.training import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'gankit.testing' has no attribute {name!r}")
