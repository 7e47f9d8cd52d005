"""`cratedigger train bilstm|distill` (make BiLSTM genre weights) and `cratedigger evaluate` (score them).

The training code is imported only when one of these verbs runs, so every other verb starts fast; TensorFlow
only when a model is built or a .keras file is opened.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli import Outcome
from core.config import Settings
from core.errors import FileMissing, UserError

if TYPE_CHECKING:
    from core.training.bilstm_train import Evaluation, TrainConfig

MODEL_FILE = "genre_bilstm.keras"
SPLIT_HELP = "../shared/data/gtzan-split next to the repository"


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def _training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the artefact, model card and confusion matrix go "
                             "(default: the models folder)")
    parser.add_argument("--epochs", type=_positive, default=40,
                        help="most epochs (early stopping may end sooner)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same data and seed, same weights")
    parser.add_argument("--units", type=_positive, default=64,
                        help="LSTM units per direction in the first layer; the second has half (default 64)")
    parser.add_argument("--patience", type=_positive, default=6,
                        help="epochs without a better validation loss before stopping")
    parser.add_argument("--batch-size", type=_positive, default=64)
    parser.add_argument("--threads", type=_positive, default=2, help="TensorFlow CPU threads")
    parser.add_argument("--no-export", action="store_true", help="skip the TFLite export")


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    train = subparsers.add_parser("train", help="train the BiLSTM genre model",
                                  description="Train the BiLSTM genre model.")
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=type(train))
    bilstm = kinds.add_parser(
        "bilstm", parents=[parent], help="supervised, on a folder in GTZAN's layout",
        description="Train on <genre>/<genre>.000NN.wav|au, split by track with the split lists "
                    "(train / early stopping and calibration on valid / test reported once).")
    bilstm.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder in GTZAN's layout")
    bilstm.add_argument("--split", type=Path, default=None, metavar="DIR",
                        help=f"folder with {{train,valid,test}}_filtered.txt (default: {SPLIT_HELP})")
    _training_options(bilstm)
    bilstm.set_defaults(handler=handle_train_bilstm)

    distill = kinds.add_parser(
        "distill", parents=[parent], help="from the descriptor model, on real unlabelled audio",
        description="Label the real recordings of library/ and emotify/ with the descriptor model's "
                    "calibrated probabilities and train the BiLSTM on them; score teacher and student on "
                    "Emotify's classical/rock/pop excerpts, which are held out (or cross-fitted with "
                    "--check-folds).")
    distill.add_argument("--shared", type=Path, default=None, metavar="DIR",
                         help="the team's data folder (default: ../shared/data next to the repository)")
    distill.add_argument("--cache", type=Path, default=None, metavar="DIR",
                         help="feature cache (default: cratedigger-distill-cache in the temporary folder)")
    distill.add_argument("--granularity", choices=("window", "segment", "track"), default="window",
                         help="what the teacher labels: 30-s windows (default), segments or whole tracks")
    distill.add_argument("--holdout", type=float, default=0.2,
                         help="fraction of tracks held out for validation")
    distill.add_argument("--check-folds", type=int, default=0, metavar="K",
                         help="also train on the check excerpts' teacher labels, scoring the student by "
                              "K-fold cross-fitting (K >= 2; default 0: never train on them)")
    distill.add_argument("--workers", type=_positive, default=2, help="processes computing features")
    _training_options(distill)
    distill.set_defaults(handler=handle_train_distill)

    evaluate = subparsers.add_parser(
        "evaluate", parents=[parent], help="score a BiLSTM artefact on a GTZAN-layout folder",
        description="Segment and track accuracy, per-genre F1 and confusion matrix on one split.")
    evaluate.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder in GTZAN's layout")
    evaluate.add_argument("--model", type=Path, default=None, metavar="PATH",
                          help=f"the .keras artefact (default: {MODEL_FILE} in the models folder)")
    evaluate.add_argument("--split", type=Path, default=None, metavar="DIR",
                          help=f"folder with the split lists (default: {SPLIT_HELP})")
    evaluate.add_argument("--subset", choices=("train", "valid", "test"), default="test",
                          help="which split to score")
    evaluate.set_defaults(handler=handle_evaluate)


def _command(args: argparse.Namespace, out: Path, *specific: str) -> str:
    """The command line that reproduces this run, for the sidecar and the model card."""
    from core.training.bilstm_train import shown_path

    parts = ["cratedigger", "train", args.kind, *specific, "--out", shown_path(out),
             "--epochs", str(args.epochs), "--seed", str(args.seed), "--units", str(args.units),
             "--patience", str(args.patience), "--batch-size", str(args.batch_size),
             "--threads", str(args.threads)]
    return shlex.join(parts + (["--no-export"] if args.no_export else []))


def _config(args: argparse.Namespace) -> TrainConfig:
    from core.training.bilstm_train import TrainConfig

    return TrainConfig(units=args.units, epochs=args.epochs, patience=args.patience,
                       batch_size=args.batch_size, seed=args.seed, threads=args.threads)


def _summary(name: str, valid: Evaluation, test: Evaluation | None) -> str:
    line = f"{name}: track accuracy valid {valid.track_accuracy:.3f}"
    if test is not None:
        line += f", test {test.track_accuracy:.3f} (segments {test.segment_accuracy:.3f})"
    return line


def handle_train_bilstm(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.training.bilstm_train import shown_path, train_gtzan
    from core.training.gtzan import DEFAULT_SPLIT_DIR

    out = args.out or settings.models_dir
    args.split = args.split or DEFAULT_SPLIT_DIR
    command = _command(args, out, "--data", shown_path(args.data), "--split", shown_path(args.split))
    result = train_gtzan(args.data, out, args.split, _config(args), command=command,
                         export=not args.no_export)
    document = {
        "model": str(result.model_path),
        "files": [str(p) for p in result.files],
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "temperature": result.sidecar.temperature,
        "valid": result.valid.to_dict(),
        "test": result.test.to_dict() if result.test else None,
        "runtimes": result.sidecar.training.get("runtimes", {}),
    }
    text = "\n".join([_summary(str(result.model_path), result.valid, result.test),
                      f"{result.epochs_run} epochs (best {result.best_epoch}), temperature "
                      f"{result.sidecar.temperature:.3f}, {result.seconds / 60:.1f} min",
                      "wrote " + ", ".join(p.name for p in result.files)])
    return Outcome(document, text)


def handle_train_distill(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.training.bilstm_train import shown_path
    from core.training.distill import DEFAULT_CACHE, DEFAULT_SHARED, DistillConfig, distill, load_teacher

    args.shared, args.cache = args.shared or DEFAULT_SHARED, args.cache or DEFAULT_CACHE
    if not 0 < args.holdout < 1:
        raise UserError(f"--holdout must be between 0 and 1, not {args.holdout}")
    if args.check_folds == 1 or args.check_folds < 0:
        raise UserError(f"--check-folds must be 0 or at least 2, not {args.check_folds}")
    out = args.out or settings.models_dir
    config = DistillConfig(train=_config(args), granularity=args.granularity, holdout=args.holdout,
                           check_folds=args.check_folds, workers=args.workers)
    specific = ["--shared", shown_path(args.shared), "--granularity", args.granularity,
                "--holdout", str(args.holdout), "--check-folds", str(args.check_folds)]
    command = _command(args, out, *specific)
    result = distill(args.shared, load_teacher(settings.models_dir), out, args.cache, config,
                     command=command, export=not args.no_export)
    train = result.train
    document = {
        "model": str(train.model_path),
        "files": [str(p) for p in train.files],
        "teacher": result.teacher,
        "sources": result.sources,
        "epochs_run": train.epochs_run,
        "best_epoch": train.best_epoch,
        "seconds": round(train.seconds, 1),
        "temperature": train.sidecar.temperature,
        "valid_vs_teacher": train.valid.to_dict(),
        "agreement": result.agreement,
        "check": {"teacher": result.teacher_check.to_dict(), "student": result.student_check.to_dict(),
                  "student_cross_fitted": result.crossfit_check.to_dict() if result.crossfit_check else None,
                  "held_out_accuracy": result.held_out_check.accuracy},
        "ship": result.ship,
        "runtimes": train.sidecar.training.get("runtimes", {}),
    }
    verdict = ("at least as accurate as the teacher: may be listed in models/manifest.json" if result.ship
               else "less accurate than the teacher: do not list it in models/manifest.json")
    text = "\n".join([
        f"{train.model_path}: {train.epochs_run} epochs (best {train.best_epoch}), agreement with the "
        f"teacher on held-out tracks {result.agreement:.3f}, {train.seconds / 60:.1f} min",
        f"Emotify check ({result.student_check.tracks} excerpts): teacher "
        f"{result.teacher_check.accuracy:.3f}, student {result.held_out_check.accuracy:.3f} "
        f"({'cross-fitted' if result.crossfit_check else 'held out'}): {verdict}",
        "wrote " + ", ".join(p.name for p in train.files),
    ])
    return Outcome(document, text)


def _confusion_text(confusion: list[list[int]], genres: list[str]) -> str:
    width = max(len(g) for g in genres)
    head = " " * (width + 1) + " ".join(g[:4].rjust(4) for g in genres)
    rows = [g.rjust(width) + " " + " ".join(str(v).rjust(4) for v in row)
            for g, row in zip(genres, confusion)]
    return "\n".join([head, *rows])


def handle_evaluate(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.training.bilstm_train import evaluate_gtzan
    from core.training.gtzan import DEFAULT_SPLIT_DIR

    model = args.model or settings.models_dir / MODEL_FILE
    if not model.is_file():
        raise FileMissing(f"no BiLSTM artefact at {model} (train one with `cratedigger train bilstm`)")
    evaluation = evaluate_gtzan(args.data, model, args.split or DEFAULT_SPLIT_DIR, args.subset)
    document = {"model": str(model), "split": args.subset, **evaluation.to_dict()}
    f1 = ", ".join(f"{g} {v:.2f}" for g, v in evaluation.f1.items() if v is not None)
    text = "\n".join([
        f"{args.subset} split, {evaluation.tracks} tracks / {evaluation.segments} segments",
        f"track accuracy {evaluation.track_accuracy:.3f}, segment accuracy "
        f"{evaluation.segment_accuracy:.3f}, ECE {evaluation.ece:.3f}",
        f"F1: {f1}",
        _confusion_text(evaluation.confusion, document["genres"]),
    ])
    return Outcome(document, text)

