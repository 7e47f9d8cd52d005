"""Mood: the product's six moods, valence and arousal, and the nine GEMS emotions, learned from listeners.

Two sources of listeners' labels, one model (models/mood.npz, trained by core.training.mood_train, figures
in models/mood.md) over the front-end's outputs (core.frontend: the track mean of the 200-d `penultimate`
embedding and of the logits of its 50 MSD tags, the same per-segment pass genre and similarity read):
- **4Q** (Panda, Malheiro & Paiva 2018): 30-s previews of commercial songs, each in one of Russell's
  quadrants (Q1 happy/excited, Q2 tense/angry, Q3 sad/depressed, Q4 calm/relaxed) as derived from its
  AllMusic editors' mood words, which are kept too. Perceived emotion: what a member means by "sad".
- **Emotify** (Aljanaki, Wiering & Veltkamp 2016): one-minute excerpts with the fraction of listeners who
  felt each of the nine GEMS emotions.

Mood definitions (the targets of the six mood heads; a song's score is the model's probability that its
listeners' labels say so):
    calm       4Q: quadrant Q4.            Emotify: calm from GEMS (0.6 calmness + 0.4 tenderness)
    happy      4Q: quadrant Q1.            Emotify: 0.7 joyful activation + 0.3 amazement
    sad        4Q: quadrant Q3.            Emotify: sadness
    tense      4Q: quadrant Q2.            Emotify: tension
    energetic  4Q: Q1 with an energy word (ENERGY_WORDS: energetic, rousing, exciting, lively, fiery, ...);
               Q2, Q3 and Q4 songs are negatives, Q1 songs without such a word are left out.
                                           Emotify: 0.6 power + 0.4 joyful activation
               (Upbeat energy: an angry, aggressive song is tense first. With Q2's energy words among the
               positives, 4Q's dev CV read as quadrants fell from 0.74 to 0.70: energetic outscored tense.)
    nostalgic  4Q: a nostalgia word (NOSTALGIA_WORDS: nostalgic, wistful, bittersweet, sentimental, ...).
                                           Emotify: nostalgia
Calm, happy, sad and tense are the quadrant head's probabilities of Q4, Q1, Q3 and Q2 (they sum to one);
energetic and nostalgic have logistic heads of their own (WORD_MOODS) trained on both sources, where an
Emotify excerpt is a soft label: its GEMS fractions, judged against Emotify's base rates (z-scores,
GEMS_BASE_RATE and GEMS_SPREAD, weighted by MOOD_WEIGHTS, divided by MOOD_SPREAD), mapped to [0, 1] by the
normal CDF (`moods_from_gems`: 0.5 is a typical excerpt). The top mood is the highest score; read as a
quadrant (Q1 = max(happy, energetic), Q2 tense, Q3 sad, Q4 calm) it is the quadrant head's verdict unless
energetic outscores happy on a song the quadrant head calls Q2, Q3 or Q4. A score is the probability that
listeners' labels would call the song so, so 0.5 means "more likely than not" (core.recommend's fit).

Valence and arousal (-1...1) come from the quadrant head, a four-way softmax over Q1-Q4 trained on 4Q:
valence = P(Q1) + P(Q4) - P(Q2) - P(Q3) (pleasant vs unpleasant), arousal = P(Q1) + P(Q2) - P(Q3) - P(Q4)
(lively vs quiet). The GEMS head (kernel ridge on Emotify, its own standardiser) predicts the nine
fractions, reported beside the moods.

Runtime: numpy only (the artefact is plain arrays; no TensorFlow, no pickles).
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
QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
QUADRANT_MOOD: dict[str, str] = {"Q1": "happy", "Q2": "tense", "Q3": "sad", "Q4": "calm"}
VALENCE_SIGN = np.array([1.0, -1.0, -1.0, 1.0])
AROUSAL_SIGN = np.array([1.0, 1.0, -1.0, -1.0])
"""Each quadrant's side of the valence and arousal axes, in QUADRANTS order."""

ENERGY_WORDS: frozenset[str] = frozenset({
    "energetic", "rousing", "exciting", "lively", "fiery", "intense", "explosive", "strong", "gutsy",
    "rowdy", "raucous", "boisterous", "aggressive", "driving", "powerful", "exuberant", "fierce", "volatile",
    "celebratory", "brash", "rambunctious", "visceral", "thrilling",
})
NOSTALGIA_WORDS: frozenset[str] = frozenset({
    "nostalgic", "wistful", "bittersweet", "sentimental", "yearning", "reflective", "autumnal", "poignant",
    "melancholy",
})
"""AllMusic mood words (lower case) that define energetic and nostalgic on 4Q songs."""

GEMS: tuple[str, ...] = (
    "amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation",
    "tension", "sadness",
)
"""The nine GEMS emotions, in Emotify's tracks.csv order (and the order of the GEMS head's outputs)."""

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
"""Standard deviation of each raw mood score over the Emotify excerpts (1 for single-emotion moods)."""

SYNONYMS: dict[str, str] = {
    "chill": "calm", "relaxed": "calm", "relaxing": "calm", "peaceful": "calm", "mellow": "calm",
    "joyful": "happy", "cheerful": "happy", "upbeat": "happy",
    "energy": "energetic", "powerful": "energetic", "hype": "energetic", "pumped": "energetic",
    "melancholy": "sad", "melancholic": "sad", "sorrowful": "sad",
    "nostalgia": "nostalgic", "dreamy": "nostalgic", "sentimental": "nostalgic",
    "tension": "tense", "dark": "tense", "nervous": "tense", "agitated": "tense",
}
"""Words that are not moods of ours but are close to one: named in the refusal as a suggestion, never
taken silently for it (a member who typed "dark" may not mean "tense")."""


def parse_mood(text: str) -> str:
    """A user's mood word -> one of MOODS (case and spaces ignored). Anything else is refused with the
    valid names, and with the nearest mood when the word is a known synonym of one."""
    word = "".join(str(text).split()).lower()
    if word in MOODS:
        return word
    shown = " ".join(str(text).split())[:40]  # echoed to the user: one line, capped
    hint = f" (did you mean {SYNONYMS[word]}?)" if word in SYNONYMS else ""
    raise UnknownMood(f"unknown mood '{shown}'{hint}: choose one of {', '.join(MOODS)}")


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x, np.float64) / math.sqrt(2.0)))


def mood_z(gems: np.ndarray) -> np.ndarray:
    """Standardised mood scores (..., 6) from GEMS fractions (..., 9) in GEMS order: Emotify's reading of
    the six moods before the normal CDF."""
    base = np.array([GEMS_BASE_RATE[g] for g in GEMS])
    spread = np.array([GEMS_SPREAD[g] for g in GEMS])
    weights = np.array([[MOOD_WEIGHTS[m].get(g, 0.0) for g in GEMS] for m in MOODS])
    return ((np.asarray(gems, dtype=np.float64) - base) / spread) @ weights.T / np.array(
        [MOOD_SPREAD[m] for m in MOODS]
    )


def moods_from_gems(gems: dict[str, float]) -> dict[str, float]:
    """Emotify's soft mood labels: GEMS fractions (all nine) -> a score in [0, 1] per mood in MOODS."""
    missing = [g for g in GEMS if g not in gems]
    if missing:
        raise ValueError(f"GEMS scores missing: {', '.join(missing)}")
    z = mood_z(np.array([float(gems[g]) for g in GEMS]))
    return {m: float(v) for m, v in zip(MOODS, _normal_cdf(z))}


def top_mood(moods: dict[str, float]) -> str:
    """Highest-scoring mood; ties go to the earlier one in MOODS."""
    return max(MOODS, key=lambda m: (moods[m], -MOODS.index(m)))


@dataclass(frozen=True)
class MoodEstimate:
    """`mood` is the top of `moods`; `confidence` is its score (the same number, said once in the text);
    `valence` and `arousal` in [-1, 1]; `gems` the nine predicted fractions of listeners."""

    mood: str
    confidence: float
    moods: dict[str, float]
    valence: float
    arousal: float
    gems: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ARTEFACT = "mood.npz"
ARTEFACT_FORMAT = 3
TAG_LOGIT_FLOOR = 1e-4
TRACK_FEATURE_NAMES: tuple[str, ...] = (*(f"embedding{i}_mean" for i in range(EMBEDDING_DIM)),
                                         *(f"tag{i}_logit_mean" for i in range(TAG_COUNT)))
"""The track vector the model reads: segment means of the front-end's embedding and tag logits. Means
only: a spread over segments depends on how much of a track was analysed (30 s or a minute in training, a
few segments spread over a whole song in the library)."""


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
    """Kernel ridge regression (RBF) on standardised features, predicting standardised targets: the
    feature standardiser (`x_mean`, `x_scale`), the training rows standardised (`train_z`, (n, d)), the dual
    coefficients (n, targets) and the target scaling (`y_mean`, `y_scale`)."""

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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


WORD_MOODS: tuple[str, ...] = ("energetic", "nostalgic")
"""Moods with a logistic head of their own (mood words and Emotify); the other four are the quadrants'."""


@dataclass(frozen=True)
class LinearHeads:
    """The 4Q-and-Emotify heads on one shared standardisation of the track vector: a softmax over the four
    quadrants (`quadrant_w` (d, 4), `quadrant_b`), which gives calm, happy, sad and tense, and one logistic
    head per mood of WORD_MOODS (`mood_w` (d, 2), `mood_b`)."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    quadrant_w: np.ndarray
    quadrant_b: np.ndarray
    mood_w: np.ndarray
    mood_b: np.ndarray

    ARRAYS = ("x_mean", "x_scale", "quadrant_w", "quadrant_b", "mood_w", "mood_b")

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - self.x_mean) / self.x_scale

    def quadrants(self, x: np.ndarray) -> np.ndarray:
        """P(Q1..Q4), (n, 4)."""
        return _softmax(self.standardise(x) @ self.quadrant_w + self.quadrant_b)

    def word_moods(self, x: np.ndarray) -> np.ndarray:
        """P(mood) for each of WORD_MOODS, (n, 2)."""
        return _sigmoid(self.standardise(x) @ self.mood_w + self.mood_b)

    def moods(self, x: np.ndarray) -> np.ndarray:
        """Each mood's probability, (n, 6) in MOODS order."""
        quadrants, words = self.quadrants(x), self.word_moods(x)
        columns = {QUADRANT_MOOD[q]: quadrants[:, i] for i, q in enumerate(QUADRANTS)}
        columns.update({m: words[:, i] for i, m in enumerate(WORD_MOODS)})
        return np.stack([columns[m] for m in MOODS], axis=1)


def valence_arousal(quadrant_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valence, arousal) in [-1, 1] from P(Q1..Q4) (..., 4)."""
    p = np.asarray(quadrant_probs, np.float64)
    return p @ VALENCE_SIGN, p @ AROUSAL_SIGN


class MoodModel:
    """Moods, valence and arousal from the linear heads; the nine GEMS fractions from the kernel ridge.
    `name` identifies the artefact, so analyses stored by another model can be recognised as stale."""

    def __init__(self, heads: LinearHeads, gems: KernelRidge, name: str = "mood-v3") -> None:
        self.heads = heads
        self.gems = gems
        self.name = name

    def predict_gems(self, x: np.ndarray) -> np.ndarray:
        """GEMS fractions (n, 9) in [0, 1] for track feature rows `x` (n, len(TRACK_FEATURE_NAMES))."""
        return np.clip(self.gems.predict(x), 0.0, 1.0)

    def estimate(self, x: np.ndarray) -> MoodEstimate:
        """The estimate for one track's feature row `x` (len(TRACK_FEATURE_NAMES),)."""
        moods = {m: float(v) for m, v in zip(MOODS, self.heads.moods(x)[0])}
        valence, arousal = valence_arousal(self.heads.quadrants(x)[0])
        mood = top_mood(moods)
        return MoodEstimate(mood=mood, confidence=moods[mood], moods=moods, valence=float(valence),
                            arousal=float(arousal),
                            gems={g: float(v) for g, v in zip(GEMS, self.predict_gems(x)[0])})

    def predict(self, features: SegmentFeatures) -> MoodEstimate:
        """Mood of one clip from the front-end pass every model shares."""
        return self.estimate(track_vector(features.embeddings, features.tags))


def check_artefact(meta: dict[str, Any], artefact: str) -> None:
    """Refuse an artefact made with other audio constants, features, moods or emotions than this code's."""
    ours: dict[str, Any] = {
        "format": ARTEFACT_FORMAT,
        "audio_constants": audio_constants(),
        "frontend_constants": frontend_constants(),
        "feature_names": list(TRACK_FEATURE_NAMES),
        "gems": list(GEMS),
        "moods": list(MOODS),
        "quadrants": list(QUADRANTS),
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


GEMS_PREFIX = "gems_"
"""The GEMS head's arrays are stored as gems_<name> beside the linear heads' own."""


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
    heads = LinearHeads(**{k: arrays[k] for k in LinearHeads.ARRAYS})
    gems = KernelRidge(**{k: arrays[GEMS_PREFIX + k] for k in KernelRidge.ARRAYS}, gamma=float(meta["gamma"]))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return MoodModel(heads, gems, name=f"mood-v3-{digest}")


def axis_word(value: float, high: str, low: str) -> str:
    """A word for a valence or arousal value in [-1, 1]: clear beyond ±0.5, leaning beyond ±0.15."""
    if abs(value) < 0.15:
        return "neutral"
    side = high if value > 0 else low
    return side if abs(value) >= 0.5 else f"slightly {side}"


def mood_summary(mood: str, moods: dict[str, float], valence: float | None, arousal: float | None) -> str:
    """One line a member reads: the top mood and its score (the same number as in the list of moods),
    then valence and arousal, e.g. "calm 0.71 · valence +0.32 (slightly pleasant) · arousal -0.64 (quiet)"."""
    parts = [f"{mood} {moods[mood]:.2f}"]
    if valence is not None:
        parts.append(f"valence {valence:+.2f} ({axis_word(valence, 'pleasant', 'unpleasant')})")
    if arousal is not None:
        parts.append(f"arousal {arousal:+.2f} ({axis_word(arousal, 'lively', 'quiet')})")
    return " · ".join(parts)
