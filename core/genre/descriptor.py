"""Genre from the seed's 57 descriptors: a small model trained on the GTZAN 30-s table, run on our own audio.

The table holds one row per 30-s track: the mean and variance of each frame feature over the whole track.
A clip we analyse is cut into 3-s segments (core.audio) whose descriptors core.features computes with the
clip as level reference; `aggregate` pools them into the statistics the table holds (law of total
variance, median tempo), per window of about 30 s, so the model always sees what it was trained on. A long
track gets a verdict per window (`sections`) and an overall one (windows' log-probabilities averaged).

What the model reads is not the raw table but `derived_features` of it, chosen for recordings unlike GTZAN's:
- level-free: a recording's gain scales rms, the HPSS variances and shifts MFCC-1's mean; those enter only
  as ratios to the rms (mastering loudness says more about the year and the uploader than the genre);
- variances on a log scale (they span decades);
- optionally without the MFCC means (cepstral mean normalisation): they carry the recording chain's fixed
  spectral envelope (microphones, EQ, codec low-pass) as much as the music; the training script decides
  by validation accuracy whether to keep them.

The artefact is one JSON file (no pickles): the audio constants, the 57 column names, the derived inputs by
name, standardisation, the weights of a dense network (one layer for logistic regression), the temperature
fitted on validation data, and how it was trained. Inference is plain numpy.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import GENRES, SEGMENT_SECONDS, audio_constants
from core.errors import ModelMismatch
from core.features import DESCRIPTOR_NAMES, SegmentFeatures, require_descriptor_libraries
from core.genre import SECTION_SECONDS, GenreVerdict, Section, check_constants, softmax

log = logging.getLogger(__name__)

KIND = "descriptor"
FORMAT = "cratedigger.genre-descriptor"
FORMAT_VERSION = 1

MEL_BANDS = 128
"""librosa's mel bands: MFCC-1 (orthonormal DCT-II) moves by sqrt(128) × the gain in dB."""

MIN_WINDOW_SEGMENTS = 5
"""A window pools at least this many segments (15 s) unless the clip has fewer: variances from two or three
segments are far from the 30-s statistics the model was trained on."""

EPS = 1e-12

LEVEL_COLUMNS = frozenset(
    {"rms_mean", "rms_var", "harmony_mean", "harmony_var", "perceptr_mean", "perceptr_var", "mfcc1_mean"}
)
"""Columns that follow the recording's gain; `derived_features` replaces them with level-free ratios.
harmony_mean and perceptr_mean (the HPSS waveforms' DC offsets, ~1e-5) are dropped outright."""

_COL = {name: i for i, name in enumerate(DESCRIPTOR_NAMES)}


def _derived_names() -> tuple[str, ...]:
    names = []
    for name in DESCRIPTOR_NAMES:
        if name in LEVEL_COLUMNS:
            continue
        names.append(f"log_{name}" if name.endswith("_var") else name)
    return (*names, "log_rms_cv2", "harmonic_share", "log_hpss_energy_per_rms2", "mfcc1_mean_per_rms")


DERIVED_NAMES: tuple[str, ...] = _derived_names()
"""Every input a descriptor model may read, in this order; an artefact names the subset it uses."""

MFCC_MEAN_INPUTS = frozenset(f"mfcc{i}_mean" for i in range(2, 21)) | {"mfcc1_mean_per_rms"}


def derived_features(tracks: np.ndarray) -> np.ndarray:
    """(m, 57) track descriptors in DESCRIPTOR_NAMES order -> (m, len(DERIVED_NAMES)) model inputs."""
    x = np.atleast_2d(np.asarray(tracks, dtype=np.float64))
    out = []
    for name in DESCRIPTOR_NAMES:
        if name in LEVEL_COLUMNS:
            continue
        v = x[:, _COL[name]]
        out.append(np.log(np.maximum(v, 0.0) + EPS) if name.endswith("_var") else v)
    rms = x[:, _COL["rms_mean"]]
    harm, perc = x[:, _COL["harmony_var"]], x[:, _COL["perceptr_var"]]
    out.append(np.log(x[:, _COL["rms_var"]] / (rms**2 + EPS) + EPS))
    out.append(harm / (harm + perc + EPS))
    out.append(np.log((harm + perc) / (rms**2 + EPS) + EPS))
    out.append(x[:, _COL["mfcc1_mean"]] - 20.0 * math.sqrt(MEL_BANDS) * np.log10(rms + EPS))
    return np.stack(out, axis=1)


def aggregate(descriptors: np.ndarray) -> np.ndarray:
    """Pool (n, 57) segment descriptors into the (57,) statistics of the whole span, as the 30-s table has
    them: means averaged, variances by the law of total variance (mean of the segments' variances plus
    the variance of their means), tempo the median of the segments' tempi. On the parity fixture (15 s of
    blues.00000) this reproduces the whole span's own descriptors within 0.07 of each column's spread in
    the 30-s table (median 0.005), and the median tempo equals the whole span's while the mean does not."""
    d = np.atleast_2d(np.asarray(descriptors, dtype=np.float64))
    track = d.mean(axis=0)
    for name, i in _COL.items():
        if name.endswith("_var"):
            track[i] = d[:, i].mean() + d[:, _COL[name[:-4] + "_mean"]].var()
    track[_COL["tempo"]] = float(np.median(d[:, _COL["tempo"]]))
    return track


def windows(starts: np.ndarray) -> list[np.ndarray]:
    """Segment indices grouped into windows of about SECTION_SECONDS: runs of segments whose centre falls in
    the same SECTION_SECONDS bucket (by centre, because segments are 66 149 samples, a hair under 3 s, so the
    eleventh starts at 29.9995 s). A run shorter than MIN_WINDOW_SEGMENTS takes in the run after it (the
    last one joins the run before it), so sparse segments of a very long track still pool enough of them."""
    starts = np.asarray(starts, dtype=np.float64)
    if starts.size == 0:
        return []
    bucket = np.floor((starts + SEGMENT_SECONDS / 2) / SECTION_SECONDS).astype(int)
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    runs = [list(r) for r in np.split(np.arange(starts.size), cuts)]
    merged: list[list[int]] = []
    for run in runs:
        if merged and len(merged[-1]) < MIN_WINDOW_SEGMENTS:
            merged[-1].extend(run)
        else:
            merged.append(run)
    if len(merged) > 1 and len(merged[-1]) < MIN_WINDOW_SEGMENTS:
        merged[-2].extend(merged.pop())
    return [np.asarray(run) for run in merged]


@dataclass(frozen=True)
class DenseNetwork:
    """Dense layers with ReLU between them: one layer is a linear (logistic-regression) model."""

    weights: tuple[np.ndarray, ...]  # (inputs, outputs) per layer
    biases: tuple[np.ndarray, ...]

    def logits(self, z: np.ndarray) -> np.ndarray:
        h = z
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def to_dict(self) -> dict[str, Any]:
        layers = zip(self.weights, self.biases)
        return {"layers": [{"weights": w.tolist(), "bias": b.tolist()} for w, b in layers]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DenseNetwork:
        layers = raw["layers"]
        return cls(weights=tuple(np.asarray(layer["weights"], dtype=np.float64) for layer in layers),
                   biases=tuple(np.asarray(layer["bias"], dtype=np.float64) for layer in layers))


@dataclass(frozen=True)
class DescriptorGenreModel:
    """A trained descriptor model: `inputs` (subset of DERIVED_NAMES) standardised, then `network`, then
    softmax(logits / temperature)."""

    name: str
    inputs: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    network: DenseNetwork
    temperature: float = 1.0
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [n for n in self.inputs if n not in DERIVED_NAMES]
        if unknown:
            raise ModelMismatch(f"descriptor model {self.name} reads inputs this code does not make: "
                                f"{unknown}")
        widths = {len(self.inputs), self.mean.size, self.scale.size, self.network.weights[0].shape[0]}
        if len(widths) != 1 or self.network.weights[-1].shape[1] != len(GENRES):
            raise ModelMismatch(f"descriptor model {self.name} has inconsistent shapes")

    def standardised(self, tracks: np.ndarray) -> np.ndarray:
        """(m, 57) track descriptors -> (m, len(inputs)) standardised inputs."""
        index = [DERIVED_NAMES.index(n) for n in self.inputs]
        return (derived_features(tracks)[:, index] - self.mean) / self.scale

    def logits(self, tracks: np.ndarray) -> np.ndarray:
        """Untempered logits, (m, 10), for (m, 57) track descriptors (30-s table rows or aggregates)."""
        return self.network.logits(self.standardised(tracks))

    def probabilities(self, tracks: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, (m, 10), for (m, 57) track descriptors."""
        return softmax(self.logits(tracks) / self.temperature)

    def predict(self, features: SegmentFeatures) -> GenreVerdict:
        """One verdict per window of ~30 s and an overall one: the windows' log-probabilities averaged
        (weighted by their segment counts), a product of experts as for segments in core.genre.
        `segment_probabilities` gives each segment its window's probabilities: the model judges 30-s
        statistics, not 3-s ones."""
        groups = windows(features.starts)
        tracks = np.stack([aggregate(features.descriptors[g]) for g in groups])
        probs = self.probabilities(tracks)
        weights = np.array([len(g) for g in groups], dtype=np.float64)
        overall = softmax((weights[:, None] * np.log(probs + EPS)).sum(axis=0) / weights.sum())
        best = int(overall.argmax())
        per_segment = np.empty((len(features), len(GENRES)))
        sections = []
        for g, p in zip(groups, probs):
            per_segment[g] = p
            if len(groups) > 1:
                starts = features.starts[g]
                sections.append(Section(float(starts[0]), float(starts[-1] + SEGMENT_SECONDS),
                                        GENRES[int(p.argmax())], float(p.max())))
        return GenreVerdict(
            genre=GENRES[best],
            confidence=float(overall[best]),
            probabilities={g: float(p) for g, p in zip(GENRES, overall)},
            segment_probabilities=per_segment,
            sections=sections,
            model=self.name,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": KIND,
            "name": self.name,
            "constants": audio_constants(),
            "genres": list(GENRES),
            "descriptor_names": list(DESCRIPTOR_NAMES),
            "inputs": list(self.inputs),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "network": self.network.to_dict(),
            "temperature": self.temperature,
            "aggregation": {"window_seconds": SECTION_SECONDS, "min_window_segments": MIN_WINDOW_SEGMENTS,
                            "variance": "law of total variance", "tempo": "median",
                            "level_reference": "clip"},
            "training": self.training,
        }


def save(model: DescriptorGenreModel, path: Path) -> None:
    """Write the artefact atomically (temporary name, then rename), as every artefact we serve."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def from_dict(raw: dict[str, Any], artefact: str = "descriptor model") -> DescriptorGenreModel:
    """Check an artefact's provenance against this code, then build the model (ModelMismatch if they
    differ)."""
    if raw.get("format") != FORMAT or raw.get("version") != FORMAT_VERSION:
        raise ModelMismatch(f"{artefact} is not a {FORMAT} v{FORMAT_VERSION} artefact")
    check_constants(raw.get("constants", {}), artefact)
    if tuple(raw.get("genres", ())) != GENRES:
        raise ModelMismatch(f"{artefact} predicts other genres than ours: {raw.get('genres')}")
    if tuple(raw.get("descriptor_names", ())) != DESCRIPTOR_NAMES:
        raise ModelMismatch(f"{artefact} was trained on other descriptor columns than core.features makes")
    return DescriptorGenreModel(
        name=str(raw["name"]),
        inputs=tuple(raw["inputs"]),
        mean=np.asarray(raw["mean"], dtype=np.float64),
        scale=np.asarray(raw["scale"], dtype=np.float64),
        network=DenseNetwork.from_dict(raw["network"]),
        temperature=float(raw["temperature"]),
        training=dict(raw.get("training", {})),
    )


def load(path: Path, entry: dict[str, Any] | None = None) -> DescriptorGenreModel:
    """The manifest's loader (core.genre.LOADERS["descriptor"]). Refuses (MissingExtra) where the descriptors
    cannot be computed, so the manifest's next model answers instead and the log says which pip command
    would bring this one."""
    require_descriptor_libraries()
    model = from_dict(json.loads(Path(path).read_text()), artefact=str(path))
    if entry and entry.get("name") and entry["name"] != model.name:
        log.info("manifest calls %s %r; the artefact says %r", path, entry["name"], model.name)
    log.debug("loaded descriptor genre model %s from %s", model.name, path)
    return model
