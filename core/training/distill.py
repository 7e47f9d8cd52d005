"""Distil the descriptor genre model into the BiLSTM on real, unlabelled audio (no GTZAN audio needed).

Until GTZAN audio is here the only real labels are GTZAN's descriptor tables, so the BiLSTM learns from the
model trained on them: every real recording we have is cut into 3-s segments as inference cuts it, the
teacher (the manifest's "descriptor" model) gives its calibrated probabilities for each segment (by
default as it judges the segment in its ~30-s window, the unit it was trained on), and the BiLSTM is
trained on the MFCC sequences against those soft targets.

What is held out: Emotify's classical, rock and pop excerpts are the real-audio check (their genre is in the
file name; no label is ever trained on). By default they are not trained on at all: the student learns from
library/ and Emotify's electronic excerpts, 20 % of those tracks (not segments) held out for early stopping
and calibration. With `check_folds` K the check excerpts' *teacher* labels are used too, honestly: K
students are trained, each without one fold of the check excerpts, and each is scored on its own fold
(cross-fitting); the shipped student then trains on everything, and its held-out figure is the
cross-fitted one. Teacher and student are scored through the same pipeline (decode → segments → features
→ predict); the student is worth shipping only if its held-out accuracy is at least its teacher's.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from core.audio import load_segments
from core.config import PACKAGE_ROOT
from core.constants import GENRES, audio_constants
from core.errors import UserError
from core.features import SegmentFeatures, extract
from core.genre import LOADERS, GenreModel, read_manifest
from core.genre.bilstm import BilstmGenreModel, Sidecar, load, standardise, write_sidecar
from core.genre.export import KerasRunner
from core.training.bilstm_train import (
    CONFUSION_NAME,
    Evaluation,
    TrainConfig,
    TrainResult,
    evaluate,
    fit,
    fit_temperature,
    measure_runtimes,
    predict_log_probs,
    save_artefact,
    shown_path,
    standardisation,
    track_mean_log_probs,
    write_model_card,
)
from core.training.gtzan import BadDataset
from core.training.metrics import expected_calibration_error, plot_confusion

log = logging.getLogger(__name__)

DEFAULT_SHARED = PACKAGE_ROOT.parent / "shared" / "data"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "cratedigger-distill-cache"
MAX_SECONDS = 600.0
MAX_SEGMENTS = 200
"""Every segment of a track up to 10 min is used: the more real audio the student sees, the better."""
CHECK_MAX_SEGMENTS = 40
"""The service's default `max_segments`: the check runs the pipeline as a user's request does. Emotify's
one-minute excerpts have 20 segments, so the cached features serve the check unchanged."""
CHECK_GENRES = ("classical", "rock", "pop")
Granularity = Literal["window", "segment", "track"]
Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]
"""True labels, predicted labels and confidences of one model on the check excerpts."""
GRANULARITY_TEXT = {
    "window": "as it judges the segment within its ~30-s window of the recording",
    "segment": "judging each 3-s segment alone",
    "track": "its verdict on the whole recording, for every segment",
}


@dataclass(frozen=True)
class Source:
    """One recording: `group` says where it comes from; `genre` is known only for Emotify (for the check)."""

    path: Path
    group: str
    genre: str | None = None

    @property
    def check_label(self) -> int | None:
        return GENRES.index(self.genre) if self.genre in CHECK_GENRES else None


@dataclass(frozen=True)
class DistillConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    granularity: Granularity = "window"
    holdout: float = 0.2
    """Fraction of the training tracks (per group) held out for early stopping and calibration."""
    check_folds: int = 0
    """0: never train on the check excerpts. K >= 2: cross-fit over K folds of them (see the module doc)."""
    workers: int = 2


@dataclass(frozen=True)
class CheckResult:
    """10-way accuracy on Emotify's classical/rock/pop excerpts, overall and per genre."""

    accuracy: float
    per_genre: dict[str, float]
    confusion: list[list[int]]
    tracks: int
    ece: float
    """Expected calibration error of the verdicts' confidence against the true genre (10 bins)."""

    @classmethod
    def from_predictions(cls, predictions: Predictions) -> CheckResult:
        labels, predicted, confidence = predictions
        if not labels.size:
            raise BadDataset("no classical, rock or pop Emotify excerpt found for the check")
        confusion = np.zeros((len(GENRES), len(GENRES)), dtype=int)
        np.add.at(confusion, (labels, predicted), 1)
        correct = labels == predicted
        return cls(
            accuracy=float(correct.mean()),
            per_genre={g: float(correct[labels == GENRES.index(g)].mean()) for g in CHECK_GENRES
                       if (labels == GENRES.index(g)).any()},
            confusion=confusion.tolist(),
            tracks=int(labels.size),
            ece=expected_calibration_error(confidence, correct),
        )

    def confusions_text(self) -> str:
        """What each check genre was mistaken for most often, e.g. 'pop → reggae 11, rock 11, blues 10'."""
        parts = []
        for genre in self.per_genre:
            row = np.array(self.confusion[GENRES.index(genre)])
            row[GENRES.index(genre)] = 0
            top = [f"{GENRES[j]} {row[j]}" for j in np.argsort(-row, kind="stable")[:3] if row[j]]
            parts.append(f"{genre} → {', '.join(top) or 'none'}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DistillResult:
    train: TrainResult
    teacher: str
    teacher_check: CheckResult
    student_check: CheckResult
    """The shipped student's own score: held out only when `crossfit_check` is None."""
    crossfit_check: CheckResult | None
    sources: dict[str, dict[str, int]]

    @property
    def held_out_check(self) -> CheckResult:
        return self.crossfit_check or self.student_check

    @property
    def agreement(self) -> float:
        """Fraction of held-out tracks where student and teacher name the same genre."""
        return self.train.valid.track_accuracy

    @property
    def ship(self) -> bool:
        return self.held_out_check.accuracy >= self.teacher_check.accuracy


def library_sources(shared: Path) -> list[Source]:
    folder = shared / "library"
    paths = sorted(folder.glob("*.ogg"))
    if not paths:
        raise BadDataset(f"no .ogg files in {folder}")
    return [Source(p, "library") for p in paths]


def emotify_sources(shared: Path) -> list[Source]:
    folder = shared / "emotify"
    table = folder / "tracks.csv"
    if not table.is_file():
        raise BadDataset(f"{table} not found")
    with open(table, newline="") as fh:
        return [Source(folder / row["file"], f"emotify-{row['genre']}", row["genre"])
                for row in csv.DictReader(fh)]


def _code_digest() -> str:
    """Cached features are only valid for the code and constants that made them."""
    import core.audio
    import core.features

    h = hashlib.sha1(repr(audio_constants()).encode())
    for module in (core.audio, core.features):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def _cache_file(path: Path, cache_dir: Path, digest: str) -> Path:
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{digest}".encode()).hexdigest()
    return cache_dir / f"{path.stem}-{key[:16]}.npz"


def _extract_to(path: Path, target: Path) -> str | None:
    """Features of one file into `target`; the reason instead when the file cannot be analysed."""
    try:
        features = extract(load_segments(path, max_seconds=MAX_SECONDS, max_segments=MAX_SEGMENTS))
    except UserError as exc:
        return str(exc)
    tmp = target.with_suffix(".partial.npz")
    np.savez(tmp, descriptors=features.descriptors, mfcc=features.mfcc, starts=features.starts,
             clip_seconds=features.clip_seconds)
    tmp.replace(target)
    return None


def _read(target: Path) -> SegmentFeatures:
    with np.load(target) as z:
        return SegmentFeatures(z["descriptors"], z["mfcc"], z["starts"], float(z["clip_seconds"]))


def clip_features(sources: Sequence[Source], cache_dir: Path,
                  workers: int = 2) -> tuple[list[Source], list[SegmentFeatures]]:
    """Features of every source as inference computes them, cached on disk (decoding and descriptors of
    seven thousand segments take minutes; experiments should not pay that twice). A file that cannot be
    analysed is logged and left out of both returned lists."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = _code_digest()
    targets = [_cache_file(s.path, cache_dir, digest) for s in sources]
    todo = [(s.path, t) for s, t in zip(sources, targets) if not t.is_file()]
    if todo:
        log.info("computing features of %d recordings (%d cached) into %s", len(todo),
                 len(sources) - len(todo), cache_dir)
    if todo and workers > 1:  # spawned, not forked: the caller may already hold TensorFlow's threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_extract_to, path, target) for path, target in todo]
            failures = [f.result() for f in tqdm(futures, desc="features", unit="file", disable=None)]
    else:
        failures = [_extract_to(path, target) for path, target in tqdm(todo, desc="features", unit="file",
                                                                        disable=None)]
    for (path, _), reason in zip(todo, failures):
        if reason:
            log.warning("left out %s: %s", path, reason)
    kept = [(s, t) for s, t in zip(sources, targets) if t.is_file()]
    return [s for s, _ in kept], [_read(t) for _, t in kept]


def load_teacher(models_dir: Path) -> GenreModel:
    """The manifest's descriptor model (never a BiLSTM: a student must not learn from itself)."""
    import importlib

    for entry in read_manifest(models_dir):
        if entry["kind"] == "descriptor" and (models_dir / entry["path"]).exists():
            module_name, func = LOADERS["descriptor"].split(":")
            return getattr(importlib.import_module(module_name), func)(models_dir / entry["path"], entry)
    raise UserError(f"no descriptor model listed in {models_dir / 'manifest.json'}: nothing to distil from")


def _probabilities(teacher: GenreModel, features: SegmentFeatures, rows: np.ndarray) -> np.ndarray:
    """The teacher's overall verdict on the segments `rows` of one recording, as a (len(GENRES),) array."""
    part = SegmentFeatures(features.descriptors[rows], features.mfcc[rows], features.starts[rows],
                           features.clip_seconds)
    verdict = teacher.predict(part)
    return np.array([verdict.probabilities[g] for g in GENRES])


def teacher_targets(teacher: GenreModel, features: SegmentFeatures, granularity: Granularity) -> np.ndarray:
    """(n, len(GENRES)) soft targets for each segment of one recording.

    "window": the teacher's own per-segment answer on the whole recording (`segment_probabilities`; the
    descriptor model gives each segment the calibrated verdict of its ~30-s window, the unit it was trained
    on); "segment": the teacher on each 3-s segment alone; "track": its overall verdict, for every segment."""
    n = len(features)
    if granularity == "segment":
        return np.stack([_probabilities(teacher, features, np.array([i])) for i in range(n)])
    if granularity == "track":
        return np.repeat(_probabilities(teacher, features, np.arange(n))[None], n, axis=0)
    return np.asarray(teacher.predict(features).segment_probabilities, dtype=np.float64)


def holdout_split(sources: Sequence[Source], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and validation tracks: `fraction` of each group's tracks, at least one."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for group in sorted({s.group for s in sources}):
        members = [i for i, s in enumerate(sources) if s.group == group]
        rng.shuffle(members)
        k = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        valid += members[:k]
        train += members[k:]
    return sorted(train), sorted(valid)


def check_predictions(model: GenreModel, sources: Sequence[Source],
                      features: Sequence[SegmentFeatures]) -> Predictions:
    """True label, predicted label and confidence of `model.predict` on the check excerpts among
    `sources` (the others are skipped)."""
    rows = []
    for source, feats in zip(sources, features):
        if source.check_label is None:
            continue
        if len(feats) > CHECK_MAX_SEGMENTS:
            raise ValueError(f"{source.path} has {len(feats)} segments; the check expects excerpts")
        verdict = model.predict(feats)
        rows.append((source.check_label, GENRES.index(verdict.genre), verdict.confidence))
    labels, predicted, confidence = zip(*rows) if rows else ((), (), ())
    return np.array(labels, dtype=int), np.array(predicted, dtype=int), np.array(confidence, dtype=float)


def emotify_check(model: GenreModel, sources: Sequence[Source],
                  features: Sequence[SegmentFeatures]) -> CheckResult:
    """10-way accuracy on the check excerpts (genre from the file name), through `model.predict`."""
    return CheckResult.from_predictions(check_predictions(model, sources, features))


def check_folds(sources: Sequence[Source], folds: int, seed: int) -> dict[int, int]:
    """Source index -> fold, for the check excerpts only, each genre spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold_of: dict[int, int] = {}
    for genre in CHECK_GENRES:
        members = [i for i, s in enumerate(sources) if s.genre == genre]
        rng.shuffle(members)
        fold_of.update({i: j % folds for j, i in enumerate(members)})
    return fold_of


def _stack(features: Sequence[SegmentFeatures], targets: Mapping[int, np.ndarray],
           indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.concatenate([features[i].mfcc for i in indices])
    t = np.concatenate([targets[i] for i in indices]).astype(np.float32)
    owner = np.concatenate([np.full(len(features[i]), j) for j, i in enumerate(indices)])
    return x, t, owner


@dataclass
class Student:
    """A trained student still in memory, with what inference needs besides its weights."""

    model: Any
    config: TrainConfig
    mean: np.ndarray
    std: np.ndarray
    temperature: float
    valid: Evaluation
    epochs_run: int
    best_epoch: int

    def sidecar(self, training: dict[str, Any]) -> Sidecar:
        return Sidecar(
            constants=audio_constants(),
            genres=list(GENRES),
            mean=[float(v) for v in self.mean],
            std=[float(v) for v in self.std],
            temperature=self.temperature,
            architecture={"units": list(self.config.layer_units), "dropout": self.config.dropout,
                          "parameters": int(self.model.count_params())},
            training=training,
        )

    def genre_model(self, name: str) -> BilstmGenreModel:
        """The student behind the GenreModel interface without saving it (cross-fitting scores it so)."""
        return BilstmGenreModel(name, self.sidecar({}), KerasRunner(self.model))


def train_student(teacher: GenreModel, features: Sequence[SegmentFeatures],
                  targets: Mapping[int, np.ndarray], train_idx: Sequence[int], valid_idx: Sequence[int],
                  config: TrainConfig) -> Student:
    """Fit on the training recordings' segments; early stopping and the temperature on the validation
    recordings, against the teacher (the only labels there are)."""
    x_train, t_train, _ = _stack(features, targets, train_idx)
    x_valid, t_valid, valid_owner = _stack(features, targets, valid_idx)
    mean, std = standardisation(x_train)
    xs_train, xs_valid = standardise(x_train, mean, std), standardise(x_valid, mean, std)
    model, epochs_run, best_epoch = fit(xs_train, t_train, xs_valid, t_valid, config)
    valid_logp = predict_log_probs(model, xs_valid)
    teacher_track = np.stack([_probabilities(teacher, features[i], np.arange(len(features[i])))
                              for i in valid_idx])
    track_logits = track_mean_log_probs(valid_logp, valid_owner, len(valid_idx))
    temperature = fit_temperature(track_logits, teacher_track)
    valid = evaluate(valid_logp, t_valid.argmax(axis=1), valid_owner, teacher_track.argmax(axis=1),
                     temperature)
    return Student(model, config, mean, std, temperature, valid, epochs_run, best_epoch)


def _split(sources: Sequence[Source], pool: Sequence[int],
           config: DistillConfig) -> tuple[list[int], list[int]]:
    train, valid = holdout_split([sources[i] for i in pool], config.holdout, config.train.seed)
    return [pool[i] for i in train], [pool[i] for i in valid]


def distill(shared: Path, teacher: GenreModel, out_dir: Path, cache_dir: Path, config: DistillConfig, *,
            command: str, export: bool = True) -> DistillResult:
    """Label, train, calibrate, save, then score teacher and student on the check; the caller decides
    from `DistillResult.ship` whether the artefact may be listed in the manifest."""
    started = time.perf_counter()
    sources, features = clip_features(library_sources(shared) + emotify_sources(shared), cache_dir,
                                      config.workers)
    pool = [i for i, s in enumerate(sources) if config.check_folds or s.check_label is None]
    targets = {i: teacher_targets(teacher, features[i], config.granularity)
               for i in tqdm(pool, desc="teacher", unit="file", disable=None)}

    crossfit = None
    if config.check_folds:
        fold_of = check_folds(sources, config.check_folds, config.train.seed)
        per_fold: list[Predictions] = []
        for fold in range(config.check_folds):
            log.info("cross-fitting: fold %d of %d", fold + 1, config.check_folds)
            kept = [i for i in pool if fold_of.get(i) != fold]
            student = train_student(teacher, features, targets, *_split(sources, kept, config), config.train)
            held = [i for i, f in fold_of.items() if f == fold]
            per_fold.append(check_predictions(student.genre_model(f"fold {fold + 1}"),
                                              [sources[i] for i in held], [features[i] for i in held]))
        labels, predicted, confidence = (np.concatenate(column) for column in zip(*per_fold))
        crossfit = CheckResult.from_predictions((labels, predicted, confidence))

    train_idx, valid_idx = _split(sources, pool, config)
    student = train_student(teacher, features, targets, train_idx, valid_idx, config.train)
    counts = {g: {"train_tracks": sum(sources[i].group == g for i in train_idx),
                  "valid_tracks": sum(sources[i].group == g for i in valid_idx),
                  "train_segments": int(sum(len(features[i]) for i in train_idx if sources[i].group == g))}
              for g in sorted({sources[i].group for i in pool})}
    training = {
        "method": f"distilled from {teacher.name} ({config.granularity} soft targets)",
        "data": f"{shown_path(shared)}/library and {shown_path(shared)}/emotify; the check excerpts "
                "(Emotify classical/rock/pop) "
                + (f"trained on with teacher labels, scored by {config.check_folds}-fold cross-fitting"
                   if config.check_folds else "not trained on"),
        "sources": counts,
        "config": {**asdict(config.train), "granularity": config.granularity, "holdout": config.holdout,
                   "check_folds": config.check_folds},
        "valid_vs_teacher": student.valid.to_dict(),
        "command": command,
    }
    files = save_artefact(student.model, out_dir, student.sidecar(training), export=export)
    check_sources = [s for s in sources if s.check_label is not None]
    check_features = [features[i] for i, s in enumerate(sources) if s.check_label is not None]
    teacher_check = emotify_check(teacher, check_sources, check_features)
    student_check = emotify_check(load(files[0], {"name": "bilstm-distilled"}), check_sources, check_features)
    training["runtimes"] = measure_runtimes(files[0])
    training["emotify_check"] = {"teacher": teacher_check.to_dict(), "student": student_check.to_dict(),
                                 "student_cross_fitted": crossfit.to_dict() if crossfit else None}
    sidecar = student.sidecar(training)
    write_sidecar(files[0], sidecar)
    held_out = crossfit or student_check
    files.append(plot_confusion(held_out.confusion, out_dir / CONFUSION_NAME,
                                f"Distilled BiLSTM, Emotify check (held out): {held_out.accuracy:.2f}"))
    result = DistillResult(
        TrainResult(files[0], sidecar, student.valid, None, student.epochs_run, student.best_epoch,
                    time.perf_counter() - started, files),
        teacher.name, teacher_check, student_check, crossfit, counts)
    files.append(write_model_card(result.train, out_dir, title="BiLSTM genre model (distilled)",
                                  data_text=_data_text(shared, counts, config, teacher.name),
                                  extra=_check_text(result, config)))
    return result


def _check_text(result: DistillResult, config: DistillConfig) -> str:
    rows = [(f"teacher ({result.teacher})", result.teacher_check)]
    if result.crossfit_check:
        rows += [(f"BiLSTM, {config.check_folds}-fold cross-fitted (held out)", result.crossfit_check),
                 ("this BiLSTM (trained on these excerpts' teacher labels: NOT held out)",
                  result.student_check)]
        how = (f"The check excerpts' teacher labels were used for training: {config.check_folds} students "
               f"were trained, each without one fold of them, and scored on that fold; this artefact was "
               f"then trained on all of them.")
    else:
        rows.append(("this BiLSTM (held out)", result.student_check))
        how = "The check excerpts were not trained on."
    table = ["| model | accuracy | " + " | ".join(CHECK_GENRES) + " | ECE |",
             "|---|---|" + "---|" * len(CHECK_GENRES) + "---|"]
    for name, r in rows:
        per_genre = " | ".join(f"{r.per_genre[g]:.2f}" if g in r.per_genre else "–" for g in CHECK_GENRES)
        table.append(f"| {name} | {r.accuracy:.3f} | {per_genre} | {r.ece:.3f} |")
    held = result.held_out_check
    margin = 1.96 * np.sqrt(held.accuracy * (1 - held.accuracy) / held.tracks)
    return "\n".join([
        "",
        f"Valid rows compare the student with the *teacher's* verdicts (no ground truth there): agreement "
        f"{result.agreement:.3f}.",
        "",
        f"## Real-audio check: Emotify classical / rock / pop ({result.teacher_check.tracks} one-minute "
        "excerpts, 10-way; Aljanaki, Wiering and Veltkamp 2016)",
        how,
        "",
        *table,
        "",
        "The confusion matrix above is the student's held-out one on this check. Known confusions "
        f"(held out): {held.confusions_text()}. The teacher's: {result.teacher_check.confusions_text()}.",
        "",
        f"Caveats: {held.tracks} excerpts of three genres only, so a 95 % binomial interval on the held-out "
        f"accuracy is about ±{margin:.2f}; the student learnt the teacher's labels, never the true ones, "
        "and cannot be scored on the GTZAN test split until GTZAN audio is here.",
        "",
    ])


def _data_text(shared: Path, counts: dict[str, dict[str, int]], config: DistillConfig, teacher: str) -> str:
    rows = "\n".join(f"| {g} | {c['train_tracks']} | {c['valid_tracks']} | {c['train_segments']} |"
                     for g, c in counts.items())
    shared_text = shown_path(shared)
    return (f"No labelled audio: the real recordings of `{shared_text}/library/` (game soundtracks) and "
            f"`{shared_text}/emotify/audio/` were cut into 3-s segments exactly as inference cuts them, and "
            f"the descriptor model `{teacher}` (trained on the GTZAN descriptor table) gave each segment its "
            f"calibrated probabilities ({GRANULARITY_TEXT[config.granularity]}) as the BiLSTM's soft "
            f"targets. Tracks, not segments, were held out for validation "
            f"({config.holdout:.0%} of each group, seed {config.train.seed}).\n\n"
            f"| group | train tracks | valid tracks | train segments |\n|---|---|---|---|\n{rows}")
