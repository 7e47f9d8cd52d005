"""Normalise after convolving: the front-end's input batch norm folded into the convolutions that read it.

MSD_musicnn scales and shifts its whole log-mel patch (one batch norm with a single scale `a` and shift `b`)
before every front-end convolution. In ONNX Runtime that is a Mul and an Add over the patch, about 8 % of the
network's CPU on one thread in runs of 4 (models/frontend.md). Everything between them and the convolutions
is linear (reshapes, zero padding), and each convolution's output is pooled by a max over frequency
(core.training.onnx_pooling), so for each convolution

    conv(pad(a·x + b); W, B) = conv(pad(x); a·W, no bias) + conv(pad(0·x + b); W, B)

and the last term is the convolution's output for an all-zero patch: its input is taken from ONNX Runtime
(reshapes and padding, exact) and convolved here in float64 (ONNX Runtime's float32 sums would put twice the
rounding into every output). It is constant along frequency (the convolutions do not pad that axis), so it
moves past the max as one small Add per branch ([1, C, frames, 1]). It is a tensor, not a bias: near the
patch's first and last frames the zero padding stands where `b` would be.

Not bit for bit: the patch is no longer rounded after its scale and shift, so the outputs move by a few 1e-6
(the export checks the rewrites against the graph before them, core.training.onnx_export).

Train-time only (the `onnx` package comes with the `train` extra); the runtime reads the rewritten file.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.training.onnx_graph import (
    add_constant,
    attribute,
    constants,
    drop_unread_constants,
    pooling_reader,
    readers,
    set_constant,
    sort_nodes,
)

OFFSET_SPREAD = 1e-6
"""How far the zero patch's convolution output may vary along frequency (relative to its size) for the
offset to move past the max; it is constant there up to the order of the sums."""


def fold_input_normalisation(model: Any) -> int:
    """Rewrite `model` (an onnx.ModelProto, in place) as the module says; return how many convolutions now
    read the patch as it comes. A graph without the pattern (a scalar Mul then Add on the input, read only
    through reshapes and zero padding by convolutions each pooled over its last axis) comes back unchanged, 0.
    """
    import onnx

    graph = model.graph
    values = constants(graph)
    found = _input_normalisation(graph, values)
    if found is None:
        return 0
    mul, add, scale = found
    branches = _pooled_convolutions(graph, add.output[0], values)
    if not branches:
        return 0
    at_zero = _tensors_for_a_zero_patch(model, [conv.input[0] for conv, _ in branches])
    offsets = []
    for conv, _ in branches:
        out = _convolve64(conv, at_zero[conv.input[0]], values)
        offset = out[..., :1]
        if np.abs(out - offset).max() > OFFSET_SPREAD * max(1.0, float(np.abs(offset).max())):
            return 0  # the shift's share varies along the pooled axis: it cannot follow the max
        offsets.append(offset)
    for (conv, reduce), offset in zip(branches, offsets):
        weights = values[conv.input[1]]
        set_constant(weights, onnx.numpy_helper.to_array(weights) * np.float32(scale))
        del conv.input[2:]  # the bias is in the offset
        pooled = reduce.output[0]
        reduce.output[0] = pooled + "/before_offset"
        name = add_constant(graph, pooled + "/offset", offset.astype(np.float32))
        graph.node.append(onnx.helper.make_node("Add", [reduce.output[0], name], [pooled],
                                                name=pooled + "/offset"))
    patch = mul.input[0] if mul.input[0] not in values else mul.input[1]
    for node in graph.node:
        node.input[:] = [patch if name == add.output[0] else name for name in node.input]
    graph.node.remove(mul)
    graph.node.remove(add)
    sort_nodes(graph)
    drop_unread_constants(graph)
    onnx.checker.check_model(model)
    return len(branches)


def _input_normalisation(graph: Any, values: dict[str, Any]) -> tuple[Any, Any, float] | None:
    """(mul, add, scale): the graph input, through reshapes, scaled by one constant and shifted by another,
    each step read by the next alone; None when the graph does not start so."""
    from onnx import numpy_helper

    by_reader = readers(graph)
    name = graph.input[0].name
    while len(by_reader.get(name, [])) == 1 and by_reader[name][0].op_type == "Reshape" \
            and by_reader[name][0].input[0] == name:
        name = by_reader[name][0].output[0]
    steps = []
    for op in ("Mul", "Add"):
        nodes = by_reader.get(name, [])
        if len(nodes) != 1 or nodes[0].op_type != op:
            return None
        node = nodes[0]
        constant = [i for i in node.input if i in values]
        if len(constant) != 1 or numpy_helper.to_array(values[constant[0]]).size != 1:
            return None
        steps.append((node, float(numpy_helper.to_array(values[constant[0]]).reshape(()))))
        name = node.output[0]
    (mul, scale), (add, _) = steps
    return mul, add, scale


def _pooled_convolutions(graph: Any, source: str, values: dict[str, Any]) -> list[tuple[Any, Any]] | None:
    """(conv, reduce) for every convolution reading `source` through reshapes and zero padding alone, each
    with its own weights and pooled by a ReduceMax over its last axis; None if anything else reads it."""
    by_reader = readers(graph)
    outputs = {o.name for o in graph.output}
    found, waiting = [], [source]
    while waiting:
        name = waiting.pop()
        if name in outputs:
            return None
        for node in by_reader.get(name, []):
            if node.input[0] != name:
                return None
            if node.op_type == "Reshape" or (node.op_type == "Pad" and _pads_with_zeros(node, values)):
                waiting.append(node.output[0])
            elif node.op_type == "Conv" and (reduce := pooling_reader(node, by_reader, values)) is not None:
                found.append((node, reduce))
            else:
                return None
    return found


def _pads_with_zeros(pad: Any, values: dict[str, Any]) -> bool:
    from onnx import numpy_helper

    if attribute(pad, "mode") not in (None, b"constant"):
        return False
    if len(pad.input) > 2 and pad.input[2]:
        return pad.input[2] in values and not numpy_helper.to_array(values[pad.input[2]]).any()
    return True


def _convolve64(conv: Any, x: np.ndarray, values: dict[str, Any]) -> np.ndarray:
    """What `conv` (plain: core.training.onnx_graph.plain_conv) computes on `x` (n, C, H, W), in float64."""
    from numpy.lib.stride_tricks import sliding_window_view
    from onnx import numpy_helper

    weights = numpy_helper.to_array(values[conv.input[1]]).astype(np.float64)
    bias = numpy_helper.to_array(values[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 \
        else np.zeros(weights.shape[0])
    top, left, bottom, right = attribute(conv, "pads") or [0, 0, 0, 0]
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = sliding_window_view(padded, weights.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weights) + bias[None, :, None, None]


def _tensors_for_a_zero_patch(model: Any, names: list[str]) -> dict[str, np.ndarray]:
    """The tensors `names` for one all-zero input patch, as ONNX Runtime computes them in this graph."""
    import onnx
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    for output in probe.graph.output:
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    source = model.graph.input[0]
    shape = [1] + [d.dim_value for d in source.type.tensor_type.shape.dim[1:]]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {source.name: np.zeros(shape, np.float32)})))
