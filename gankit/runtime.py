"""Run an exported gankit generator with onnxruntime alone, treating the file as hostile.

Light tier (numpy, onnxruntime; never torch, never onnx). `load_generator` checks a model
file before trusting it:

1. it exists, is a regular file, and is at most `MAX_MODEL_BYTES`;
2. a bounded scan of its protobuf structure (`MAX_RECORDS` fields at most) refuses
   truncated and padded files before onnxruntime's parser would spend gigabytes on them;
3. any reference to external data is refused: the contract is one self-contained file,
   so nothing outside it is ever opened (see `_refuse_external_data` for why a byte
   check suffices);
4. onnxruntime parses the very bytes that were checked (a swap of the file between the
   check and the load changes nothing), with its CPU memory capped at `ARENA_BYTES`;
5. the gankit metadata parses into a valid `ModelCard` (valid UTF-8, control characters
   stripped, at most `MAX_CLASSES` classes);
6. the inputs and output match the contract: ``z float32[N, Z]`` with Z from the card,
   ``label int64[N]``, ``image float32[N, 1, 28, 28]``, with a dynamic N;
7. ``gankit.weights_sha256`` matches the file (`model_sha256`), so a flipped bit is caught;
8. a batch of two rows runs and gives the contract's output shape.

Each failure is a `ModelFileError` naming the file and the problem, as does a failure of
onnxruntime at run time.

Shipped models: the default model is ``gankit/assets/conditional.onnx``, package data of
the ``gankit`` package (pyproject's ``[tool.setuptools.package-data] gankit =
["assets/*"]``), so it travels inside the wheel and lands beside this module on
``pip install``. The release step copies the trained ``exports/conditional.onnx`` there.
In a source checkout where that copy has not been made yet, ``exports/conditional.onnx``
at the checkout root is used instead.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.contract import ADAPTER_KEY, IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE, ModelCard
from gankit.errors import ModelFileError, UsageError

__all__ = ["OnnxGenerator", "load_generator", "shipped_model_path", "default_threads", "model_sha256", "check_seed",
           "MAX_MODEL_BYTES", "MAX_IMAGES", "MAX_CLASSES", "MAX_SEED"]

# A per-digit MLP generator with 10 nets is ~60 MB; anything far past that is not ours.
MAX_MODEL_BYTES = 256 * 1024 * 1024
# Images one call may produce (784 MB of uint8); more is almost surely a typo.
MAX_IMAGES = 1_000_000
# Rows per onnxruntime call. Chunks of 256 to 1024 rows ran within noise of each other
# (bench/bench_generate.py); smaller ones pay per-call overhead. 1024 rows keep a call's
# float buffers at ~3 MB of output plus ~4 MB of hidden activations.
CHUNK = 1024
# gankit's data sets have 10 classes; a card claiming thousands is not one of ours, and
# `generate --all` draws one grid row per class.
MAX_CLASSES = 256
# numpy seeds any non-negative int, torch only 64-bit ones: one range for both.
MAX_SEED = 2**64 - 1
# onnxruntime's CPU memory for all sessions of this process together (weights, activations,
# outputs). A CHUNK of the shipped conditional DCGAN needs ~60 MB; a hostile graph asking
# for tens of GB gets an error from the capped arena instead of the machine's memory.
ARENA_BYTES = 2 << 30
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


# -- a bounded structural scan: what onnxruntime's parser would have to build ------------------
#
# onnxruntime's C++ protobuf parser turns every field record into an object: 10 MB of empty
# `value_info` records cost it 526 MB and 1.6 s (measured), so a 256 MB padded file would
# need ~12 GB. This scan counts the records of every message onnxruntime materialises and
# gives up past `MAX_RECORDS`, before onnxruntime sees the file. It looks at no values and
# decides nothing about external data (see `_refuse_external_data`); it also yields the
# top-level records that `model_sha256` hashes.

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


def _records(buf: bytes, start: int, end: int):
    """Yield ``(field, wire, record_start, value_start, value_end)`` for one message's fields."""
    pos = start
    while pos < end:
        record = pos
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            _, pos = _varint(buf, pos, end)
            value = pos
        elif wire == 2:
            length, value = _varint(buf, pos, end)
            pos = value + length
        elif wire == 1:
            value, pos = pos, pos + 8
        elif wire == 5:
            value, pos = pos, pos + 4
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise _Malformed(f"wire type {wire}")
        if pos > end:
            raise _Malformed("a field runs past the end of its message (truncated?)")
        yield field, wire, record, value, pos


# Message-typed fields of onnx.proto (IR 11), by message: field number -> message kind.
# Every message kind is listed, leaves included, so a padded leaf is counted too.
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 8: "leaf", 14: "leaf", 20: "training", 25: "function", 26: "leaf"},
    "training": {1: "graph", 2: "graph", 3: "leaf", 4: "leaf"},
    "graph": {1: "node", 5: "tensor", 11: "value_info", 12: "value_info", 13: "value_info",
              14: "annotation", 15: "sparse", 16: "leaf"},
    "annotation": {2: "leaf"},
    "node": {5: "attribute", 9: "leaf", 10: "node_device"},
    "node_device": {2: "sharding"},
    "sharding": {3: "leaf", 4: "sharded_dim"},
    "sharded_dim": {2: "leaf"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 14: "type", 15: "type",
                  22: "sparse", 23: "sparse"},
    "value_info": {2: "type", 4: "leaf"},
    "type": {1: "tensor_type", 4: "wrapped_type", 5: "map_type", 7: "leaf", 8: "tensor_type",
             9: "wrapped_type"},
    "tensor_type": {2: "shape"},
    "wrapped_type": {1: "type"},
    "map_type": {2: "type"},
    "shape": {1: "leaf"},
    "tensor": {3: "leaf", 13: "leaf", 16: "leaf"},
    "sparse": {1: "tensor", 2: "tensor"},
    "function": {7: "node", 9: "leaf", 11: "attribute", 12: "value_info", 14: "leaf"},
    "leaf": {},
}
_METADATA_FIELD = 14  # ModelProto.metadata_props
_GRAPH_FIELD = 7
# The shipped per-digit model has ~6,600 records and the conditional one ~1,000; 100,000 is
# 15 times the larger, and counting that many takes ~0.1 s (0.4 s on a busy 2-core machine).
MAX_RECORDS = 100_000
_MAX_DEPTH = 64


def _scan(data: bytes) -> tuple[list[tuple[int, int]], bool]:
    """Check the structure; return the spans of the top-level records outside metadata_props."""
    spans: list[tuple[int, int]] = []
    has_graph = False
    stack: list[tuple[str, int, int, int]] = []
    count = 0
    for field, wire, record, value, end in _records(data, 0, len(data)):
        count += 1
        if count > MAX_RECORDS:
            raise _Malformed(f"more than {MAX_RECORDS:,} protobuf fields; padded or not a gankit model")
        if field != _METADATA_FIELD:
            spans.append((record, end))
        has_graph = has_graph or field == _GRAPH_FIELD
        if field in _SCHEMA["model"]:
            if wire != 2:
                raise _Malformed(f"model field {field} is not a message")
            stack.append((_SCHEMA["model"][field], value, end, 1))
    while stack:
        kind, start, stop, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _Malformed("messages nested too deeply")
        children = _SCHEMA[kind]
        for field, wire, _, value, end in _records(data, start, stop):
            count += 1
            if count > MAX_RECORDS:
                raise _Malformed(f"more than {MAX_RECORDS:,} protobuf fields; padded or not a gankit model")
            child = children.get(field)
            if child is not None:
                if wire != 2:
                    raise _Malformed(f"{kind} field {field} is not a message")
                stack.append((child, value, end, depth + 1))
    return spans, has_graph


def model_sha256(data: bytes) -> str:
    """The ``gankit.weights_sha256`` of a serialized model: see `gankit.contract`.

    sha256 over the file's top-level protobuf records in file order, leaving out the
    metadata_props records, which hold the hash itself. That covers the weights, the
    graph and any functions, so a flipped bit anywhere outside the metadata is caught.
    Raises ValueError if ``data`` is not a well-formed model.
    """
    try:
        spans, _ = _scan(data)
    except _Malformed as exc:
        raise ValueError(str(exc)) from None
    return _digest(data, spans)


def _digest(data: bytes, spans: list[tuple[int, int]]) -> str:
    h = hashlib.sha256()
    view = memoryview(data)
    for start, end in spans:
        h.update(view[start:end])
    return h.hexdigest()


# onnxruntime resolves a tensor's external data through an entry whose key is exactly
# "location" (onnx.proto's ExternalDataInfo), and protobuf stores that string as its bytes,
# contiguous and uncompressed. A file without those 8 bytes therefore cannot make
# onnxruntime open any other file, whichever message holds the tensor (graph initializers,
# node or function attributes, subgraphs, sparse tensors) and whatever onnxruntime's own
# path checks do. The contract says one self-contained file, so a file with them is
# refused outright, before onnxruntime parses anything.
_EXTERNAL_KEY = b"location"


def _refuse_external_data(path: Path, data: bytes) -> None:
    if _EXTERNAL_KEY in data:
        raise ModelFileError(
            f"{path}: refusing a model that refers to external data (it contains the key "
            f"'{_EXTERNAL_KEY.decode()}'); a gankit model is one self-contained .onnx file. "
            "Re-export it without external data")


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
    # Failures come back as exceptions and are reported as one line; onnxruntime's own log
    # would print them a second time, with C++ source locations, and its warnings (unused
    # initializers) are not the user's business either.
    opts.log_severity_level = 4
    # Only the protobuf parser: an ORT-format (flatbuffer) file is never a gankit model.
    opts.add_session_config_entry("session.load_model_format", "ONNX")
    _register_capped_arena()
    opts.add_session_config_entry("session.use_env_allocators", "1")
    return opts


_ARENA_REGISTERED = False


def _register_capped_arena() -> None:
    """Give this process one CPU arena of at most `ARENA_BYTES`, shared by every session."""
    global _ARENA_REGISTERED
    if _ARENA_REGISTERED:
        return
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        # max_mem, then -1 for the defaults of extend strategy, initial chunk and dead bytes.
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(ARENA_BYTES, -1, -1, -1))
    except Exception as exc:  # someone else in this process registered one first: use theirs
        if "already" not in str(exc).lower():
            raise
    _ARENA_REGISTERED = True


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
    if meta.get(ADAPTER_KEY):  # written by `gankit export --torch-fidelity`
        raise ModelFileError(f"{path}: a {meta[ADAPTER_KEY]} adapter (uint8 RGB output), not a gankit model; "
                             "load it with torch_fidelity.GenerativeModelONNX, or give gankit the model it was made from")
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
    if len(card.classes) > MAX_CLASSES:
        problems.append(f"it claims {len(card.classes):,} classes; at most {MAX_CLASSES} are allowed")
    elif len(set(card.classes)) != len(card.classes) or not all(0 <= c < MAX_CLASSES for c in card.classes):
        problems.append(f"classes {list(card.classes)} are not distinct ids from 0 to {MAX_CLASSES - 1}")
    if problems:
        raise ModelFileError(f"{path}: bad gankit metadata: " + "; ".join(problems))
    return card


# Control characters (C0, DEL, C1) and the bidirectional overrides: metadata is printed by
# `gankit info`, and an escape sequence in it would reach the terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _read_metadata(path: Path, session) -> dict[str, str]:
    try:
        raw = dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: its metadata is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                             "not a gankit model") from None
    return {_UNPRINTABLE.sub("", k): _UNPRINTABLE.sub("", v) for k, v in raw.items()}


_ORT_SOURCE = re.compile(r"\S*onnxruntime\S*\.(?:cc|cpp|h):\d+ (?:[\w:~<>*&]+\([^()]*\)(?: const)? )?")
_DETAIL_HEAD, _DETAIL_TAIL = 200, 600


def _ort_detail(exc: BaseException) -> str:
    """onnxruntime's message on one line, without its C++ source locations.

    The cause ("Unsupported model IR version: 10, max supported IR version: 9") comes last,
    after a long function signature, so a long message keeps its head and its tail.
    """
    text = _ORT_SOURCE.sub("", " ".join(str(exc).split())) or type(exc).__name__
    if len(text) > _DETAIL_HEAD + _DETAIL_TAIL:
        text = f"{text[:_DETAIL_HEAD]} ... {text[-_DETAIL_TAIL:]}"
    return text


def _check_providers(providers) -> list:
    import onnxruntime as ort

    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence) or not providers:
        raise UsageError(f"providers must be a non-empty list of execution provider names, got {providers!r}")
    available = ort.get_available_providers()
    checked = []
    for entry in providers:
        if isinstance(entry, str):
            name, options = entry, None
        elif (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
              and isinstance(entry[1], dict)):
            name, options = entry
        else:
            raise UsageError(f"a provider is a name or a (name, options dict) pair, got {entry!r}")
        if name not in available:
            raise UsageError(f"execution provider {name!r} is not available in this onnxruntime "
                             f"(available: {', '.join(available)})")
        checked.append(name if options is None else (name, options))
    return checked


def load_generator(path: str | os.PathLike | None = None, *, threads: int | None = None,
                   providers: Sequence[str | tuple[str, dict]] | None = None) -> "OnnxGenerator":
    """Open and check an exported generator (default: the shipped conditional model).

    ``threads``: onnxruntime intra-op threads (default `default_threads()`).
    ``providers``: onnxruntime execution providers in order of preference, names or
    ``(name, options)`` pairs, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``
    with onnxruntime-gpu installed (default: CPU only).
    """
    import onnxruntime as ort

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a positive whole number, got {threads!r}")
    providers = _check_providers(providers)
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

    try:
        spans, has_graph = _scan(data)
    except _Malformed as exc:
        raise ModelFileError(f"{given}: not a valid ONNX file (corrupt or truncated: {exc})") from None
    if not has_graph:
        raise ModelFileError(f"{given}: not a valid ONNX file (no graph)")
    _refuse_external_data(given, data)

    try:
        # onnxruntime gets the very bytes checked above, so the file cannot be swapped
        # between the check and the load.
        session = ort.InferenceSession(data, _session_options(threads or default_threads()), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelFileError(f"{given}: onnxruntime {ort.__version__} cannot load it as an ONNX model "
                             f"({_ort_detail(exc)})") from None
    card = _check_card(given, _read_metadata(given, session))
    _check_io(given, session, card)
    if _digest(data, spans) != card.weights_sha256:
        raise ModelFileError(f"{given}: its contents do not match the gankit.weights_sha256 in its metadata; "
                             "the file was damaged or altered after export")
    gen = OnnxGenerator(given, card, session, size_bytes=len(data))
    # A graph can load and still fail when run (a reshape to the wrong size, an allocation
    # of tens of GB): try two rows now, so such a file is refused here, as one line.
    probe = np.asarray([card.classes[0], card.classes[-1]], dtype=np.int64)
    gen._run(np.zeros((2, card.z_dim), dtype=np.float32), probe)
    return gen


def check_seed(seed: Any) -> int | None:
    """``seed`` if it is None or a whole number from 0 to `MAX_SEED`, else UsageError."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise UsageError(f"a seed must be a whole number, got {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise UsageError(f"a seed must be from 0 to 2**64 - 1, got {seed}")
    return int(seed)


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
        n = int(n)
        if digit is None or isinstance(digit, (int, np.integer)) and not isinstance(digit, (bool, np.bool_)):
            digits = None if digit is None else [self.check_digit(digit)]
        elif isinstance(digit, (str, bytes)) or not isinstance(digit, (Sequence, np.ndarray)):
            raise UsageError(f"digit must be a whole number, a list of them, or None; got {digit!r}")
        else:
            digits = [self.check_digit(d) for d in digit]
            if not digits:
                raise UsageError("the list of digits is empty")
        # The size is checked before any array exists: `n` may be 10**12 or 2**64.
        total = n * len(digits) if digits else n
        if total > MAX_IMAGES:
            raise UsageError(f"{total} images asked for; at most {MAX_IMAGES} per call")
        if digits is None:
            return np.resize(np.asarray(self.card.classes, dtype=np.int64), n)
        return np.repeat(np.asarray(digits, dtype=np.int64), n)

    def sample_latent(self, n: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
        """``n`` latent vectors float32 [n, Z] from the card's noise (uniform is on [-1, 1])."""
        # The one sampling rule, shared with `gankit evaluate` and the training-time evaluator.
        from gankit.eval.protocol import sample_latent

        return sample_latent(n, self.card.z_dim, self.card.noise, seed)

    # -- running ------------------------------------------------------------------------

    def _run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        try:
            out = self._session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_LABEL: labels})[0]
        except Exception as exc:  # onnxruntime's Fail/RuntimeException/..., or its MemoryError
            raise ModelFileError(f"{self.path}: the model fails when run on a batch of {len(z)} "
                                 f"({_ort_detail(exc)})") from None
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
        rng = np.random.default_rng(check_seed(seed))
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
