"""Mood: nine GEMS emotion scores learned from listeners, and the product's six moods defined from them.

Emotify (Aljanaki, Wiering & Veltkamp 2016) asked listeners which of the nine GEMS emotions a one-minute
excerpt made them feel; the model predicts, from audio features, the fraction of listeners who would tick
each one. Product moods are written down here as fixed functions of those nine fractions, so the same
definition turns listeners' answers and the model's predictions into moods, and agreement between the two
can be measured.

Mood definitions (`moods_from_gems`):
1. Each GEMS fraction is judged against how often Emotify listeners tick that emotion at all:
   z = (fraction - base rate) / spread, with the base rate and spread (mean and standard deviation over
   the 200 training excerpts) in GEMS_BASE_RATE and GEMS_SPREAD. "tension 0.30" is thus a little above
   usual (base 0.24), while "amazement 0.30" is far above it (base 0.12).
2. A mood's raw score is a weighted sum of those z-scores (MOOD_WEIGHTS):
       calm      = 0.6 calmness + 0.4 tenderness
       happy     = 0.7 joyful_activation + 0.3 amazement
       energetic = 0.6 power + 0.4 joyful_activation
       sad       = sadness
       nostalgic = nostalgia
       tense     = tension
   Solemnity enters no mood (it is still reported among the GEMS scores).
3. The raw score is divided by its own spread over the training excerpts (MOOD_SPREAD) and mapped to [0, 1]
   by the standard normal CDF: 0.5 is a typical excerpt, 0.84 one standard deviation above typical. The top
   mood is the one with the highest score. Over the 200 excerpts, listeners' answers put 51 tracks in calm,
   34 happy, 30 sad, 29 energetic, 29 tense, 27 nostalgic.

The model (models/mood.npz, trained by core.training.mood_train; figures in models/mood.md) is kernel ridge
regression on the track mean of the front-end's outputs (core.frontend: the 200-d `penultimate` embedding
and the logits of its 50 MSD tags), the same per-segment pass genre and similarity read. Its predictions regress toward the base rates (held-out
R² about 0.3), so predicted mood scores are conservative: they rank tracks well, they rarely reach the
extremes listeners' answers do. An estimate's confidence is the probability that its top mood stays on top
when the predicted GEMS scores move by the model's own cross-validated error (500 fixed draws from the
covariance of its held-out residuals, stored in the artefact, so the answer is deterministic).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import audio_constants, frontend_constants
from core.errors import ModelMismatch, UnknownMood
from core.features import SegmentFeatures
from core.frontend import EMBEDDING_DIM, TAG_COUNT, artefact_path

log = logging.getLogger(__name__)

MOODS: tuple[str, ...] = ("calm", "happy", "energetic", "sad", "nostalgic", "tense")
GEMS: tuple[str, ...] = (
    "amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation",
    "tension", "sadness",
)
"""The nine GEMS emotions, in Emotify's tracks.csv order (and the order of every model output)."""

GEMS_BASE_RATE: dict[str, float] = {
    "amazement": 0.1246, "solemnity": 0.2001, "tenderness": 0.1811, "nostalgia": 0.2541, "calmness": 0.3040,
    "power": 0.1883, "joyful_activation": 0.2468, "tension": 0.2383, "sadness": 0.2033,
}
"""Mean fraction of listeners ticking each emotion over the 200 Emotify excerpts we train on."""
GEMS_SPREAD: dict[str, float] = {
    "amazement": 0.1044, "solemnity": 0.1574, "tenderness": 0.1660, "nostalgia": 0.1763, "calmness": 0.2286,
    "power": 0.1777, "joyful_activation": 0.2299, "tension": 0.1850, "sadness": 0.1645,
}
"""Standard deviation (ddof=1) of those fractions over the same excerpts."""

MOOD_WEIGHTS: dict[str, dict[str, float]] = {
    "calm": {"calmness": 0.6, "tenderness": 0.4},
    "happy": {"joyful_activation": 0.7, "amazement": 0.3},
    "energetic": {"power": 0.6, "joyful_activation": 0.4},
    "sad": {"sadness": 1.0},
    "nostalgic": {"nostalgia": 1.0},
    "tense": {"tension": 1.0},
}
MOOD_SPREAD: dict[str, float] = {
    "calm": 0.9010, "happy": 0.8905, "energetic": 0.8497, "sad": 1.0, "nostalgic": 1.0, "tense": 1.0,
}
"""Standard deviation of each raw mood score over the training excerpts (1 for single-emotion moods)."""

SYNONYMS: dict[str, str] = {
    "chill": "calm", "relaxed": "calm", "relaxing": "calm", "peaceful": "calm", "mellow": "calm",
    "joyful": "happy", "cheerful": "happy", "upbeat": "happy",
    "energy": "energetic", "powerful": "energetic", "hype": "energetic", "pumped": "energetic",
    "melancholy": "sad", "melancholic": "sad", "sorrowful": "sad",
    "nostalgia": "nostalgic", "dreamy": "nostalgic", "sentimental": "nostalgic",
    "tension": "tense", "dark": "tense", "nervous": "tense", "agitated": "tense",
}


def parse_mood(text: str) -> str:
    """A user's mood word -> one of MOODS (case and spaces ignored, a few synonyms accepted)."""
    word = "".join(str(text).split()).lower()
    if word in MOODS:
        return word
    if word in SYNONYMS:
        return SYNONYMS[word]
    shown = " ".join(str(text).split())[:40]  # echoed to the user: one line, capped
    raise UnknownMood(f"unknown mood '{shown}': choose one of {', '.join(MOODS)}")


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def mood_z(gems: np.ndarray) -> np.ndarray:
    """Standardised mood scores (..., 6) from GEMS fractions (..., 9) in GEMS order: step 1-2 and the
    division of step 3, before the CDF. Vectorised so training and confidence sampling share it."""
    base = np.array([GEMS_BASE_RATE[g] for g in GEMS])
    spread = np.array([GEMS_SPREAD[g] for g in GEMS])
    weights = np.array([[MOOD_WEIGHTS[m].get(g, 0.0) for g in GEMS] for m in MOODS])
    return ((np.asarray(gems, dtype=np.float64) - base) / spread) @ weights.T / np.array(
        [MOOD_SPREAD[m] for m in MOODS]
    )


def moods_from_gems(gems: dict[str, float]) -> dict[str, float]:
    """The written definitions: GEMS fractions (all nine) -> a score in [0, 1] per mood in MOODS."""
    missing = [g for g in GEMS if g not in gems]
    if missing:
        raise ValueError(f"GEMS scores missing: {', '.join(missing)}")
    z = mood_z(np.array([float(gems[g]) for g in GEMS]))
    return {m: _normal_cdf(float(v)) for m, v in zip(MOODS, z)}


def top_mood(moods: dict[str, float]) -> str:
    """Highest-scoring mood; ties go to the earlier one in MOODS."""
    return max(MOODS, key=lambda m: (moods[m], -MOODS.index(m)))


@dataclass(frozen=True)
class MoodEstimate:
    mood: str
    confidence: float
    moods: dict[str, float]
    gems: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ARTEFACT = "mood.npz"
ARTEFACT_FORMAT = 2
TAG_LOGIT_FLOOR = 1e-4
TRACK_FEATURE_NAMES: tuple[str, ...] = (*(f"embedding{i}_mean" for i in range(EMBEDDING_DIM)),
                                         *(f"tag{i}_logit_mean" for i in range(TAG_COUNT)))
"""The track vector the model reads: segment means of the front-end's embedding and tag logits. Means
only: a spread over segments depends on how much of a track was analysed (one minute in training, a whole
song in the library)."""


def track_vector(embeddings: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """(len(TRACK_FEATURE_NAMES),) from a clip's (n, 200) embeddings and (n, 50) tag probabilities."""
    p = np.clip(np.asarray(tags, np.float64), TAG_LOGIT_FLOOR, 1 - TAG_LOGIT_FLOOR)
    return np.concatenate([np.asarray(embeddings, np.float64).mean(axis=0), np.log(p / (1 - p)).mean(axis=0)])


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma * squared distance) between the rows of `a` (n, d) and `b` (m, d) -> (n, m)."""
    sq = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.exp(-gamma * np.maximum(sq, 0.0))


@dataclass(frozen=True)
class KernelRidge:
    """Kernel ridge regression (RBF) on standardised features, predicting standardised targets.

    Plain arrays, so the artefact is an npz that any numpy reads: the feature standardiser (`x_mean`,
    `x_scale`), the training rows standardised (`train_z`, (n, d)), the dual coefficients (n, targets) and
    the target scaling (`y_mean`, `y_scale`).
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    train_z: np.ndarray
    dual_coef: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray
    gamma: float

    ARRAYS = ("x_mean", "x_scale", "train_z", "dual_coef", "y_mean", "y_scale")

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.x_mean) / self.x_scale
        return rbf_kernel(z, self.train_z, self.gamma) @ self.dual_coef * self.y_scale + self.y_mean


def top_mood_confidence(gems: np.ndarray, noise: np.ndarray) -> float:
    """How often the top mood of predicted GEMS fractions `gems` (9,) stays on top when they move by each
    row of `noise` (draws, 9): the chance that listeners would name the same top mood, if the model's
    errors look like its cross-validated ones."""
    top = int(mood_z(gems).argmax())
    noisy = np.clip(gems[None, :] + noise, 0.0, 1.0)
    return float((mood_z(noisy).argmax(axis=1) == top).mean())


class MoodModel:
    """Predicts the nine GEMS fractions of a track, turns them into moods and says how sure it is.

    `noise` (draws, 9) are samples shaped like the model's cross-validated error, used for the confidence.
    `name` identifies the artefact, so analyses stored by another model can be recognised as stale.
    """

    def __init__(self, regressor: KernelRidge, noise: np.ndarray, name: str = "mood-kernel-ridge") -> None:
        self.regressor = regressor
        self.name = name
        self._noise = noise

    def predict_gems(self, x: np.ndarray) -> np.ndarray:
        """GEMS fractions (n, 9) in [0, 1] for track feature rows `x` (n, len(TRACK_FEATURE_NAMES))."""
        return np.clip(self.regressor.predict(x), 0.0, 1.0)

    def estimate(self, x: np.ndarray) -> MoodEstimate:
        """The estimate for one track's feature row `x` (len(TRACK_FEATURE_NAMES),)."""
        gems = self.predict_gems(x)[0]
        named = {g: float(v) for g, v in zip(GEMS, gems)}
        moods = moods_from_gems(named)
        return MoodEstimate(mood=top_mood(moods), confidence=top_mood_confidence(gems, self._noise),
                            moods=moods, gems=named)

    def predict(self, features: SegmentFeatures) -> MoodEstimate:
        """Mood of one clip from the front-end pass every model shares."""
        return self.estimate(track_vector(features.embeddings, features.tags))


def check_artefact(meta: dict[str, Any], artefact: str) -> None:
    """Refuse an artefact made with other audio constants, features or emotions than this code's."""
    ours: dict[str, Any] = {
        "format": ARTEFACT_FORMAT,
        "audio_constants": audio_constants(),
        "frontend_constants": frontend_constants(),
        "feature_names": list(TRACK_FEATURE_NAMES),
        "gems": list(GEMS),
    }
    diff = sorted(key for key, value in ours.items() if meta.get(key) != value)
    if diff:
        detail = {k: (meta.get(k), ours[k]) for k in diff if k != "feature_names"}
        raise ModelMismatch(f"{artefact} does not match this code ({', '.join(diff)} differ): {detail}")


def read_artefact(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"].item()))
    return arrays, meta


def load_mood_model(models_dir: Path) -> MoodModel | None:
    """The shipped mood model, or None when there is no artefact or no front-end for it to read (the
    caller says "no mood model")."""
    path = Path(models_dir) / ARTEFACT
    if not path.is_file() or not artefact_path(Path(models_dir)).is_file():
        log.info("no mood model at %s (or no front-end beside it)", path)
        return None
    return read_mood_model(path)


def read_mood_model(path: Path) -> MoodModel:
    """The mood model of one artefact, checked against this code (ModelMismatch if it differs)."""
    arrays, meta = read_artefact(path)
    check_artefact(meta, str(path))
    regressor = KernelRidge(**{k: arrays[k] for k in KernelRidge.ARRAYS}, gamma=float(meta["gamma"]))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return MoodModel(regressor, arrays["noise"], name=f"mood-kernel-ridge-{digest}")
