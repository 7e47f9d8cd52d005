"""The front-end as ONNX, for the runtime where no LiteRT wheel exists (Windows, Intel macOS, ...).

Train-time only: tf2onnx (which imports TensorFlow) converts the shipped LiteRT flatbuffer, so the ONNX graph
is the very network LiteRT runs, pruning included; ONNX Runtime then runs it with no TensorFlow. tf2onnx
names the outputs after TensorFlow's tensors, so they are renamed to ours by their width (200 is
`penultimate`, 50 is `tags`); the front-end branches then pool before they normalise
(core.training.onnx_pooling: the same outputs, a third less time); the input's batch norm moves into the
convolutions (core.training.onnx_input_norm) and the temporal convolutions become banded MatMuls
(core.training.onnx_temporal), together a third less time again, refused if they move any output past
REWRITE_TOLERANCE; and the export is refused unless ONNX Runtime's outputs match LiteRT's on real patches.

    python -m core.training.onnx_export   # models/frontend_msd_musicnn.tflite -> .onnx, checked on demo clips
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from core.frontend import EMBEDDING_DIM, TAG_COUNT
from core.training.artefacts import write_artefact
from core.training.onnx_input_norm import fold_input_normalisation
from core.training.onnx_pooling import pool_before_normalising
from core.training.onnx_temporal import temporal_convs_as_matmuls

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4
"""Largest absolute difference from LiteRT allowed on any output (the outputs reach about 3)."""
REWRITE_TOLERANCE = 1e-5
"""Largest absolute difference the speed rewrites after pooling may make on any output: they change the
order of float32 sums, not what is computed (measured: 4.7e-6 on 128 library patches)."""


def _rename_outputs(model: object) -> None:
    """tf2onnx's output names ('StatefulPartitionedCall_1:0', ...) -> ours, matched by output width."""
    by_width = {EMBEDDING_DIM: "penultimate", TAG_COUNT: "tags"}
    graph = model.graph  # type: ignore[attr-defined]
    renames = {o.name: by_width[o.type.tensor_type.shape.dim[-1].dim_value] for o in graph.output}
    for node in graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for output in graph.output:
        output.name = renames[output.name]


def export_onnx(tflite_path: Path, onnx_path: Path, probe: np.ndarray) -> float:
    """Convert `tflite_path` into `onnx_path`; return the worst difference from LiteRT on `probe` patches
    (ValueError, and nothing written, past PARITY_TOLERANCE)."""
    import tf2onnx

    from core.runtime import LiteRunner, OnnxRunner, tensorflow

    tensorflow()  # tf2onnx imports TensorFlow: let it start quietly, with our thread budget
    model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET)
    _rename_outputs(model)
    log.info("%d front-end branches now pool before they normalise", pool_before_normalising(model))
    pooled = OnnxRunner.from_bytes(model.SerializeToString())(probe)
    log.info("%d convolutions read the patch before its batch norm", fold_input_normalisation(model))
    log.info("%d temporal convolutions are banded MatMuls", temporal_convs_as_matmuls(model))
    data = model.SerializeToString()
    ours, reference = OnnxRunner.from_bytes(data)(probe), LiteRunner(tflite_path)(probe)
    moved = max(float(np.abs(ours[k] - pooled[k]).max()) for k in pooled)
    if moved > REWRITE_TOLERANCE:
        raise ValueError(f"the graph rewrites moved the outputs by {moved:.2e} "
                         f"(allowed {REWRITE_TOLERANCE:.0e})")
    worst = max(float(np.abs(ours[k] - reference[k]).max()) for k in reference)
    if worst > PARITY_TOLERANCE:
        raise ValueError(f"ONNX export differs from LiteRT by {worst:.2e} (allowed {PARITY_TOLERANCE:.0e})")
    write_artefact(onnx_path, data)
    log.info("wrote %s (%d kB), worst difference from LiteRT %.2e", onnx_path, len(data) // 1024, worst)
    return worst


def main() -> None:
    from core.cli.demo import DEMO_CLIPS
    from core.config import DEFAULT_MODELS_DIR
    from core.frontend import ARTEFACT
    from core.training.musicnn_port import probe_patches

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="folder of the .tflite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stem = args.models / ARTEFACT
    worst = export_onnx(stem.with_suffix(".tflite"), stem.with_suffix(".onnx"),
                        probe_patches(sorted(DEMO_CLIPS.glob("*.ogg"))))
    print(f"{stem.with_suffix('.onnx')}: worst difference from LiteRT {worst:.2e}")


if __name__ == "__main__":
    main()
