"""The plugin conformance kit behind `gankit.testing.check_plugin`: the plugin author's room.

Heavy tier (torch; onnx and onnxruntime for the export check). It exercises a plugin
the way gankit will: builds small nets, checks what they return, runs real training
steps through the trainer's own `make_step_context` with the plugin's
``train_defaults`` (in fp32 and under bf16 autocast), trains a few steps through the
real `Trainer` with a checkpoint and a resume, exports the generator with
gankit's exporter and reloads the file with gankit's own runtime loader
(`gankit.runtime.load_generator`, which checks the I/O and metadata contract).

Each check is a module-level function of one `Subject`, listed in `CHECKS` with the
checks it needs. Every check runs unless one it needs failed (then it is skipped, and
says so); if any fails, one `PluginCheckError` lists them all in plain words.

Rooms: `kit` (the entry point, `check_plugin`), `checks` (one function per check),
`trainer_run` (a few steps through the real `Trainer`: logging with a sparse key, a
checkpoint and an exact resume), `report` (what the author reads). May import the engine,
nets, persist and export rooms, the plugin contract and the runtime; nothing imports it
but `gankit.testing` and tests.
"""

from __future__ import annotations

from gankit.training.conformance.checks import small_spec
from gankit.training.conformance.kit import check_plugin
from gankit.training.conformance.report import CheckReport, CheckResult, PluginCheckError

__all__ = ["check_plugin", "CheckReport", "CheckResult", "PluginCheckError", "small_spec"]
