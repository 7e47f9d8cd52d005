"""The product's genre classifier: a bidirectional LSTM over a clip's sequence of front-end embeddings.

Each 3-s segment is embedded by the pre-trained front-end (core.frontend, 200-d `penultimate`); the BiLSTM
reads the whole sequence in both directions and gives each segment a genre distribution informed by its
neighbours; the track verdict is the tempered mean of those log-probabilities (core.genre), sections come
from the same per-segment outputs.

The artefact is `<stem>.keras` (the trained model, the reference) plus a sidecar `<stem>.json` (audio
constants, input standardisation, temperature, genres, how it was trained) and `<stem>.npz`, the same
weights for the runtime. Why a NumPy runtime: the sequence length is the clip's segment count (1 to 40),
and a Keras 3 LSTM converts to LiteRT only with a static batch *and* length (a padded sequence would leak
padding into the backward direction). One BiLSTM step of 32 units on 200 inputs is a few small matrix
products, so NumPy runs a 40-segment clip in well under a millisecond, with no TensorFlow; a test holds it
to the Keras model within 1e-5.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import GENRES
from core.errors import ModelMismatch
from core.frontend import EMBEDDING_DIM
from core.genre import GenreVerdict, check_constants, verdict_from_segments

log = logging.getLogger(__name__)

KIND = "bilstm-frontend"
ARTEFACT_VERSION = 2
LOG_FLOOR = 1e-12
"""Probabilities are floored here before the log: one segment's hard zero must not veto a whole track."""


@dataclass(frozen=True)
class Sidecar:
    """Everything besides the weights that inference needs, and what a reader needs to trust them."""

    constants: dict[str, Any]
    frontend: dict[str, Any]
    genres: list[str]
    mean: list[float]
    std: list[float]
    temperature: float
    architecture: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND
    version: int = ARTEFACT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Sidecar:
        raw = json.loads(text)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def read_sidecar(path: Path) -> Sidecar:
    """The sidecar, checked against our audio and front-end constants, genres and input size."""
    from core.constants import frontend_constants

    if not path.is_file():
        raise ModelMismatch(f"{path} is missing: cannot tell how the genre model was made")
    sidecar = Sidecar.from_json(path.read_text())
    if sidecar.kind != KIND or sidecar.version != ARTEFACT_VERSION:
        raise ModelMismatch(f"{path} is a {sidecar.kind} artefact version {sidecar.version}; "
                            f"this code reads {KIND} version {ARTEFACT_VERSION}")
    check_constants(sidecar.constants, str(path))
    theirs, ours = sidecar.frontend, frontend_constants()
    if theirs != ours:
        raise ModelMismatch(f"{path} reads a front-end made with other constants: {theirs} (ours {ours})")
    if tuple(sidecar.genres) != GENRES:
        raise ModelMismatch(f"{path} predicts {sidecar.genres}, not our genres {list(GENRES)}")
    if len(sidecar.mean) != EMBEDDING_DIM or len(sidecar.std) != EMBEDDING_DIM:
        raise ModelMismatch(f"{path} standardises {len(sidecar.mean)} inputs, the front-end gives {EMBEDDING_DIM}")
    return sidecar


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras' LSTM (gates i, f, c, o; tanh and sigmoid) over one (steps, inputs) sequence -> (steps, units)."""
    units = recurrent.shape[0]
    projected = x @ kernel + bias
    h = np.zeros(units, x.dtype)
    c = np.zeros(units, x.dtype)
    out = np.empty((x.shape[0], units), x.dtype)
    for t in range(x.shape[0]):
        z = projected[t] + h @ recurrent
        i, f, g, o = _sigmoid(z[:units]), _sigmoid(z[units:2 * units]), np.tanh(z[2 * units:3 * units]), \
            _sigmoid(z[3 * units:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[t] = h
    return out


@dataclass(frozen=True)
class Weights:
    """Bidirectional LSTM (forward and backward kernels, recurrent kernels, biases) and the per-step Dense.

    The Dense reads the two directions' states and, when its kernel has the rows for it (`skip`), the
    segment's own standardised embedding too: the LSTM then adds context to what the segment says alone
    instead of having to carry all of it through its state."""

    forward: tuple[np.ndarray, np.ndarray, np.ndarray]
    backward: tuple[np.ndarray, np.ndarray, np.ndarray]
    dense: tuple[np.ndarray, np.ndarray]

    NAMES = ("fw_kernel", "fw_recurrent", "fw_bias", "bw_kernel", "bw_recurrent", "bw_bias", "dense_kernel",
             "dense_bias")

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(zip(self.NAMES, (*self.forward, *self.backward, *self.dense)))

    @classmethod
    def from_arrays(cls, arrays: Any) -> Weights:
        a = [np.asarray(arrays[n], np.float64) for n in cls.NAMES]
        return cls((a[0], a[1], a[2]), (a[3], a[4], a[5]), (a[6], a[7]))

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(steps, EMBEDDING_DIM) standardised -> (steps, len(GENRES)) per-step logits."""
        fw = lstm(x, *self.forward)
        bw = lstm(x[::-1], *self.backward)[::-1]
        parts = [fw, bw]
        if self.dense[0].shape[0] == fw.shape[1] + bw.shape[1] + x.shape[1]:
            parts.append(x)
        return np.concatenate(parts, axis=1) @ self.dense[0] + self.dense[1]


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def floored_log_probs(weights: Weights, x: np.ndarray) -> np.ndarray:
    """Standardised (steps, EMBEDDING_DIM) -> per-segment log-probabilities floored at log(LOG_FLOOR), as the
    shipped model and the training heads both score a sequence."""
    return np.maximum(log_softmax(weights.logits(x)), np.log(LOG_FLOOR))


class BilstmGenreModel:
    """The GenreModel of core.genre: a clip's front-end embeddings in, a calibrated verdict out."""

    def __init__(self, name: str, sidecar: Sidecar, weights: Weights) -> None:
        self.name = name
        self.sidecar = sidecar
        self.weights = weights
        self._mean = np.asarray(sidecar.mean, np.float64)
        self._std = np.asarray(sidecar.std, np.float64)

    def segment_log_probs(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, EMBEDDING_DIM) in segment order -> (n, len(GENRES)) log-probabilities."""
        if embeddings.ndim != 2 or embeddings.shape[1] != EMBEDDING_DIM or not len(embeddings):
            raise ValueError(f"embeddings of shape {embeddings.shape}; expected (n >= 1, {EMBEDDING_DIM})")
        return floored_log_probs(self.weights, (np.asarray(embeddings, np.float64) - self._mean) / self._std)

    def predict(self, features: Any) -> GenreVerdict:
        return verdict_from_segments(self.segment_log_probs(features.embeddings), features.starts,
                                     model=self.name, temperature=self.sidecar.temperature)


def load(path: Path, entry: dict[str, Any] | None = None) -> BilstmGenreModel:
    """Load the artefact whose weights are `path` (.npz; the .keras and .json share its stem)."""
    from core.frontend import artefact_path

    path = Path(path)
    if not artefact_path(path.parent).is_file():
        raise FileNotFoundError(f"{path.name} reads the front-end, and {artefact_path(path.parent)} is missing")
    sidecar = read_sidecar(path.with_suffix(".json"))
    with np.load(path) as arrays:
        weights = Weights.from_arrays(arrays)
    name = (entry or {}).get("name") or path.stem
    log.info("genre model %s loaded", name)
    return BilstmGenreModel(name, sidecar, weights)
