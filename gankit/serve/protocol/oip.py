"""The Open Inference Protocol (KServe v2, as Triton speaks it): infer requests and responses.

Light tier (numpy, standard library). A model takes the contract's raw tensors, ``z``
FP32 [N, Z] and ``label`` INT64 [N], and answers ``image`` FP32 [N, 1, 28, 28], the
generator's own output (no uint8 conversion). Tensors travel as JSON (``data``: a flat,
row-major list, or nested lists) or with the binary tensor data extension: the body is a
JSON header of ``Inference-Header-Content-Length`` bytes followed by each binary tensor's
raw little-endian bytes, in the order of the inputs that carry
``parameters.binary_data_size``. An output is sent binary when its request entry says
``"parameters": {"binary_data": true}``, or, with no outputs listed, when the request's
``parameters.binary_data_output`` is true (what tritonclient asks by default).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gankit.contract import IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE
from gankit.serve.errors import ApiError
from gankit.serve.models import ServedModel

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {INPUT_Z: ("FP32", np.dtype("<f4")), INPUT_LABEL: ("INT64", np.dtype("<i8"))}
VERSION = "1"


@dataclass
class InferRequest:
    z: np.ndarray
    labels: np.ndarray
    id: str | None
    binary_output: bool


def _bad(message: str, status: int = 422) -> ApiError:
    return ApiError(status, message)


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise _bad(f"input {name!r}: shape must be a list of non-negative whole numbers, got {shape!r}")
    return tuple(shape)


def _from_json_data(name: str, data: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(data, list):
        raise _bad(f"input {name!r}: data must be a list of numbers (row-major), got {type(data).__name__}")
    try:
        array = np.asarray(data)
    except ValueError:
        raise _bad(f"input {name!r}: data is a ragged nested list") from None
    kinds = "iu" if dtype.kind == "i" else "iuf"
    if array.size and array.dtype.kind not in kinds:
        what = "whole numbers" if dtype.kind == "i" else "numbers"
        raise _bad(f"input {name!r}: data must hold {what} only, got {array.dtype.name} values")
    if array.size != math.prod(shape):
        raise _bad(f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} values, data has {array.size}")
    if dtype.kind == "i" and array.size and (array.min() < -2**63 or array.max() >= 2**63):
        raise _bad(f"input {name!r}: values out of the INT64 range")
    return array.astype(dtype).reshape(shape)


def parse_infer(body: bytes, header_length: str | None, model: ServedModel, max_rows: int) -> InferRequest:
    """Check one infer request against the model's tensors; ApiError (400/422) names the problem."""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise _bad(f"{HEADER_LENGTH} must be a whole number, got {header_length!r}", 400) from None
        if not 0 < split <= len(body):
            raise _bad(f"{HEADER_LENGTH} is {split}, the body has {len(body)} bytes", 400)
        head, binary = body[:split], memoryview(body)[split:]
    else:
        head, binary = body, memoryview(b"")
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"the inference request is not valid JSON ({exc})", 400) from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise _bad("the inference request must be a JSON object with a list of inputs", 400)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad(f"id must be a string, got {request_id!r}")

    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for entry in request["inputs"]:
        if not isinstance(entry, dict):
            raise _bad("each input must be an object with name, shape, datatype and data")
        name = entry.get("name")
        if name not in DATATYPES:
            raise _bad(f"unknown input {name!r}; model {model.name!r} takes {INPUT_Z!r} and {INPUT_LABEL!r}")
        if name in tensors:
            raise _bad(f"input {name!r} is given twice")
        datatype, dtype = DATATYPES[name]
        if entry.get("datatype") != datatype:
            raise _bad(f"input {name!r} is {datatype}, got datatype {entry.get('datatype')!r}")
        shape = _shape(name, entry.get("shape"))
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise _bad(f"input {name!r}: parameters must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise _bad(f"input {name!r}: binary_data_size must be a whole number of bytes")
            if size != math.prod(shape) * dtype.itemsize:
                raise _bad(f"input {name!r}: shape {list(shape)} of {datatype} is "
                           f"{math.prod(shape) * dtype.itemsize} bytes, binary_data_size says {size}")
            if offset + size > len(binary):
                raise _bad(f"input {name!r}: the body ends before its {size} bytes of binary data", 400)
            tensors[name] = np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            if "data" not in entry:
                raise _bad(f"input {name!r} has neither data nor parameters.binary_data_size")
            tensors[name] = _from_json_data(name, entry["data"], dtype, shape)
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes of binary data belong to no input", 400)
    missing = [n for n in DATATYPES if n not in tensors]
    if missing:
        raise _bad(f"missing input(s) {', '.join(map(repr, missing))}")

    z, labels = tensors[INPUT_Z], tensors[INPUT_LABEL]
    zdim = model.card.z_dim
    if z.ndim != 2 or z.shape[1] != zdim:
        raise _bad(f"input 'z' must be [N, {zdim}], got {list(z.shape)}")
    if labels.ndim != 1 or labels.shape[0] != z.shape[0]:
        raise _bad(f"input 'label' must be [N] with the N of z ({z.shape[0]}), got {list(labels.shape)}")
    rows = z.shape[0]
    if not 1 <= rows <= max_rows:
        raise _bad(f"N is {rows}; this server takes 1 to {max_rows} rows per request (--max-n)")
    if not np.all(np.isfinite(z)):
        raise _bad("input 'z' holds NaN or infinite values")
    if model.generator.conditional:
        bad = sorted(set(labels.tolist()) - set(model.classes))
        if bad:
            raise ApiError(422, f"label(s) {bad[:10]} are not digits model {model.name!r} can draw "
                           f"(it knows {', '.join(map(str, model.classes))})", valid_digits=model.classes)

    binary_output = bool((request.get("parameters") or {}).get("binary_data_output", False))
    outputs = request.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise _bad("outputs must be a list")
        for out in outputs:
            if not isinstance(out, dict) or out.get("name") != OUTPUT_IMAGE:
                raise _bad(f"unknown output {out.get('name') if isinstance(out, dict) else out!r}; "
                           f"the model's output is {OUTPUT_IMAGE!r}")
            binary_output = bool((out.get("parameters") or {}).get("binary_data", False))
    return InferRequest(np.ascontiguousarray(z, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.int64),
                        request_id, binary_output)


def infer_response(model: ServedModel, request: InferRequest, image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers for the model's output ``image`` [N, 1, 28, 28]."""
    output: dict[str, Any] = {"name": OUTPUT_IMAGE, "datatype": "FP32",
                              "shape": [int(image.shape[0]), 1, IMAGE_SIZE, IMAGE_SIZE]}
    payload: dict[str, Any] = {"model_name": model.name, "model_version": VERSION, "outputs": [output]}
    if request.id is not None:
        payload["id"] = request.id
    if not request.binary_output:
        output["data"] = image.astype(np.float64).ravel().tolist()
        return json.dumps(payload, separators=(",", ":")).encode(), {"content-type": "application/json"}
    raw = np.ascontiguousarray(image, dtype="<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(payload, separators=(",", ":")).encode()
    return head + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "gankit", "version": version, "extensions": ["binary_tensor_data"]}
