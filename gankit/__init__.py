"""gankit: train GANs that draw handwritten digits, and serve them without PyTorch.

Light tier: importing `gankit` never imports torch. `gankit.load(path)` opens an
exported ONNX generator with onnxruntime alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations only: importing gankit stays light
    import os
    from collections.abc import Sequence

    from gankit.runtime import OnnxGenerator

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path: "str | os.PathLike | None" = None, *, providers: "Sequence[str | tuple[str, dict]] | None" = None,
         threads: "int | None" = None) -> "OnnxGenerator":
    """Open an exported generator, checking the file on the way, and return it ready to draw.

    The file is treated as untrusted: its size, structure, metadata contract and weights
    sha256 are checked, and one probe batch is run, before it is returned.

    Args:
        path: an exported ``.onnx`` file (default: the shipped conditional model).
        providers: onnxruntime execution providers in order of preference, e.g.
            ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` with onnxruntime-gpu
            installed (default: the CPU).
        threads: onnxruntime intra-op threads (default: the CPUs this process may use,
            at most 8).

    Returns:
        The generator; call ``.generate(digit=7, n=16, seed=0)`` on it.

    Raises:
        gankit.errors.ModelFileError: the file is missing, unreadable, too large,
            corrupt, or breaks the gankit model contract.
        gankit.errors.UsageError: ``threads`` or ``providers`` is not a valid value.
    """
    from gankit.runtime import load_generator

    return load_generator(path, providers=providers, threads=threads)
