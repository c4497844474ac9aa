"""A gankit ONNX model rewritten for torch-fidelity's ``GenerativeModelONNX``.

Training tier, but no torch: it needs ``onnx`` (graph editing) and ``onnxruntime``
(the parity check), so it also works on a shipped ``.onnx`` file without any run.

torch-fidelity scores a generator by calling it with ``(noise)`` or, when
``num_classes > 0``, ``(noise, class_index)``: noise float32 ``[B, z_size]`` of its
``z_type`` and class indices int64 ``[B]`` drawn from ``0 .. num_classes - 1``. It
expects uint8 RGB images ``[B, 3, H, W]`` back. A gankit model takes ``(z, label)``
with labels that are digit values (a ``--digits 3,8`` model's classes are 3 and 8,
not 0 and 1) and returns one float channel in its ``value_range``. The adapter is
the gankit graph with a few nodes on each side:

* inputs: ``z`` (and ``class_index`` for a model with labels). ``normal`` noise
  passes through; gankit's ``uniform`` noise (on [-1, 1]) is declared as
  torch-fidelity's ``uniform_0_1`` and mapped to ``2u - 1`` in the graph;
* labels: ``class_index`` picks the model's class id (a Gather on the class list);
  an unconditional model gets its one label as a constant;
* output: the same byte mapping as ``gankit generate`` (``images.to_uint8``: scale
  ``value_range`` to 0..255, round half to even, clip), repeated over three channels.

The file is refused by gankit's own runtime (its metadata says it is an adapter), so
it cannot be mistaken for a contract model. Before it is moved into place its output is
compared with ``gankit generate``'s bytes for the same latents: at most one grey level
apart (the graph scales in float32, gankit in float64, which can move a value sitting
on a rounding boundary), else nothing is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gankit.contract import ADAPTER_KEY, IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE, ModelCard
from gankit.errors import MissingDependencyError, ModelFileError, install_hint

__all__ = ["ADAPTER_KEY", "FidelityAdapter", "adapt_for_torch_fidelity", "default_adapter_path"]

ADAPTER_NAME = "torch-fidelity"
# torch-fidelity's names for the two noise distributions gankit models use.
Z_TYPES = {"normal": "normal", "uniform": "uniform_0_1"}
PARITY_BATCHES = (1, 7, 256)
_PREFIX = "gankit_adapter."  # names of the nodes and tensors the adapter adds


@dataclass(frozen=True)
class FidelityAdapter:
    """What was written, and the arguments torch-fidelity needs to load it."""

    path: Path
    source: Path
    z_size: int
    z_type: str
    num_classes: int  # 0 for an unconditional model, as torch-fidelity wants
    classes: tuple[int, ...]  # class id for each class index
    max_level_diff: int  # largest |adapter - gankit generate| in grey levels over the parity batches
    differing_pixels: int
    checked_pixels: int
    size_bytes: int

    def loader_call(self) -> str:
        """The Python line that loads this file in torch-fidelity."""
        return (f"torch_fidelity.GenerativeModelONNX({str(self.path)!r}, z_size={self.z_size}, "
                f"z_type={self.z_type!r}, num_classes={self.num_classes})")


def default_adapter_path(source: str | os.PathLike) -> Path:
    """``exports/NAME.torch-fidelity.onnx`` for ``exports/NAME.onnx`` (or a run's export path)."""
    source = Path(source)
    return source.with_name(f"{source.stem}.torch-fidelity.onnx")


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("the torch-fidelity adapter needs the onnx package, which is not installed. "
                                     f"Install the training tier with: {install_hint('train')}") from None
    return onnx


def _rename(graph: Any, old: str, new: str) -> None:
    """Point every top-level reference to tensor ``old`` at ``new`` (gankit graphs have no subgraphs)."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for info in graph.value_info:
        if info.name == old:
            info.name = new


def _build(model: Any, card: ModelCard) -> tuple[Any, int]:
    """Rewrite ``model`` (a gankit contract graph) in place into the adapter; return (it, num_classes)."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise ModelFileError("cannot adapt: the graph has control-flow subgraphs, which the adapter does not rewrite")
    inner_z, inner_label, inner_image = (_PREFIX + n for n in (INPUT_Z, INPUT_LABEL, OUTPUT_IMAGE))
    for old, new in ((INPUT_Z, inner_z), (INPUT_LABEL, inner_label), (OUTPUT_IMAGE, inner_image)):
        _rename(graph, old, new)
    del graph.input[:]
    del graph.output[:]

    def const(name: str, value: Any) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), _PREFIX + name))
        return _PREFIX + name

    head = []  # nodes between the adapter's inputs and the gankit graph's
    graph.input.append(helper.make_tensor_value_info(INPUT_Z, TensorProto.FLOAT, ["N", card.z_dim]))
    if card.noise == "uniform":  # torch-fidelity's uniform_0_1 -> gankit's uniform on [-1, 1]
        head += [helper.make_node("Mul", [INPUT_Z, const("two", np.float32(2))], [_PREFIX + "z2"]),
                  helper.make_node("Sub", [_PREFIX + "z2", const("one", np.float32(1))], [inner_z])]
    else:
        head.append(helper.make_node("Identity", [INPUT_Z], [inner_z]))

    classes = np.asarray(card.classes, dtype=np.int64)
    num_classes = 0 if card.label_mode == "none" else len(classes)
    if num_classes:
        graph.input.append(helper.make_tensor_value_info("class_index", TensorProto.INT64, ["N"]))
        head.append(helper.make_node("Gather", [const("classes", classes), "class_index"], [inner_label], axis=0))
    else:  # one label per row, whatever the batch: ConstantOfShape(Shape(z)[0:1])
        head += [helper.make_node("Shape", [INPUT_Z], [_PREFIX + "z_shape"]),
                  helper.make_node("Gather", [_PREFIX + "z_shape", const("first", np.asarray([0], np.int64))],
                                   [_PREFIX + "batch"], axis=0),
                  helper.make_node("ConstantOfShape", [_PREFIX + "batch"], [inner_label],
                                   value=numpy_helper.from_array(classes[:1]))]

    low, high = card.value_range
    tail = [  # gankit's image -> uint8 RGB
        helper.make_node("Sub", [inner_image, const("low", np.float32(low))], [_PREFIX + "shifted"]),
        helper.make_node("Mul", [_PREFIX + "shifted", const("scale", np.float32(255.0 / (high - low)))],
                         [_PREFIX + "scaled"]),
        # NaN pixels: gankit generate makes them black; Max/Min with 0/255 would keep NaN,
        # and a NaN cast to uint8 is undefined, so they are replaced first.
        helper.make_node("IsNaN", [_PREFIX + "scaled"], [_PREFIX + "nan"]),
        helper.make_node("Where", [_PREFIX + "nan", const("zero", np.float32(0)), _PREFIX + "scaled"],
                         [_PREFIX + "finite"]),
        helper.make_node("Round", [_PREFIX + "finite"], [_PREFIX + "rounded"]),  # half to even, as np.rint
        helper.make_node("Clip", [_PREFIX + "rounded", const("zero_f", np.float32(0)),
                                  const("max_f", np.float32(255))], [_PREFIX + "clipped"]),
        helper.make_node("Cast", [_PREFIX + "clipped"], [_PREFIX + "grey"], to=TensorProto.UINT8),
        helper.make_node("Concat", [_PREFIX + "grey"] * 3, [OUTPUT_IMAGE], axis=1),
    ]
    # The adapter's input nodes go first so the graph stays topologically sorted.
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(head + body + tail)
    graph.output.append(helper.make_tensor_value_info(OUTPUT_IMAGE, TensorProto.UINT8,
                                                      ["N", 3, IMAGE_SIZE, IMAGE_SIZE]))

    del model.metadata_props[:]
    meta = {ADAPTER_KEY: ADAPTER_NAME,
            "gankit.adapter.source_weights_sha256": card.weights_sha256,
            "gankit.adapter.source_plugin": card.plugin,
            "gankit.adapter.classes": json.dumps([int(c) for c in classes]),
            "torch_fidelity.z_size": str(card.z_dim),
            "torch_fidelity.z_type": Z_TYPES[card.noise],
            "torch_fidelity.num_classes": str(num_classes)}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"torch-fidelity adapter of a gankit {card.plugin} generator: inputs "
                        f"{'(z, class_index)' if num_classes else '(z)'}, output uint8 [N, 3, 28, 28]")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelFileError(f"cannot adapt: onnx.checker rejected the rewritten graph ({exc})") from None
    return model, num_classes


def _parity(data: bytes, gen: Any, num_classes: int, seed: int) -> tuple[int, int, int]:
    """(largest grey-level difference, pixels that differ, pixels checked) against gankit's bytes."""
    import onnxruntime as ort

    from gankit.images import to_uint8

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own Fail/InvalidGraph types
        raise ModelFileError(f"cannot adapt: onnxruntime cannot load the rewritten graph ({exc})") from None
    rng = np.random.default_rng(seed)
    card = gen.card
    worst = differing = checked = 0
    for n in PARITY_BATCHES:
        z = gen.sample_latent(n, rng)
        # What torch-fidelity would feed: its uniform_0_1 for our uniform, the same normal otherwise.
        fed = (z + 1) / 2 if card.noise == "uniform" else z
        index = rng.integers(0, max(num_classes, 1), n).astype(np.int64)
        feeds = {INPUT_Z: fed.astype(np.float32)}
        if num_classes:
            feeds["class_index"] = index
        try:
            got = session.run(None, feeds)[0]
        except Exception as exc:
            raise ModelFileError(f"cannot adapt: the rewritten graph fails on a batch of {n} ({exc})") from None
        labels = np.asarray(card.classes, dtype=np.int64)[index]
        want = to_uint8(gen.generate_float(z, labels), card.value_range)
        if got.dtype != np.uint8 or got.shape != (n, 3, IMAGE_SIZE, IMAGE_SIZE):
            raise ModelFileError(f"cannot adapt: the rewritten graph gave {got.dtype} {list(got.shape)}, "
                                 f"expected uint8 [{n}, 3, 28, 28]")
        diff = np.abs(got.astype(np.int16) - want[:, None].astype(np.int16))
        worst, differing, checked = max(worst, int(diff.max())), differing + int(np.count_nonzero(diff)), checked + diff.size
    return worst, differing, checked


def adapt_for_torch_fidelity(source: str | os.PathLike, out_path: str | os.PathLike | None = None, *,
                             seed: int = 0) -> FidelityAdapter:
    """Write the torch-fidelity adapter of the gankit model ``source``; return what it is.

    ``source`` is checked by `gankit.runtime.load_generator` first (hash, external data,
    a probe run), so only a sound gankit model is rewritten. Raises `ModelFileError`,
    leaving no file, when the rewrite or its parity check fails.
    """
    onnx = _require_onnx()
    from gankit.atomic import write_atomic
    from gankit.runtime import load_generator, model_sha256

    source = Path(source)
    gen = load_generator(source, threads=1)
    target = Path(out_path) if out_path is not None else default_adapter_path(source)
    if target.resolve() == source.resolve():
        raise ModelFileError(f"{target}: the adapter would overwrite the model it is made from")
    # Read again for editing: the same bytes load_generator checked, or the file changed in between.
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    if model_sha256(raw) != gen.card.weights_sha256:
        raise ModelFileError(f"{source}: the file changed while it was being read; nothing written")
    model = onnx.load_model_from_string(raw)
    model, num_classes = _build(model, gen.card)
    data = model.SerializeToString()
    worst, differing, checked = _parity(data, gen, num_classes, seed)
    if worst > 1:
        raise ModelFileError(f"cannot adapt: the adapter's bytes differ from gankit generate's by up to {worst} "
                             f"grey levels ({differing} of {checked} pixels); no file written")
    write_atomic(target, data, "ONNX file", ModelFileError)
    return FidelityAdapter(path=target, source=source, z_size=gen.card.z_dim, z_type=Z_TYPES[gen.card.noise],
                           num_classes=num_classes, classes=tuple(gen.card.classes), max_level_diff=worst,
                           differing_pixels=differing, checked_pixels=checked, size_bytes=len(data))
