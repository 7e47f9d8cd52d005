"""The musicnn package's own MSD_musicnn graph, run as the package runs it: the reference our port must match.

Training-time only. It needs `musicnn` (install with `pip install --no-deps musicnn`: its metadata pins
numpy<1.17) and `tf-keras` (its `tf.compat.v1.layers` need Keras 2 under TensorFlow 2.16+), and
`TF_USE_LEGACY_KERAS=1` set before TensorFlow is imported, so it runs in a process of its own:

    TF_USE_LEGACY_KERAS=1 python -m core.training.musicnn_reference OUT.npz FILE...

writes, for each audio file, the original graph's `penultimate` and `tags` layers on two inputs:
- `ours`: the log-mel patches `core.frontend` computes (so a difference is the network port's alone);
- `package`: the package's own `batch_data` pipeline (librosa.load at 16 kHz, its log-mel), with one fix:
  the mel power is compressed in float32. The package casts it to float16 first, and `10000 * x`
  overflows float16 (max 65504) wherever a mel bin's power exceeds 6.55: loud audio becomes inf patches and
  the same tags for every loud clip.

The graph is built once and fed every patch (the package rebuilds it per call).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def package_dir() -> Path:
    """Where the installed musicnn package keeps its checkpoints, found without importing it."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("musicnn is not installed (pip install --no-deps musicnn)")
    return Path(next(iter(spec.submodule_search_locations)))


def package_patches(path: Path) -> np.ndarray:
    """musicnn.extractor.batch_data's patches (non-overlapping, 187 frames), log compression in float32."""
    import librosa

    from core.constants import (FRONTEND_HOP_LENGTH, FRONTEND_N_FFT, FRONTEND_N_MELS, FRONTEND_PATCH_FRAMES,
                                FRONTEND_SAMPLE_RATE)

    audio, sr = librosa.load(str(path), sr=FRONTEND_SAMPLE_RATE)
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=FRONTEND_HOP_LENGTH, n_fft=FRONTEND_N_FFT,
                                         n_mels=FRONTEND_N_MELS).T
    rep = np.log10(10000 * mel.astype(np.float32) + 1)
    starts = range(0, rep.shape[0] - FRONTEND_PATCH_FRAMES + 1, FRONTEND_PATCH_FRAMES)
    return np.stack([rep[s:s + FRONTEND_PATCH_FRAMES] for s in starts]).astype(np.float32)


class ReferenceGraph:
    """MSD_musicnn built once in a tf.compat.v1 session with the package's checkpoint restored."""

    def __init__(self, model: str = "MSD_musicnn") -> None:
        if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
            raise RuntimeError("set TF_USE_LEGACY_KERAS=1 before starting this process")
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()
        from musicnn import configuration, models

        from core.constants import FRONTEND_PATCH_FRAMES

        self._tf = tf
        graph = tf.Graph()
        with graph.as_default(), tf.name_scope("model"):
            self._x = tf.compat.v1.placeholder(tf.float32, [None, FRONTEND_PATCH_FRAMES, configuration.N_MELS])
            self._training = tf.compat.v1.placeholder(tf.bool)
            logits, *_, penultimate = models.define_model(
                self._x, self._training, model, len(configuration.MSD_LABELS))
            self._outputs = {"penultimate": penultimate, "tags": tf.nn.sigmoid(logits)}
            saver = tf.compat.v1.train.Saver()
        self._session = tf.compat.v1.Session(graph=graph)
        saver.restore(self._session, str(package_dir() / model) + "/")

    def __call__(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        out = self._session.run(self._outputs, feed_dict={self._x: patches, self._training: False})
        return {k: np.asarray(v, np.float32).reshape(len(patches), -1) for k, v in out.items()}


def main(argv: list[str]) -> int:
    from core.audio import load_segments
    from core.frontend import patches_from_segments

    out, files = Path(argv[0]), [Path(a) for a in argv[1:]]
    graph = ReferenceGraph()
    arrays: dict[str, np.ndarray] = {}
    for i, path in enumerate(files):
        ours = patches_from_segments(load_segments(path, max_seconds=1200, max_segments=40).audio)
        package = package_patches(path)
        arrays[f"{i}/name"] = np.array(path.name)
        for source, patches in (("ours", ours), ("package", package)):
            for layer, values in graph(patches).items():
                arrays[f"{i}/{source}/{layer}"] = values
    np.savez_compressed(out, **arrays)
    log.info("wrote %s (%d files)", out, len(files))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
