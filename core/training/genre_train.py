"""Choose, calibrate, measure and save the genre head over the front-end (`cratedigger train genre`).

The data, all labelled real audio from `../shared/data`: GTZAN's artist-filtered train and valid tracks and
the Emotify classical/rock/pop excerpts (core.training.genre_data), and the 4Q `mood4q-dev` commercial
songs with their AllMusic genres read as sets of our genres (core.training.genre_weak). A candidate is a
head and a use of those songs (`HeadConfig.weak`): "none", "clean" (songs whose set is one genre) or
"partial" (every mapped song, under the partial-label loss).

The protocol:
1. Cross-validation over the 4Q songs (grouped by artist; the set-aside artists left out) and the Emotify
   excerpts (grouped by recording) together, GTZAN train + valid always on the training side, every
   augmentation of a training clip on the training side, the held-out clips scored clean and as mp3: the
   4Q songs on the team's six AllMusic labels (genre_weak.check_label), the Emotify excerpts on theirs.
2. The same candidate fitted on GTZAN train (+ Emotify + the 4Q songs) and scored on GTZAN's valid split,
   full tracks and 2-3-s cuts apart: the GTZAN check that keeps artists apart, which GTZAN folds could not
   (GTZAN names no artists).
3. The choice is the best mean of four macro accuracies: 4Q six labels and Emotify (step 1), GTZAN valid
   full tracks and cuts (step 2). The best BiLSTM ships (the runtime serves BiLSTMs).
4. The temperature is fitted on held-out verdicts of clips with one true genre (GTZAN valid from step 2,
   Emotify and the one-genre 4Q songs from step 1); its ECE is measured by cross-fitting the temperature
   over two halves of them.
5. The chosen candidate is fitted once without the set-aside artists and scored on them (the figure no
   choice saw), then refitted on everything and saved: `<stem>.keras` (reference), `<stem>.npz` (the NumPy
   runtime's weights), `<stem>.json` (sidecar).
"""
from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import GENRES, audio_constants, frontend_constants
from core.genre import softmax
from core.genre.bilstm import ARTEFACT_VERSION, KIND, Sidecar
from core.training.artefacts import write_artefact
from core.training.genre_data import (
    DEFAULT_CACHE,
    VARIANTS,
    Clip,
    emotify_clips,
    embed_clips,
    gtzan_clips,
)
from core.training.genre_heads import BilstmHead, HeadConfig, fit_head
from core.training.genre_weak import ALLMUSIC_TO_GENRES, ASIDE, SPLIT, fourq_clips
from core.training.metrics import (
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
)

log = logging.getLogger(__name__)

MODEL_STEM = "genre_bilstm"
EVAL_VARIANTS: tuple[str, ...] = ("clean", "mp3")
GROUPS: tuple[str, ...] = ("gtzan_full", "gtzan_cut", "emotify", SPLIT, ASIDE)
"""The kinds of held-out clip every figure is given for; the selection score is the mean of the macro
accuracies of the first four."""
SELECTION_GROUPS = GROUPS[:4]
WEAK_MODES = ("none", "clean", "partial")

_SHIPPED = HeadConfig("bilstm", units=16, dropout=0.5, epochs=15, medley=0.5, l2=0.03, residual=True, c=0.1)
CANDIDATES: tuple[HeadConfig, ...] = (
    _SHIPPED,
    replace(_SHIPPED, weak="clean"),
    replace(_SHIPPED, weak="partial"),
    replace(_SHIPPED, weak="partial", balance=0.5),
    HeadConfig("logistic", c=0.1, weak="partial"),
)
"""The shipped recipe of 2026-12-01 (weak "none") and the same BiLSTM with the 4Q songs two ways, with a
softer class balance, and the per-segment logistic baseline."""


def group_of(clip: Clip) -> str:
    if clip.split in ("emotify", SPLIT, ASIDE):
        return clip.split
    return "gtzan_cut" if clip.kind.startswith("short") else "gtzan_full"


def hit(clip: Clip, predicted: int) -> bool:
    """A verdict is right when it is the clip's genre, or for a 4Q song in the set of its check label."""
    if clip.check:
        return GENRES[predicted] in ALLMUSIC_TO_GENRES[clip.check]
    return predicted == clip.label


def truth_name(clip: Clip) -> str:
    """What a clip's figures are filed under: its check label (4Q) or its genre."""
    return clip.check or clip.genre


def scored(clip: Clip) -> bool:
    """4Q songs count in the figures only when they have a check label (one of the team's six)."""
    return bool(clip.check) if clip.split in (SPLIT, ASIDE) else True


def trainable(clip: Clip, weak: str) -> bool:
    """Whether a candidate using the 4Q songs as `weak` trains on this clip."""
    if clip.split not in (SPLIT, ASIDE):
        return True
    return weak == "partial" or (weak == "clean" and len(clip.allowed) == 1)


@dataclass
class Data:
    """Every labelled clip and, per augmentation variant, its (segments, 200) embedding sequence (empty
    when the clip could not be decoded)."""

    clips: list[Clip]
    sequences: dict[str, list[np.ndarray]]

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.label for c in self.clips])

    def usable(self, indices: Sequence[int]) -> list[int]:
        return [i for i in indices if len(self.sequences["clean"][i])]

    def training_set(self, indices: Sequence[int], weak: str = "partial") -> tuple[list[np.ndarray], np.ndarray]:
        """Every variant of every clip in `indices` that a `weak` candidate trains on, as its own training
        sequence, with its (genres,) allowed-genre mask."""
        seqs, masks = [], []
        for variant, per_clip in self.sequences.items():
            for i in indices:
                if len(per_clip[i]) and trainable(self.clips[i], weak):
                    seqs.append(per_clip[i])
                    masks.append(self.clips[i].mask)
        return seqs, np.array(masks).reshape(len(masks), len(GENRES))

    def where(self, *groups: str) -> list[int]:
        """Usable clips of these groups (see group_of)."""
        return self.usable([i for i, c in enumerate(self.clips) if group_of(c) in groups])


def load_data(shared: Path, models_dir: Path, *, cache_dir: Path = DEFAULT_CACHE, workers: int = 2,
              variants: Sequence[str] = VARIANTS) -> Data:
    """GTZAN + Emotify + the 4Q songs with a mapped genre, each embedded once per variant (cached)."""
    from core.training.mood_sources import _clips, read_fourq

    shared = shared.resolve()  # the cache is keyed by path: one spelling of the folder
    clips = gtzan_clips(shared / "gtzan-audio", shared / "gtzan-split") + emotify_clips(shared / "emotify")
    fourq = read_fourq(shared / "mood4q-dev")
    songs = fourq_clips(fourq.files, fourq.artists, fourq.genres, fourq.untouched)
    row = {path: n for n, path in enumerate(fourq.files)}
    sequences = {}
    for v in variants:
        labelled = embed_clips(clips, v, models_dir=models_dir, cache_dir=cache_dir, workers=workers)
        # every 4Q song, as the mood model embeds them (one cache for both)
        all_songs = embed_clips(_clips("mood4q", fourq.files), v, models_dir=models_dir, cache_dir=cache_dir,
                                workers=workers).sequences()
        sequences[v] = labelled.sequences() + [all_songs[row[c.path]] for c in songs]
    return Data(clips + songs, sequences)


def track_logits(head: Any, data: Data, indices: Sequence[int], variant: str) -> np.ndarray:
    """(len(indices), genres) mean segment log-probabilities: the untempered track verdicts."""
    return np.stack([head.segment_log_probs(data.sequences[variant][i]).mean(axis=0) for i in indices])


@dataclass
class Scores:
    """Held-out verdicts of one candidate: per variant, (clips, genres) logits for `indices`."""

    indices: list[int]
    logits: dict[str, np.ndarray]

    def accuracy(self, data: Data, variant: str = "clean") -> dict[str, Any]:
        """Per group: accuracy, macro accuracy over the genres (4Q: check labels) present, and per genre
        the recall and count."""
        predicted = self.logits[variant].argmax(axis=1)
        out: dict[str, Any] = {}
        for group in GROUPS:
            sel = [(data.clips[i], int(predicted[k])) for k, i in enumerate(self.indices)
                   if group_of(data.clips[i]) == group and scored(data.clips[i])]
            if not sel:
                continue
            hits: dict[str, list[bool]] = {}
            for clip, p in sel:
                hits.setdefault(truth_name(clip), []).append(hit(clip, p))
            per_genre = {name: {"recall": round(float(np.mean(h)), 3), "n": len(h)}
                         for name, h in sorted(hits.items())}
            out[group] = {"accuracy": round(float(np.mean([hit(c, p) for c, p in sel])), 3), "n": len(sel),
                          "macro": round(float(np.mean([v["recall"] for v in per_genre.values()])), 3),
                          "per_genre": per_genre}
        return out

    def macros(self, data: Data) -> dict[str, float]:
        return {g: v["macro"] for g, v in self.accuracy(data, "clean").items()}

    def selection_score(self, data: Data) -> float:
        macros = self.macros(data)
        return float(np.mean([macros[g] for g in SELECTION_GROUPS if g in macros]))

    def merged(self, other: Scores) -> Scores:
        return Scores(self.indices + other.indices,
                      {v: np.concatenate([self.logits[v], other.logits[v]]) for v in self.logits})


def folds(data: Data, indices: Sequence[int], k: int, seed: int) -> list[np.ndarray]:
    """Held-out index arrays, stratified by genre (4Q: check label), grouped by recording (4Q: artist)."""
    from sklearn.model_selection import StratifiedGroupKFold

    idx = np.asarray(indices)
    groups = [data.clips[i].group for i in idx]
    strata = [truth_name(data.clips[i]) for i in idx]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [idx[test] for _, test in splitter.split(idx, strata, groups)]


def cross_validate(data: Data, config: HeadConfig, indices: Sequence[int], *, k: int = 5,
                   seed: int = 0, fixed: Sequence[int] = ()) -> Scores:
    """Out-of-fold verdicts of `indices`; the clips of `fixed` are on the training side of every fold."""
    held = folds(data, indices, k, seed)
    logits = {v: np.zeros((len(indices), len(GENRES))) for v in EVAL_VARIANTS}
    position = {i: p for p, i in enumerate(indices)}
    for n, test in enumerate(held, 1):
        out = set(test.tolist())
        train = [*fixed, *(i for i in indices if i not in out)]
        head = fit_head(*data.training_set(train, config.weak), config)
        for v in EVAL_VARIANTS:
            logits[v][[position[i] for i in test]] = track_logits(head, data, test, v)
        log.info("%s: fold %d/%d done", config.name, n, k)
    return Scores(list(indices), logits)


def held_out(data: Data, config: HeadConfig, train: Sequence[int], test: Sequence[int]) -> Scores:
    """Fitted on `train`, scored on `test`."""
    head = fit_head(*data.training_set(train, config.weak), config)
    return Scores(list(test), {v: track_logits(head, data, test, v) for v in EVAL_VARIANTS})


def valid_split(data: Data, config: HeadConfig) -> Scores:
    """Fitted on GTZAN train + Emotify + the 4Q songs (not the set-aside), scored on GTZAN valid (artists
    apart from train)."""
    train = data.usable([i for i, c in enumerate(data.clips) if c.split in ("train", "emotify", SPLIT)])
    return held_out(data, config, train, data.usable([i for i, c in enumerate(data.clips) if c.split == "valid"]))


def calibration(scores: Scores, data: Data) -> dict[str, float]:
    """Temperature on held-out verdicts of clips with one true genre, and ECE with the temperature
    cross-fitted over halves."""
    keep = [k for k, i in enumerate(scores.indices) if len(data.clips[i].allowed) <= 1]
    logits, labels = scores.logits["clean"][keep], data.labels[np.asarray(scores.indices)[keep]]
    onehot = np.eye(len(GENRES))[labels]
    temperature = fit_temperature(logits, onehot)
    rng = np.random.default_rng(0)
    half = rng.permutation(len(labels)) < len(labels) // 2
    conf, correct = np.zeros(len(labels)), np.zeros(len(labels), bool)
    for side in (half, ~half):
        t = fit_temperature(logits[~side], onehot[~side])
        p = softmax(logits[side] / t)
        conf[side], correct[side] = p.max(axis=1), p.argmax(axis=1) == labels[side]
    raw = softmax(logits)
    return {"temperature": round(temperature, 4),
            "ece_untempered": round(expected_calibration_error(raw.max(axis=1), raw.argmax(axis=1) == labels), 4),
            "ece": round(expected_calibration_error(conf, correct), 4)}


def confusion(scores: Scores, data: Data, variant: str = "clean") -> list[list[int]]:
    """Rows the true genre, of the held-out clips with one true genre."""
    keep = [k for k, i in enumerate(scores.indices) if len(data.clips[i].allowed) <= 1]
    truth = data.labels[np.asarray(scores.indices)[keep]]
    return confusion_matrix(truth, scores.logits[variant][keep].argmax(axis=1)).tolist()


def save(head: BilstmHead, out_dir: Path, temperature: float, training: dict[str, Any]) -> list[Path]:
    """.keras (reference), .npz (runtime weights) and .json (sidecar), each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{MODEL_STEM}.{ext}" for ext in ("keras", "npz", "json")]
    with tempfile.TemporaryDirectory(prefix="genre-save-") as tmp:
        keras_tmp, npz_tmp = Path(tmp) / "m.keras", Path(tmp) / "w.npz"
        head.keras_model.save(keras_tmp)
        np.savez(npz_tmp, **{k: v.astype(np.float32) for k, v in head.weights.arrays().items()})
        write_artefact(paths[0], keras_tmp.read_bytes())
        write_artefact(paths[1], npz_tmp.read_bytes())
    sidecar = Sidecar(constants=audio_constants(), frontend=frontend_constants(), genres=list(GENRES),
                      mean=[float(v) for v in head.standardiser.mean], std=[float(v) for v in head.standardiser.std],
                      temperature=temperature,
                      architecture={"units": head.config.units, "dropout": head.config.dropout,
                                    "input": "front-end penultimate (200)", "output": "per-segment softmax"},
                      training=training, kind=KIND, version=ARTEFACT_VERSION)
    write_artefact(paths[2], sidecar.to_json().encode())
    return paths


@dataclass
class Report:
    """Everything the model card quotes."""

    candidates: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)
    confusion_cv: list[list[int]] = field(default_factory=list)
    seeds: list[dict[str, Any]] = field(default_factory=list)
    untouched: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def data_summary(data: Data) -> dict[str, Any]:
    """Clips per genre and kind, and segments per variant: what the card's data table shows."""
    table: dict[str, dict[str, int]] = {}
    for clip, seq in zip(data.clips, data.sequences["clean"]):
        if len(seq):
            row = table.setdefault("|".join(clip.allowed) or clip.genre, {})
            key = f"{clip.split}/{clip.kind}"
            row[key] = row.get(key, 0) + 1
    return {"clips": table, "segments": {v: int(sum(len(s) for s in seqs)) for v, seqs in data.sequences.items()}}


def candidate_scores(data: Data, config: HeadConfig, k: int, seed: int = 0) -> Scores:
    """Steps 1 and 2 of the protocol: out-of-fold verdicts of the Emotify excerpts and 4Q songs (GTZAN on
    the training side), and GTZAN valid verdicts of a fit on GTZAN train (+ the rest)."""
    gtzan = data.where("gtzan_full", "gtzan_cut")
    cv = cross_validate(data, config, data.where("emotify", SPLIT), k=k, seed=seed, fixed=gtzan)
    return cv.merged(valid_split(data, config))


def train(data: Data, out_dir: Path, *, k: int = 5, candidates: Sequence[HeadConfig] = CANDIDATES,
          seeds: Sequence[int] = (1,), command: str = "") -> Report:
    report = Report(data=data_summary(data))
    ranked: list[tuple[float, HeadConfig, Scores]] = []
    for config in candidates:
        scores = candidate_scores(data, config, k)
        score = scores.selection_score(data)
        ranked.append((score, config, scores))
        report.candidates.append({"config": config.to_dict(), "name": config.name, "weak": config.weak,
                                  "selection_score": round(score, 4), "macro": scores.macros(data),
                                  "scores": {v: scores.accuracy(data, v) for v in EVAL_VARIANTS}})
        log.info("%s (4Q %s): %s, selection %.3f", config.name, config.weak, scores.macros(data), score)
    best_score, best, best_scores = max(ranked, key=lambda s: s[0])
    if best.kind != "bilstm":
        # The runtime ships BiLSTMs; a baseline that wins is reported, and the best BiLSTM is saved beside it.
        log.warning("the best candidate is %s (%.3f); saving the best BiLSTM", best.name, best_score)
        best_score, best, best_scores = max((s for s in ranked if s[1].kind == "bilstm"), key=lambda s: s[0])
    report.chosen = {"name": best.name, "config": best.to_dict(), "selection_score": round(best_score, 4)}
    report.calibration = calibration(best_scores, data)
    report.confusion_cv = confusion(best_scores, data)
    for seed in seeds:
        again = candidate_scores(data, replace(best, seed=seed), k, seed=seed)
        report.seeds.append({"seed": seed, "selection_score": round(again.selection_score(data), 4),
                             "macro": again.macros(data)})
    everything = data.usable(range(len(data.clips)))
    aside = data.where(ASIDE)
    if aside:  # scored once: no choice above saw these artists
        untouched = held_out(data, best, [i for i in everything if i not in set(aside)], aside)
        report.untouched = {v: untouched.accuracy(data, v) for v in EVAL_VARIANTS}
    head = fit_head(*data.training_set(everything, best.weak), best)
    training = {"date": date.today().isoformat(), "command": command, "chosen": report.chosen,
                "calibration": report.calibration, "clips": len(everything), "variants": list(data.sequences)}
    report.files = [str(p) for p in save(head, out_dir, report.calibration["temperature"], training)]
    return report
