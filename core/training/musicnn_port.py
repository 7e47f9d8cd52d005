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
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import FRONTEND_N_MELS, FRONTEND_PATCH_FRAMES, frontend_constants
from core.frontend import ARTEFACT, OUTPUTS, Sidecar
from core.training.artefacts import write_artefact

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


def build_network() -> Any:
    """The MSD_musicnn network as a Keras 3 functional model: (batch, 187, 96) log-mel -> OUTPUTS.

    Layers are named after the checkpoint variables they take (conv2d, conv2d_1, ..., batch_normalization,
    batch_normalization_1, ...), so conversion is by name."""
    from core.runtime import tensorflow

    tensorflow()
    import keras
    from keras import layers

    def bn(i: int) -> layers.Layer:
        return layers.BatchNormalization(epsilon=BN_EPSILON, name=f"batch_normalization{'_' + str(i) if i else ''}")

    def conv_name(i: int) -> str:
        return f"conv2d{'_' + str(i) if i else ''}"

    x_in = keras.Input((FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS), name="log_mel")
    x = layers.Reshape((FRONTEND_PATCH_FRAMES, FRONTEND_N_MELS, 1))(x_in)
    x = bn(0)(x)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)))(x)
    front: list[Any] = []
    for i, kernel in enumerate(TIMBRAL):
        f = layers.Conv2D(TIMBRAL_FILTERS, kernel, padding="valid", activation="relu", name=conv_name(i))(padded)
        f = bn(1 + i)(f)
        f = layers.MaxPooling2D((1, f.shape[2]))(f)
        front.append(layers.Reshape((FRONTEND_PATCH_FRAMES, TIMBRAL_FILTERS))(f))
    for i, length in enumerate(TEMPORAL):
        s = layers.Conv2D(TEMPORAL_FILTERS, (length, 1), padding="same", activation="relu",
                          name=conv_name(2 + i))(x)
        s = bn(3 + i)(s)
        s = layers.MaxPooling2D((1, s.shape[2]))(s)
        front.append(layers.Reshape((FRONTEND_PATCH_FRAMES, TEMPORAL_FILTERS))(s))
    frontend = layers.Concatenate(axis=-1)(front)  # (187, 561)

    mid = [frontend]
    h = frontend
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


def convert(musicnn_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Build, convert, save (.keras + .tflite + sidecar .json) into `out_dir`."""
    model = build_network()
    used = convert_weights(model, str(musicnn_dir / MODEL) + "/")
    log.info("converted %d checkpoint variables", len(used))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{ARTEFACT}.{ext}" for ext in ("keras", "tflite", "json")}
    with tempfile.TemporaryDirectory(prefix="frontend-keras-") as tmp:
        keras_tmp = Path(tmp) / "model.keras"
        model.save(keras_tmp)
        write_artefact(paths["keras"], keras_tmp.read_bytes())
    size = export_tflite(model, paths["tflite"])
    sidecar = Sidecar(
        constants=frontend_constants(), outputs=list(OUTPUTS),
        origin={"package": "musicnn 0.1.0", "model": MODEL, "licence": "ISC",
                "authors": "Jordi Pons and Xavier Serra, Music Technology Group, Universitat Pompeu Fabra",
                "trained_on": "Million Song Dataset, 50 most frequent last.fm tags",
                "checkpoint_variables": len(used), "tflite_bytes": size},
    )
    write_artefact(paths["json"], (json.dumps(asdict(sidecar), indent=2, sort_keys=True) + "\n").encode())
    return paths
