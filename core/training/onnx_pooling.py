"""Pool before normalising: the front-end's ONNX graph made a third cheaper, with the same outputs.

Each of musicnn's front-end branches is conv → relu → batch norm (a Mul and an Add per channel) → max-pool
over the whole frequency axis. The Mul and the Add run on the conv's full (n, channels, 187, bins) output,
and ONNX Runtime converts that output out of its blocked layout for them: together about a third of the
network's time on one core (bench: `benchmarks/bench_segment_cost.py`).

Every step between the conv and the pool acts on each value alone and per channel, so it can follow the
pool instead of preceding it:

- relu and `a * x + b` with `a > 0` are non-decreasing, so max(f(x)) = f(max(x)), exactly in floating point
  too (rounding is monotone);
- with `a < 0`, `a * relu(x) + b` is non-increasing: its max is at min(x). min(x) = -max(-x), and -x is the
  same conv with its weights and bias negated (IEEE negation is exact), so the channel's conv is negated and
  a Mul by -1 after the pool gives min(x) back before the relu.

So conv(W·s, B·s) → max over the axis → · s → relu → · a → + b, with s = ±1 the sign of a: the big tensor
sees the conv and the pool only, and the pool over the whole axis becomes a ReduceMax (cheaper in ONNX
Runtime than a MaxPool of that width). The outputs are bit-identical to the graph's before (checked on the
demo patches by the export, which refuses anything past its tolerance).

Train-time only (the `onnx` package comes with the `train` extra); the runtime reads the rewritten file.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.training.onnx_graph import attribute, opset, reduce_max, set_constant, sort_nodes

_CHAIN = ("Add", "Mul", "Relu", "Conv")
"""The producers met walking up from a pool's input, in that order."""


def _pools_whole_last_axis(pool: Any, width: int | None) -> bool:
    """A MaxPool whose window and stride are 1 on every axis but the last, which it covers whole."""
    kernel, strides = attribute(pool, "kernel_shape"), attribute(pool, "strides")
    pads = attribute(pool, "pads")
    return (width is not None and kernel is not None and list(kernel[:-1]) == [1] * (len(kernel) - 1)
            and kernel[-1] == width and (strides is None or list(strides) == list(kernel))
            and not any(pads or []) and attribute(pool, "dilations") in (None, [1] * len(kernel))
            and attribute(pool, "ceil_mode") in (None, 0) and attribute(pool, "auto_pad") in (None, b"NOTSET"))


def pool_before_normalising(model: Any) -> int:
    """Rewrite `model` (an onnx.ModelProto, in place) as the module says; return how many branches moved.

    Only the exact pattern is touched: a MaxPool over the whole last axis fed by Add(Mul(Relu(Conv))) with
    constant per-channel Mul and Add, each output read by the next step alone. Anything else is left as it
    is (a graph with no such branch comes back unchanged, 0)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    widths = _widths(model)
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    version = opset(model)
    moved = 0
    for pool in [n for n in graph.node if n.op_type == "MaxPool"]:
        chain = _chain(pool, producer, readers)
        if chain is None or not _pools_whole_last_axis(pool, widths.get(pool.input[0])):
            continue
        add, mul, relu, conv = chain
        scale_name = next((i for i in mul.input if i in inits), None)
        if scale_name is None or not any(i in inits for i in add.input) or len(conv.input) < 3 \
                or any(i not in inits or readers[i] != 1 for i in conv.input[1:3]):
            continue  # the conv's weights must be its own: a negated channel would change another reader
        scale = numpy_helper.to_array(inits[scale_name])
        weights, bias = numpy_helper.to_array(inits[conv.input[1]]), numpy_helper.to_array(inits[conv.input[2]])
        channels = weights.shape[0]
        if scale.size not in (1, channels):
            continue
        sign = np.where(np.broadcast_to(scale.reshape(-1), (channels,)) < 0, -1.0, 1.0).astype(weights.dtype)
        if (sign < 0).any():
            set_constant(inits[conv.input[1]], weights * sign.reshape((-1,) + (1,) * (weights.ndim - 1)))
            set_constant(inits[conv.input[2]], bias * sign)
        pooled = pool.output[0]
        reduce = reduce_max(graph, conv.output[0], pooled + "/reduced", -1, 1, version)
        after = reduce.output[0]
        new_nodes = [reduce]
        if (sign < 0).any():
            sign_name = pooled + "/sign"
            graph.initializer.append(numpy_helper.from_array(sign.reshape(1, -1, *([1] * (weights.ndim - 2))),
                                                             sign_name))
            flip = helper.make_node("Mul", [after, sign_name], [pooled + "/signed"], name=pool.name + "/sign")
            new_nodes.append(flip)
            after = flip.output[0]
        relu.input[0] = after
        add.output[0] = pooled
        graph.node.remove(pool)
        graph.node.extend(new_nodes)
        moved += 1
    if moved:
        sort_nodes(graph)
        onnx.checker.check_model(model)
    return moved


def _chain(pool: Any, producer: dict[str, Any], readers: dict[str, int]) -> tuple[Any, ...] | None:
    """(add, mul, relu, conv) above `pool`, each read by the next alone; None when the pattern differs."""
    chain, name = [], pool.input[0]
    for op in _CHAIN:
        node = producer.get(name)
        if node is None or node.op_type != op or readers.get(name, 0) != 1:
            return None
        chain.append(node)
        name = _data_input(node, producer) if op in ("Add", "Mul") else node.input[0]
        if name is None:
            return None
    return tuple(chain)


def _data_input(node: Any, producer: dict[str, Any]) -> str | None:
    """The input of a Mul or an Add that a node computes (the other is the constant)."""
    computed = [i for i in node.input if i in producer]
    return computed[0] if len(computed) == 1 else None


def _widths(model: Any) -> dict[str, int]:
    """The static size of each tensor's last axis, from ONNX shape inference (where it is known)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    widths = {}
    for value in inferred.graph.value_info:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value"):
            widths[value.name] = int(dims[-1].dim_value)
    return widths
