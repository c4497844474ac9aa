"""Hostile ONNX files for the runtime's tests: each loads (or nearly) and attacks one way.

Built with the `onnx` package from a good exported model; `gankit.runtime.model_sha256`
re-stamps ``gankit.weights_sha256`` where a test needs the hash to be right, so that the
check under test is the one that fires.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from gankit.runtime import model_sha256


def set_meta(model: onnx.ModelProto, **values: str) -> onnx.ModelProto:
    """Set metadata ``gankit.<key>`` (underscores in keys stay underscores)."""
    for prop in model.metadata_props:
        key = prop.key.removeprefix("gankit.")
        if key in values:
            prop.value = values[key]
    return model


def restamp(model: onnx.ModelProto) -> bytes:
    """Serialize ``model`` with a correct ``gankit.weights_sha256``."""
    sha = model_sha256(model.SerializeToString())
    return set_meta(model, weights_sha256=sha).SerializeToString()


def function_attribute_leak(target: str) -> bytes:
    """A model whose function's default tensor attribute is external data at ``target``.

    The function body is ``y = x + Constant(value=@t)``; the graph calls it without
    giving ``t``, so onnxruntime inlines the default, whose bytes live at ``target``
    (e.g. ``../../../etc/passwd``). gankit's old protobuf walker never looked at
    ``FunctionProto.attribute_proto``.
    """
    tensor = TensorProto(name="t", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", target), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    const = helper.make_node("Constant", [], ["c"])
    ref = onnx.AttributeProto(name="value", ref_attr_name="t", type=onnx.AttributeProto.TENSOR)
    const.attribute.append(ref)
    body = [const, helper.make_node("Add", ["x", "c"], ["y"])]
    fn = helper.make_function("leak", "Leak", ["x"], ["y"], body, [helper.make_opsetid("", 20)])
    fn.attribute_proto.append(helper.make_attribute("t", tensor))
    graph = helper.make_graph([helper.make_node("Leak", ["x"], ["y"], domain="leak")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("leak", 1)],
                              functions=[fn])
    model.ir_version = 10
    return model.SerializeToString()


def _add_to_image(model: onnx.ModelProto, nodes: list, extra: str, initializers=()) -> onnx.ModelProto:
    """Rewire ``image = image_before + 0 * sum(extra)``: same output, one more computation."""
    out = model.graph.output[0].name
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == out:
                node.output[i] = "image_before"
    model.graph.initializer.extend([helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]), *initializers])
    model.graph.node.extend([*nodes,
                             helper.make_node("ReduceSum", [extra], ["extra_sum"], keepdims=0),
                             helper.make_node("Mul", ["extra_sum", "zero"], ["extra_zero"]),
                             helper.make_node("Add", ["image_before", "extra_zero"], [out])])
    return model


def fails_at_run_time(model: onnx.ModelProto) -> bytes:
    """Loads fine, then every run fails: a Gather whose indices (label + 100) are out of range."""
    nodes = [helper.make_node("Add", ["label", "hundred"], ["far"]),
             helper.make_node("Gather", ["table", "far"], ["picked"])]
    inits = [helper.make_tensor("hundred", TensorProto.INT64, [], [100]),
             helper.make_tensor("table", TensorProto.FLOAT, [10], [0.0] * 10)]
    return restamp(_add_to_image(model, nodes, "picked", inits))


def allocates(model: onnx.ModelProto, floats_per_row: int) -> bytes:
    """Each run allocates ``floats_per_row`` float32 per batch row (ConstantOfShape)."""
    nodes = [helper.make_node("Shape", ["z"], ["zshape"], start=0, end=1),
             helper.make_node("Mul", ["zshape", "per_row"], ["count"]),
             helper.make_node("ConstantOfShape", ["count"], ["big"],
                              value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))]
    inits = [helper.make_tensor("per_row", TensorProto.INT64, [1], [floats_per_row])]
    return restamp(_add_to_image(model, nodes, "big", inits))


def invalid_utf8_metadata(model: onnx.ModelProto) -> bytes:
    """``gankit.dataset`` holds bytes that are not UTF-8 (protobuf's Python API refuses to write them)."""
    data = restamp(set_meta(model, dataset="QQQQ"))
    assert data.count(b"QQQQ") == 1
    return data.replace(b"QQQQ", b"\xff\xfe\x80Q")


def flip_weight_bit(data: bytes) -> bytes:
    """Flip one bit in the middle of the largest initializer's bytes."""
    model = onnx.load_from_string(data)
    raw = max(model.graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    at = data.index(raw) + len(raw) // 2
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


def padded(data: bytes, records: int) -> bytes:
    """Append a second graph field holding ``records`` empty value_info records.

    Protobuf merges repeated message fields, so this is still "the" graph to a parser,
    which must build an object per record.
    """
    pad = b"\x6a\x00" * records
    length, size = bytearray(), len(pad)
    while True:
        length.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    return data + b"\x3a" + bytes(length) + pad


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def endless_loop(model: onnx.ModelProto, trips: int = 10**15) -> bytes:
    """A Loop whose trip count is ``trips`` (each trip adds 1 to a counter): the load-time run would never end."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one_b"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        [helper.make_tensor("one_b", TensorProto.FLOAT, [1], [1.0])])
    nodes = [helper.make_node("Loop", ["trips", "keep_going", "acc0"], ["looped"], body=body)]
    inits = [helper.make_tensor("trips", TensorProto.INT64, [], [trips]),
             helper.make_tensor("keep_going", TensorProto.BOOL, [], [True]),
             helper.make_tensor("acc0", TensorProto.FLOAT, [1], [0.0])]
    return restamp(_add_to_image(model, nodes, "looped", inits))


def slow_chain(model: onnx.ModelProto, floats: int = 4_000_000, links: int = 400) -> bytes:
    """No control flow, but ``links`` element-wise nodes over ``floats`` numbers: a run of seconds."""
    nodes = [helper.make_node("ConstantOfShape", ["count"], ["v0"],
                              value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))]
    for i in range(links):
        nodes.append(helper.make_node("Sqrt" if i % 2 else "Exp", [f"v{i}"], [f"v{i + 1}"]))
    inits = [helper.make_tensor("count", TensorProto.INT64, [1], [floats])]
    return restamp(_add_to_image(model, nodes, f"v{links}", inits))


def external_flag_only(model: onnx.ModelProto, *, location: bool, entries: bool) -> bytes:
    """The largest initializer marked external by ``data_location`` (``location``) and/or an
    ``external_data`` entry (``entries``), its bytes still inline: refused either way."""
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    if location:
        tensor.data_location = TensorProto.EXTERNAL
    if entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = "checksum", "0"
    return restamp(model)


def one_long_node(model: onnx.ModelProto, side: int = 8192) -> bytes:
    """One MatMul of two ``side`` x ``side`` constants made at run time: a single kernel of
    ``2 * side**3`` flops (a minute or more on two cores), which no terminate flag interrupts."""
    fill = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [helper.make_node("ConstantOfShape", ["square"], ["a"], value=fill),
             helper.make_node("ConstantOfShape", ["square"], ["b"], value=fill),
             helper.make_node("MatMul", ["a", "b"], ["product"])]
    inits = [helper.make_tensor("square", TensorProto.INT64, [2], [side, side])]
    return restamp(_add_to_image(model, nodes, "product", inits))
