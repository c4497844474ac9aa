"""Run an exported gankit generator with onnxruntime alone, treating the file as hostile.

Light tier (numpy, onnxruntime; never torch, never onnx, nothing from `gankit.eval`).
Three rooms, one job each:

* `scan`: the bounded structural scan of the file's protobuf records, the weights
  digest (`model_sha256`) and the refusal of external data;
* `session`: onnxruntime session options, threads, the capped arena and providers;
* `generator`: `load_generator` (every check, in order) and `OnnxGenerator`.

Every public name stays importable from ``gankit.runtime``.
"""

from __future__ import annotations

from gankit.runtime.generator import (CHUNK, LABEL_MODES, MAX_CLASSES, MAX_IMAGES, MAX_MODEL_BYTES, MAX_SEED,
                                      SHIPPED_MODEL, OnnxGenerator, check_seed, load_generator, shipped_model_path)
from gankit.runtime.scan import MAX_RECORDS, model_sha256
from gankit.runtime.session import ARENA_BYTES, default_threads

__all__ = ["OnnxGenerator", "load_generator", "shipped_model_path", "default_threads", "model_sha256", "check_seed",
           "MAX_MODEL_BYTES", "MAX_IMAGES", "MAX_CLASSES", "MAX_SEED", "MAX_RECORDS", "ARENA_BYTES", "CHUNK",
           "SHIPPED_MODEL", "LABEL_MODES"]
