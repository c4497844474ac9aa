"""gankit: train GANs that draw handwritten digits, and serve them without PyTorch.

Light tier: importing `gankit` never imports torch. `gankit.load(path)` opens an
exported ONNX generator with onnxruntime alone.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path=None, *, providers=None, threads=None):
    """Open an exported generator (default: the shipped conditional model).

    Returns a `gankit.runtime.OnnxGenerator`; call `.generate(digit=7, n=16, seed=0)`.
    ``providers``: onnxruntime execution providers, e.g. ``["CUDAExecutionProvider",
    "CPUExecutionProvider"]`` with onnxruntime-gpu (default CPU); ``threads``: intra-op
    threads (default: the CPUs this process may use, at most 8).
    """
    from gankit.runtime import load_generator

    return load_generator(path, providers=providers, threads=threads)
