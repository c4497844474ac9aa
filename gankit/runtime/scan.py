"""The file scan: a bounded walk over an ONNX file's protobuf records, the weights digest, and the refusals it finds.

Light tier (standard library only; never onnx, never onnxruntime). Nothing here runs the
model: it decides, from the bytes alone, whether onnxruntime may be shown them. The walk
visits every message onnxruntime would build and, on the way, notes two things a gankit
model never has: a tensor stored as external data (`refuse_findings`), and a subgraph
(the body of a Loop, Scan or If, or any other graph-valued attribute), which is how a
graph can run for as long as a number in the file says.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from gankit.errors import ModelFileError

# -- a bounded structural scan: what onnxruntime's parser would have to build ------------------
#
# onnxruntime's C++ protobuf parser turns every field record into an object: 10 MB of empty
# `value_info` records cost it 526 MB and 1.6 s (measured), so a 256 MB padded file would
# need ~12 GB. This scan counts the records of every message onnxruntime materialises and
# gives up past `MAX_RECORDS`, before onnxruntime sees the file. It reads only the fields
# that say where a tensor's data lives and whether an attribute holds a graph (see
# `refuse_findings`); it also yields the top-level records that `model_sha256` hashes.

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
        if wire == 0:  # the value is the varint itself, starting at `value`
            value = pos
            _, pos = _varint(buf, pos, end)
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
# Nodes in the graph and its functions together. The shipped per-digit model has 160;
# every node is one more kernel to run, or to fold into a constant when a session is made
# (see gankit.runtime.session), so the count bounds the work a file can ask for at load.
MAX_NODES = 4096
_MAX_DEPTH = 64


# TensorProto: external_data (13, repeated key/value entries) and data_location (14, an
# enum: 1 = EXTERNAL). AttributeProto: g (6) and graphs (11), the subgraphs of control flow.
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_ATTRIBUTE_GRAPHS = (6, 11)


class Scan(NamedTuple):
    """What the walk found: the hashed spans, whether there is a graph, and what is refused."""

    spans: list[tuple[int, int]]
    has_graph: bool
    external_data: bool  # some tensor keeps its bytes in another file (or says so)
    subgraph: bool  # some attribute holds a graph: a Loop, Scan, If or the like


def _scan(data: bytes) -> Scan:
    """Check the structure; return the spans of the top-level records outside metadata_props, and findings."""
    spans: list[tuple[int, int]] = []
    has_graph = external = subgraph = False
    stack: list[tuple[str, int, int, int]] = []
    count = nodes = 0
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
            if kind == "tensor":
                # Any external_data entry, or a data_location other than DEFAULT (0), in any
                # encoding: onnxruntime would look for the bytes elsewhere (a file, or with the
                # "*/_ORT_MEM_ADDR_*/" location, a memory address).
                if field == _TENSOR_EXTERNAL_DATA or field == _TENSOR_DATA_LOCATION and (
                        wire != 0 or _varint(data, value, end)[0] != 0):
                    external = True
            elif kind == "attribute" and field in _ATTRIBUTE_GRAPHS:
                subgraph = True
            elif _SCHEMA[kind].get(field) == "node":
                nodes += 1
                if nodes > MAX_NODES:
                    raise _Malformed(f"more than {MAX_NODES:,} nodes; not a gankit model")
            child = children.get(field)
            if child is not None:
                if wire != 2:
                    raise _Malformed(f"{kind} field {field} is not a message")
                stack.append((child, value, end, depth + 1))
    return Scan(spans, has_graph, external, subgraph)


def model_sha256(data: bytes) -> str:
    """The ``gankit.weights_sha256`` of a serialized model: see `gankit.contract`.

    sha256 over the file's top-level protobuf records in file order, leaving out the
    metadata_props records, which hold the hash itself. That covers the weights, the
    graph and any functions, so a flipped bit anywhere outside the metadata is caught.
    Raises ValueError if ``data`` is not a well-formed model.
    """
    try:
        spans = _scan(data).spans
    except _Malformed as exc:
        raise ValueError(str(exc)) from None
    return _digest(data, spans)


def _digest(data: bytes, spans: list[tuple[int, int]]) -> str:
    h = hashlib.sha256()
    view = memoryview(data)
    for start, end in spans:
        h.update(view[start:end])
    return h.hexdigest()


def refuse_findings(path: Path, scan: Scan) -> None:
    """ModelFileError for what a gankit model never holds: external data, or a subgraph.

    External data: onnxruntime reads a tensor's bytes from elsewhere exactly when the
    tensor's data_location says EXTERNAL, through its external_data entries (a file
    named by ``location``, or a memory address). The walk looks at those two fields of
    every tensor onnxruntime would build, wherever it sits (graph initializers, node and
    function attributes, subgraphs, sparse tensors), so a file without them cannot make
    onnxruntime open anything, whatever text its metadata holds. The contract says one
    self-contained file, so a tensor with either is refused before onnxruntime parses
    anything.

    Subgraphs: the exporter never writes control flow, and a Loop's trip count (or a
    Scan's length) is a number in the file that decides how long the load-time check
    would run.
    """
    if scan.external_data:
        raise ModelFileError(
            f"{path}: refusing a model that refers to external data (a tensor stored outside the file); "
            "a gankit model is one self-contained .onnx file. Re-export it without external data")
    if scan.subgraph:
        raise ModelFileError(
            f"{path}: refusing a model with control flow (a Loop, Scan, If or other graph-valued attribute); "
            "gankit's exporter never writes one, and its running time would be the file's to decide")
