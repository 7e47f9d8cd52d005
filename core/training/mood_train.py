"""Train the mood model (v3) on 4Q and Emotify and measure it: `cratedigger train mood`.

Protocol (figures in models/mood.md come from this script's output):
- Features: `core.mood.track_vector` of each clip as an upload is cut (core.training.mood_sources), clean
  and, for training rows, in the upload augmentations of core.training.genre_data (mp3 at 64/96 kb/s, gain
  and noise, shifted segment boundaries); cached per clip and variant.
- 4Q: one artist in seven is set aside (core.training.mood_sources.UNTOUCHED_SHARE) and never looked at
  while choosing; the rest is cross-validated with 5 folds grouped by artist and stratified by quadrant,
  repeated twice. Every candidate runs on the same folds. Figures: quadrant accuracy, balanced accuracy
  (mean per-quadrant recall), arousal (Q1+Q2 vs Q3+Q4) and valence (Q1+Q4 vs Q2+Q3) accuracy, per-quadrant
  recall (all from the quadrant head), and how many of the 20 songs ranked highest for each mood by the
  mood heads fit it (calm Q4, happy Q1, sad Q3, tense Q2, energetic Q1 or Q2; the way /recommend uses the
  scores). Held-out songs are scored clean and, when that variant is loaded, as mp3 (64 or 96 kb/s).
- Emotify: the GEMS head (kernel ridge, nested CV as before, 5 folds x 5 repeats stratified by genre) and
  the mood heads' rank correlation with listeners' moods, out of fold.
- The chosen recipe is scored once on the untouched artists (fitted on all the others), then refitted on
  everything and written as plain arrays (npz, fixed zip timestamps: same inputs, same bytes).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio import Segments, segment
from core.config import PACKAGE_ROOT
from core.constants import SAMPLE_RATE, audio_constants, frontend_constants
from core.mood import (
    ARTEFACT,
    ARTEFACT_FORMAT,
    GEMS,
    GEMS_PREFIX,
    MOODS,
    QUADRANT_MOOD,
    QUADRANTS,
    TRACK_FEATURE_NAMES,
    WORD_MOODS,
    KernelRidge,
    LinearHeads,
    mood_z,
    rbf_kernel,
    track_vector,
)
from core.training.genre_data import DEFAULT_SHARED
from core.training.mood_sources import Emotify, FourQ, read_emotify, read_fourq, track_matrix

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "cratedigger" / "mood-embeddings"
AUGMENTED = ("mp3", "gain_noise", "offset")
FOLDS, REPEATS = 5, 2
GEMS_FOLDS, GEMS_REPEATS, INNER_FOLDS = 5, 5, 5
GAMMA_SCALES = (0.25, 0.5, 1.0)
"""Kernel widths tried for the GEMS head, as multiples of 1 / n_features."""
ALPHAS = (0.1, 0.3, 1.0)
TOP_K = 20
"""Songs ranked highest per mood whose fit is counted (about /recommend's k in a library of this size)."""
FITS: dict[str, tuple[int, ...]] = {"calm": (3,), "happy": (0,), "sad": (2,), "tense": (1,),
                                    "energetic": (0, 1)}
"""Which quadrants (indices into QUADRANTS) a pick for each mood must be in to fit it."""
SEED = 0


# --- the recipes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """One candidate: the quadrant head's and the mood heads' L2 strength (sklearn's C, per song), whether
    augmented copies of each training song join it, how much an Emotify excerpt weighs in the word-mood
    heads against a 4Q song (0: 4Q only), and whether Emotify's soft quadrant reading joins the quadrant
    head too (with the same weight)."""

    name: str
    c_quadrant: float
    c_mood: float
    augment: bool = False
    emotify_weight: float = 0.0
    emotify_quadrants: bool = False


RECIPES: tuple[Recipe, ...] = (
    Recipe("team: logistic C=0.01, 4Q only", 0.01, 0.01),
    Recipe("logistic C=0.02, 4Q only", 0.02, 0.02),
    Recipe("logistic C=0.03, 4Q only", 0.03, 0.03),
    Recipe("C=0.02, Emotify 1 in the word moods", 0.02, 0.02, emotify_weight=1.0),
    Recipe("C=0.02, Emotify 0.5 in every head", 0.02, 0.02, emotify_weight=0.5, emotify_quadrants=True),
    Recipe("C=0.02, Emotify 1 in every head", 0.02, 0.02, emotify_weight=1.0, emotify_quadrants=True),
    Recipe("C=0.02, Emotify 0.5 in every head, augmented", 0.02, 0.02, augment=True, emotify_weight=0.5,
           emotify_quadrants=True),
)


@dataclass(frozen=True)
class Features:
    """Track vectors: 4Q `clean` (n, d) and `variants` (name -> (n, d)); Emotify `emotify` (m, d) and its
    augmented `emotify_variants`."""

    clean: np.ndarray
    variants: dict[str, np.ndarray]
    emotify: np.ndarray
    emotify_variants: dict[str, np.ndarray]


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def emotify_quadrants(emotify: Emotify) -> np.ndarray:
    """(n, 4) Emotify's soft reading of each excerpt as a quadrant: its soft happy, tense, sad and calm
    scores (core.mood.moods_from_gems), normalised to sum to one."""
    soft = emotify.soft_moods[:, [MOODS.index(QUADRANT_MOOD[q]) for q in QUADRANTS]]
    return soft / soft.sum(axis=1, keepdims=True)


def fit_heads(recipe: Recipe, feats: Features, fourq: FourQ, emotify: Emotify, songs: np.ndarray,
              excerpts: np.ndarray) -> LinearHeads:
    """The linear heads of `recipe`, fitted on the 4Q songs `songs` and the Emotify excerpts `excerpts`
    (index arrays). One standardisation (over the clean rows of both) is shared by every head."""
    from sklearn.linear_model import LogisticRegression

    views = [feats.clean] + (list(feats.variants.values()) if recipe.augment else [])
    e_views = [feats.emotify] + (list(feats.emotify_variants.values()) if recipe.augment else [])
    share = 1.0 / len(views)  # each song weighs 1 in all, however many copies it has
    x_mean, x_scale = _standardiser(np.concatenate([feats.clean[songs], feats.emotify[excerpts]]))

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x_mean) / x_scale

    xq = [z(v[songs]) for v in views]
    yq = [fourq.quadrant[songs]] * len(views)
    wq = [np.full(len(songs), share)] * len(views)
    if recipe.emotify_quadrants and len(excerpts):
        soft = emotify_quadrants(emotify)[excerpts]
        for v in e_views:  # each excerpt once per quadrant, weighted by Emotify's reading of it
            for q in range(len(QUADRANTS)):
                xq.append(z(v[excerpts]))
                yq.append(np.full(len(excerpts), q))
                wq.append(recipe.emotify_weight * share * soft[:, q])
    quadrant = LogisticRegression(C=recipe.c_quadrant * share, max_iter=5000)
    quadrant.fit(np.concatenate(xq), np.concatenate(yq), sample_weight=np.concatenate(wq))

    w_mood, b_mood = [], []
    soft = emotify.soft_moods
    for mood in WORD_MOODS:
        m = MOODS.index(mood)
        label = fourq.targets[songs, m]
        known = ~np.isnan(label)
        xs = [z(v[songs][known]) for v in views]
        ys = [label[known]] * len(views)
        ws = [np.full(known.sum(), share)] * len(views)
        if recipe.emotify_weight > 0 and len(excerpts):
            p = soft[excerpts, m]
            for v in e_views:  # a soft label: the excerpt as a positive with weight p, a negative with 1 - p
                xs += [z(v[excerpts])] * 2
                ys += [np.ones(len(p)), np.zeros(len(p))]
                ws += [recipe.emotify_weight * share * p, recipe.emotify_weight * share * (1 - p)]
        head = LogisticRegression(C=recipe.c_mood * share, max_iter=5000)
        head.fit(np.concatenate(xs), np.concatenate(ys), sample_weight=np.concatenate(ws))
        w_mood.append(head.coef_[0])
        b_mood.append(head.intercept_[0])
    return LinearHeads(x_mean=x_mean, x_scale=x_scale, quadrant_w=quadrant.coef_.T.copy(),
                       quadrant_b=quadrant.intercept_.copy(), mood_w=np.stack(w_mood, axis=1),
                       mood_b=np.array(b_mood))


# --- measurement ----------------------------------------------------------------------------------------


def artist_folds(fourq: FourQ, songs: np.ndarray, n_folds: int,
                 seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds over `songs` (indices), grouped by artist and stratified by quadrant."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(songs[a], songs[b]) for a, b in
            splitter.split(np.zeros(len(songs)), fourq.quadrant[songs], fourq.artists[songs])]


def emotify_folds(emotify: Emotify, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(emotify.genres)), emotify.genres))


def quadrant_figures(truth: np.ndarray, probs: np.ndarray) -> dict[str, object]:
    """Quadrant, balanced, arousal and valence accuracy and per-quadrant recall of argmax(probs)."""
    pred = probs.argmax(axis=1)
    recall = {q: round(float((pred[truth == i] == i).mean()), 3) for i, q in enumerate(QUADRANTS)}
    high, pleasant = (0, 1), (0, 3)
    return {
        "quadrant": round(float((pred == truth).mean()), 3),
        "balanced": round(float(np.mean(list(recall.values()))), 3),
        "arousal": round(float((np.isin(pred, high) == np.isin(truth, high)).mean()), 3),
        "valence": round(float((np.isin(pred, pleasant) == np.isin(truth, pleasant)).mean()), 3),
        "recall": recall,
    }


def moods_as_quadrants(moods: np.ndarray) -> np.ndarray:
    """The team's reading of the six moods as a quadrant (n, 4): Q1 = max(happy, energetic), Q2 = tense,
    Q3 = sad, Q4 = calm (nostalgic left out)."""
    col = {m: moods[:, MOODS.index(m)] for m in MOODS}
    q1 = np.maximum(col["happy"], col["energetic"])
    return np.stack([q1] + [col[QUADRANT_MOOD[q]] for q in QUADRANTS[1:]], axis=1)


def top_fit(truth: np.ndarray, moods: np.ndarray, k: int = TOP_K) -> dict[str, float]:
    """For each quadrant mood: the share of the k songs with the highest score that fit it (FITS)."""
    out = {}
    for mood, quadrants in FITS.items():
        top = np.argsort(-moods[:, MOODS.index(mood)], kind="stable")[:k]
        out[mood] = round(float(np.isin(truth[top], quadrants).mean()), 3)
    return out


def cross_validate(recipe: Recipe, feats: Features, fourq: FourQ, emotify: Emotify,
                   dev: np.ndarray) -> dict[str, object]:
    """Out-of-fold figures of one recipe on the development songs (and on Emotify, where it reads it)."""
    runs = []
    e_folds = emotify_folds(emotify, FOLDS, SEED)
    for repeat in range(REPEATS):
        probs = {view: np.zeros((len(fourq.quadrant), 4)) for view in ("clean", "mp3")
                 if view == "clean" or view in feats.variants}
        moods = np.zeros((len(fourq.quadrant), len(MOODS)))
        e_moods = np.zeros((len(emotify.genres), len(MOODS)))
        for f, (train, test) in enumerate(artist_folds(fourq, dev, FOLDS, SEED + repeat)):
            e_train, e_test = e_folds[f]
            heads = fit_heads(recipe, feats, fourq, emotify, train, e_train)
            for view in probs:
                probs[view][test] = heads.quadrants(feats.clean[test] if view == "clean"
                                                    else feats.variants[view][test])
            moods[test] = heads.moods(feats.clean[test])
            e_moods[e_test] = heads.moods(feats.emotify[e_test])
        runs.append({
            **{view: quadrant_figures(fourq.quadrant[dev], p[dev]) for view, p in probs.items()},
            "six_moods_as_quadrant": quadrant_figures(fourq.quadrant[dev], moods_as_quadrants(moods[dev])),
            "top_fit": top_fit(fourq.quadrant[dev], moods[dev]),
            "emotify_rank": emotify_rank(emotify, e_moods),
        })
    return average_runs(runs)


def emotify_rank(emotify: Emotify, moods: np.ndarray) -> dict[str, float]:
    """Spearman correlation per mood between the mood heads' scores and listeners' moods on Emotify."""
    from scipy.stats import spearmanr

    truth = mood_z(emotify.gems)
    return {m: round(float(spearmanr(moods[:, i], truth[:, i])[0]), 3) for i, m in enumerate(MOODS)}


def average_runs(runs: list[dict[str, object]]) -> dict[str, object]:
    """Mean of every number over repeats, keeping the nesting."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: average_runs([r[k] for r in runs]) for k in first}  # type: ignore[index]
    return round(float(np.mean(runs)), 3)  # type: ignore[arg-type]


def selection_score(cv: dict[str, object]) -> float:
    """What chooses the recipe: the six moods' balanced accuracy read as quadrants (the team's check),
    plus the mean top-20 fit (what /recommend needs), plus the six moods' mean rank correlation with
    Emotify's listeners (the second source)."""
    six: dict = cv["six_moods_as_quadrant"]  # type: ignore[assignment]
    fit: dict = cv["top_fit"]  # type: ignore[assignment]
    rank: dict = cv["emotify_rank"]  # type: ignore[assignment]
    return (float(six["balanced"]) + float(np.mean(list(fit.values())))
            + float(np.mean(list(rank.values()))))


# --- the GEMS head (Emotify) ------------------------------------------------------------------------------


def fit_kernel_ridge(x: np.ndarray, y: np.ndarray, *, gamma_scale: float, alpha: float) -> KernelRidge:
    """Solve (K + alpha I) c = standardised y on standardised x; gamma = gamma_scale / n_features."""
    x_mean, x_scale = _standardiser(x)
    y_mean, y_scale = y.mean(axis=0), y.std(axis=0)
    z = (x - x_mean) / x_scale
    gamma = gamma_scale / x.shape[1]
    dual = np.linalg.solve(rbf_kernel(z, z, gamma) + alpha * np.eye(len(z)), (y - y_mean) / y_scale)
    return KernelRidge(x_mean=x_mean, x_scale=x_scale, train_z=z, dual_coef=dual, y_mean=y_mean,
                       y_scale=y_scale, gamma=gamma)


def r2_scores(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """R² per column, against the mean of `y` (so predicting that mean scores 0)."""
    return 1.0 - ((y - p) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)


def gems_out_of_fold(x: np.ndarray, y: np.ndarray, genres: np.ndarray, fit: Callable[..., KernelRidge],
                    n_folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    pred = np.zeros_like(y)
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, genres):
        pred[test] = fit(x[train], y[train], genres[train]).predict(x[test])
    return pred


def choose_gems_params(x: np.ndarray, y: np.ndarray, genres: np.ndarray) -> tuple[float, float]:
    """(gamma_scale, alpha) with the best mean R² in an inner CV over these tracks only."""
    scored = []
    for gamma_scale in GAMMA_SCALES:
        for alpha in ALPHAS:
            def fit(xt: np.ndarray, yt: np.ndarray, _g: np.ndarray) -> KernelRidge:
                return fit_kernel_ridge(xt, yt, gamma_scale=gamma_scale, alpha=alpha)

            pred = gems_out_of_fold(x, y, genres, fit, INNER_FOLDS, SEED)
            scored.append((float(r2_scores(y, pred).mean()), gamma_scale, alpha))
    best = max(scored, key=lambda s: s[0])
    return best[1], best[2]


def fit_gems_head(x: np.ndarray, y: np.ndarray, genres: np.ndarray) -> KernelRidge:
    """The shipped recipe: choose the hyper-parameters on these tracks, then fit on all of them."""
    gamma_scale, alpha = choose_gems_params(x, y, genres)
    return fit_kernel_ridge(x, y, gamma_scale=gamma_scale, alpha=alpha)


def gems_cv(x: np.ndarray, emotify: Emotify) -> dict[str, object]:
    """Nested CV of the GEMS head on Emotify: R² per emotion (pooled over held-out tracks, mean of
    repeats) and their mean."""
    preds = [gems_out_of_fold(x, emotify.gems, emotify.genres, fit_gems_head, GEMS_FOLDS, SEED + r)
             for r in range(GEMS_REPEATS)]
    r2 = np.mean([r2_scores(emotify.gems, p) for p in preds], axis=0)
    return {"r2": {g: round(float(v), 3) for g, v in zip(GEMS, r2)}, "r2_mean": round(float(r2.mean()), 3),
            "r2_mean_per_repeat": [round(float(r2_scores(emotify.gems, p).mean()), 3) for p in preds]}


# --- the run --------------------------------------------------------------------------------------------


def load_features(fourq: FourQ, emotify: Emotify, models_dir: Path, cache_dir: Path, workers: int,
                  variants: tuple[str, ...] = AUGMENTED) -> Features:
    """Track vectors of both sources, clean and in `variants` (embedded once, then read from the cache)."""
    def matrix(prefix: str, files: list[Path], variant: str) -> np.ndarray:
        return track_matrix(prefix, files, variant, models_dir=models_dir, cache_dir=cache_dir,
                            workers=workers)

    return Features(
        clean=matrix("mood4q", fourq.files, "clean"),
        variants={v: matrix("mood4q", fourq.files, v) for v in variants},
        emotify=matrix("emotify", emotify.files, "clean"),
        emotify_variants={v: matrix("emotify", emotify.files, v) for v in variants},
    )


def choose(results: dict[str, dict[str, object]]) -> str:
    """The recipe with the best selection score."""
    return max(results, key=lambda name: selection_score(results[name]))


def write_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    """An npz with fixed zip timestamps (same inputs, same bytes), written to a temp name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    entries = {**arrays, "meta": np.array(json.dumps(meta, sort_keys=True))}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in entries.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())
    tmp.replace(path)


def probe_segments() -> Segments:
    """A fixed 12-s synthetic clip (chords, drum-like bursts, noise; seeded)."""
    rng = np.random.default_rng(SEED)
    t = np.arange(int(12 * SAMPLE_RATE)) / SAMPLE_RATE
    chords = ((261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63),
              (196.0, 246.94, 293.66))  # C, Am, F, G
    y = np.zeros_like(t)
    for k, chord in enumerate(chords):
        part = (t >= 3 * k) & (t < 3 * (k + 1))
        y[part] = sum(np.sin(2 * np.pi * f * t[part]) for f in chord) / 3
    beat = np.exp(-40 * (t % 0.5)) * rng.standard_normal(t.size)
    y = (0.5 * y + 0.3 * beat + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    return segment(y / np.abs(y).max() * 0.5, max_segments=20)


def probe_features(models_dir: Path) -> np.ndarray:
    """The track vector of a fixed synthetic clip, stored in the artefact so a test can tell when the
    front-end drifts from what the model was trained on."""
    from core.frontend import load_frontend

    out = load_frontend(models_dir).embed_segments(probe_segments().audio)
    return track_vector(out["penultimate"], out["tags"])


def train(shared: Path, out_dir: Path, cache_dir: Path, workers: int, models_dir: Path,
          command: str, augment: tuple[str, ...] = AUGMENTED) -> dict[str, object]:
    """Every figure of the card, and the artefact `out_dir`/mood.npz; returns the report. With no
    `augment` variants, the recipes that need them are left out."""
    fourq, emotify = read_fourq(shared / "mood4q-dev"), read_emotify(shared / "emotify")
    feats = load_features(fourq, emotify, models_dir, cache_dir, workers, variants=augment)
    untouched = fourq.untouched
    dev, final = np.flatnonzero(~untouched), np.flatnonzero(untouched)
    results = {}
    for recipe in (r for r in RECIPES if augment or not r.augment):
        results[recipe.name] = cross_validate(recipe, feats, fourq, emotify, dev)
        log.info("%s: %s", recipe.name, json.dumps(results[recipe.name]))
    chosen_name = choose(results)
    chosen = next(r for r in RECIPES if r.name == chosen_name)
    all_excerpts = np.arange(len(emotify.genres))
    held = fit_heads(chosen, feats, fourq, emotify, dev, all_excerpts)
    untouched_figures = {
        "songs": int(len(final)),
        "clean": quadrant_figures(fourq.quadrant[final], held.quadrants(feats.clean[final])),
        **({"mp3": quadrant_figures(fourq.quadrant[final], held.quadrants(feats.variants["mp3"][final]))}
           if "mp3" in feats.variants else {}),
        "six_moods_as_quadrant": quadrant_figures(fourq.quadrant[final],
                                                  moods_as_quadrants(held.moods(feats.clean[final]))),
        "top_fit_k5": top_fit(fourq.quadrant[final], held.moods(feats.clean[final]), k=5),
    }
    gems = gems_cv(feats.emotify, emotify)
    heads = fit_heads(chosen, feats, fourq, emotify, np.arange(len(fourq.quadrant)), all_excerpts)
    regressor = fit_gems_head(feats.emotify, emotify.gems, emotify.genres)
    report: dict[str, object] = {
        "command": command,
        "songs": {"dev": int(len(dev)), "untouched": int(len(final)), "emotify": int(len(emotify.genres))},
        "cv": results, "chosen": chosen_name, "untouched": untouched_figures, "gems_cv": gems,
    }
    meta = {
        "format": ARTEFACT_FORMAT,
        "kind": "mood-v3-linear-heads+gems-kernel-ridge",
        "audio_constants": audio_constants(),
        "frontend_constants": frontend_constants(),
        "feature_names": list(TRACK_FEATURE_NAMES),
        "gems": list(GEMS), "moods": list(MOODS), "quadrants": list(QUADRANTS),
        "gamma": regressor.gamma,
        "recipe": chosen.__dict__,
        "data": "4Q mood4q-dev (Panda, Malheiro & Paiva 2018), 588 songs; Emotify (Aljanaki, Wiering & "
                "Veltkamp 2016), 200 one-minute excerpts",
        "report": report,
    }
    arrays = {k: getattr(heads, k) for k in LinearHeads.ARRAYS}
    arrays.update({GEMS_PREFIX + k: getattr(regressor, k) for k in KernelRidge.ARRAYS})
    arrays["probe_features"] = probe_features(models_dir)
    write_npz(out_dir / ARTEFACT, arrays, meta)
    report["artefact"] = str(out_dir / ARTEFACT)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and measure the mood model on 4Q and Emotify.")
    parser.add_argument("--out", type=Path, default=PACKAGE_ROOT / "models", help="folder for the artefact")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the team's data folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="front-end output cache")
    parser.add_argument("--workers", type=int, default=2, help="processes embedding uncached audio")
    parser.add_argument("--models", type=Path, default=PACKAGE_ROOT / "models", help="where the front-end is")
    parser.add_argument("--augment", default="mp3",
                        help="comma-separated upload variants for training rows ('' for none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    augment = tuple(v for v in args.augment.split(",") if v)
    report = train(args.shared, args.out, args.cache_dir, args.workers, args.models,
                   f"python -m core.training.mood_train --augment '{args.augment}'", augment)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
