"""The generator API: `load_generator` checks a model file step by step, and `OnnxGenerator` draws digits from it.

Light tier (numpy, onnxruntime; never torch, never onnx). `load_generator` checks a model
file before trusting it:

1. it exists, is a regular file, and is at most `MAX_MODEL_BYTES`;
2. a bounded scan of its protobuf structure (`MAX_RECORDS` fields, `MAX_NODES` nodes at
   most) refuses truncated and padded files before onnxruntime's parser would spend
   gigabytes on them;
3. any tensor stored as external data is refused (the contract is one self-contained
   file, so nothing outside it is ever opened), and so is any subgraph (a Loop, Scan or
   If), whose running time the file would decide: see `refuse_findings`;
4. onnxruntime parses the very bytes that were checked (a swap of the file between the
   check and the load changes nothing), with its CPU memory capped at `ARENA_BYTES`;
5. the gankit metadata parses into a valid `ModelCard` (valid UTF-8, control characters
   stripped, every number within the bounds of `gankit.contract.check_numbers`: at most
   `MAX_CLASSES` classes, a latent of at most `MAX_Z_DIM`);
6. the inputs and output match the contract: ``z float32[N, Z]`` with Z from the card,
   ``label int64[N]``, ``image float32[N, 1, 28, 28]``, with a dynamic N;
7. ``gankit.weights_sha256`` matches the file (`model_sha256`), so a flipped bit is caught;
8. a batch of two rows runs and gives the contract's output shape, within
   `PROBE_SECONDS` (onnxruntime is told to stop then; see `_probe`). Steps 4 to 8 use a
   session without graph optimisation: constant folding runs the graph's constant part
   when a session is made, so a graph that makes a huge constant (a ConstantOfShape of a
   size read from the file, then a long chain over it) would spend minutes there, out of
   any budget. Only once the budgeted run has shown what the graph costs is the
   optimised session, the one that generates, made: its folding stops at outputs of
   `FOLD_MAX_BYTES`, and a graph whose two rows took over `FOLD_PROBE_SECONDS` gets none.

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

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.contract import (ADAPTER_KEY, IMAGE_SIZE, INPUT_LABEL, INPUT_Z, LABEL_MODES, MAX_CLASSES,  # noqa: F401
                             MAX_Z_DIM, OUTPUT_IMAGE, ModelCard, sample_latent)
from gankit.errors import ModelFileError, UsageError
from gankit.runtime.scan import MAX_NODES, _digest, _Malformed, _scan, refuse_findings  # noqa: F401
from gankit.runtime.session import (FOLD_MAX_BYTES, _check_providers, _describe, _ort_detail,  # noqa: F401
                                    _session_options, default_threads)

# A per-digit MLP generator with 10 nets is ~60 MB; anything far past that is not ours.
MAX_MODEL_BYTES = 256 * 1024 * 1024
# Images one call may produce (784 MB of uint8); more is almost surely a typo.
MAX_IMAGES = 1_000_000
# Rows per onnxruntime call. Chunks of 256 to 1024 rows ran within noise of each other
# (bench/bench_generate.py); smaller ones pay per-call overhead. 1024 rows keep a call's
# float buffers at ~3 MB of output plus ~4 MB of hidden activations.
CHUNK = 1024
# The load check's two-row run: a gankit model takes milliseconds. Past this onnxruntime is
# told to stop (it checks between nodes); past PROBE_SECONDS + PROBE_GRACE_SECONDS (one
# node that runs on, e.g. a MatMul sized to fill the arena) the load gives up on it.
PROBE_SECONDS = 5.0
PROBE_GRACE_SECONDS = 5.0
# A graph whose two-row run took longer than this gets no constant folding: folding runs
# its constant part again when the generating session is made, where nothing can stop it.
FOLD_PROBE_SECONDS = 0.5
# numpy seeds any non-negative int, torch only 64-bit ones: one range for both.
MAX_SEED = 2**64 - 1
SHIPPED_MODEL = "conditional.onnx"


def shipped_model_path() -> Path:
    """Where the default (shipped) conditional model is, or ModelFileError if it is absent."""
    here = Path(__file__).resolve().parent.parent  # the gankit package
    candidates = [here / "assets" / SHIPPED_MODEL, here.parent / "exports" / SHIPPED_MODEL]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        "no shipped model found (looked for " + ", ".join(str(c) for c in candidates) + "); "
        "pass a model file with --model PATH"
    )


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
    return card  # every number was bounded by gankit.contract.check_numbers


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


def load_generator(path: str | os.PathLike | None = None, *, threads: int | None = None,
                   providers: Sequence[str | tuple[str, dict]] | None = None) -> "OnnxGenerator":
    """Open and check an exported generator (default: the shipped conditional model).

    `gankit.load` calls this. The checks run in order, each failing with one message:
    the file's size, a bounded scan of its structure (external data is refused), the
    metadata contract, the weights sha256, the graph's inputs and outputs, then one probe
    run under a time and memory budget.

    Args:
        path: an exported ``.onnx`` file (default: the shipped conditional model).
        threads: onnxruntime intra-op threads (default `default_threads()`).
        providers: onnxruntime execution providers in order of preference, names or
            ``(name, options)`` pairs, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``
            with onnxruntime-gpu installed (default: CPU only).

    Returns:
        The checked generator.

    Raises:
        ModelFileError: the file is missing, unreadable, too large, corrupt, or breaks
            the gankit model contract.
        UsageError: ``threads`` or ``providers`` is not a valid value.
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
        scan = _scan(data)
    except _Malformed as exc:
        raise ModelFileError(f"{given}: not a valid ONNX file (corrupt or truncated: {exc})") from None
    if not scan.has_graph:
        raise ModelFileError(f"{given}: not a valid ONNX file (no graph)")
    refuse_findings(given, scan)

    threads = threads or default_threads()

    def session_for(optimized: bool, fold: bool = True):
        try:
            # onnxruntime gets the very bytes checked above, so the file cannot be swapped
            # between the check and the load.
            options = _session_options(threads, optimized)
            return ort.InferenceSession(data, options, providers=providers,
                                        disabled_optimizers=[] if fold else ["ConstantFolding"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelFileError(f"{given}: onnxruntime {ort.__version__} cannot load it as an ONNX model "
                                 f"({_ort_detail(exc)})") from None

    plain = session_for(optimized=False)  # no constant folding: nothing of the graph runs yet
    card = _check_card(given, _read_metadata(given, plain))
    _check_io(given, plain, card)
    if _digest(data, scan.spans) != card.weights_sha256:
        raise ModelFileError(f"{given}: its contents do not match the gankit.weights_sha256 in its metadata; "
                             "the file was damaged or altered after export")
    seconds = _probe(OnnxGenerator(given, card, plain, size_bytes=len(data)))
    del plain
    # Constant folding runs part of what the budgeted probe just ran, on outputs of at most
    # FOLD_MAX_BYTES, for at most MAX_NODES nodes; a graph that was slow to run gets none.
    session = session_for(optimized=True, fold=seconds <= FOLD_PROBE_SECONDS)
    return OnnxGenerator(given, card, session, size_bytes=len(data))


def _probe(gen: "OnnxGenerator") -> float:
    """Run two rows now, within a time budget, so a graph that fails or runs on is refused here; return its seconds.

    A graph can load and still fail when run (a reshape to the wrong size, an allocation
    of tens of GB, which the capped arena refuses). The run happens in a worker thread:
    after `PROBE_SECONDS` onnxruntime's ``terminate`` flag is set (it stops between
    nodes), and if the run still has not returned `PROBE_GRACE_SECONDS` later, the load
    fails anyway and the worker is left to finish on its own (it is a daemon thread, so
    it never keeps the process alive).
    """
    import threading
    import time

    import onnxruntime as ort

    card = gen.card
    labels = np.asarray([card.classes[0], card.classes[-1]], dtype=np.int64)
    z = np.zeros((2, card.z_dim), dtype=np.float32)  # card.z_dim <= MAX_Z_DIM: at most 512 KB
    options = ort.RunOptions()
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            gen._run(z, labels, options)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(exc)

    worker = threading.Thread(target=work, name="gankit-load-probe", daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(PROBE_SECONDS)
    if worker.is_alive():
        options.terminate = True
        worker.join(PROBE_GRACE_SECONDS)
    if not outcome:
        raise ModelFileError(f"{gen.path}: its load-time check (a batch of 2) ran for more than "
                             f"{PROBE_SECONDS + PROBE_GRACE_SECONDS:g} s without finishing; not a gankit model")
    if outcome[0] is not None:
        if options.terminate:
            raise ModelFileError(f"{gen.path}: its load-time check (a batch of 2) ran for more than {PROBE_SECONDS:g} s "
                                 "and was stopped; not a gankit model")
        raise outcome[0]
    return time.perf_counter() - started


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

    def describe(self) -> dict[str, Any]:
        """What `gankit info --json` shows: path, size, raw metadata, the parsed card, inputs and outputs."""
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "metadata": self.card.to_metadata(),
            "card": {**self.card.as_dict(), "extra": dict(self.card.extra)},
            "inputs": self.inputs,
            "outputs": self.outputs,
        }

    @property
    def conditional(self) -> bool:
        """Whether the model can be asked for a particular digit."""
        return self.card.label_mode != "none"

    # -- inputs -----------------------------------------------------------------------

    def check_digit(self, digit: Any) -> int:
        """Return ``digit`` as an int.

        Args:
            digit: a class id, such as 7.

        Raises:
            UsageError: ``digit`` is not a whole number, or this model cannot draw it (an
                unconditional model, or a digit it was not trained on).
        """
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
        """The int64 labels `generate` uses for ``digit`` and ``n``.

        Args:
            digit: one class id, a sequence of ids, or None, as in `generate`.
            n: images per digit (or in all, for None).

        Raises:
            UsageError: ``n`` is not a positive whole number, or a digit cannot be drawn.
        """
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
        """``n`` latent vectors float32 [n, Z], drawn by the contract's one rule (`gankit.contract.sample_latent`).

        Args:
            n: how many vectors.
            seed: a seed (0 to 2**64-1), a numpy ``Generator`` to draw from, or None for
                fresh noise. The same seed gives the same vectors as `generate` draws.

        Returns:
            float32 ``[n, Z]``: standard normal, or uniform on [-1, 1], as the model's
            ``gankit.noise`` metadata says.
        """
        # The one sampling rule of the contract, shared with `gankit evaluate` and the trainer.
        return sample_latent(n, self.card.z_dim, self.card.noise, seed)

    # -- running ------------------------------------------------------------------------

    def _run(self, z: np.ndarray, labels: np.ndarray, run_options=None) -> np.ndarray:
        try:
            out = self._session.run([OUTPUT_IMAGE], {INPUT_Z: z, INPUT_LABEL: labels}, run_options)[0]
        except Exception as exc:  # onnxruntime's Fail/RuntimeException/..., or its MemoryError
            raise ModelFileError(f"{self.path}: the model fails when run on a batch of {len(z)} "
                                 f"({_ort_detail(exc)})") from None
        if out.shape != (len(z), 1, IMAGE_SIZE, IMAGE_SIZE) or out.dtype != np.float32:
            raise ModelFileError(f"{self.path}: returned {out.dtype} {list(out.shape)} for a batch of {len(z)}, "
                                 "expected float32 [N, 1, 28, 28]")
        return out

    def generate_float(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Run the model on your own latents: the raw output, before it becomes pixels.

        Batches over `CHUNK` rows run chunk by chunk.

        Args:
            z: float ``[N, Z]`` latents, N >= 1 (see `sample_latent`).
            labels: integer ``[N]`` class ids (ignored by an unconditional model).

        Returns:
            float32 ``[N, 1, 28, 28]`` in the model's ``value_range``.

        Raises:
            UsageError: ``z`` or ``labels`` has the wrong shape or type.
            ModelFileError: the model fails to run, or returns the wrong shape.
        """
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
        """Draw digits as uint8 images ``[count, 28, 28]`` (0 = black background).

        The same ``seed`` gives the same pixels as ``gankit generate --seed`` and
        ``gankit serve`` for the same model, digits and ``n``.

        Args:
            digit: one class id (``n`` images of it), a sequence of ids (``n`` images of
                each, in order), or None (``n`` images spread over the model's classes,
                cycling through them; an unconditional model ignores labels).
            n: images per digit asked for (in all, for None).
            seed: 0 to 2**64-1; None draws fresh noise.

        Returns:
            uint8 ``[count, 28, 28]``, where count is ``n`` times the digits asked for.

        Raises:
            UsageError: a digit this model cannot draw, a bad ``n`` or seed, or more than
                `MAX_IMAGES` images.
            ModelFileError: the model fails to run or produces non-finite pixels.
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
