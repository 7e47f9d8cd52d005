"""Genre heads over front-end embedding sequences, fitted the same way so they can be compared side by side:
the BiLSTM (the product's model) and a per-segment logistic regression (the baseline it must beat).

Both see a clip as its (segments, 200) sequence of front-end `penultimate` embeddings, standardised with
the training set's statistics, and give per-segment log-probabilities; the track verdict is their mean
(core.genre.verdict_from_segments). Both weight each training clip as one unit split over its segments
(a 20-segment excerpt does not count 20 times a 1-segment cut) and each genre by the inverse of its clip
count (the thin genres are thin here). TensorFlow is imported only when a BiLSTM is fitted.

Labels are sets: each clip comes with a (genres,) mask of the genres it may be (one for GTZAN and Emotify,
several for a weakly-labelled commercial song, core.training.genre_weak). Both heads minimise the
partial-label loss -log(sum of the allowed genres' probabilities), which is the usual cross-entropy when the
set is one genre, and leaves the head free to choose among the allowed ones when it is not.
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
    balance: float = 1.0
    """Class weights are (inverse clip share) ** balance: 1 balances the genres, 0 weighs every clip alike."""
    l2: float = 0.0
    """L2 penalty on the output layer's kernel (what keeps the logistic baseline from overfitting)."""
    weak: str = "none"
    """How the weakly-labelled 4Q songs are used (core.training.genre_train): "none", "clean" (only songs
    whose allowed set is one genre) or "partial" (every mapped song, under the partial-label loss)."""
    seed: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3

    @property
    def name(self) -> str:
        balance = f" balance {self.balance:g}" if self.balance != 1.0 else ""
        balance += f", 4Q {self.weak}" if self.weak != "none" else ""
        if self.kind == "logistic":
            return f"logistic C={self.c:g}{balance}"
        skip = f" residual on logistic C={self.c:g}" if self.residual else " skip" if self.skip else ""
        decay = f" l2 {self.l2:g}" if self.l2 else ""
        medley = f" medley {self.medley:g}" if self.medley else ""
        return (f"bilstm {self.units}u{skip} drop {self.dropout:g}{decay} crop {self.crop:g}{medley} "
                f"{self.epochs} ep{balance}")

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


def as_masks(labels: np.ndarray) -> np.ndarray:
    """(clips, genres) allowed-genre masks; a (clips,) array of genre indices is read as one genre each."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return np.eye(len(GENRES), dtype=np.float32)[labels]
    return labels.astype(np.float32)


def clip_weights(masks: np.ndarray, balance: float = 1.0) -> np.ndarray:
    """Per clip: the mean class weight of its allowed genres. A genre's weight is (total clips / (genres
    present x its clips)) ** balance, a clip of a k-genre set counting 1/k towards each of them."""
    share = masks / masks.sum(axis=1, keepdims=True)
    counts = share.sum(axis=0)
    present = counts > 0
    weights = np.zeros(len(GENRES))
    weights[present] = (counts.sum() / (present.sum() * counts[present])) ** balance
    return share @ weights


def partial_label_loss(logits: np.ndarray, masks: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """sum_i weights_i * -log(sum of softmax(logits_i) over masks_i), and its gradient by the logits.

    The gradient is weights * (p - q), q the probabilities renormalised within the allowed set: the head is
    pulled towards the allowed genres in the proportions it already gives them."""
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore"):
        allowed = log_p + np.log(masks)
    top = allowed.max(axis=1, keepdims=True)
    log_allowed = top[:, 0] + np.log(np.exp(allowed - top).sum(axis=1))
    q = np.exp(allowed - log_allowed[:, None])
    return float(-(weights * log_allowed).sum()), weights[:, None] * (np.exp(log_p) - q)


@dataclass(frozen=True)
class Logistic:
    """A multinomial logistic read-out over the genres in `classes` (those some training clip allows)."""

    kernel: np.ndarray
    bias: np.ndarray
    classes: np.ndarray

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.kernel + self.bias
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_partial_logistic(x: np.ndarray, masks: np.ndarray, weights: np.ndarray, c: float) -> Logistic:
    """Minimise partial_label_loss + |kernel|^2 / (2c) by L-BFGS (scikit-learn's objective for
    LogisticRegression(C=c) when every set is one genre; the bias is not penalised)."""
    from scipy.optimize import minimize

    classes = np.flatnonzero(masks.any(axis=0))
    m = masks[:, classes]
    d, k = x.shape[1], len(classes)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        kernel, bias = theta[:d * k].reshape(d, k), theta[d * k:]
        loss, grad = partial_label_loss(x @ kernel + bias, m, weights)
        loss += 0.5 * float((kernel ** 2).sum()) / c
        return loss, np.concatenate([(x.T @ grad + kernel / c).ravel(), grad.sum(axis=0)])

    result = minimize(objective, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                      options={"maxiter": 3000})
    return Logistic(result.x[:d * k].reshape(d, k), result.x[d * k:], classes)


class LogisticHead:
    def __init__(self, standardiser: Standardiser, model: Logistic) -> None:
        self.standardiser = standardiser
        self.model = model

    def segment_log_probs(self, sequence: np.ndarray) -> np.ndarray:
        out = np.full((len(sequence), len(GENRES)), np.log(LOG_FLOOR))
        out[:, self.model.classes] = self.model.log_proba(self.standardiser(sequence))
        return np.maximum(out, np.log(LOG_FLOOR))


def fit_logistic(sequences: Sequence[np.ndarray], labels: np.ndarray, config: HeadConfig) -> LogisticHead:
    standardiser = Standardiser.fit(sequences)
    x = standardiser(np.concatenate(sequences))
    masks = as_masks(labels)
    cw = clip_weights(masks, config.balance)
    m = np.concatenate([np.repeat(mask[None], len(s), axis=0) for s, mask in zip(sequences, masks)])
    w = np.concatenate([np.full(len(s), weight / len(s)) for s, weight in zip(sequences, cw)])
    return LogisticHead(standardiser, fit_partial_logistic(x, m, w * len(w) / w.sum(), config.c))


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


def _batch(sequences: Sequence[np.ndarray], masks: np.ndarray, step_weight: np.ndarray,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-padded inputs, per-step allowed-genre masks and per-step weights (0 on padding)."""
    steps = max(len(s) for s in sequences)
    x = np.zeros((len(sequences), steps, sequences[0].shape[1]), np.float32)
    y = np.zeros((len(sequences), steps, masks.shape[1]), np.float32)
    w = np.zeros((len(sequences), steps), np.float32)
    for i, (s, mask, weight) in enumerate(zip(sequences, masks, step_weight)):
        x[i, :len(s)] = s
        y[i, :len(s)] = mask
        w[i, :len(s)] = weight / len(s)
    return x, y, w


def keras_partial_label_loss(y_true: Any, y_pred: Any) -> Any:
    """Per step: -log(sum of the predicted probabilities over the allowed genres `y_true`)."""
    from keras import ops

    return -ops.log(ops.maximum(ops.sum(y_true * y_pred, axis=-1), LOG_FLOOR))


def _crop(sequence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(sequence)
    if n <= 1:
        return sequence
    length = int(rng.integers(1, n + 1))
    start = int(rng.integers(0, n - length + 1))
    return sequence[start:start + length]


MEDLEY_LENGTHS = (2, 10)


def _medleys(z: Sequence[np.ndarray], masks: np.ndarray, count: int,
             rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Medleys of clips sharing one allowed set (so every step keeps a true label set)."""
    sets, which = np.unique(masks, axis=0, return_inverse=True)
    which = which.ravel()
    by_set = [np.flatnonzero(which == k) for k in range(len(sets))]
    chosen = rng.integers(0, len(sets), size=count)
    out = []
    for k in chosen:
        length, parts, total = int(rng.integers(MEDLEY_LENGTHS[0], MEDLEY_LENGTHS[1] + 1)), [], 0
        while total < length:
            piece = _crop(z[int(rng.choice(by_set[k]))], rng)[: length - total]
            parts.append(piece)
            total += len(piece)
        out.append(np.concatenate(parts))
    return out, sets[chosen].reshape(count, masks.shape[1])


def fit_bilstm(sequences: Sequence[np.ndarray], labels: np.ndarray, config: HeadConfig) -> BilstmHead:
    """Fixed epochs (chosen by cross-validation, not by peeking at a held-out set), Adam, per-step loss."""
    from core.runtime import tensorflow

    tensorflow(2)
    import keras

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    standardiser = Standardiser.fit(sequences)
    z = [standardiser(s[:MAX_STEPS]).astype(np.float32) for s in sequences]
    masks = as_masks(labels)
    clip_weight = clip_weights(masks, config.balance)
    linear = None
    if config.residual:
        readout = fit_logistic(sequences, masks, config).model
        kernel = np.zeros((readout.kernel.shape[0], len(GENRES)))
        bias = np.full(len(GENRES), -30.0)  # a genre absent from training stays out of reach
        kernel[:, readout.classes], bias[readout.classes] = readout.kernel, readout.bias
        linear = (kernel, bias)
    model = build_bilstm(config.units, config.dropout, config.skip, config.l2, linear)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=keras_partial_label_loss, weighted_metrics=[])
    for _ in range(config.epochs):
        seqs = [(_crop(s, rng) if rng.random() < config.crop else s) for s in z]
        medleys, medley_labels = _medleys(z, masks, int(config.medley * len(z)), rng)
        seqs += medleys
        epoch_labels = np.concatenate([masks, medley_labels])
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
