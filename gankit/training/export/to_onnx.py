"""Export a trained generator to one self-contained ONNX file, gated by a parity check.

Heavy tier (torch, onnx, onnxscript, onnxruntime). `export_generator` traces
``module(z, labels)`` with torch's dynamo exporter, gives the graph the contract's names
and a dynamic batch (see `gankit.contract`), stamps the `ModelCard` metadata with a hash
of the weights, checks the file with ``onnx.checker`` and then runs torch and
onnxruntime side by side on batches of 1, 7 and 256. Only when every batch agrees within
the tolerance is the file renamed into place; otherwise it is deleted and
`ModelFileError` is raised, so a failed export never leaves a file behind.

Generators that draw 32x32 images (the Paddle recipe) are wrapped so the graph ends in an
area resize to 28x28 (``F.interpolate(mode="area")``, i.e. adaptive average pooling: each
output pixel is the mean of the input pixels its cell covers, which keeps strokes'
brightness instead of dropping rows the way nearest or plain bilinear sampling does).
Every exported graph also clamps its output to ``card.value_range``, because generators
with a ReLU output (the DL4J recipe) are not bounded above.

Input convention: the graph's inputs are positional ``(z, label)``: noise first, then
the class id as int64, which is how torch-fidelity's ``GenerativeModelONNX`` feeds an
ONNX generator (it passes its arguments in the graph's input order, noise then class for
a conditional model). What torch-fidelity does not share is the output: it wants uint8
RGB images, ours are float32 single-channel in ``value_range``, so scoring a gankit model
there needs a small wrapper module; our ``normal`` noise matches its ``normal`` z_type,
while our ``uniform`` (on [-1, 1]) has no torch-fidelity counterpart.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gankit.contract import (CONTRACT_VERSION, IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE,
                             ModelCard)
from gankit.atomic import commit, staged_file
from gankit.errors import MissingDependencyError, ModelFileError, install_hint

__all__ = ["ParityReport", "export_generator", "export_from_checkpoint", "card_for",
           "weights_sha256", "default_export_path"]

# The largest batch the exported graph promises to accept (torch.export needs a bound).
MAX_BATCH = 1 << 20


@dataclass(frozen=True)
class ParityReport:
    """What an export wrote and how closely onnxruntime matched torch."""

    path: Path
    max_abs_diff: dict[int, float]  # batch size -> max |torch - onnxruntime|
    tolerance: float
    size_bytes: int
    weights_sha256: str
    seconds: float
    card: ModelCard
    resized_from: int | None = None  # the generator's native image side when it was not 28

    @property
    def worst(self) -> float:
        """The largest difference over all batches."""
        return max(self.max_abs_diff.values())


class _ContractModule(nn.Module):
    """The graph we export: the generator, resized to 28x28 if needed, clamped to its range."""

    def __init__(self, generator: nn.Module, native_size: int, value_range: tuple[float, float]):
        super().__init__()
        self.generator = generator
        self.native_size = native_size
        self.low, self.high = float(value_range[0]), float(value_range[1])

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        x = self.generator(z, label)
        if self.native_size != IMAGE_SIZE:
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
        return x.clamp(self.low, self.high)


def weights_sha256(model: Any) -> str:
    """The ``gankit.weights_sha256`` of ``model``: `gankit.runtime.model_sha256` of its bytes.

    It covers everything but the metadata (weights, graph, doc string), so set the rest of
    the model before calling this; the runtime checks it against the file on every load.
    """
    from gankit.runtime import model_sha256

    return model_sha256(model.SerializeToString())


def _require_export_tools() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(f"exporting needs {', '.join(missing)}, which is not installed. "
                                     f"Install the training tier with: {install_hint('train')}")


def _sample(card: ModelCard, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if card.noise == "uniform":
        z = torch.rand(n, card.z_dim, generator=gen) * 2 - 1
    else:
        z = torch.randn(n, card.z_dim, generator=gen)
    classes = torch.tensor(card.classes, dtype=torch.int64)
    labels = classes[torch.randint(0, len(classes), (n,), generator=gen)]
    return z, labels


def _native_size(module: nn.Module, card: ModelCard) -> int:
    z, labels = _sample(card, 2, torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = module(z, labels)
    except Exception as exc:  # a plugin's forward can fail any way; report it, not a traceback
        raise ModelFileError(f"cannot export: the generator failed on a test batch "
                             f"({type(exc).__name__}: {exc})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[:2] != (2, 1) \
            or out.shape[2] != out.shape[3] or out.shape[2] not in (28, 32):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelFileError(f"cannot export: the generator must return float images [N, 1, 28|32, 28|32], got {shape}")
    return int(out.shape[2])


def _trace(module: nn.Module, card: ModelCard) -> Any:
    """Run the dynamo exporter; return the ONNX ModelProto with the contract's names."""
    z, labels = _sample(card, 4, torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    onnx_logger = logging.getLogger("torch.onnx")
    old_level = onnx_logger.level
    # The exporter logs about optional torchvision ops and emits deprecation warnings that
    # mean nothing to a user exporting a digit generator.
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, (z, labels), dynamo=True, external_data=False, verbose=False,
                input_names=[INPUT_Z, INPUT_LABEL], output_names=[OUTPUT_IMAGE],
                dynamic_shapes=({0: batch}, {0: batch}),
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"cannot export: the ONNX exporter failed ({type(exc).__name__}: {first})") from None
    finally:
        onnx_logger.setLevel(old_level)
    return program.model_proto


def _check_signature(model: Any, card: ModelCard) -> None:
    """Make sure the traced graph has exactly the contract's inputs and output."""
    from onnx import TensorProto

    def dims(value_info):
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    inputs = {i.name: i for i in model.graph.input}
    problems = []
    if [i.name for i in model.graph.input] != [INPUT_Z, INPUT_LABEL]:
        problems.append(f"inputs are {list(inputs)}, expected [{INPUT_Z}, {INPUT_LABEL}]")
    else:
        z, lab = inputs[INPUT_Z], inputs[INPUT_LABEL]
        if z.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims(z)) != 2 or dims(z)[1] != card.z_dim \
                or not isinstance(dims(z)[0], str):
            problems.append(f"z is {dims(z)}, expected float32[N, {card.z_dim}] with a dynamic N")
        if lab.type.tensor_type.elem_type != TensorProto.INT64 or len(dims(lab)) != 1:
            problems.append(f"label is {dims(lab)}, expected int64[N]")
    outs = list(model.graph.output)
    if [o.name for o in outs] != [OUTPUT_IMAGE]:
        problems.append(f"outputs are {[o.name for o in outs]}, expected [{OUTPUT_IMAGE}]")
    elif dims(outs[0])[1:] != [1, IMAGE_SIZE, IMAGE_SIZE] or outs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        problems.append(f"image is {dims(outs[0])}, expected float32[N, 1, 28, 28]")
    if problems:
        raise ModelFileError("cannot export: the traced graph breaks the contract: " + "; ".join(problems))


def _parity(path: Path, module: nn.Module, card: ModelCard, batches: Sequence[int], seed: int) -> dict[int, float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    diffs: dict[int, float] = {}
    for n in batches:
        z, labels = _sample(card, int(n), gen)
        with torch.no_grad():
            want = module(z, labels).numpy()
        got = session.run([OUTPUT_IMAGE], {INPUT_Z: z.numpy(), INPUT_LABEL: labels.numpy()})[0]
        if got.shape != (n, 1, IMAGE_SIZE, IMAGE_SIZE):
            raise ModelFileError(f"parity check failed: batch {n} gave shape {got.shape} from onnxruntime")
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        # NaN compares false against any tolerance, so it must count as an infinite difference.
        diffs[int(n)] = float("inf") if not np.all(np.isfinite(diff)) else float(diff.max())
    return diffs


def export_generator(module: nn.Module, card: ModelCard, out_path: str | os.PathLike, *,
                     parity_batches: Sequence[int] = (1, 7, 256), tolerance: float = 1e-4,
                     seed: int = 0) -> ParityReport:
    """Export ``module(z, labels)`` to ``out_path`` as a contract ONNX file; return the parity.

    ``card`` describes the model; its ``weights_sha256`` is replaced by the hash of the
    exported initializers (and an empty ``created`` by the current UTC time). Raises
    `ModelFileError` (leaving no file) when export fails or parity exceeds ``tolerance``.
    """
    _require_export_tools()
    import onnx

    started = time.perf_counter()
    out_path = Path(out_path)
    if card.image_size != IMAGE_SIZE:
        raise ModelFileError(f"cannot export: the contract's images are {IMAGE_SIZE}x{IMAGE_SIZE}, "
                             f"the card says {card.image_size}")
    if not parity_batches:
        raise ModelFileError("cannot export without parity batches")
    was_training = module.training
    module.eval()
    try:
        native = _native_size(module, card)
        wrapped = _ContractModule(module, native, card.value_range).eval()
        model = _trace(wrapped, card)
        _check_signature(model, card)

        model.doc_string = f"gankit {card.plugin} generator ({card.label_mode}), classes {list(card.classes)}"
        sha = weights_sha256(model)
        card = dataclasses.replace(
            card, weights_sha256=sha,
            created=card.created or datetime.now(timezone.utc).replace(microsecond=0).isoformat())
        del model.metadata_props[:]
        for key, value in card.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:
            raise ModelFileError(f"cannot export: onnx.checker rejected the graph ({exc})") from None

        # Staged beside the target: parity is checked on the very file that is then renamed into place.
        with staged_file(out_path, "ONNX file", ModelFileError) as (handle, tmp):
            try:
                handle.write(model.SerializeToString())
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()  # closed before onnxruntime opens it, which some platforms need
            except OSError as exc:
                raise ModelFileError(f"cannot write {out_path}: {exc.strerror or exc}") from None
            diffs = _parity(tmp, wrapped, card, parity_batches, seed)
            bad = {n: d for n, d in diffs.items() if not d <= tolerance}
            if bad:
                worst = ", ".join(f"batch {n}: {d:.3g}" for n, d in bad.items())
                raise ModelFileError(f"export rejected: onnxruntime differs from torch by more than "
                                     f"{tolerance:g} ({worst}); no file written")
            size = tmp.stat().st_size
            try:
                commit(None, tmp, out_path)
            except OSError as exc:
                raise ModelFileError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    finally:
        module.train(was_training)
    return ParityReport(path=out_path, max_abs_diff=diffs, tolerance=tolerance, size_bytes=size,
                        weights_sha256=sha, seconds=time.perf_counter() - started, card=card,
                        resized_from=None if native == IMAGE_SIZE else native)


def card_for(source: Any) -> ModelCard:
    """The ModelCard for an export source from `gankit.training.export.source.load_export_source`."""
    import gankit

    spec = source.spec
    return ModelCard(
        gankit_version=gankit.__version__,
        contract_version=CONTRACT_VERSION,
        plugin=str(source.plugin),
        label_mode=str(source.label_mode),
        arch=str(spec.arch),
        z_dim=int(spec.z_dim),
        noise=str(source.noise),
        classes=tuple(int(c) for c in spec.classes),
        image_size=IMAGE_SIZE,
        value_range=tuple(float(v) for v in spec.value_range),
        training_steps=int(source.steps),
        dataset=str(source.dataset),
        created="",
        weights_sha256="",
    )


def default_export_path(path: str | os.PathLike) -> Path:
    """``exports/<run-name>.onnx`` for a run folder, its checkpoints folder, or one checkpoint.

    The run name is the folder directly under a ``runs`` folder when there is one in the
    path (``runs/mnist-a/checkpoints/step-000001000`` -> ``mnist-a``), else the last
    component that is not a checkpoint folder.
    """
    parts = Path(path).resolve().parts
    if "runs" in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index("runs")
        if i + 1 < len(parts):
            return Path("exports") / f"{parts[i + 1]}.onnx"
    name = Path(path).resolve()
    while name.name.startswith("step-") or name.name in ("checkpoints", "best"):
        name = name.parent
    return Path("exports") / f"{name.name or 'model'}.onnx"


def export_from_checkpoint(path: str | os.PathLike, out_path: str | os.PathLike | None = None, *,
                           tolerance: float = 1e-4) -> ParityReport:
    """Export the latest checkpoint of a run folder (or one checkpoint directory).

    An export whose file goes inside the run folder holds the folder's lock while it runs
    (`gankit.training.persist.lock`): a training run or a resume there stops it, and it
    stops them. One that writes elsewhere only reads the run.
    """
    from gankit.training.export.source import load_export_source

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such run folder or checkpoint")
    target = Path(out_path) if out_path is not None else default_export_path(path)
    with _lock_when_writing_into(path, target):
        source = load_export_source(path)
        module = source.export_module(source.generator) if source.export_module else source.generator
        if not isinstance(module, nn.Module):
            raise ModelFileError(f"plugin {source.plugin!r}: export_module must return a torch.nn.Module")
        return export_generator(module, card_for(source), target, tolerance=tolerance)


def run_folder_of(path: str | os.PathLike) -> Path:
    """The run folder a source lies in: itself, or the folder above ``checkpoints/<checkpoint>``."""
    folder = Path(os.path.realpath(path))
    if (folder / "manifest.json").is_file():  # one checkpoint directory
        folder = folder.parent
    if folder.name == "checkpoints":
        folder = folder.parent
    return folder


def _lock_when_writing_into(source: Path, target: Path):
    """The run folder's lock when the export writes inside that folder, else nothing.

    An export that writes elsewhere only reads the run, and may run beside a live
    training run (it reads the newest checkpoint again if that run prunes it meanwhile).
    """
    import contextlib

    from gankit.training.persist.lock import run_folder_lock

    folder = run_folder_of(source)
    if Path(os.path.realpath(target)).is_relative_to(folder):
        return run_folder_lock(folder, "export")
    return contextlib.nullcontext()
