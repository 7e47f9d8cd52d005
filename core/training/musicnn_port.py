"""Port musicnn's MSD_musicnn network to Keras 3 and convert the package's checkpoint weights into it.

    cratedigger train frontend [--musicnn-dir DIR] [--out DIR]

The architecture is written here layer for layer after musicnn 0.1.0's `models.build_musicnn` (front-end:
two timbral convolutions of 7 x 38 and 7 x 67 mel-bins, three temporal ones of 128, 64 and 32 frames, each
max-pooled over frequency; mid-end: three 7-frame convolutions over the 561 front-end channels with residual
connections; back-end: max and mean over time, interleaved, batch-normalised, a 200-unit dense layer, batch
norm (the `penultimate` layer) and the 50 tag logits). Two equivalences make it plainer than the original:
- the mid-end's `conv2d` with a kernel as wide as its input is a `Conv1D` over channels (same kernel,
  reshaped);
- dropout is left out: it does nothing at inference.
The checkpoint is read with TensorFlow's checkpoint reader (no musicnn code and no tf-keras), variable by
variable in the order musicnn's graph created them. A test compares our outputs with the original graph's.

The network then ships pruned (`prune`), exactly: most of its front-end filters are dead, their kernels zero
(181 of the 204 timbral filters of 7 x 38, 190 of the 204 of 7 x 67, 48, 44 and 34 of the 51 temporal ones),
so each outputs one constant whatever the audio. Pruned, those channels are not computed: their constant
reaches the first mid-end convolution through one channel of ones (which keeps the zero padding's edges
exact) and the back-end through the dense layer's bias. 64 front-end channels of 561 remain, for a tenth of
the multiply-adds and the same outputs; the conversion refuses a pruning that moves them.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.constants import FRONTEND_N_MELS, FRONTEND_PATCH_FRAMES, frontend_constants
from core.frontend import ARTEFACT, OUTPUTS, Sidecar
from core.training.artefacts import write_artefact
from core.training.onnx_export import export_onnx

log = logging.getLogger(__name__)

MODEL = "MSD_musicnn"
BN_EPSILON = 1e-3
"""tf.compat.v1.layers.batch_normalization's default, which musicnn used (Keras' default too)."""
TIMBRAL = ((7, int(0.4 * FRONTEND_N_MELS)), (7, int(0.7 * FRONTEND_N_MELS)))
TEMPORAL = (128, 64, 32)
TIMBRAL_FILTERS = int(1.6 * 128)
TEMPORAL_FILTERS = int(1.6 * 32)
MIDEND_FILTERS = 64
BACKEND_UNITS = 200
N_TAGS = 50
FRONTEND_FILTERS = (TIMBRAL_FILTERS,) * len(TIMBRAL) + (TEMPORAL_FILTERS,) * len(TEMPORAL)
"""Filters of conv2d .. conv2d_4, the front-end convolutions, unpruned."""
DEAD_FILTER_TOLERANCE = 1e-6
"""A filter whose kernel norm is below this share of its layer's largest is dead (the dead ones are zeros)."""
PRUNED_ATOL = 1e-4
"""How far pruning may move an output on the probe patches (measured: a few 1e-6, float rounding)."""


def build_network(filters: Sequence[int] = FRONTEND_FILTERS) -> Any:
    """The MSD_musicnn network as a Keras 3 functional model: (batch, 187, 96) log-mel -> OUTPUTS.

    Layers are named after the checkpoint variables they take (conv2d, conv2d_1, ..., batch_normalization,
    batch_normalization_1, ...), so conversion is by name. Other `filters` (per front-end convolution) build
    the pruned network, whose first mid-end convolution also reads a channel of ones (the layer `ones`)."""
    from core.runtime import tensorflow

    tensorflow()
    import keras
    from keras import layers

    def bn(i: int) -> layers.Layer:
        return layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name(i))

    x_in = keras.Input((FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS), name="log_mel")
    x = layers.Reshape((FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS, 1))(x_in)
    x = bn(0)(x)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)))(x)
    front: list[Any] = []
    for i, kernel in enumerate(TIMBRAL):
        f = layers.Conv2D(filters[i], kernel, padding="valid", activation="relu", name=conv_name(i))(padded)
        f = bn(1 + i)(f)
        f = layers.MaxPooling2D((1, f.shape[2]))(f)
        front.append(layers.Reshape((FRONTEND_PATCH_FRAMES, filters[i]))(f))
    for i, length in enumerate(TEMPORAL, start=len(TIMBRAL)):
        s = layers.Conv2D(filters[i], (length, 1), padding="same", activation="relu", name=conv_name(i))(x)
        s = bn(1 + i)(s)
        s = layers.MaxPooling2D((1, s.shape[2]))(s)
        front.append(layers.Reshape((FRONTEND_PATCH_FRAMES, filters[i]))(s))
    frontend = layers.Concatenate(axis=-1)(front)  # (187, 561) unpruned

    mid = [frontend]
    h = frontend
    if tuple(filters) != FRONTEND_FILTERS:  # `ones`: zero kernel, bias 1
        h = layers.Concatenate(axis=-1)([frontend, layers.Dense(1, name="ones")(frontend)])
    for i in range(3):
        c = layers.ZeroPadding1D(3)(h)
        c = layers.Conv1D(MIDEND_FILTERS, 7, padding="valid", activation="relu", name=conv_name(5 + i))(c)
        c = bn(6 + i)(c)
        h = c if i == 0 else layers.Add()([c, h])
        mid.append(h)
    midend = layers.Concatenate(axis=-1)(mid)  # (187, 753)

    channels = midend.shape[-1]
    max_pool = layers.GlobalMaxPooling1D()(midend)
    mean_pool = layers.GlobalAveragePooling1D()(midend)
    stacked = layers.Concatenate(axis=-1)([layers.Reshape((channels, 1))(max_pool),
                                           layers.Reshape((channels, 1))(mean_pool)])
    flat = layers.Flatten()(stacked)  # max and mean interleaved per channel, as tf.concat(..., 2) + flatten
    flat = bn(9)(flat)
    dense = layers.Dense(BACKEND_UNITS, activation="relu", name="dense")(flat)
    penultimate = bn(10)(dense)
    logits = layers.Dense(N_TAGS, name="dense_1")(penultimate)
    tags = layers.Activation("sigmoid", name="tags")(logits)
    penultimate = layers.Identity(name="penultimate")(penultimate)
    return keras.Model(x_in, {"penultimate": penultimate, "tags": tags}, name="msd_musicnn")


def conv_name(i: int) -> str:
    return f"conv2d{'_' + str(i) if i else ''}"


def bn_name(i: int) -> str:
    return f"batch_normalization{'_' + str(i) if i else ''}"


def live_filters(model: Any, tolerance: float = DEAD_FILTER_TOLERANCE) -> list[np.ndarray]:
    """Per front-end convolution, the indices of its filters with a kernel that is not (numerically) zero."""
    live = []
    for i in range(len(FRONTEND_FILTERS)):
        kernel = model.get_layer(conv_name(i)).get_weights()[0]
        norms = np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0)
        live.append(np.flatnonzero(norms > tolerance * norms.max()))
    return live


def _batch_norm(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    gamma, beta, mean, variance = weights
    return gamma * (x - mean) / np.sqrt(variance + BN_EPSILON) + beta


def prune(model: Any, probe: np.ndarray, tolerance: float = DEAD_FILTER_TOLERANCE) -> tuple[Any, list[int]]:
    """The same network without its dead front-end filters; returns it and the filters kept per convolution.

    A dead filter's channel is BN(relu(bias)) at every frame. Into the first mid-end convolution it adds
    kernel x constant wherever the convolution window is inside the patch: the `ones` channel, with that
    sum as its kernel, adds exactly this. Into the back-end its max and mean over time are that constant:
    after the back-end batch norm a constant, folded into the dense layer's bias.
    Raises ValueError if any output on `probe` (log-mel patches) moves by more than PRUNED_ATOL."""
    live = live_filters(model, tolerance)
    counts = [len(keep) for keep in live]
    if tuple(counts) == FRONTEND_FILTERS:  # nothing dead: build_network would make no `ones` channel
        return model, counts
    pruned = build_network(counts)
    front = len(FRONTEND_FILTERS)
    midend_conv = conv_name(front)  # the first mid-end convolution, (7, 561, 64)
    backend_norm = bn_name(1 + front + 3)  # after the input's, the front-end's and the mid-end's batch norms
    rebuilt = {"ones", "dense", midend_conv, backend_norm}
    rebuilt |= {conv_name(i) for i in range(front)} | {bn_name(1 + i) for i in range(front)}
    for layer in pruned.layers:
        if layer.weights and layer.name not in rebuilt:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    constant = np.zeros(sum(FRONTEND_FILTERS), np.float64)
    kept = np.zeros(sum(FRONTEND_FILTERS), bool)
    offset = 0
    for i, keep in enumerate(live):
        kernel, bias = model.get_layer(conv_name(i)).get_weights()
        norm = model.get_layer(bn_name(1 + i)).get_weights()
        pruned.get_layer(conv_name(i)).set_weights([kernel[..., keep], bias[keep]])
        pruned.get_layer(bn_name(1 + i)).set_weights([w[keep] for w in norm])
        constant[offset:offset + len(bias)] = _batch_norm(norm, np.maximum(bias, 0.0))
        kept[offset + keep] = True
        offset += len(bias)
    kernel, bias = model.get_layer(midend_conv).get_weights()
    ones_kernel = np.einsum("tcf,c->tf", kernel[:, ~kept, :], constant[~kept])
    pruned.get_layer(midend_conv).set_weights(
        [np.concatenate([kernel[:, kept, :], ones_kernel[:, None, :]], axis=1).astype(np.float32), bias])
    pruned.get_layer("ones").set_weights([np.zeros((int(kept.sum()), 1), np.float32), np.ones(1, np.float32)])
    features = np.repeat(np.concatenate([kept, np.ones(3 * MIDEND_FILTERS, bool)]), 2)  # max, mean interleaved
    norm = model.get_layer(backend_norm).get_weights()
    folded = _batch_norm([w[~features] for w in norm], np.repeat(constant[~kept], 2))
    kernel, bias = model.get_layer("dense").get_weights()
    pruned.get_layer(backend_norm).set_weights([w[features] for w in norm])
    pruned.get_layer("dense").set_weights([kernel[features], (bias + folded @ kernel[~features]).astype(np.float32)])
    before, after = model.predict(probe, verbose=0), pruned.predict(probe, verbose=0)
    moved = max(float(np.abs(before[k] - after[k]).max()) for k in OUTPUTS)
    if moved > PRUNED_ATOL:
        raise ValueError(f"pruning to {counts} filters moves the outputs by {moved:.2g} (> {PRUNED_ATOL})")
    log.info("pruned the front-end to %s filters of %s (outputs moved by %.2g)", counts, list(FRONTEND_FILTERS),
             moved)
    return pruned, counts


def convert_weights(model: Any, checkpoint_prefix: str) -> list[str]:
    """Copy every checkpoint variable into the layer of the same name; returns the variables used.

    Fails loudly if a layer finds no variable or a shape differs (a reshape of the mid-end kernels aside)."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_prefix)
    available = reader.get_variable_to_shape_map()
    used: list[str] = []
    for layer in model.layers:
        names: tuple[str, ...]
        if layer.name.startswith("batch_normalization"):
            names = ("gamma", "beta", "moving_mean", "moving_variance")
        elif layer.name.startswith(("conv2d", "dense")):
            names = ("kernel", "bias")
        else:
            continue
        values = []
        for name, target in zip(names, layer.get_weights()):
            key = f"{layer.name}/{name}"
            if key not in available:
                raise KeyError(f"checkpoint has no {key}")
            value = reader.get_tensor(key)
            if value.shape != target.shape:  # a mid-end conv2d (7, C, 1, F) is our Conv1D (7, C, F)
                value = value.reshape(target.shape)
            values.append(value.astype(np.float32))
            used.append(key)
        layer.set_weights(values)
    return used


def export_tflite(model: Any, out_path: Path) -> int:
    """A LiteRT flatbuffer with a dynamic batch (no recurrent layers here, so every op is a builtin)."""
    from core.runtime import tensorflow

    tf = tensorflow()
    spec = tf.TensorSpec([None, FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS], tf.float32)
    with tempfile.TemporaryDirectory(prefix="frontend-export-") as saved:
        model.export(saved, format="tf_saved_model", verbose=False, input_signature=[spec])
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
    write_artefact(out_path, flatbuffer)
    return len(flatbuffer)


def probe_patches(clips: Sequence[Path]) -> np.ndarray:
    """Log-mel patches of real clips, on which pruning must leave the outputs where they were."""
    from core.audio import load_segments
    from core.frontend import patches_from_segments

    patches = [patches_from_segments(load_segments(p, max_seconds=60, max_segments=8).audio) for p in clips]
    if not patches:
        raise ValueError("no clips to check the pruned network on")
    return np.concatenate(patches)


def convert(musicnn_dir: Path, out_dir: Path, probe_clips: Sequence[Path]) -> dict[str, Path]:
    """Build, convert, prune (checked on `probe_clips`), save (.keras + .tflite + .onnx + sidecar .json) into
    `out_dir`."""
    model = build_network()
    used = convert_weights(model, str(musicnn_dir / MODEL) + "/")
    log.info("converted %d checkpoint variables", len(used))
    probe = probe_patches(probe_clips)
    model, filters = prune(model, probe)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{ARTEFACT}.{ext}" for ext in ("keras", "tflite", "onnx", "json")}
    with tempfile.TemporaryDirectory(prefix="frontend-keras-") as tmp:
        keras_tmp = Path(tmp) / "model.keras"
        model.save(keras_tmp)
        write_artefact(paths["keras"], keras_tmp.read_bytes())
    size = export_tflite(model, paths["tflite"])
    export_onnx(paths["tflite"], paths["onnx"], probe)  # the runtime where LiteRT has no wheel
    sidecar = Sidecar(
        constants=frontend_constants(), outputs=list(OUTPUTS),
        origin={"package": "musicnn 0.1.0", "model": MODEL, "licence": "ISC",
                "authors": "Jordi Pons and Xavier Serra, Music Technology Group, Universitat Pompeu Fabra",
                "trained_on": "Million Song Dataset, 50 most frequent last.fm tags",
                "checkpoint_variables": len(used), "tflite_bytes": size,
                "frontend_filters": {"kept": filters, "of": list(FRONTEND_FILTERS)}},
    )
    write_artefact(paths["json"], (json.dumps(asdict(sidecar), indent=2, sort_keys=True) + "\n").encode())
    return paths
