"""Train, calibrate, measure and save the BiLSTM genre model.

The pieces are shared by the two ways we get weights: supervised on a GTZAN-layout folder (`train_gtzan`,
`cratedigger train bilstm`) and distilled from the descriptor model (core.training.distill). Targets are
always (n, len(GENRES)) distributions: one-hot for labelled data, the teacher's probabilities when
distilling, so one training loop serves both.

TensorFlow is imported inside functions (via core.genre.export.tensorflow, which fixes its threads).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.config import PACKAGE_ROOT
from core.constants import FRAMES_PER_SEGMENT, GENRES, N_MFCC, audio_constants
from core.genre import softmax
from core.genre.bilstm import LOG_FLOOR, Sidecar, load, standardise, write_sidecar
from core.genre.export import RUNTIMES, export_tflite, tensorflow
from core.training.gtzan import SegmentSet, find_tracks, load_segment_set, split_tracks
from core.training.metrics import expected_calibration_error, plot_confusion

log = logging.getLogger(__name__)

MODEL_STEM = "genre_bilstm"
CARD_NAME = "genre-bilstm.md"
CONFUSION_NAME = "genre_bilstm_confusion.png"
STD_FLOOR = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    units: int = 64
    """Units per direction of the first BiLSTM layer; the second has half (at least 4)."""
    dropout: float = 0.3
    epochs: int = 40
    patience: int = 6
    """Epochs without a better validation loss before training stops (the best weights are kept)."""
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 2

    @property
    def layer_units(self) -> tuple[int, int]:
        return self.units, max(4, self.units // 2)


@dataclass(frozen=True)
class Evaluation:
    """Track-level verdicts (mean segment log-probability, tempered) against labels, plus segment accuracy."""

    tracks: int
    segments: int
    segment_accuracy: float
    track_accuracy: float
    f1: dict[str, float | None]
    """Per genre; None for a genre with neither tracks nor predictions in this set."""
    confusion: list[list[int]]
    """Rows: true genre, columns: predicted, both in GENRES order."""
    ece: float
    """Expected calibration error of the track confidence (10 equal-width bins)."""
    nll: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "genres": list(GENRES)}


@dataclass
class TrainResult:
    model_path: Path
    sidecar: Sidecar
    valid: Evaluation
    test: Evaluation | None
    epochs_run: int
    best_epoch: int
    seconds: float
    files: list[Path] = field(default_factory=list)


def shown_path(path: Path) -> str:
    """A path as the model card shows it: relative to the repository when it lies beside it (models,
    ../shared/data), so the card and its command read the same on every checkout."""
    path = Path(path)
    if path.is_absolute() and path.resolve().is_relative_to(PACKAGE_ROOT.parent):
        return os.path.relpath(path.resolve(), PACKAGE_ROOT)
    return str(path)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coefficient mean and std over every training frame."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return flat.mean(axis=0).astype(np.float32), np.maximum(flat.std(axis=0), STD_FLOOR).astype(np.float32)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(len(GENRES), dtype=np.float32)[labels]


def build_model(config: TrainConfig) -> Any:
    """Two stacked bidirectional LSTMs, dropout after each, softmax over GENRES."""
    tensorflow(config.threads)
    import keras

    first, second = config.layer_units
    inputs = keras.Input((FRAMES_PER_SEGMENT, N_MFCC), name="mfcc")
    x = keras.layers.Bidirectional(keras.layers.LSTM(first, return_sequences=True), name="bilstm_1")(inputs)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(second), name="bilstm_2")(x)
    x = keras.layers.Dropout(config.dropout)(x)
    outputs = keras.layers.Dense(len(GENRES), activation="softmax", name="genre")(x)
    model = keras.Model(inputs, outputs, name="genre_bilstm")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="categorical_crossentropy",
                  metrics=["categorical_accuracy"])
    return model


def seed_everything(config: TrainConfig) -> None:
    """Same data, seed and thread count -> same weights."""
    tf = tensorflow(config.threads)
    import keras

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()


def _progress_callback(epochs: int) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):
        """One bar over epochs on stderr (stdout is reserved for --json); a log line per epoch instead when
        stderr is not a terminal (tqdm then stays silent)."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.bar = tqdm(total=epochs, desc="training", unit="epoch", disable=None, file=sys.stderr)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            shown = {k: f"{v:.3f}" for k, v in logs.items()
                     if k in ("loss", "val_loss", "val_categorical_accuracy")}
            self.bar.set_postfix(shown)
            self.bar.update(1)
            log.log(logging.DEBUG if not self.bar.disable else logging.INFO, "epoch %d: %s", epoch + 1, shown)

        def on_train_end(self, logs: dict | None = None) -> None:
            self.bar.close()

    return Progress()


def fit(x_train: np.ndarray, t_train: np.ndarray, x_valid: np.ndarray, t_valid: np.ndarray,
        config: TrainConfig) -> tuple[Any, int, int]:
    """Train on standardised sequences and target distributions, early-stopped on the validation loss.

    Returns the model with its best weights, the epochs run and the best epoch (1-based)."""
    seed_everything(config)
    import keras

    model = build_model(config)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                         restore_best_weights=True)
    history = model.fit(x_train, t_train, validation_data=(x_valid, t_valid), epochs=config.epochs,
                        batch_size=config.batch_size, shuffle=True, verbose=0,
                        callbacks=[stop, _progress_callback(config.epochs)])
    val_loss = history.history["val_loss"]
    return model, len(val_loss), int(np.argmin(val_loss)) + 1


def track_mean_log_probs(segment_log_probs: np.ndarray, track: np.ndarray, n_tracks: int) -> np.ndarray:
    """Mean segment log-probability per track, (n_tracks, classes): the logits of the track verdict."""
    sums = np.zeros((n_tracks, segment_log_probs.shape[1]))
    np.add.at(sums, track, segment_log_probs)
    counts = np.bincount(track, minlength=n_tracks)[:, None]
    return sums / np.maximum(counts, 1)


def fit_temperature(track_logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimising the cross-entropy of softmax(track_logits / T) against `targets`.

    A mean of segment log-probabilities treats segments as independent experts, which they are not, so the
    untempered verdict is overconfident; T is fitted on validation tracks, never on the training ones."""
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        logits = track_logits / np.exp(log_t)
        log_p = logits - logits.max(axis=1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
        return float(-(targets * log_p).sum(axis=1).mean())

    best = minimize_scalar(loss, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(best.x))


def evaluate(segment_log_probs: np.ndarray, segment_labels: np.ndarray, track: np.ndarray,
             track_labels: np.ndarray, temperature: float) -> Evaluation:
    """Segment and track accuracy, per-genre F1, confusion matrix and calibration of the track verdicts."""
    n_tracks = len(track_labels)
    probs = softmax(track_mean_log_probs(segment_log_probs, track, n_tracks) / temperature)
    predicted = probs.argmax(axis=1)
    k = len(GENRES)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (track_labels, predicted), 1)
    f1: dict[str, float | None] = {}
    for i, genre in enumerate(GENRES):
        tp, support, claimed = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        f1[genre] = None if support + claimed == 0 else float(2 * tp / (support + claimed))
    correct = predicted == track_labels
    return Evaluation(
        tracks=n_tracks,
        segments=len(segment_labels),
        segment_accuracy=float((segment_log_probs.argmax(axis=1) == segment_labels).mean()),
        track_accuracy=float(correct.mean()),
        f1=f1,
        confusion=confusion.tolist(),
        ece=expected_calibration_error(probs.max(axis=1), correct),
        nll=float(-np.log(np.maximum(probs[np.arange(n_tracks), track_labels], LOG_FLOOR)).mean()),
    )


def predict_log_probs(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Segment log-probabilities from an in-memory Keras model on standardised sequences."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return np.log(np.maximum(probs.astype(np.float64), LOG_FLOOR))


def save_artefact(model: Any, out_dir: Path, sidecar: Sidecar, *, export: bool = True) -> list[Path]:
    """The .keras weights, the sidecar and (with `export`) the .tflite, all named MODEL_STEM.*"""
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_path = out_dir / f"{MODEL_STEM}.keras"
    partial = out_dir / f".{MODEL_STEM}.partial.keras"
    model.save(partial)
    partial.replace(keras_path)
    files = [keras_path, write_sidecar(keras_path, sidecar)]
    if export:
        files.append(export_tflite(keras_path))
    return files


def measure_runtimes(keras_path: Path, repeats: int = 20) -> dict[str, dict[str, float]]:
    """Load time and per-clip latency (one 30-s clip = 10 segments) of each available runtime, in this
    process: Keras's load time excludes importing TensorFlow when something already did."""
    x = np.random.default_rng(0).standard_normal((10, FRAMES_PER_SEGMENT, N_MFCC)).astype(np.float32)
    figures = {}
    for runtime in RUNTIMES:
        try:
            started = time.perf_counter()
            model = load(keras_path, runtime=runtime)
            loaded = time.perf_counter() - started
        except (FileNotFoundError, ImportError) as exc:
            log.info("runtime %s not measured: %s", runtime, exc)
            continue
        model.segment_log_probs(x)
        started = time.perf_counter()
        for _ in range(repeats):
            model.segment_log_probs(x)
        per_clip = (time.perf_counter() - started) / repeats
        figures[runtime] = {"load_seconds": loaded, "clip_ms": per_clip * 1000}
    return figures


def _metrics_table(valid: Evaluation, test: Evaluation | None) -> str:
    rows = [("valid", valid)] + ([("test", test)] if test else [])
    lines = ["| split | tracks | segments | track accuracy | segment accuracy | ECE | NLL |",
             "|---|---|---|---|---|---|---|"]
    for name, e in rows:
        lines.append(f"| {name} | {e.tracks} | {e.segments} | {e.track_accuracy:.3f} | "
                     f"{e.segment_accuracy:.3f} | {e.ece:.3f} | {e.nll:.3f} |")
    last = test or valid
    lines += ["", f"Per-genre F1 ({'test' if test else 'valid'}):", "",
              "| " + " | ".join(GENRES) + " |", "|" + "---|" * len(GENRES),
              "| " + " | ".join("–" if last.f1[g] is None else f"{last.f1[g]:.2f}" for g in GENRES) + " |"]
    return "\n".join(lines)


def write_model_card(result: TrainResult, out_dir: Path, *, title: str, data_text: str,
                     extra: str = "") -> Path:
    """A model card next to the artefact: how it was made, how well it does, how to make it again."""
    s, cfg = result.sidecar, result.sidecar.training["config"]
    first, second = s.architecture["units"]
    sizes = ", ".join(f"`{p.name}` {p.stat().st_size / 1024:.0f} kB"
                      for p in result.files if p.suffix != ".png")
    speed = "\n".join(f"- {rt}: load {f['load_seconds'] * 1000:.0f} ms, one 30-s clip (10 segments) "
                      f"{f['clip_ms']:.1f} ms" for rt, f in s.training.get("runtimes", {}).items())
    model_text = " ".join([
        f"Input: one 3-s segment's MFCC sequence ({FRAMES_PER_SEGMENT} frames × {N_MFCC} coefficients; audio",
        f"constants {s.constants}), standardised per coefficient with the training frames' mean and std",
        "(in the sidecar).",
        f"Two stacked bidirectional LSTMs ({first} and {second} units per direction), dropout",
        f"{s.architecture['dropout']} after each, dense softmax over the ten GTZAN genres;",
        f"{s.architecture['parameters']} parameters.",
        "Track verdict: softmax of the mean segment log-probability divided by the temperature",
        f"T = {s.temperature:.3f} fitted on the validation tracks.",
    ])
    training_text = " ".join([
        f"Adam (learning rate {cfg['learning_rate']}), batch {cfg['batch_size']}, seed {cfg['seed']},",
        f"early stopping on the validation loss (patience {cfg['patience']}): {result.epochs_run} epochs",
        f"run, best epoch {result.best_epoch}, {result.seconds / 60:.1f} min on {cfg['threads']} CPU",
        "threads.",
    ])
    text = f"""# {title}

Date: {date.today().isoformat()}. Artefact: `{result.model_path.name}` + `{result.model_path.stem}.json`
(+ `{result.model_path.stem}.tflite`, preferred at run time when ai-edge-litert is installed).

## Data
{data_text}

## Model
{model_text}

Training: {training_text}

## Metrics (track level unless said)
{_metrics_table(result.valid, result.test)}

![confusion matrix]({CONFUSION_NAME})
{extra}
## Size and speed
{sizes}. Measured in the training process (so Keras's load time excludes importing TensorFlow):
{speed}

## Reproduce
From the repository root:
```
{s.training['command']}
```
"""
    path = out_dir / CARD_NAME
    path.write_text(text)
    return path


def _segments_by_split(data_dir: Path, split_dir: Path) -> dict[str, SegmentSet]:
    splits = split_tracks(find_tracks(data_dir), split_dir)
    return {name: load_segment_set(tracks, description=f"{name} tracks") for name, tracks in splits.items()}


def _evaluate_set(log_probs: np.ndarray, data: SegmentSet, temperature: float) -> Evaluation:
    return evaluate(log_probs, data.y, data.track, np.array([t.label for t in data.tracks]), temperature)


def train_gtzan(data_dir: Path, out_dir: Path, split_dir: Path, config: TrainConfig, *, command: str,
                export: bool = True) -> TrainResult:
    """Supervised training on a GTZAN-layout folder, split by track with the split lists.

    Standardisation statistics come from the training split only; the temperature from the validation
    split; the test split is scored once at the end, for the model card. `command` is the command line
    that reproduces the artefact, recorded in the sidecar and the card."""
    started = time.perf_counter()
    data = _segments_by_split(data_dir, split_dir)
    train, valid, test = data["train"], data["valid"], data["test"]
    mean, std = standardisation(train.x)
    xs = {name: standardise(d.x, mean, std) for name, d in data.items()}
    model, epochs_run, best_epoch = fit(xs["train"], one_hot(train.y), xs["valid"], one_hot(valid.y), config)
    valid_logp = predict_log_probs(model, xs["valid"])
    valid_labels = np.array([t.label for t in valid.tracks])
    temperature = fit_temperature(track_mean_log_probs(valid_logp, valid.track, len(valid.tracks)),
                                  one_hot(valid_labels))
    valid_eval = _evaluate_set(valid_logp, valid, temperature)
    test_eval = _evaluate_set(predict_log_probs(model, xs["test"]), test, temperature)
    sidecar = Sidecar(
        constants=audio_constants(),
        genres=list(GENRES),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        temperature=temperature,
        architecture={"units": list(config.layer_units), "dropout": config.dropout,
                      "parameters": int(model.count_params())},
        training={
            "method": "supervised",
            "data": f"GTZAN-layout folder {shown_path(data_dir)}, "
                    f"split lists {shown_path(split_dir)}",
            "tracks": {name: len(d.tracks) for name, d in data.items()},
            "segments": {name: len(d) for name, d in data.items()},
            "config": asdict(config),
            "valid": valid_eval.to_dict(),
            "test": test_eval.to_dict(),
            "command": command,
        },
    )
    files = save_artefact(model, out_dir, sidecar, export=export)
    sidecar = replace(sidecar, training={**sidecar.training, "runtimes": measure_runtimes(files[0])})
    write_sidecar(files[0], sidecar)
    files.append(plot_confusion(test_eval.confusion, out_dir / CONFUSION_NAME,
                                f"BiLSTM, test split: track accuracy {test_eval.track_accuracy:.2f}"))
    result = TrainResult(files[0], sidecar, valid_eval, test_eval, epochs_run, best_epoch,
                         time.perf_counter() - started, files)
    sizes = ", ".join(f"{n} {len(d.tracks)} tracks / {len(d)} segments" for n, d in data.items())
    data_text = (f"GTZAN-layout folder `{shown_path(data_dir)}`, split by track with the artist-filtered "
                 f"lists in `{shown_path(split_dir)}`: {sizes}.")
    files.append(write_model_card(result, out_dir, title="BiLSTM genre model (supervised)",
                                  data_text=data_text))
    return result


def evaluate_gtzan(data_dir: Path, model_path: Path, split_dir: Path, split: str = "test") -> Evaluation:
    """Score a saved artefact (in its fastest runtime) on one split of a GTZAN-layout folder."""
    tracks = split_tracks(find_tracks(data_dir), split_dir, splits=(split,))[split]
    model = load(model_path)
    data = load_segment_set(tracks, description=f"{split} tracks")
    return _evaluate_set(model.segment_log_probs(data.x), data, model.sidecar.temperature)
