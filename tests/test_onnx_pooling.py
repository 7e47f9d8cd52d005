"""The front-end's ONNX graph pools before it normalises (core.training.onnx_pooling): same outputs, less work.

Small graphs of the pattern are built here with the `onnx` package (the `train` extra brings it) and run in
ONNX Runtime before and after the rewrite, with batch-norm scales of both signs: the outputs must be equal,
bit for bit, since every moved step is monotone per channel."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx") is None,
                                reason="the onnx package (train extra) is not installed")

SHIPPED = REPO_ROOT / "models" / "frontend_msd_musicnn.onnx"


def _branch(scale: np.ndarray, *, pool_width: int | None = None, opset: int = 17):  # noqa: ANN202 - onnx types
    """input (n, 1, 10, 12) → conv 4 x (3, 5) → relu → · scale → + shift → max-pool over the last axis."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = rng.normal(size=(4, 1, 3, 5)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    shift = rng.normal(size=(1, 4, 1, 1)).astype(np.float32)
    width = 12 - 5 + 1
    kernel = [1, pool_width or width]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 0, 1, 0]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Mul", ["relu", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["normal"]),
        helper.make_node("MaxPool", ["normal"], ["pooled"], kernel_shape=kernel, strides=kernel),
        helper.make_node("Flatten", ["pooled"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "branch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 10, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", None])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b"),
         numpy_helper.from_array(scale.astype(np.float32), "scale"), numpy_helper.from_array(shift, "shift")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("scale", [np.array([[[[0.5]], [[2.0]], [[0.1]], [[1.5]]]]),
                                   np.array([[[[0.5]], [[-2.0]], [[0.1]], [[-0.3]]]]),
                                   np.array([-0.7])], ids=["positive", "mixed", "one-negative-scale"])
def test_pooling_first_gives_the_same_outputs_bit_for_bit(scale: np.ndarray, opset: int) -> None:
    from core.training.onnx_pooling import pool_before_normalising

    x = np.random.default_rng(1).normal(size=(6, 1, 10, 12)).astype(np.float32)
    model = _branch(scale, opset=opset)
    before = _run(model, x)
    assert pool_before_normalising(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "MaxPool" not in ops
    reduce = next(n for n in model.graph.node if n.op_type == "ReduceMax")
    assert reduce.input[0] == "conv", "the pool should read the conv itself"
    assert ops.index("ReduceMax") < ops.index("Relu") < ops.index("Add")
    np.testing.assert_array_equal(_run(model, x), before)


def test_a_pool_that_does_not_cover_the_whole_axis_is_left_alone() -> None:
    from core.training.onnx_pooling import pool_before_normalising

    model = _branch(np.array([1.0]), pool_width=4)
    unchanged = model.SerializeToString()
    assert pool_before_normalising(model) == 0
    assert model.SerializeToString() == unchanged


def test_the_shipped_export_pools_before_it_normalises() -> None:
    """The speed the card reports is the rewritten graph's: the two front-end branches still convolutions
    (the time-frequency ones; the three temporal ones are banded MatMuls, tests/test_onnx_frontend_graph.py)
    reduce their conv's output at once, with no MaxPool left."""
    import onnx

    graph = onnx.load(str(SHIPPED)).graph
    producer = {out: n for n in graph.node for out in n.output}
    reduces = [n for n in graph.node if n.op_type == "ReduceMax" and producer[n.input[0]].op_type == "Conv"]
    assert len(reduces) == 2
    assert not any(n.op_type == "MaxPool" for n in graph.node)
