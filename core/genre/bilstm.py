"""BiLSTM genre model: each 3-s segment's MFCC sequence in, a calibrated track verdict out.

The artefact is a `.keras` file, a JSON sidecar of the same stem (audio constants, standardisation
statistics, temperature, genres, how it was trained) and, when exported, a `.tflite` of the same stem that
`core.genre.export` prefers at run time. The sidecar is read and checked before any weights are loaded, so a
model made with other audio constants is refused without paying for a runtime.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import FRAMES_PER_SEGMENT, GENRES, N_MFCC
from core.errors import ModelMismatch
from core.features import SegmentFeatures
from core.genre import GenreVerdict, check_constants, verdict_from_segments
from core.genre.export import DEFAULT_THREADS, Runner, open_runner

log = logging.getLogger(__name__)

KIND = "bilstm"
ARTEFACT_VERSION = 1
LOG_FLOOR = 1e-12
"""Probabilities are floored here before the log: one segment's hard zero must not veto a whole track."""


@dataclass(frozen=True)
class Sidecar:
    """Everything besides the weights that inference needs, and what a reader needs to trust them."""

    constants: dict[str, Any]
    genres: list[str]
    mean: list[float]
    std: list[float]
    temperature: float
    architecture: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND
    version: int = ARTEFACT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Sidecar:
        raw = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


def sidecar_path(keras_path: Path) -> Path:
    return keras_path.with_suffix(".json")


def write_sidecar(keras_path: Path, sidecar: Sidecar) -> Path:
    """Write atomically: a half-written sidecar next to good weights would make the model unloadable."""
    path = sidecar_path(keras_path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, delete=False) as tmp:
        tmp.write(sidecar.to_json())
    os.chmod(tmp.name, 0o644)  # an artefact others read, not the private file mkstemp makes
    os.replace(tmp.name, path)
    return path


def read_sidecar(keras_path: Path) -> Sidecar:
    """The sidecar, checked against our audio constants, genres and input shape (ModelMismatch if not)."""
    path = sidecar_path(keras_path)
    if not path.is_file():
        raise ModelMismatch(f"{keras_path} has no sidecar {path.name}: cannot tell how it was made")
    sidecar = Sidecar.from_json(path.read_text())
    if sidecar.kind != KIND or sidecar.version != ARTEFACT_VERSION:
        raise ModelMismatch(f"{path} is a {sidecar.kind} artefact version {sidecar.version}; "
                            f"this code reads {KIND} version {ARTEFACT_VERSION}")
    check_constants(sidecar.constants, str(path))
    if tuple(sidecar.genres) != GENRES:
        raise ModelMismatch(f"{path} predicts {sidecar.genres}, not our genres {list(GENRES)}")
    if len(sidecar.mean) != N_MFCC or len(sidecar.std) != N_MFCC:
        raise ModelMismatch(f"{path} standardises {len(sidecar.mean)} coefficients, we compute {N_MFCC}")
    return sidecar


def standardise(mfcc: np.ndarray, mean: np.ndarray | list[float],
                std: np.ndarray | list[float]) -> np.ndarray:
    """Per-coefficient standardisation of (n, frames, N_MFCC) sequences with the training statistics."""
    return ((mfcc - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


class BilstmGenreModel:
    """The GenreModel of core.genre over one BiLSTM artefact and whichever runtime opened it."""

    def __init__(self, name: str, sidecar: Sidecar, runner: Runner) -> None:
        self.name = name
        self.sidecar = sidecar
        self.runner = runner
        self._mean = np.asarray(sidecar.mean, np.float32)
        self._std = np.asarray(sidecar.std, np.float32)

    @property
    def runtime(self) -> str:
        return self.runner.runtime

    def segment_log_probs(self, mfcc: np.ndarray) -> np.ndarray:
        """(n, FRAMES_PER_SEGMENT, N_MFCC) raw MFCC sequences -> (n, len(GENRES)) log-probabilities."""
        if mfcc.ndim != 3 or mfcc.shape[1:] != (FRAMES_PER_SEGMENT, N_MFCC):
            raise ValueError(f"MFCC sequences of shape {mfcc.shape}; "
                             f"expected (n, {FRAMES_PER_SEGMENT}, {N_MFCC})")
        probs = self.runner(standardise(mfcc, self._mean, self._std))
        return np.log(np.maximum(probs.astype(np.float64), LOG_FLOOR))

    def predict(self, features: SegmentFeatures) -> GenreVerdict:
        return verdict_from_segments(self.segment_log_probs(features.mfcc), features.starts, model=self.name,
                                     temperature=self.sidecar.temperature)


def load(path: Path, entry: dict[str, Any] | None = None, *, runtime: str | None = None,
         threads: int = DEFAULT_THREADS) -> BilstmGenreModel:
    """Load the artefact at `path` (the .keras file) in the fastest runtime available (or `runtime`).

    `entry` is the manifest entry (core.genre.load_genre_model); its "name" names the model."""
    path = Path(path)
    sidecar = read_sidecar(path)
    runner = open_runner(path, runtime=runtime, threads=threads)
    name = (entry or {}).get("name") or path.stem
    log.info("genre model %s loaded (%s runtime)", name, runner.runtime)
    return BilstmGenreModel(name, sidecar, runner)
