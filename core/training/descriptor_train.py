"""Train the descriptor genre model on the GTZAN 30-s table with the artist-filtered split, and check it on
real audio.

    python -m core.training.descriptor_train --out models/                 # train, calibrate, test once
    python -m core.training.descriptor_train --out models/ --check-emotify # Emotify check of the artefact

Protocol: every candidate (input set × model family × hyper-parameters, `candidates()`) is fitted on the
training split and scored on the validation split; the best by validation accuracy (ties: validation log
loss) is kept and its temperature is fitted on validation. The shipped model is then refitted with the same
hyper-parameters on train + valid (the validation learning curve is steep: 0.529 / 0.552 / 0.571 / 0.589 for
50 / 70 / 85 / 100 % of train), keeping the temperature; families that early-stop on valid (the MLP) are not
refitted. Only the shipped model is scored on test. Everything is seeded and single-threaded, so the
artefact is byte-for-byte reproducible.

Families: L2 logistic regression (scikit-learn), gradient-boosted trees (LightGBM) and a small Keras MLP.
The artefact format runs dense networks in numpy (core.genre.descriptor); a tree model winning the
validation round stops the script with a message instead of silently shipping the runner-up.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import PACKAGE_ROOT
from core.constants import GENRES
from core.features import DESCRIPTOR_NAMES
from core.genre import softmax
from core.genre.descriptor import (
    DERIVED_NAMES,
    MFCC_MEAN_INPUTS,
    DenseNetwork,
    DescriptorGenreModel,
    derived_features,
    save,
)
from core.training.metrics import expected_calibration_error as ece
from core.training.metrics import confusion_matrix, plot_confusion

log = logging.getLogger(__name__)

DEFAULT_DATA = PACKAGE_ROOT.parent / "shared" / "data"
ARTEFACT = "genre_descriptor.json"
CONFUSION_PNG = "genre-descriptor-confusion.png"
SEED = 20240601
CHECK_GENRES = ("classical", "pop", "rock")
"""Emotify's genres that GTZAN also has; its electronic excerpts have no GTZAN counterpart."""

INPUT_SETS: dict[str, tuple[str, ...]] = {
    "level-free": DERIVED_NAMES,
    "level-free, no MFCC means": tuple(n for n in DERIVED_NAMES if n not in MFCC_MEAN_INPUTS),
}
"""Both candidates drop gain; the second also drops the cepstral means (the recording chain's envelope)."""

HPSS_TEMPO_INPUTS = frozenset({"tempo", "harmonic_share", "log_hpss_energy_per_rms2"})
"""Inputs that need the slow parts of the descriptors (HPSS, tempo): the ablation leaves them out."""


# -- data ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    ids: list[str]
    x: np.ndarray  # (m, 57) in DESCRIPTOR_NAMES order
    y: np.ndarray  # (m,) genre index


def read_table(path: Path) -> dict[str, tuple[np.ndarray, int]]:
    """features_30_sec.csv -> {'blues/blues.00012': (57 descriptors, genre index)}."""
    table = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stem = row["filename"].rsplit(".", 1)[0]
            label = row["label"]
            values = np.array([float(row[n]) for n in DESCRIPTOR_NAMES])
            table[f"{label}/{stem}"] = (values, GENRES.index(label))
    return table


def read_split(table: dict[str, tuple[np.ndarray, int]], path: Path) -> Split:
    """The split list's tracks that the table holds (it lacks tracks 00000-00009 of each genre)."""
    ids = [line.strip().rsplit(".", 1)[0] for line in path.read_text().splitlines() if line.strip()]
    kept = [i for i in ids if i in table]
    log.info("%s: %d of %d listed tracks are in the table", path.name, len(kept), len(ids))
    return Split(kept, np.stack([table[i][0] for i in kept]), np.array([table[i][1] for i in kept]))


def load_splits(data_dir: Path) -> dict[str, Split]:
    table = read_table(data_dir / "gtzan-features" / "features_30_sec.csv")
    return {name: read_split(table, data_dir / "gtzan-split" / f"{name}_filtered.txt")
            for name in ("train", "valid", "test")}


# -- metrics ------------------------------------------------------------------------------------------------
def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(y.size), y], 1e-12, 1.0))))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    return ece(probs.max(axis=1), probs.argmax(axis=1) == y, bins)


def per_genre_f1(confusion: np.ndarray) -> dict[str, float]:
    tp = np.diag(confusion).astype(float)
    precision = tp / np.maximum(confusion.sum(axis=0), 1)
    recall = tp / np.maximum(confusion.sum(axis=1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {g: round(float(v), 3) for g, v in zip(GENRES, f1)}


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    confusion = confusion_matrix(y, probs.argmax(axis=1))
    f1 = per_genre_f1(confusion)
    return {
        "tracks": int(y.size),
        "accuracy": round(float(np.mean(probs.argmax(axis=1) == y)), 4),
        "macro_f1": round(float(np.mean(list(f1.values()))), 4),
        "log_loss": round(log_loss(probs, y), 4),
        "ece": round(expected_calibration_error(probs, y), 4),
        "per_genre_f1": f1,
        "confusion": confusion.tolist(),
    }


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising validation log loss (one scalar: it cannot change any decision)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: log_loss(softmax(logits / np.exp(log_t)), y),
                             bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-6})
    return round(float(np.exp(result.x)), 6)


# -- candidates ---------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    family: str
    inputs: str
    params: dict[str, Any]
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[Callable[[np.ndarray], np.ndarray],
                                                                         DenseNetwork | None]]
    valid: dict[str, Any] = field(default_factory=dict)
    refit: bool = True
    """False when fitting uses the validation split itself (early stopping): such a model cannot be refitted
    on train + valid."""

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.family} [{self.inputs}] ({shown})"


def _fit_logistic(c: float, class_weight: str | None):
    def fit(z: np.ndarray, y: np.ndarray, _zv: np.ndarray, _yv: np.ndarray):
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, class_weight=class_weight, max_iter=10_000, tol=1e-8)
        model.fit(z, y)
        network = DenseNetwork(weights=(model.coef_.T.copy(),), biases=(model.intercept_.copy(),))
        return network.logits, network
    return fit


def _fit_lightgbm(leaves: int, trees: int, rate: float, colsample: float):
    def fit(z: np.ndarray, y: np.ndarray, _zv: np.ndarray, _yv: np.ndarray):
        import lightgbm

        model = lightgbm.LGBMClassifier(
            n_estimators=trees, learning_rate=rate, num_leaves=leaves, min_child_samples=10,
            subsample=0.8, subsample_freq=1, colsample_bytree=colsample, reg_lambda=1.0,
            random_state=SEED, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
        model.fit(z, y)
        return (lambda zz: model.predict_proba(zz, raw_score=True)), None
    return fit


def _fit_mlp(hidden: int, dropout: float, l2: float):
    def fit(z: np.ndarray, y: np.ndarray, zv: np.ndarray, yv: np.ndarray):
        keras = _keras()
        keras.utils.set_random_seed(SEED)
        reg = keras.regularizers.l2(l2)
        model = keras.Sequential([
            keras.Input((z.shape[1],)),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(hidden, activation="relu", kernel_regularizer=reg),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(len(GENRES), kernel_regularizer=reg),
        ])
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=40, restore_best_weights=True)
        model.fit(z, y, validation_data=(zv, yv), epochs=400, batch_size=32, shuffle=True, verbose=0,
                  callbacks=[stop])
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        network = DenseNetwork(weights=tuple(np.asarray(d.kernel.numpy(), dtype=np.float64) for d in dense),
                               biases=tuple(np.asarray(d.bias.numpy(), dtype=np.float64) for d in dense))
        return network.logits, network
    return fit


def _keras() -> Any:
    """Keras with TensorFlow quiet, one thread and deterministic kernels (imported only when an MLP fits)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    return keras


def candidates() -> Iterator[Candidate]:
    for inputs in INPUT_SETS:
        for c in (0.03, 0.1, 0.3, 1.0, 3.0):
            for weight in (None, "balanced"):
                yield Candidate("logistic", inputs, {"C": c, "class_weight": weight},
                                _fit_logistic(c, weight))
        for leaves in (4, 8):
            for trees, rate in ((200, 0.03), (500, 0.01)):
                for colsample in (0.3, 0.7):
                    yield Candidate("lightgbm", inputs, {"leaves": leaves, "trees": trees, "rate": rate,
                                                         "colsample": colsample},
                                    _fit_lightgbm(leaves, trees, rate, colsample))
        for hidden in (16, 64):
            yield Candidate("mlp", inputs, {"hidden": hidden, "dropout": 0.5, "l2": 0.01},
                            _fit_mlp(hidden, 0.5, 0.01), refit=False)


def standardisation(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = z.mean(axis=0)
    scale = z.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def _inputs(split: Split, names: Sequence[str]) -> np.ndarray:
    return derived_features(split.x)[:, [DERIVED_NAMES.index(n) for n in names]]


def run_candidate(candidate: Candidate, splits: dict[str, Split],
                  names: Sequence[str] | None = None) -> tuple[dict[str, Any], DescriptorGenreModel | None]:
    """Fit on train, score on valid; the model (uncalibrated) when the family is a dense network."""
    names = tuple(names or INPUT_SETS[candidate.inputs])
    train, valid = splits["train"], splits["valid"]
    mean, scale = standardisation(_inputs(train, names))
    z_train = (_inputs(train, names) - mean) / scale
    z_valid = (_inputs(valid, names) - mean) / scale
    logits_of, network = candidate.fit(z_train, train.y, z_valid, valid.y)
    result = scores(softmax(logits_of(z_valid)), valid.y)
    model = None
    if network is not None:
        model = DescriptorGenreModel(name="candidate", inputs=names, mean=mean, scale=scale, network=network)
    return result, model


def merged(a: Split, b: Split) -> Split:
    return Split(a.ids + b.ids, np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]))


def refit_on_train_and_valid(candidate: Candidate, splits: dict[str, Split],
                             names: Sequence[str]) -> DescriptorGenreModel:
    """The selected configuration fitted again on train + valid (standardisation included)."""
    both = merged(splits["train"], splits["valid"])
    mean, scale = standardisation(_inputs(both, names))
    z = (_inputs(both, names) - mean) / scale
    _, network = candidate.fit(z, both.y, z, both.y)
    if network is None:
        raise SystemExit(f"{candidate.label} cannot be held by the numpy artefact")
    return DescriptorGenreModel(name="refit", inputs=tuple(names), mean=mean, scale=scale, network=network)


# -- the run ------------------------------------------------------------------------------------------------
def train(data_dir: Path, out_dir: Path) -> dict[str, Any]:
    splits = load_splits(data_dir)
    results = []
    for candidate in candidates():
        candidate.valid, model = run_candidate(candidate, splits)
        results.append((candidate, model))
        log.info("valid acc %.3f  loss %.3f  %s", candidate.valid["accuracy"], candidate.valid["log_loss"],
                 candidate.label)
    best, model = min(results, key=lambda r: (-r[0].valid["accuracy"], r[0].valid["log_loss"]))
    if model is None:
        raise SystemExit(f"the best validation score is a {best.family} model ({best.label}), which the "
                         "numpy artefact cannot hold; add a runtime for it before shipping")
    best_per_family = {}
    for candidate, _ in results:
        kept = best_per_family.get(candidate.family)
        if kept is None or (-candidate.valid["accuracy"], candidate.valid["log_loss"]) < (
                -kept.valid["accuracy"], kept.valid["log_loss"]):
            best_per_family[candidate.family] = candidate

    valid_logits = model.logits(splits["valid"].x)
    temperature = fit_temperature(valid_logits, splits["valid"].y)
    ablation_names = [n for n in model.inputs if n not in HPSS_TEMPO_INPUTS]
    ablation, _ = run_candidate(best, splits, ablation_names)
    name = f"descriptor-{best.family}-v2"
    final = refit_on_train_and_valid(best, splits, model.inputs) if best.refit else model
    training = {
        "data": "GTZAN features_30_sec.csv, artist-filtered split (Kereliuk, Sturm & Larsen 2015)",
        "tracks": {k: len(v.ids) for k, v in splits.items()},
        "selected": best.label,
        "selection": "best validation accuracy, ties by validation log loss",
        "candidates": [{"model": c.label, "valid_accuracy": c.valid["accuracy"],
                        "valid_log_loss": c.valid["log_loss"]} for c, _ in results],
        "best_per_family": {f: {"model": c.label, "valid_accuracy": c.valid["accuracy"]}
                            for f, c in best_per_family.items()},
        "ablation_without_hpss_and_tempo": {"inputs_left_out": sorted(HPSS_TEMPO_INPUTS & set(model.inputs)),
                                            "valid_accuracy": ablation["accuracy"],
                                            "valid_log_loss": ablation["log_loss"]},
        "valid_uncalibrated": {k: v for k, v in scores(softmax(valid_logits), splits["valid"].y).items()
                               if k in ("accuracy", "log_loss", "ece")},
        "refitted_on": "train + valid" if best.refit else "train",
        "seed": SEED,
    }
    selected = DescriptorGenreModel(name=name, inputs=model.inputs, mean=model.mean, scale=model.scale,
                                    network=model.network, temperature=temperature)
    training["valid"] = scores(selected.probabilities(splits["valid"].x), splits["valid"].y)
    shipped = DescriptorGenreModel(name=name, inputs=final.inputs, mean=final.mean, scale=final.scale,
                                   network=final.network, temperature=temperature, training=training)
    training["test"] = scores(shipped.probabilities(splits["test"].x), splits["test"].y)
    out_dir.mkdir(parents=True, exist_ok=True)
    save(shipped, out_dir / ARTEFACT)
    plot_confusion(np.array(training["test"]["confusion"]), out_dir / CONFUSION_PNG,
                   f"{name}: artist-filtered test ({training['test']['tracks']} tracks)")
    return training


def emotify_check(model: Any, emotify_dir: Path, *, max_seconds: float, max_segments: int) -> dict[str, Any]:
    """10-way accuracy on Emotify's classical, pop and rock excerpts through the whole pipeline."""
    from tqdm import tqdm

    from core.audio import load_segments
    from core.features import extract

    with (emotify_dir / "tracks.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["genre"] in CHECK_GENRES]
    confusion = np.zeros((len(GENRES), len(GENRES)), dtype=int)
    for row in tqdm(rows, desc="emotify", unit="clip"):
        segments = load_segments(emotify_dir / row["file"], max_seconds=max_seconds,
                                 max_segments=max_segments)
        verdict = model.predict(extract(segments))
        confusion[GENRES.index(row["genre"]), GENRES.index(verdict.genre)] += 1
    rows_of = {g: confusion[GENRES.index(g)] for g in CHECK_GENRES}
    per_genre = {g: round(float(row[GENRES.index(g)] / row.sum()), 3) for g, row in rows_of.items()}
    predicted = {g: {GENRES[j]: int(n) for j, n in enumerate(confusion[GENRES.index(g)]) if n}
                 for g in CHECK_GENRES}
    return {"clips": len(rows), "accuracy": round(float(np.trace(confusion) / len(rows)), 3),
            "per_genre": per_genre, "predicted": predicted}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.training.descriptor_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the team data folder (holds gtzan-features/, gtzan-split/, emotify/)")
    parser.add_argument("--out", type=Path, default=PACKAGE_ROOT / "models", help="where the artefact goes")
    parser.add_argument("--check-emotify", action="store_true",
                        help="do not train: run the artefact in --out on Emotify's classical/pop/rock audio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        report = _run(args)
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.check_emotify:
        from core.config import load_settings
        from core.genre.descriptor import load

        settings = load_settings()
        model = load(args.out / ARTEFACT)
        return emotify_check(model, args.data / "emotify", max_seconds=settings.max_clip_seconds,
                             max_segments=settings.max_segments)
    return train(args.data, args.out)


if __name__ == "__main__":
    sys.exit(main())
