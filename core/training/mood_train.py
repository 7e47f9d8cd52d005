"""Train the mood model on Emotify and measure it: `python -m core.training.mood_train --out models/`.

Protocol (figures in models/mood.md come from this script's output):
- Features: `core.mood.track_vector`, the segment means of the front-end's embedding and tag logits over
  the 20 segments of each one-minute excerpt (the front-end pass genre and similarity share), cached per
  excerpt; for comparison, the previous model's hand-made features (`core.mood_features.track_vector`).
- Model: kernel ridge regression (RBF) from standardised features to standardised GEMS fractions; its
  kernel width and ridge penalty are chosen by an inner 5-fold CV on the training tracks only.
- Evaluation: 5-fold cross-validation over tracks, stratified by genre, repeated 5 times with different
  shuffles; every figure is computed on held-out tracks only (hyper-parameters included: nested CV).
  Under the same folds: ridge on descriptor means (the team's baseline), the previous model (kernel ridge
  on the hand-made features), ridge on the front-end features, the front-end features together with the
  hand-made ones, each track's genre mean (what genre alone explains), the most frequent mood.
- The shipped model is refitted on all 200 tracks; the spread of its cross-validated errors becomes the
  noise behind each estimate's confidence.
The artefact is written byte-for-byte deterministically (fixed seeds, fixed zip timestamps).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import core.features
import core.mood_features
from core.audio import Segments, load_segments, segment
from core.config import PACKAGE_ROOT
from core.constants import SAMPLE_RATE, audio_constants, frontend_constants
from core.features import DESCRIPTOR_NAMES, extract
from core.mood import (
    ARTEFACT,
    ARTEFACT_FORMAT,
    GEMS,
    MOODS,
    TRACK_FEATURE_NAMES,
    KernelRidge,
    mood_z,
    rbf_kernel,
    top_mood_confidence,
    track_vector,
)
from core.mood_features import extra_descriptors, segment_table
from core.mood_features import track_vector as handmade_vector
from core.training.genre_data import Clip, Embedded, embed_clips
from core.training.metrics import confusion_matrix

log = logging.getLogger(__name__)

DEFAULT_DATA = PACKAGE_ROOT.parent / "shared" / "data" / "emotify"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "cratedigger-mood-cache"
EXCERPT_SECONDS = 60.0
EXCERPT_SEGMENTS = 20
"""Emotify excerpts are one minute: 20 segments of 3 s, all of them analysed."""
FOLDS, REPEATS, INNER_FOLDS = 5, 5, 5
GAMMA_SCALES = (0.25, 0.5, 1.0)
"""Kernel widths tried, as multiples of 1 / n_features (the median squared distance is about 2 d)."""
ALPHAS = (0.1, 0.3, 1.0)
RIDGE_ALPHAS = tuple(np.logspace(-1, 4, 21))
NOISE_DRAWS = 500
SEED = 0


@dataclass(frozen=True)
class Emotify:
    """The annotated tracks: `gems` (n, 9) fractions of listeners in GEMS order."""

    files: list[Path]
    genres: np.ndarray
    gems: np.ndarray


def read_emotify(data_dir: Path) -> Emotify:
    with open(data_dir / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = tuple(c[: -len("_frac")] for c in rows[0] if c.endswith("_frac"))
    if names != GEMS:
        raise ValueError(f"{data_dir / 'tracks.csv'} lists emotions {names}, expected {GEMS}")
    return Emotify(
        files=[data_dir / r["file"] for r in rows],
        genres=np.array([r["genre"] for r in rows]),
        gems=np.array([[float(r[f"{n}_frac"]) for n in names] for r in rows]),
    )


def _digest(*parts: bytes) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:16]


def _source_digest(module: object) -> str:
    return _digest(Path(module.__file__).read_bytes())  # type: ignore[attr-defined]


CODE_DIGESTS = (_source_digest(core.features), _source_digest(core.mood_features))
"""Versions of the feature code, read once at import, i.e. of the code this process runs (and its worker
processes inherit): a file edited during a long run must not label old results with its new version."""


def _cache_keys(path: Path) -> tuple[str, str]:
    """Keys for the shared features and for the mood extras: each changes with the code that makes it."""
    audio = _digest(path.read_bytes(), repr(sorted(audio_constants().items())).encode())
    base, extras = (_digest(audio.encode(), code.encode()) for code in CODE_DIGESTS)
    return base, extras


def segment_features(path: Path, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shared descriptors, mood extras, chroma) per segment of one excerpt, computed once per version of
    the feature code.

    The shared features (the slower part) and the mood extras are cached apart, so changing the extras
    does not recompute the descriptors.
    """
    base_key, extra_key = _cache_keys(path)
    base_file, extra_file = cache_dir / f"base-{base_key}.npz", cache_dir / f"extra-{extra_key}.npz"
    segments = None
    if base_file.is_file():
        with np.load(base_file) as z:
            descriptors = z["descriptors"]
    else:
        segments = load_segments(path, max_seconds=EXCERPT_SECONDS + 5, max_segments=EXCERPT_SEGMENTS)
        descriptors = extract(segments).descriptors
        _save_atomic(base_file, descriptors=descriptors)
    if extra_file.is_file():
        with np.load(extra_file) as z:
            extras, chroma = z["extras"], z["chroma"]
    else:
        if segments is None:
            segments = load_segments(path, max_seconds=EXCERPT_SECONDS + 5, max_segments=EXCERPT_SEGMENTS)
        extras, chroma = extra_descriptors(segments.audio)
        _save_atomic(extra_file, extras=extras, chroma=chroma)
    return descriptors, extras, chroma


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


BASELINE_DESCRIPTORS = tuple(n for n in DESCRIPTOR_NAMES if n not in {"harmony_mean", "perceptr_mean"})
"""The team's baseline reads segment means of the GTZAN descriptors (MFCC, chroma, spectral statistics);
the HPSS waveform means (a DC offset) are left out, variances and RMS enter as logarithms."""


def baseline_vector(descriptors: np.ndarray) -> np.ndarray:
    columns = []
    for name in BASELINE_DESCRIPTORS:
        values = descriptors[:, DESCRIPTOR_NAMES.index(name)]
        columns.append(np.log(np.maximum(values, 0.0) + 1e-10) if name.endswith("_var") or
                       name.startswith("rms_") else values)
    return np.stack(columns, axis=1).mean(axis=0)


def _track_rows(args: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    descriptors, extras, chroma = segment_features(*args)
    return handmade_vector(segment_table(descriptors, extras), chroma), baseline_vector(descriptors)


def frontend_outputs(files: list[Path], genres: np.ndarray, models_dir: Path, cache_dir: Path,
                     jobs: int) -> Embedded:
    """Per-segment front-end outputs of `files`, each excerpt cut as an upload is (core.training.genre_data
    caches them by front-end under `cache_dir`/frontend)."""
    clips = [Clip(f"emotify:{f.stem}", str(g), "emotify", "emotify", f) for f, g in zip(files, genres)]
    return embed_clips(clips, "clean", models_dir=models_dir, cache_dir=cache_dir / "frontend", workers=jobs)


def frontend_matrix(files: list[Path], genres: np.ndarray, models_dir: Path, cache_dir: Path,
                    jobs: int) -> np.ndarray:
    """(n, len(TRACK_FEATURE_NAMES)) front-end track vectors of `files`, in order."""
    embedded = frontend_outputs(files, genres, models_dir, cache_dir, jobs)
    return np.stack([track_vector(embedded.penultimate[embedded.clip == i], embedded.tags[embedded.clip == i])
                     for i in range(len(files))])


def track_matrix(files: list[Path], cache_dir: Path, jobs: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous model's hand-made feature vectors (n, 56) and the baseline's descriptor means (n, 55)
    of `files`, in order."""
    from tqdm import tqdm

    work = [(f, cache_dir) for f in files]
    if jobs <= 1:
        rows = [_track_rows(w) for w in tqdm(work, desc="features", unit="track")]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(tqdm(pool.map(_track_rows, work), total=len(work), desc="features", unit="track"))
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def listener_panels(data_dir: Path, track_ids: list[int]) -> list[np.ndarray]:
    """Each track's raw listener rows (listeners, 9) of 0/1 ticks in GEMS order, from annotations.csv."""
    panels: dict[int, list[list[int]]] = {}
    with open(data_dir / "annotations.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            panels.setdefault(int(row["track id"]), []).append([int(row[g]) for g in GEMS])
    return [np.array(panels[t], dtype=np.float64) for t in track_ids]


# --- the model ---------------------------------------------------------------------------------------


def fit_kernel_ridge(x: np.ndarray, y: np.ndarray, *, gamma_scale: float, alpha: float) -> KernelRidge:
    """Solve (K + alpha I) c = standardised y on standardised x; gamma = gamma_scale / n_features."""
    x_mean, x_scale = x.mean(axis=0), x.std(axis=0)
    x_scale = np.where(x_scale > 1e-12, x_scale, 1.0)
    y_mean, y_scale = y.mean(axis=0), y.std(axis=0)
    z = (x - x_mean) / x_scale
    gamma = gamma_scale / x.shape[1]
    kernel = rbf_kernel(z, z, gamma)
    dual = np.linalg.solve(kernel + alpha * np.eye(len(z)), (y - y_mean) / y_scale)
    return KernelRidge(x_mean=x_mean, x_scale=x_scale, train_z=z, dual_coef=dual, y_mean=y_mean,
                       y_scale=y_scale, gamma=gamma)


def r2_scores(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """R² per column, against the mean of `y` (so predicting that mean scores 0)."""
    return 1.0 - ((y - p) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)


def folds(genres: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(genres)), genres))


Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
"""(x, y, genres of the training tracks) -> predict(x_new)."""


def out_of_fold(fit: Fitter, x: np.ndarray, y: np.ndarray, genres: np.ndarray, *, n_folds: int,
                seed: int) -> np.ndarray:
    """Predictions for every track from a model that never saw it, (n, targets)."""
    pred = np.zeros_like(y)
    for train, test in folds(genres, n_folds, seed):
        pred[test] = fit(x[train], y[train], genres[train])(x[test])
    return pred


def choose_params(x: np.ndarray, y: np.ndarray, genres: np.ndarray) -> tuple[float, float]:
    """(gamma_scale, alpha) with the best mean R² in an inner CV over these tracks only."""
    best: tuple[float, float, float] | None = None
    for gamma_scale in GAMMA_SCALES:
        for alpha in ALPHAS:
            def fit(xt: np.ndarray, yt: np.ndarray, _g: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
                return fit_kernel_ridge(xt, yt, gamma_scale=gamma_scale, alpha=alpha).predict

            score = float(r2_scores(y, out_of_fold(fit, x, y, genres, n_folds=INNER_FOLDS, seed=SEED)).mean())
            if best is None or score > best[0]:
                best = (score, gamma_scale, alpha)
    assert best is not None
    return best[1], best[2]


def _fit_shipped(x: np.ndarray, y: np.ndarray, genres: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The shipped recipe: choose the hyper-parameters on these tracks, then fit on all of them."""
    gamma_scale, alpha = choose_params(x, y, genres)
    return fit_kernel_ridge(x, y, gamma_scale=gamma_scale, alpha=alpha).predict


def _ridge(columns: np.ndarray) -> Fitter:
    def fit(x: np.ndarray, y: np.ndarray, _g: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(x[:, columns], y)
        return lambda xn: model.predict(xn[:, columns])

    return fit


def _genre_means(x: np.ndarray, y: np.ndarray, genres: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Each track gets its genre's mean: what genre alone explains. Needs the genre of the new tracks,
    which the caller passes through `x`'s last column (an index into the sorted genre names)."""
    names = np.unique(genres)
    means = np.stack([y[genres == g].mean(axis=0) for g in names])
    return lambda xn: means[xn[:, -1].astype(int)]


# --- measurement -------------------------------------------------------------------------------------


def top_moods(gems: np.ndarray) -> np.ndarray:
    return mood_z(gems).argmax(axis=-1)


def summarise(y: np.ndarray, preds: list[np.ndarray], genres: np.ndarray) -> dict[str, object]:
    """R² per emotion (pooled over held-out tracks, averaged over repeats), R² within each genre, and
    top-mood agreement with listeners."""
    overall = np.mean([r2_scores(y, p) for p in preds], axis=0)
    names = np.unique(genres)
    within = {
        str(g): np.mean([r2_scores(y[genres == g], p[genres == g]) for p in preds], axis=0) for g in names
    }
    within_mean = np.mean(list(within.values()), axis=0)
    agreement = [float((top_moods(p) == top_moods(y)).mean()) for p in preds]
    return {
        "r2": {e: round(float(v), 3) for e, v in zip(GEMS, overall)},
        "r2_mean": round(float(overall.mean()), 3),
        "r2_within_genre": {e: round(float(v), 3) for e, v in zip(GEMS, within_mean)},
        "r2_within_genre_mean": round(float(within_mean.mean()), 3),
        "r2_within_each_genre_mean": {g: round(float(v.mean()), 3) for g, v in within.items()},
        "top_mood_agreement": round(float(np.mean(agreement)), 3),
        "top_mood_agreement_sd": round(float(np.std(agreement)), 3),
    }


def noise_ceiling(panels: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Highest R² any model could reach against these panels' fractions: 1 - sampling noise / variance,
    with each track's binomial sampling variance p(1-p)/(listeners-1)."""
    noise = np.mean([p.mean(0) * (1 - p.mean(0)) / (len(p) - 1) for p in panels], axis=0)
    return 1.0 - noise / y.var(axis=0)


def split_half_agreement(panels: list[np.ndarray], rounds: int = 20) -> float:
    """How often two random halves of each track's listeners name the same top mood."""
    rng = np.random.default_rng(SEED)
    hits = []
    for _ in range(rounds):
        halves = []
        for p in panels:
            order = rng.permutation(len(p))
            halves.append((p[order[: len(p) // 2]].mean(0), p[order[len(p) // 2:]].mean(0)))
        a, b = (np.stack(h) for h in zip(*halves))
        hits.append(float((top_moods(a) == top_moods(b)).mean()))
    return float(np.mean(hits))


def mood_rank_correlation(y: np.ndarray, preds: list[np.ndarray]) -> dict[str, float]:
    """Spearman correlation, per mood, between scores from held-out predictions and from listeners: how
    well the estimates rank tracks, which is how the recommender uses them."""
    from scipy.stats import spearmanr

    truth = mood_z(y)
    rho = np.mean([[spearmanr(mood_z(np.clip(p, 0.0, 1.0))[:, m], truth[:, m])[0] for m in range(len(MOODS))]
                   for p in preds], axis=0)
    return {m: round(float(r), 3) for m, r in zip(MOODS, rho)}


def confusion(truth: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    return confusion_matrix(truth, predicted, len(MOODS)).tolist()


def noise_draws(residuals: np.ndarray) -> np.ndarray:
    """NOISE_DRAWS samples from a normal with the residuals' covariance, fixed seed."""
    cov = np.cov(residuals, rowvar=False)
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(cov.shape[0]))
    return np.random.default_rng(SEED).standard_normal((NOISE_DRAWS, cov.shape[0])) @ chol.T


def calibration(y: np.ndarray, preds: list[np.ndarray]) -> dict[str, object]:
    """Does the confidence mean what it says? Mean confidence vs agreement, overall and by tercile.

    The noise comes from all held-out residuals (a 9x9 covariance from 1000 rows: negligible leakage)."""
    pred = np.concatenate(preds)
    truth = np.concatenate([y] * len(preds))
    noise = noise_draws(truth - pred)
    conf = np.array([top_mood_confidence(p, noise) for p in pred])
    hit = top_moods(pred) == top_moods(truth)
    edges = np.quantile(conf, [1 / 3, 2 / 3])
    bins = np.digitize(conf, edges)
    return {
        "mean_confidence": round(float(conf.mean()), 3),
        "agreement": round(float(hit.mean()), 3),
        "by_tercile": [
            {"confidence": round(float(conf[bins == b].mean()), 3),
             "agreement": round(float(hit[bins == b].mean()), 3)}
            for b in range(3)
        ],
    }


# --- artefact ----------------------------------------------------------------------------------------


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


SHIPPED = "kernel ridge, front-end (shipped)"


def evaluate(x: np.ndarray, handmade: np.ndarray, baseline: np.ndarray, y: np.ndarray,
             genres: np.ndarray) -> dict[str, dict[str, object]]:
    """Every candidate on the same repeated folds; returns summaries and the shipped model's predictions.

    `x`: front-end track vectors; `handmade`: the previous model's features; `baseline`: descriptor means."""
    genre_index = np.searchsorted(np.unique(genres), genres)[:, None].astype(np.float64)
    both = np.concatenate([x, handmade], axis=1)
    candidates: dict[str, tuple[Fitter, np.ndarray]] = {
        "genre means (reference)": (_genre_means, genre_index),
        "ridge, descriptor means (team baseline)": (_ridge(np.arange(baseline.shape[1])), baseline),
        "kernel ridge, hand-made features (previous model)": (_fit_shipped, handmade),
        "ridge, front-end": (_ridge(np.arange(x.shape[1])), x),
        SHIPPED: (_fit_shipped, x),
        "kernel ridge, front-end + hand-made features": (_fit_shipped, both),
    }
    results: dict[str, dict[str, object]] = {}
    for name, (fit, inputs) in candidates.items():
        preds = [out_of_fold(fit, inputs, y, genres, n_folds=FOLDS, seed=SEED + r) for r in range(REPEATS)]
        results[name] = {"summary": summarise(y, preds, genres), "preds": preds}
        log.info("%s: mean R² %.3f", name, results[name]["summary"]["r2_mean"])  # type: ignore[index]
    return results


def _print_table(results: dict[str, dict[str, object]], extra: dict[str, object]) -> None:
    header = f"{'model':44s} " + " ".join(f"{e[:8]:>8s}" for e in GEMS) + "     mean  within  top-mood"
    print(header)
    for name, res in results.items():
        s = res["summary"]
        r2 = " ".join(f"{s['r2'][e]:8.3f}" for e in GEMS)  # type: ignore[index]
        print(f"{name:44s} {r2} {s['r2_mean']:8.3f} {s['r2_within_genre_mean']:7.3f} "  # type: ignore[index]
              f"{s['top_mood_agreement']:9.3f}")  # type: ignore[index]
    shipped = results[SHIPPED]["summary"]
    print("within-genre R² per emotion (shipped):",
          json.dumps(shipped["r2_within_genre"]))  # type: ignore[index]
    print("within-genre mean R² per genre (shipped):",
          json.dumps(shipped["r2_within_each_genre_mean"]))  # type: ignore[index]
    for key, value in extra.items():
        print(f"{key}: {json.dumps(value)}")


def probe_segments() -> Segments:
    """A fixed 12-s synthetic clip (chords, drum-like bursts, noise; seeded) whose features are stored in
    the artefact, so a test can tell when the feature code has drifted from what the model was trained on."""
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
    return segment(y / np.abs(y).max() * 0.5, max_segments=EXCERPT_SEGMENTS)


def probe_features(models_dir: Path) -> np.ndarray:
    from core.frontend import load_frontend

    out = load_frontend(models_dir).embed_segments(probe_segments().audio)
    return track_vector(out["penultimate"], out["tags"])


def codec_check(library_dir: Path, artefact: Path, models_dir: Path, n_tracks: int = 16) -> dict[str, object]:
    """How far estimates move between a full-band minute of music and the same minute encoded as Emotify's
    excerpts are (48 kb/s mono mp3), and between that minute and the whole track (up to 40 segments).

    The model learns only from such mp3s but hears full-band uploads; this measures the gap on unlabelled
    real music (every k-th track of the library). Shifts are in units of the estimates' spread across
    these tracks."""
    import subprocess

    import soundfile as sf

    from core.audio import decode, ffmpeg_exe, trim_silence
    from core.frontend import load_frontend
    from core.mood import read_mood_model

    model = read_mood_model(artefact)
    network = load_frontend(models_dir)
    files = sorted(library_dir.glob("*.ogg"))
    files = files[:: max(1, len(files) // n_tracks)][:n_tracks]
    minute, encoded, whole = [], [], []
    with tempfile.TemporaryDirectory(prefix="mood-codec-") as tmp:
        wav, mp3 = Path(tmp) / "minute.wav", Path(tmp) / "minute.mp3"
        for path in files:
            y = trim_silence(decode(path, max_seconds=1200.0), name=path.name)
            first = y[: int(EXCERPT_SECONDS * SAMPLE_RATE)]
            sf.write(wav, first, SAMPLE_RATE)
            subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav), "-ac", "1",
                            "-ar", str(SAMPLE_RATE), "-b:a", "48k", str(mp3)], check=True)
            for clip, out in ((first, minute), (decode(mp3, max_seconds=1200.0), encoded), (y, whole)):
                outputs = network.embed_segments(segment(clip, max_segments=40).audio)
                out.append(model.predict_gems(track_vector(outputs["penultimate"], outputs["tags"]))[0])
    a, b, c = (np.stack(v) for v in (minute, encoded, whole))
    spread = a.std(axis=0)
    return {
        "tracks": len(files),
        "mp3_48k_shift": {e: round(float(v), 2) for e, v in zip(GEMS, np.abs(a - b).mean(0) / spread)},
        "mp3_48k_same_top_mood": round(float((top_moods(a) == top_moods(b)).mean()), 3),
        "whole_track_shift": {e: round(float(v), 2) for e, v in zip(GEMS, np.abs(a - c).mean(0) / spread)},
        "whole_track_same_top_mood": round(float((top_moods(a) == top_moods(c)).mean()), 3),
    }


def train(data_dir: Path, out_dir: Path, cache_dir: Path, jobs: int, models_dir: Path) -> Path:
    data = read_emotify(data_dir)
    y, genres = data.gems, data.genres
    handmade, baseline = track_matrix(data.files, cache_dir, jobs)
    x = frontend_matrix(data.files, genres, models_dir, cache_dir, jobs)
    results = evaluate(x, handmade, baseline, y, genres)
    shipped = results[SHIPPED]
    preds: list[np.ndarray] = shipped["preds"]  # type: ignore[assignment]
    panels = listener_panels(data_dir, [int(f.name.split("_")[0]) for f in data.files])
    listeners_top = np.bincount(top_moods(y), minlength=len(MOODS))
    extra = {
        "noise ceiling R² (listener sampling)": {e: round(float(v), 3) for e, v in
                                                 zip(GEMS, noise_ceiling(panels, y))},
        "listeners' top moods": dict(zip(MOODS, listeners_top.tolist())),
        "majority-mood agreement": round(float(listeners_top.max() / len(y)), 3),
        "split-half listener agreement": round(split_half_agreement(panels), 3),
        "confidence calibration": calibration(y, preds),
        "mood-score rank correlation with listeners, held out (mean over repeats)":
            mood_rank_correlation(y, preds),
        "top-mood confusion, first repeat (rows: listeners, columns: model, both in MOODS order)":
            confusion(top_moods(y), top_moods(preds[0])),
    }
    _print_table(results, extra)

    gamma_scale, alpha = choose_params(x, y, genres)
    regressor = fit_kernel_ridge(x, y, gamma_scale=gamma_scale, alpha=alpha)
    residuals = np.concatenate([y - p for p in preds])
    meta = {
        "format": ARTEFACT_FORMAT,
        "kind": "kernel-ridge-rbf",
        "audio_constants": audio_constants(),
        "frontend_constants": frontend_constants(),
        "feature_names": list(TRACK_FEATURE_NAMES),
        "gems": list(GEMS),
        "gamma": regressor.gamma,
        "gamma_scale": gamma_scale,
        "alpha": alpha,
        "training_tracks": len(y),
        "data": "Emotify (Aljanaki, Wiering & Veltkamp 2016), 200 one-minute excerpts, odd track ids",
        "cv": {name: res["summary"] for name, res in results.items()},
        "checks": extra,
    }
    arrays = {k: getattr(regressor, k) for k in KernelRidge.ARRAYS}
    arrays["noise"] = noise_draws(residuals)
    arrays["probe_features"] = probe_features(models_dir)
    path = out_dir / ARTEFACT
    write_npz(path, arrays, meta)
    print(f"chosen gamma_scale={gamma_scale} alpha={alpha}; wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and measure the mood model on Emotify.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the artefact (models/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the emotify folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="per-track feature cache (not in the repository)")
    parser.add_argument("--jobs", type=int, default=2, help="processes computing uncached features")
    parser.add_argument("--models", type=Path, default=PACKAGE_ROOT / "models",
                        help="where the front-end is (default: the repository's models folder)")
    parser.add_argument("--codec-check", type=Path, default=None, metavar="LIBRARY_DIR",
                        help="afterwards, compare estimates on full-band and 48 kb/s mp3 audio of these "
                             ".ogg files (e.g. ../shared/data/library; one to two minutes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one BLAS thread: polite on a shared machine, and the same bytes
        path = train(args.data, args.out, args.cache_dir, args.jobs, args.models)  # whatever OMP says
        if args.codec_check is not None:
            print(f"codec check: {json.dumps(codec_check(args.codec_check, path, args.models))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
