"""Run an exported gankit generator with onnxruntime alone, treating the file as hostile.

Light tier (numpy, onnxruntime; never torch, never onnx). `load_generator` checks a model
file before trusting it:

1. it exists, is a regular file, and is at most `MAX_MODEL_BYTES`;
2. it walks the protobuf structure itself (a few dozen lines, since the ``onnx`` package
   is not in the light tier) to find every tensor stored as external data, and refuses
   any whose location is absolute or resolves (symlinks included) outside the model's
   folder, before onnxruntime opens anything. That walk also catches truncated files;
3. onnxruntime parses the model (a text file or a corrupt one fails here);
4. the gankit metadata parses into a valid `ModelCard`;
5. the inputs and output match the contract: ``z float32[N, Z]`` with Z from the card,
   ``label int64[N]``, ``image float32[N, 1, 28, 28]``, with a dynamic N.

Each failure is a `ModelFileError` naming the file and the problem. A model without
external data (every gankit export) is handed to onnxruntime as the very bytes that were
checked, so the file cannot be swapped between the check and the load.

Shipped models: the default model is ``gankit/assets/conditional.onnx``, package data of
the ``gankit`` package (pyproject's ``[tool.setuptools.package-data] gankit =
["assets/*"]``), so it travels inside the wheel and lands beside this module on
``pip install``. The release step copies the trained ``exports/conditional.onnx`` there.
In a source checkout where that copy has not been made yet, ``exports/conditional.onnx``
at the checkout root is used instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.contract import IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE, ModelCard
from gankit.errors import ModelFileError, UsageError

__all__ = ["OnnxGenerator", "load_generator", "shipped_model_path", "default_threads", "MAX_MODEL_BYTES", "MAX_IMAGES"]

# A per-digit MLP generator with 10 nets is ~60 MB; anything far past that is not ours.
MAX_MODEL_BYTES = 256 * 1024 * 1024
# Images one call may produce (784 MB of uint8); more is almost surely a typo.
MAX_IMAGES = 1_000_000
# Rows per onnxruntime call. Chunks of 256 to 1024 rows ran within noise of each other
# (bench/bench_generate.py); smaller ones pay per-call overhead. 1024 rows keep a call's
# float buffers at ~3 MB of output plus ~4 MB of hidden activations.
CHUNK = 1024
SHIPPED_MODEL = "conditional.onnx"
LABEL_MODES = ("none", "per-class", "conditional")


def shipped_model_path() -> Path:
    """Where the default (shipped) conditional model is, or ModelFileError if it is absent."""
    here = Path(__file__).resolve().parent
    candidates = [here / "assets" / SHIPPED_MODEL, here.parent / "exports" / SHIPPED_MODEL]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        "no shipped model found (looked for " + ", ".join(str(c) for c in candidates) + "); "
        "pass a model file with --model PATH"
    )


# -- a minimal protobuf reader: just enough of the ONNX schema to find external data -------

class _Malformed(Exception):
    pass


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Malformed("varint longer than 10 bytes")


def _fields(buf: bytes, start: int, end: int):
    """Yield ``(field_number, wire_type, value)``; a length-delimited value is ``(start, end)``."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise _Malformed("a field runs past the end of the file (truncated?)")
            value = (pos, pos + length)
            pos += length
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise _Malformed(f"wire type {wire}")
        if pos > end:
            raise _Malformed("a field runs past the end of the file (truncated?)")
        yield field, wire, value


# Field numbers from onnx.proto3 (ModelProto, GraphProto, NodeProto, AttributeProto,
# TensorProto, SparseTensorProto, FunctionProto, TrainingInfoProto).
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTR, _FUNCTION_NODE = 5, 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_MAX_DEPTH = 64


class _ExternalRefs:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.locations: list[str] = []

    def _sub(self, value, wire):
        if wire != 2:
            raise _Malformed("expected a message field")
        return value

    def model(self, start: int, end: int) -> bool:
        has_graph = False
        for field, wire, value in _fields(self.buf, start, end):
            if field == _MODEL_GRAPH:
                has_graph = True
                self.graph(*self._sub(value, wire), 0)
            elif field == _MODEL_TRAINING:
                for f, w, v in _fields(self.buf, *self._sub(value, wire)):
                    if f in (1, 2):  # initialization and algorithm graphs
                        self.graph(*self._sub(v, w), 0)
            elif field == _MODEL_FUNCTIONS:
                for f, w, v in _fields(self.buf, *self._sub(value, wire)):
                    if f == _FUNCTION_NODE:
                        self.node(*self._sub(v, w), 0)
        return has_graph

    def graph(self, start: int, end: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Malformed("subgraphs nested too deeply")
        for field, wire, value in _fields(self.buf, start, end):
            if field == _GRAPH_NODE:
                self.node(*self._sub(value, wire), depth)
            elif field == _GRAPH_INIT:
                self.tensor(*self._sub(value, wire))
            elif field == _GRAPH_SPARSE_INIT:
                self.sparse(*self._sub(value, wire))

    def node(self, start: int, end: int, depth: int) -> None:
        for field, wire, value in _fields(self.buf, start, end):
            if field != _NODE_ATTR:
                continue
            for f, w, v in _fields(self.buf, *self._sub(value, wire)):
                if f in (_ATTR_T, _ATTR_TENSORS):
                    self.tensor(*self._sub(v, w))
                elif f in (_ATTR_G, _ATTR_GRAPHS):
                    self.graph(*self._sub(v, w), depth + 1)
                elif f in (_ATTR_SPARSE, _ATTR_SPARSES):
                    self.sparse(*self._sub(v, w))

    def sparse(self, start: int, end: int) -> None:
        for field, wire, value in _fields(self.buf, start, end):
            if field in (1, 2):  # values, indices
                self.tensor(*self._sub(value, wire))

    def tensor(self, start: int, end: int) -> None:
        external = False
        location = None
        for field, wire, value in _fields(self.buf, start, end):
            if field == _TENSOR_LOCATION and wire == 0:
                external = external or value == 1  # DataLocation.EXTERNAL
            elif field == _TENSOR_EXTERNAL:
                external = True
                key = val = None
                for f, w, v in _fields(self.buf, *self._sub(value, wire)):
                    if f in (1, 2) and w == 2:
                        text = self.buf[v[0]:v[1]].decode("utf-8", errors="strict")
                        key, val = (text, val) if f == 1 else (key, text)
                if key == "location":
                    location = val
        if external:
            if location is None:
                raise _Malformed("a tensor is stored externally but names no location")
            self.locations.append(location)


def _check_external(path: Path, locations: list[str]) -> None:
    folder = path.parent
    for location in locations:
        try:
            target = (folder / location).resolve()
        except (OSError, ValueError):  # a NUL byte, a symlink loop, ...
            raise ModelFileError(f"{path}: refusing external data at {location!r}: not a usable path") from None
        if not location or os.path.isabs(location) or not target.is_relative_to(folder):
            raise ModelFileError(f"{path}: refusing external data at {location!r}: it lies outside "
                                 f"the model's folder {folder}")
        if not target.is_file():
            raise ModelFileError(f"{path}: its external data file {location!r} is missing")


# -- loading --------------------------------------------------------------------------------

def default_threads() -> int:
    """Intra-op threads for a session: the CPUs this process may use, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 8))


def _session_options(threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Measured on the project's 2-core machines (bench/bench_generate.py --sweep): a batch
    # of 1024 costs the same CPU time on 1 or 2 threads, so 2 threads nearly halve its wall
    # time on an idle machine, and batch 1 is unaffected (~0.24 ms). Spinning threads
    # only burn a core while waiting: with other work on the machine they made batch 1024
    # 30-40% slower, so they are off. Graph optimisation level made no measurable
    # difference for these MLPs (session creation ~6 ms CPU at every level); ALL is kept
    # for the per-class graphs, whose per-class weight slices it constant-folds.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initializers are not the user's business
    return opts


def _describe(args) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else (d or "?") for d in a.shape]}
            for a in args]


def _check_io(path: Path, session, card: ModelCard) -> None:
    inputs = {a.name: a for a in session.get_inputs()}
    outputs = session.get_outputs()
    problems = []

    def dynamic(dim) -> bool:
        return not isinstance(dim, int)

    if sorted(inputs) != sorted([INPUT_Z, INPUT_LABEL]):
        problems.append(f"inputs are {sorted(inputs)}, expected '{INPUT_Z}' and '{INPUT_LABEL}'")
    else:
        z, lab = inputs[INPUT_Z], inputs[INPUT_LABEL]
        if z.type != "tensor(float)" or len(z.shape) != 2 or z.shape[1] != card.z_dim or not dynamic(z.shape[0]):
            problems.append(f"input z is {z.type} {z.shape}, expected tensor(float) [N, {card.z_dim}] (z_dim from "
                            "its metadata) with a dynamic N")
        if lab.type != "tensor(int64)" or len(lab.shape) != 1 or not dynamic(lab.shape[0]):
            problems.append(f"input label is {lab.type} {lab.shape}, expected tensor(int64) [N]")
    if [o.name for o in outputs] != [OUTPUT_IMAGE]:
        problems.append(f"outputs are {[o.name for o in outputs]}, expected ['{OUTPUT_IMAGE}']")
    else:
        out = outputs[0]
        if out.type != "tensor(float)" or len(out.shape) != 4 or list(out.shape[1:]) != [1, IMAGE_SIZE, IMAGE_SIZE]:
            problems.append(f"output image is {out.type} {out.shape}, expected tensor(float) [N, 1, 28, 28]")
    if problems:
        raise ModelFileError(f"{path}: does not match the gankit ONNX contract: " + "; ".join(problems))


def _check_card(path: Path, meta: dict[str, str]) -> ModelCard:
    try:
        card = ModelCard.from_metadata(meta)
    except ValueError as exc:
        raise ModelFileError(f"{path}: not a gankit model ({exc})") from None
    low, high = card.value_range
    problems = []
    if card.label_mode not in LABEL_MODES:
        problems.append(f"label_mode {card.label_mode!r} is not one of {', '.join(LABEL_MODES)}")
    if card.image_size != IMAGE_SIZE:
        problems.append(f"image_size is {card.image_size}, the contract says {IMAGE_SIZE}")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        problems.append(f"value_range {list(card.value_range)} is not a finite low < high")
    if len(set(card.classes)) != len(card.classes) or min(card.classes) < 0:
        problems.append(f"classes {list(card.classes)} are not distinct non-negative ids")
    if problems:
        raise ModelFileError(f"{path}: bad gankit metadata: " + "; ".join(problems))
    return card


def load_generator(path: str | os.PathLike | None = None, *, threads: int | None = None) -> "OnnxGenerator":
    """Open and check an exported generator (default: the shipped conditional model).

    ``threads``: onnxruntime intra-op threads (default `default_threads()`).
    """
    import onnxruntime as ort

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a positive whole number, got {threads!r}")
    given = Path(path) if path is not None else shipped_model_path()
    if not given.exists():
        raise ModelFileError(f"{given}: no such model file")
    if not given.is_file():
        raise ModelFileError(f"{given}: not a file")
    resolved = given.resolve()
    too_big = f"{given}: larger than {MAX_MODEL_BYTES // (1024 * 1024)} MiB; not a gankit model"
    try:
        if resolved.stat().st_size > MAX_MODEL_BYTES:
            raise ModelFileError(too_big)
        with open(resolved, "rb") as f:
            data = f.read(MAX_MODEL_BYTES + 1)  # the file may have grown since the stat
    except OSError as exc:
        raise ModelFileError(f"{given}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFileError(too_big)
    if not data:
        raise ModelFileError(f"{given}: the file is empty")

    refs = _ExternalRefs(data)
    try:
        has_graph = refs.model(0, len(data))
    except (_Malformed, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{given}: not a valid ONNX file (corrupt or truncated: {exc})") from None
    if not has_graph:
        raise ModelFileError(f"{given}: not a valid ONNX file (no graph)")
    _check_external(resolved, refs.locations)

    try:
        # With external data onnxruntime must read the folder itself; otherwise it gets the
        # very bytes checked above.
        source = str(resolved) if refs.locations else data
        session = ort.InferenceSession(source, _session_options(threads or default_threads()),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        detail = " ".join(str(exc).split())[:300]
        raise ModelFileError(f"{given}: onnxruntime cannot load it as an ONNX model ({detail})") from None
    card = _check_card(given, dict(session.get_modelmeta().custom_metadata_map))
    _check_io(given, session, card)
    return OnnxGenerator(given, card, session, size_bytes=len(data))


class OnnxGenerator:
    """An exported generator, checked and ready: ``generate(digit=7, n=16, seed=0)``."""

    def __init__(self, path: Path, card: ModelCard, session, size_bytes: int):
        self.path = Path(path)
        self.card = card
        self.size_bytes = size_bytes
        self._session = session

    def __repr__(self) -> str:
        return (f"OnnxGenerator({str(self.path)!r}, plugin={self.card.plugin!r}, "
                f"label_mode={self.card.label_mode!r}, classes={list(self.card.classes)})")

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """Name, type and shape of each graph input."""
        return _describe(self._session.get_inputs())

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """Name, type and shape of each graph output."""
        return _describe(self._session.get_outputs())

    @property
    def conditional(self) -> bool:
        """Whether the model can be asked for a particular digit."""
        return self.card.label_mode != "none"

    # -- inputs -----------------------------------------------------------------------

    def check_digit(self, digit: Any) -> int:
        """Return ``digit`` as an int, or raise UsageError if this model cannot draw it."""
        if isinstance(digit, (bool, np.bool_)) or not isinstance(digit, (int, np.integer)):
            raise UsageError(f"a digit must be a whole number, got {digit!r}")
        digit = int(digit)
        if not self.conditional:
            raise UsageError(f"{self.path.name} is an unconditional model: it cannot be asked for a "
                             "particular digit (leave the digit out)")
        if digit not in self.card.classes:
            trained = ", ".join(str(c) for c in self.card.classes)
            if self.card.label_mode == "per-class":
                raise UsageError(f"{self.path.name} was trained on digit(s) {trained} only; it cannot draw {digit}")
            raise UsageError(f"digit {digit} is not one this model can draw (it knows {trained})")
        return digit

    def labels_for(self, digit: int | Sequence[int] | None, n: int) -> np.ndarray:
        """The int64 labels `generate` uses: see its docstring."""
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise UsageError(f"the number of images must be a positive whole number, got {n!r}")
        if digit is None:
            labels = np.resize(np.asarray(self.card.classes, dtype=np.int64), int(n))
        elif isinstance(digit, (int, np.integer)) and not isinstance(digit, (bool, np.bool_)):
            labels = np.full(int(n), self.check_digit(digit), dtype=np.int64)
        elif isinstance(digit, (str, bytes)) or not isinstance(digit, Sequence) and not isinstance(digit, np.ndarray):
            raise UsageError(f"digit must be a whole number, a list of them, or None; got {digit!r}")
        else:
            digits = [self.check_digit(d) for d in digit]
            if not digits:
                raise UsageError("the list of digits is empty")
            labels = np.repeat(np.asarray(digits, dtype=np.int64), int(n))
        if labels.size > MAX_IMAGES:
            raise UsageError(f"{labels.size} images asked for; at most {MAX_IMAGES} per call")
        return labels

    def sample_latent(self, n: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
        """``n`` latent vectors float32 [n, Z] from the card's noise (uniform is on [-1, 1])."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if self.card.noise == "uniform":
            return rng.uniform(-1.0, 1.0, size=(int(n), self.card.z_dim)).astype(np.float32)
        return rng.standard_normal(size=(int(n), self.card.z_dim), dtype=np.float32)

    # -- running ------------------------------------------------------------------------

    def _run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = self._session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_LABEL: labels})[0]
        if out.shape != (len(z), 1, IMAGE_SIZE, IMAGE_SIZE) or out.dtype != np.float32:
            raise ModelFileError(f"{self.path}: returned {out.dtype} {list(out.shape)} for a batch of {len(z)}, "
                                 "expected float32 [N, 1, 28, 28]")
        return out

    def generate_float(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Raw generator output float32 [N, 1, 28, 28] for ``z[N, Z]`` and int ``labels[N]``."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        labels = np.asarray(labels)
        if z.ndim != 2 or z.shape[1] != self.card.z_dim or z.shape[0] == 0:
            raise UsageError(f"z must be [N, {self.card.z_dim}] with N >= 1, got {list(z.shape)}")
        if labels.shape != (z.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise UsageError(f"labels must be integers shaped [{z.shape[0]}], got {labels.dtype} {list(labels.shape)}")
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if z.shape[0] <= CHUNK:
            return self._run(z, labels)
        return np.concatenate([self._run(z[i:i + CHUNK], labels[i:i + CHUNK])
                               for i in range(0, z.shape[0], CHUNK)])

    def generate(self, digit: int | Sequence[int] | None = None, n: int = 16,
                 seed: int | None = 0) -> np.ndarray:
        """Draw digits as uint8 images [count, 28, 28] (0 = black background).

        ``digit``: one class id (``n`` images of it), a sequence of ids (``n`` images of
        each, in order), or None (``n`` images spread over the model's classes, cycling
        through them; an unconditional model ignores labels). The same ``seed`` gives the
        same pixels; ``seed=None`` draws fresh noise.
        """
        from gankit.images import to_uint8

        labels = self.labels_for(digit, n)
        rng = np.random.default_rng(seed)
        out = np.empty((labels.size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        # The latent is drawn chunk by chunk from one stream, which gives the same numbers as
        # one big draw, while keeping memory at one chunk's worth of floats.
        for i in range(0, labels.size, CHUNK):
            part = labels[i:i + CHUNK]
            images = self._run(self.sample_latent(part.size, rng), part)
            if not np.all(np.isfinite(images)):
                raise ModelFileError(f"{self.path}: the model produced non-finite pixels")
            out[i:i + part.size] = to_uint8(images, self.card.value_range)
        return out
