"""Small helpers the export's graph rewrites share (core.training.onnx_pooling, onnx_input_norm,
onnx_temporal): reading attributes and constants, replacing a constant, putting nodes back in order.

Train-time only (the `onnx` package comes with the `train` extra)."""
from __future__ import annotations

from typing import Any

import numpy as np


def attribute(node: Any, name: str) -> Any:
    """The node's attribute `name` as a Python value, None when it is not set."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def constants(graph: Any) -> dict[str, Any]:
    """The graph's initializers by name."""
    return {i.name: i for i in graph.initializer}


def readers(graph: Any) -> dict[str, list[Any]]:
    """Every node reading each tensor, by tensor name."""
    found: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def add_constant(graph: Any, name: str, values: np.ndarray) -> str:
    """A new initializer `name` holding `values`; returns the name, for the node that reads it."""
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(values, name))
    return name


def set_constant(initializer: Any, values: np.ndarray) -> None:
    """Replace an initializer's values, keeping its name and dtype."""
    from onnx import numpy_helper

    initializer.CopyFrom(numpy_helper.from_array(values.astype(numpy_helper.to_array(initializer).dtype),
                                                 initializer.name))


def drop_unread_constants(graph: Any) -> None:
    """Remove the initializers no node reads any more (a rewrite's leftovers would only bloat the file)."""
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def sort_nodes(graph: Any) -> None:
    """Put the nodes back in an order where each reads only what is computed before it (ONNX requires it)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, waiting = [], list(graph.node)
    while waiting:
        ready = [n for n in waiting if all(i in known for i in n.input)]
        if not ready:
            raise ValueError("the rewritten graph has a cycle or a missing input")
        for node in ready:
            ordered.append(node)
            known.update(node.output)
        placed = {id(n) for n in ready}
        waiting = [n for n in waiting if id(n) not in placed]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def plain_conv(conv: Any) -> bool:
    """A convolution with no stride, dilation, groups or automatic padding (explicit pads only)."""
    return (attribute(conv, "group") in (None, 1) and attribute(conv, "auto_pad") in (None, b"NOTSET")
            and attribute(conv, "strides") in (None, [1, 1])
            and attribute(conv, "dilations") in (None, [1, 1]))


def pooling_reader(conv: Any, by_reader: dict[str, list[Any]], values: dict[str, Any]) -> Any | None:
    """The ReduceMax over the last axis (kept, size 1) that alone reads the 2-D `conv`, when the conv is
    plain and its weights and bias are constants of its own; else None."""
    nodes = by_reader.get(conv.output[0], [])
    if len(nodes) != 1 or nodes[0].op_type != "ReduceMax" or attribute(nodes[0], "keepdims") == 0:
        return None
    if reduced_axes(nodes[0], values) not in ([-1], [3]) or not plain_conv(conv):
        return None
    if any(i not in values or len(by_reader[i]) != 1 for i in conv.input[1:]):
        return None
    return nodes[0]


def opset(model: Any) -> int:
    """The model's version of the default ONNX domain."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def reduce_max(graph: Any, source: str, target: str, axis: int, keepdims: int, version: int) -> Any:
    """A ReduceMax over one axis; its axes are an attribute up to opset 17 and an input from 18."""
    from onnx import helper

    if version < 18:
        return helper.make_node("ReduceMax", [source], [target], name=target, axes=[axis], keepdims=keepdims)
    axes = add_constant(graph, target + "/axes", np.array([axis], np.int64))
    return helper.make_node("ReduceMax", [source, axes], [target], name=target, keepdims=keepdims)


def reduced_axes(node: Any, values: dict[str, Any]) -> list[int] | None:
    """The axes a ReduceMax reduces (attribute or constant input), None when they are not constant."""
    from onnx import numpy_helper

    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in values:
            return None
        return [int(a) for a in numpy_helper.to_array(values[node.input[1]])]
    return attribute(node, "axes")
