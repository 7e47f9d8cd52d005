"""The front-end's ONNX graph after the speed rewrites (core.training.onnx_input_norm, onnx_temporal): the
same network in fewer operations.

Small graphs of each pattern are built with the `onnx` package (the `train` extra brings it) and run in ONNX
Runtime before and after the rewrite: the outputs must agree within float32 rounding, since only the order of
the sums changes. The shipped file is checked for the rewritten form, and, where tf2onnx and LiteRT are
installed, the export is re-run from the .tflite and must give the shipped file's outputs bit for bit."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, needs_litert, needs_tensorflow

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx") is None,
                                reason="the onnx package (train extra) is not installed")

SHIPPED = REPO_ROOT / "models" / "frontend_msd_musicnn.onnx"
FRAMES, BANDS = 20, 12


def _model(nodes: list, inits: dict[str, np.ndarray], outputs: list[str], shape: list):  # noqa: ANN202
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", None, None, None]) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x: np.ndarray) -> list[np.ndarray]:  # noqa: ANN001
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _normalised_branches(scale: float, *, extra_reader: bool = False):  # noqa: ANN202
    """x (n, frames, bands) -> reshape -> · scale -> + shift, read by a padded time-frequency conv and by a
    time-only conv with its own padding, each pooled over the last axis (musicnn's front-end, in small)."""
    from onnx import helper

    rng = np.random.default_rng(3)
    f32 = np.float32
    inits = {
        "nhwc": np.array([-1, FRAMES, BANDS, 1], np.int64), "scale": np.array([scale], f32),
        "shift": np.array([-1.3], f32), "pads": np.array([0, 2, 0, 0, 0, 2, 0, 0], np.int64),
        "nchw_padded": np.array([-1, 1, FRAMES + 4, BANDS], np.int64),
        "nchw": np.array([-1, 1, FRAMES, BANDS], np.int64),
        "w1": rng.normal(size=(4, 1, 5, 7)).astype(f32), "b1": rng.normal(size=4).astype(f32),
        "w2": rng.normal(size=(3, 1, 6, 1)).astype(f32), "b2": rng.normal(size=3).astype(f32),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "nhwc"], ["x4"]),
        helper.make_node("Mul", ["x4", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["normal"]),
        helper.make_node("Pad", ["normal", "pads"], ["padded"]),
        helper.make_node("Reshape", ["padded", "nchw_padded"], ["timbre_in"]),
        helper.make_node("Conv", ["timbre_in", "w1", "b1"], ["timbre"]),
        helper.make_node("ReduceMax", ["timbre"], ["y1"], axes=[-1], keepdims=1),
        helper.make_node("Reshape", ["normal", "nchw"], ["time_in"]),
        helper.make_node("Conv", ["time_in", "w2", "b2"], ["time"], pads=[2, 0, 3, 0]),
        helper.make_node("ReduceMax", ["time"], ["y2"], axes=[-1], keepdims=1),
    ]
    outputs = ["y1", "y2"]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["normal"], ["y3"]))
        outputs.append("y3")
    return _model(nodes, inits, outputs, ["n", FRAMES, BANDS])


def _patches() -> np.ndarray:
    return (np.random.default_rng(5).random((6, FRAMES, BANDS)) * 4).astype(np.float32)


@pytest.mark.parametrize("scale", [0.44, -0.7])
def test_the_input_batch_norm_folded_into_the_convolutions_gives_the_same_outputs(scale: float) -> None:
    from core.training.onnx_input_norm import fold_input_normalisation

    model = _normalised_branches(scale)
    before = _run(model, _patches())
    assert fold_input_normalisation(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert "Mul" not in ops and ops.count("Add") == 2, "the patch should reach the convolutions unscaled"
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(len(n.input) == 2 for n in convs), "the bias is in the offset"
    for ours, theirs in zip(_run(model, _patches()), before):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    from onnx import numpy_helper

    offset = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "y2/offset")
    assert np.abs(offset[0, :, 0] - offset[0, :, FRAMES // 2]).min() > 0.01, \
        "next to the padding the shift's share differs: the offset must be a tensor over frames"


def test_a_normalised_patch_read_by_anything_else_is_left_alone() -> None:
    from core.training.onnx_input_norm import fold_input_normalisation

    model = _normalised_branches(0.44, extra_reader=True)
    unchanged = model.SerializeToString()
    assert fold_input_normalisation(model) == 0
    assert model.SerializeToString() == unchanged


def _temporal_branch(pads: list[int], *, kernel: tuple[int, int] = (6, 1), bias: bool = True):  # noqa: ANN202
    from onnx import helper

    rng = np.random.default_rng(11)
    inits = {"w": rng.normal(size=(3, 1, *kernel)).astype(np.float32)}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.normal(size=3).astype(np.float32)
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["conv"], pads=pads),
             helper.make_node("ReduceMax", ["conv"], ["y"], axes=[-1], keepdims=1)]
    return _model(nodes, inits, ["y"], ["n", 1, FRAMES, BANDS])


@pytest.mark.parametrize("run_per_tap", [0.25, 0.5, 1.0, 10.0])
@pytest.mark.parametrize("pads", [[2, 0, 3, 0], [0, 0, 0, 0], [5, 0, 0, 0]], ids=["same", "valid", "causal"])
def test_a_temporal_convolution_as_banded_matmuls_gives_the_same_outputs(pads: list[int],
                                                                          run_per_tap: float) -> None:
    from core.training.onnx_temporal import temporal_convs_as_matmuls

    x = _patches()[:, None]
    model = _temporal_branch(pads)
    before = _run(model, x)[0]
    assert temporal_convs_as_matmuls(model, run_per_tap) == 1
    ops = [n.op_type for n in model.graph.node]
    run = max(1, int(np.ceil(6 * run_per_tap)))
    assert "Conv" not in ops and ops.count("MatMul") == -(-before.shape[2] // run)
    after = _run(model, x)[0]
    assert after.shape == before.shape
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)


def test_a_temporal_convolution_without_bias_needs_no_add() -> None:
    from core.training.onnx_temporal import temporal_convs_as_matmuls

    x = _patches()[:, None]
    model = _temporal_branch([2, 0, 3, 0], bias=False)
    before = _run(model, x)[0]
    assert temporal_convs_as_matmuls(model) == 1
    assert "Add" not in [n.op_type for n in model.graph.node]
    np.testing.assert_allclose(_run(model, x)[0], before, rtol=0, atol=1e-5)


def test_a_convolution_over_frequency_too_is_left_alone() -> None:
    from core.training.onnx_temporal import temporal_convs_as_matmuls

    model = _temporal_branch([1, 0, 1, 0], kernel=(3, 5))
    unchanged = model.SerializeToString()
    assert temporal_convs_as_matmuls(model) == 0
    assert model.SerializeToString() == unchanged


def test_a_band_matrix_row_product_is_the_correlation_over_time() -> None:
    from core.training.onnx_temporal import band_matrix

    rng = np.random.default_rng(2)
    weights, signal, top = rng.normal(size=(2, 5)), rng.normal(size=30), 2
    padded = np.concatenate([np.zeros(top), signal, np.zeros(2)])
    expected = np.array([[w @ padded[t:t + 5] for t in range(30)] for w in weights])
    start, stop = 10, 17
    first, last = start - top, stop - 1 + 5 - top
    got = (signal[first:last] @ band_matrix(weights, start, stop, first, last, top)).reshape(2, stop - start)
    np.testing.assert_allclose(got, expected[:, start:stop], rtol=1e-6, atol=1e-6)


def test_the_shipped_export_has_the_rewritten_front_end() -> None:
    """The speed the card reports is this graph's: no Mul or Add on the patch, the temporal convolutions as
    MatMuls, and only the two time-frequency convolutions left on the patch, each pooled at once."""
    import onnx

    graph = onnx.load(str(SHIPPED)).graph
    producer = {out: n for n in graph.node for out in n.output}
    patch_readers = [n for n in graph.node if n.input and n.input[0] == graph.input[0].name]
    assert [n.op_type for n in patch_readers] == ["Reshape"]
    kernels = [next(a.ints for a in n.attribute if a.name == "kernel_shape")
               for n in graph.node if n.op_type == "Conv" and producer[n.input[0]].op_type == "Reshape"]
    assert sorted(list(k) for k in kernels) == [[7, 38], [7, 67]]
    assert sum(n.op_type == "MatMul" for n in graph.node) >= 3
    reshaped = patch_readers[0].output[0]
    assert not any(n.op_type in ("Mul", "Add") and reshaped in n.input for n in graph.node), \
        "the input batch norm should be folded into the convolutions"


@needs_tensorflow
@needs_litert
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None,
                    reason="tf2onnx (train extra) is not installed")
def test_the_export_reproduces_the_shipped_graph(tmp_path: Path) -> None:
    """`python -m core.training.onnx_export` from the shipped .tflite gives the shipped .onnx: the same
    operations and, on the demo patches, the same outputs bit for bit (tf2onnx's constant names and node
    order differ from run to run, so the bytes do not)."""
    import onnx
    import onnxruntime

    from core.cli.demo import DEMO_CLIPS
    from core.training.musicnn_port import probe_patches
    from core.training.onnx_export import export_onnx

    probe = probe_patches(sorted(DEMO_CLIPS.glob("*.ogg")))
    ours = tmp_path / "frontend.onnx"
    export_onnx(SHIPPED.with_suffix(".tflite"), ours, probe)
    graphs = [onnx.load(str(p)).graph for p in (ours, SHIPPED)]
    assert sorted(n.op_type for n in graphs[0].node) == sorted(n.op_type for n in graphs[1].node)
    runs = []
    for path in (ours, SHIPPED):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs.append(session.run(["penultimate", "tags"], {session.get_inputs()[0].name: probe[:4]}))
    for new, shipped in zip(*runs):
        np.testing.assert_array_equal(new, shipped)
