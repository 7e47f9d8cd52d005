"""The temporal convolutions as banded matrix products: the same sums, computed without the padding waste.

Three of MSD_musicnn's front-end branches convolve the patch along time only (kernels of 128, 64 and 32
frames by 1 band) with few live filters (3, 7 and 17) and pool the result over frequency. ONNX Runtime runs
such a convolution in its blocked layout, which pads the filters to a multiple of 16 (3 become 16) and then
converts the whole (n, 16, 187, 96) output back before the max: together about a third of the network's CPU
(models/frontend.md).

A convolution along time is a product with a banded (Toeplitz) matrix over time, for every band at once:
with the patch transposed to (n, 96 bands, 187 frames), `x @ M` gives (n, 96, filters x frames), and the max
over frequency is then a ReduceMax over axis 1. Most of M is zero, so the output frames are cut into runs of
half a kernel, and each run's MatMul reads only the input frames its taps reach (a Slice): about 1.5 kernels
of input per run instead of all 187 frames. The constant M is on the right, where ONNX Runtime packs it once.
The runs' maxima are put back in order with one Concat, giving the (n, filters, frames, 1) the ReduceMax
gave; the conv's bias, if any, is added after the max (adding a constant commutes with it).

The same products summed over the same taps: on the shipped graph the outputs came out bit for bit the
same on 128 library patches (the export still checks the rewrites against the graph before them within a
tolerance, core.training.onnx_export, since another ONNX Runtime may sum in another order).

Train-time only (the `onnx` package comes with the `train` extra); the runtime reads the rewritten file.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.training.onnx_graph import (
    add_constant,
    attribute,
    constants,
    drop_unread_constants,
    opset,
    pooling_reader,
    readers,
    reduce_max,
    sort_nodes,
)

RUN_PER_TAP = 0.5
"""Output frames per MatMul, as a share of the kernel's length: shorter runs read less padding-free input
each but cost a node apiece (measured: 1/4 to 1 kernel are within 3 % of each other; models/frontend.md)."""


def temporal_convs_as_matmuls(model: Any, run_per_tap: float = RUN_PER_TAP) -> int:
    """Rewrite `model` (an onnx.ModelProto, in place) as the module says; return how many convolutions
    moved. Only a convolution along the time axis alone (weights (C, 1, k, 1), no stride, dilation or
    groups) of a one-channel input of static shape, read by nothing but a ReduceMax over its last axis, is
    touched; a graph without one comes back unchanged, 0."""
    import onnx

    graph = model.graph
    values = constants(graph)
    shapes = _static_shapes(model)
    by_reader = readers(graph)
    version = opset(model)
    transposed: dict[str, str] = {}
    moved = 0
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        reduce = _temporal_and_pooled(conv, by_reader, values, shapes)
        if reduce is None:
            continue
        frames, bands = shapes[conv.input[0]][2:]
        if conv.input[0] not in transposed:
            transposed[conv.input[0]] = _bands_by_frames(graph, conv.input[0], frames, bands)
        _replace(graph, conv, reduce, transposed[conv.input[0]], frames, values, version, run_per_tap)
        moved += 1
    if moved:
        sort_nodes(graph)
        drop_unread_constants(graph)
        onnx.checker.check_model(model)
    return moved


def _static_shapes(model: Any) -> dict[str, list[int]]:
    """Each tensor's shape from ONNX shape inference, 0 where a dimension is not a fixed number."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.value_info, *inferred.input]}


def _temporal_and_pooled(conv: Any, by_reader: dict[str, list[Any]], values: dict[str, Any],
                         shapes: dict[str, list[int]]) -> Any | None:
    """The ReduceMax over the last axis that alone reads `conv`, when `conv` convolves a (n, 1, frames,
    bands) input of static size along time only, with its own constant weights; else None."""
    reduce = pooling_reader(conv, by_reader, values)
    if reduce is None:
        return None
    weights = values[conv.input[1]]
    shape = shapes.get(conv.input[0], [])
    if len(weights.dims) != 4 or weights.dims[1] != 1 or weights.dims[3] != 1 \
            or len(shape) != 4 or shape[1] != 1 or 0 in shape[2:]:
        return None
    pads = attribute(conv, "pads") or [0, 0, 0, 0]
    return None if pads[1] or pads[3] else reduce


def _bands_by_frames(graph: Any, source: str, frames: int, bands: int) -> str:
    """`source` (n, 1, frames, bands) as (n, bands, frames): the layout the MatMuls read."""
    from onnx import helper

    shape = add_constant(graph, source + "/as_frames_by_bands", np.array([-1, frames, bands], np.int64))
    graph.node.extend([
        helper.make_node("Reshape", [source, shape], [source + "/frames_by_bands"], name=source + "/squeeze"),
        helper.make_node("Transpose", [source + "/frames_by_bands"], [source + "/bands_by_frames"],
                         perm=[0, 2, 1], name=source + "/transpose")])
    return source + "/bands_by_frames"


def _replace(graph: Any, conv: Any, reduce: Any, source: str, frames: int, values: dict[str, Any],
             version: int, run_per_tap: float) -> None:
    """Put the banded MatMuls in place of `conv` and `reduce`, writing the tensor `reduce` wrote."""
    from onnx import helper, numpy_helper

    weights = numpy_helper.to_array(values[conv.input[1]])[:, 0, :, 0]  # (C, k)
    channels, taps = weights.shape
    top, _, bottom, _ = attribute(conv, "pads") or [0, 0, 0, 0]
    out_frames = frames + top + bottom - taps + 1
    run = max(1, math.ceil(taps * run_per_tap))
    prefix, runs, nodes = reduce.output[0], [], []
    for start in range(0, out_frames, run):
        stop = min(start + run, out_frames)
        first, last = max(0, start - top), min(frames, stop - 1 + taps - top)  # input frames reached
        name = f"{prefix}/frames_{start}"
        matrix = band_matrix(weights, start, stop, first, last, top)
        read = source
        if (first, last) != (0, frames):
            read = name + "/input"
            nodes.append(helper.make_node("Slice", [
                source, add_constant(graph, name + "/first", np.array([first], np.int64)),
                add_constant(graph, name + "/last", np.array([last], np.int64)),
                add_constant(graph, name + "/axis", np.array([2], np.int64))], [read], name=read))
        nodes.append(helper.make_node("MatMul", [read, add_constant(graph, name + "/band", matrix)],
                                      [name + "/conv"], name=name + "/conv"))
        nodes.append(reduce_max(graph, name + "/conv", name + "/max", 1, 0, version))
        nodes.append(helper.make_node("Reshape", [name + "/max", add_constant(
            graph, name + "/shape", np.array([-1, channels, stop - start, 1], np.int64))], [name + "/pooled"],
            name=name + "/pooled"))
        runs.append(name + "/pooled")
    pooled = reduce.output[0]
    bias = numpy_helper.to_array(values[conv.input[2]]) if len(conv.input) > 2 else np.zeros(1)
    joined = pooled + "/runs" if bias.any() else pooled
    nodes.append(helper.make_node("Concat", runs, [joined], axis=2, name=pooled + "/runs"))
    if bias.any():
        nodes.append(helper.make_node("Add", [joined, add_constant(graph, pooled + "/bias", bias.reshape(
            1, channels, 1, 1).astype(np.float32))], [pooled], name=pooled + "/bias"))
    graph.node.remove(conv)
    graph.node.remove(reduce)
    graph.node.extend(nodes)


def band_matrix(weights: np.ndarray, start: int, stop: int, first: int, last: int, top: int) -> np.ndarray:
    """(last - first, C x (stop - start)) float32: column c·(stop-start) + t - start holds filter c's taps
    for output frame t, row i - first the input frame i, so that a (.., frames) row times it is the conv."""
    channels, taps = weights.shape
    matrix = np.zeros((last - first, channels, stop - start), np.float32)
    for t in range(start, stop):
        for i in range(max(first, t - top), min(last, t - top + taps)):
            matrix[i - first, :, t - start] = weights[:, i - t + top]
    return matrix.reshape(last - first, -1)
