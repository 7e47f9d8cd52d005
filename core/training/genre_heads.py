"""Genre heads over front-end embedding sequences, fitted the same way so they can be compared side by side:
the BiLSTM (the product's model) and a per-segment logistic regression (the baseline it must beat).

Both see a clip as its (segments, 200) sequence of front-end `penultimate` embeddings, standardised with
the training set's statistics, and give per-segment log-probabilities; the track verdict is their mean
(core.genre.verdict_from_segments). Both weight each training clip as one unit split over its segments
(a 20-segment excerpt does not count 20 times a 1-segment cut) and each genre by the inverse of its clip
count (the thin genres are thin here). TensorFlow is imported only when a BiLSTM is fitted.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from core.constants import GENRES
from core.genre.bilstm import LOG_FLOOR, Weights, floored_log_probs

log = logging.getLogger(__name__)

STD_FLOOR = 1e-6
MAX_STEPS = 40
"""Longest sequence a head is trained on: inference never sees more (core.audio's max_segments)."""


class Head(Protocol):
    def segment_log_probs(self, sequence: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class HeadConfig:
    """A candidate. `kind` "bilstm" uses units/dropout/epochs/crop; "logistic" uses c."""

    kind: str
    units: int = 32
    dropout: float = 0.3
    skip: bool = True
    """The per-segment Dense also reads the segment's own embedding (see core.genre.bilstm.Weights)."""
    residual: bool = False
    """The segment's own logits come from a per-segment logistic read-out fitted first (C = `c`) and kept
    fixed; the BiLSTM learns only what the context adds to them, from zero, under the `l2` penalty."""
    epochs: int = 30
    crop: float = 0.5
    """Share of training sequences replaced, each epoch, by a random contiguous crop (1 to n segments), so
    that short uploads look like something the model has seen."""
    medley: float = 0.0
    """Medleys added per epoch, as a share of the training sequences: segments of several clips of one
    genre (uniformly drawn) strung into a 2-10-segment sequence. Here only four genres have full-length
    tracks, the other six mostly one 2-3-s cut each, so without them a sequence's length alone says
    "blues, classical, jazz or pop" to the BiLSTM; medleys give every genre long sequences."""
    c: float = 0.1
    l2: float = 0.0
    """L2 penalty on the output layer's kernel (what keeps the logistic baseline from overfitting)."""
    seed: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3

    @property
    def name(self) -> str:
        if self.kind == "logistic":
            return f"logistic C={self.c:g}"
        skip = f" residual on logistic C={self.c:g}" if self.residual else " skip" if self.skip else ""
        decay = f" l2 {self.l2:g}" if self.l2 else ""
        medley = f" medley {self.medley:g}" if self.medley else ""
        return (f"bilstm {self.units}u{skip} drop {self.dropout:g}{decay} crop {self.crop:g}{medley} "
                f"{self.epochs} ep")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Standardiser:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, sequences: Sequence[np.ndarray]) -> Standardiser:
        x = np.concatenate(sequences).astype(np.float64)
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), STD_FLOOR))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) / self.std


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per genre: total clips / (genres present x clips of that genre); 0 for an absent genre."""
    counts = np.bincount(labels, minlength=len(GENRES)).astype(np.float64)
    present = counts > 0
    weights = np.zeros(len(GENRES))
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class LogisticHead:
    def __init__(self, standardiser: Standardiser, model: Any) -> None:
        self.standardiser = standardiser
        self.model = model

    def segment_log_probs(self, sequence: np.ndarray) -> np.ndarray:
        out = np.full((len(sequence), len(GENRES)), np.log(LOG_FLOOR))
        out[:, self.model.classes_] = self.model.predict_log_proba(self.standardiser(sequence))
        return np.maximum(out, np.log(LOG_FLOOR))


def fit_logistic(sequences: Sequence[np.ndarray], labels: np.ndarray, config: HeadConfig) -> LogisticHead:
    from sklearn.linear_model import LogisticRegression

    standardiser = Standardiser.fit(sequences)
    x = standardiser(np.concatenate(sequences))
    y = np.concatenate([np.full(len(s), label) for s, label in zip(sequences, labels)])
    cw = class_weights(labels)
    w = np.concatenate([np.full(len(s), cw[label] / len(s)) for s, label in zip(sequences, labels)])
    model = LogisticRegression(C=config.c, max_iter=3000)
    model.fit(x, y, sample_weight=w * len(w) / w.sum())
    return LogisticHead(standardiser, model)


class BilstmHead:
    """A fitted BiLSTM: the Keras model (for saving) and its weights in the NumPy runtime's form."""

    def __init__(self, standardiser: Standardiser, keras_model: Any, config: HeadConfig) -> None:
        self.standardiser = standardiser
        self.keras_model = keras_model
        self.config = config
        self.weights = keras_weights(keras_model)

    def segment_log_probs(self, sequence: np.ndarray) -> np.ndarray:
        return floored_log_probs(self.weights, self.standardiser(sequence))


def build_bilstm(units: int, dropout: float, skip: bool = True, l2: float = 0.0,
                 linear: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """(batch, steps, 200) standardised embeddings, zero-padded -> (batch, steps, genres) probabilities.

    `linear` (kernel (200, genres), bias (genres,)): a fitted per-segment read-out, frozen, to which the
    BiLSTM's context is added (HeadConfig.residual)."""
    from core.frontend import EMBEDDING_DIM
    from core.runtime import tensorflow

    tensorflow()
    import keras
    from keras import layers

    x_in = keras.Input((None, EMBEDDING_DIM), name="embeddings")
    masked = layers.Masking(0.0)(x_in)
    x = layers.Dropout(dropout)(masked)
    h = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name="bilstm")(x)
    h = layers.Dropout(dropout)(h)
    regulariser = keras.regularizers.L2(l2) if l2 else None
    if linear is not None:
        context = layers.Dense(len(GENRES), name="context", kernel_regularizer=regulariser,
                               kernel_initializer="zeros")(h)
        own_layer = layers.Dense(len(GENRES), name="segment", trainable=False)
        own = own_layer(masked)
        own_layer.set_weights([np.asarray(w, np.float32) for w in linear])
        out = layers.Activation("softmax", name="genre")(layers.Add()([context, own]))
        return keras.Model(x_in, out, name="genre_bilstm")
    if skip:  # the states first, then the segment's own input: the order core.genre.bilstm.Weights reads
        h = layers.Concatenate(axis=-1)([h, x])
    out = layers.Dense(len(GENRES), activation="softmax", name="genre", kernel_regularizer=regulariser)(h)
    return keras.Model(x_in, out, name="genre_bilstm")


def keras_weights(model: Any) -> Weights:
    """The Keras model's weights in the order the NumPy runtime (core.genre.bilstm.Weights) reads them."""
    bi = model.get_layer("bilstm")
    fw = tuple(np.asarray(w, np.float64) for w in bi.forward_layer.get_weights())
    bw = tuple(np.asarray(w, np.float64) for w in bi.backward_layer.get_weights())
    names = {layer.name for layer in model.layers}
    if "segment" in names:  # context + frozen read-out: one Dense over [states, embedding] in the runtime
        (wh, bh), (wx, bx) = (model.get_layer(n).get_weights() for n in ("context", "segment"))
        dense = (np.vstack([wh, wx]).astype(np.float64), (bh + bx).astype(np.float64))
    else:
        dense = tuple(np.asarray(w, np.float64) for w in model.get_layer("genre").get_weights())
    return Weights(fw, bw, dense)  # type: ignore[arg-type]


def _batch(sequences: Sequence[np.ndarray], labels: np.ndarray, step_weight: np.ndarray,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-padded inputs, per-step labels and per-step weights (0 on padding)."""
    steps = max(len(s) for s in sequences)
    x = np.zeros((len(sequences), steps, sequences[0].shape[1]), np.float32)
    y = np.zeros((len(sequences), steps), np.int64)
    w = np.zeros((len(sequences), steps), np.float32)
    for i, (s, label, weight) in enumerate(zip(sequences, labels, step_weight)):
        x[i, :len(s)] = s
        y[i, :len(s)] = label
        w[i, :len(s)] = weight / len(s)
    return x, y, w


def _crop(sequence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(sequence)
    if n <= 1:
        return sequence
    length = int(rng.integers(1, n + 1))
    start = int(rng.integers(0, n - length + 1))
    return sequence[start:start + length]


MEDLEY_LENGTHS = (2, 10)


def _medleys(z: Sequence[np.ndarray], labels: np.ndarray, count: int,
             rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    by_genre = {g: np.flatnonzero(labels == g) for g in np.unique(labels)}
    genres = rng.choice(list(by_genre), size=count)
    out = []
    for g in genres:
        length, parts, total = int(rng.integers(MEDLEY_LENGTHS[0], MEDLEY_LENGTHS[1] + 1)), [], 0
        while total < length:
            piece = _crop(z[int(rng.choice(by_genre[g]))], rng)[: length - total]
            parts.append(piece)
            total += len(piece)
        out.append(np.concatenate(parts))
    return out, genres.astype(labels.dtype)


def fit_bilstm(sequences: Sequence[np.ndarray], labels: np.ndarray, config: HeadConfig) -> BilstmHead:
    """Fixed epochs (chosen by cross-validation, not by peeking at a held-out set), Adam, per-step loss."""
    from core.runtime import tensorflow

    tensorflow(2)
    import keras

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    standardiser = Standardiser.fit(sequences)
    z = [standardiser(s[:MAX_STEPS]).astype(np.float32) for s in sequences]
    cw = class_weights(labels)
    clip_weight = cw[labels]
    linear = None
    if config.residual:
        readout = fit_logistic(sequences, labels, config).model
        kernel = np.zeros((readout.coef_.shape[1], len(GENRES)))
        bias = np.full(len(GENRES), -30.0)  # a genre absent from training stays out of reach
        kernel[:, readout.classes_], bias[readout.classes_] = readout.coef_.T, readout.intercept_
        linear = (kernel, bias)
    model = build_bilstm(config.units, config.dropout, config.skip, config.l2, linear)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss="sparse_categorical_crossentropy", weighted_metrics=[])
    for _ in range(config.epochs):
        seqs = [(_crop(s, rng) if rng.random() < config.crop else s) for s in z]
        medleys, medley_labels = _medleys(z, labels, int(config.medley * len(z)), rng)
        seqs += medleys
        epoch_labels = np.concatenate([labels, medley_labels])
        epoch_weights = np.concatenate([clip_weight, np.ones(len(medleys))])
        order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths batch together
        starts = np.arange(0, len(order), config.batch_size)
        rng.shuffle(starts)
        for start in starts:
            idx = order[start:start + config.batch_size]
            x, y, w = _batch([seqs[i] for i in idx], epoch_labels[idx], epoch_weights[idx])
            model.train_on_batch(x, y, sample_weight=w * (w.size / max(w.sum(), 1e-9)))
    return BilstmHead(standardiser, model, config)


def fit_head(sequences: Sequence[np.ndarray], labels: np.ndarray, config: HeadConfig) -> Head:
    if config.kind == "logistic":
        return fit_logistic(sequences, labels, config)
    if config.kind == "bilstm":
        return fit_bilstm(sequences, labels, config)
    raise ValueError(f"unknown head kind {config.kind!r}")
