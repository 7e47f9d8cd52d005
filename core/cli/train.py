"""`cratedigger train frontend|genre|mood` (rebuild the shipped front-end, genre head and mood model) and
`cratedigger evaluate` (score the shipped genre model on a folder in GTZAN's layout).

The training code is imported only when one of these verbs runs, so every other verb starts fast; TensorFlow
only when a network is built or fitted.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from core.cli import Outcome
from core.config import PACKAGE_ROOT, Settings
from core.errors import FileMissing, UserError
from core.extras import install_command, missing

SHARED_HELP = "../shared/data next to the repository"
GENRE_VARIANTS = ("clean", "mp3")
"""The variants the shipped genre head was trained on (core.training.genre_data.VARIANTS has two more)."""


def require_training_packages(*modules: str) -> None:
    """Refuse in one line, before any data is read, where the `train` extra is missing: the runtime install
    leaves out TensorFlow, scikit-learn and SciPy, and training would otherwise fail minutes in, after the
    data set was analysed. Looks for the modules without importing them (TensorFlow's import is slow)."""
    absent = missing(*modules)
    if absent:
        raise UserError(f"training needs {', '.join(absent)}, which the runtime install leaves out: "
                        f"{install_command('train')}")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def shown_path(path: Path) -> str:
    """A path as the card shows it: relative to the repository when it is inside or beside it."""
    try:
        return str(Path(path).resolve().relative_to(PACKAGE_ROOT.parent.resolve()).as_posix())
    except ValueError:
        return str(path)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    train = subparsers.add_parser("train", help="rebuild the front-end, the genre model or the mood model",
                                  description="Rebuild a shipped model artefact from its sources.")
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=type(train))
    frontend = kinds.add_parser(
        "frontend", parents=[parent], help="convert musicnn's MSD checkpoint into our Keras/LiteRT model",
        description="Port musicnn's MSD_musicnn weights into models/frontend_msd_musicnn.{keras,tflite,json}, "
                    "without its dead filters (checked on the demo clips to give the same outputs). "
                    "Needs the musicnn package (pip install --no-deps musicnn); the runtime does not.")
    frontend.add_argument("--musicnn-dir", type=Path, default=None, metavar="DIR",
                          help="the installed musicnn package folder (default: found on the Python path)")
    frontend.add_argument("--out", type=Path, default=None, metavar="DIR", help="default: the models folder")
    frontend.set_defaults(handler=handle_train_frontend, long_running=True)  # its progress is the log

    genre = kinds.add_parser(
        "genre", parents=[parent], help="choose, calibrate and save the BiLSTM over the front-end",
        description="Cross-validate the candidate heads on the team's labelled audio, pick one, fit its "
                    "temperature on held-out verdicts, refit it on everything and save it.")
    _data_options(genre, "~/.cache/cratedigger/genre-embeddings")
    genre.add_argument("--folds", type=_positive, default=5, help="cross-validation folds")
    genre.add_argument("--variants", default=",".join(GENRE_VARIANTS), metavar="VARIANTS",
                       help="upload variants every clip is embedded and trained in, comma-separated "
                            "(clean must be one)")
    genre.set_defaults(handler=handle_train_genre, long_running=True)

    mood = kinds.add_parser(
        "mood", parents=[parent], help="choose and save the mood model (4Q + Emotify)",
        description="Cross-validate the mood recipes on 4Q (grouped by artist) and Emotify, score the chosen "
                    "one once on the artists set aside, refit it on everything and save models/mood.npz.")
    _data_options(mood, "~/.cache/cratedigger/mood-embeddings")
    mood.add_argument("--augment", default="mp3", metavar="VARIANTS",
                      help="upload variants whose copies join the training songs, comma-separated "
                           "('' for none)")
    mood.set_defaults(handler=handle_train_mood, long_running=True)

    evaluate = subparsers.add_parser(
        "evaluate", parents=[parent], help="score the shipped genre or mood model on labelled audio",
        description="Genre: track accuracy per genre, and the confusion matrix, of the model the manifest "
                    "loads, on one split of a folder laid out as <genre>/<genre>.000NN[.kind].ext, or on a "
                    "folder whose tracks.csv names each file's genre (Emotify's genre column; 4Q's AllMusic "
                    "genres, scored on Pop/Rock, Jazz, Blues, Rap, Country, Reggae). Mood "
                    "(--model mood): quadrant, balanced, arousal and valence accuracy on a folder in 4Q's "
                    "layout.")
    evaluate.add_argument("--data", type=Path, required=True, metavar="DIR",
                          help="folder in GTZAN's layout (genre) or 4Q's (mood: tracks.csv with quadrants)")
    evaluate.add_argument("--model", choices=("genre", "mood"), default="genre", help="which model to score")
    evaluate.add_argument("--split", type=Path, default=None, metavar="DIR",
                          help="folder with {train,valid,test}_filtered.txt (default: gtzan-split of "
                               f"{SHARED_HELP})")
    evaluate.add_argument("--subset", choices=("train", "valid", "test"), default="test",
                          help="which split to score")
    evaluate.set_defaults(handler=handle_evaluate)


def _data_options(parser: argparse.ArgumentParser, cache: str) -> None:
    """The options every training verb over the team's data shares."""
    parser.add_argument("--shared", type=Path, default=None, metavar="DIR",
                        help=f"the team's data folder (default: {SHARED_HELP})")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help=f"front-end output cache (default: {cache})")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="default: the models folder")
    parser.add_argument("--workers", type=_positive, default=2, help="processes embedding audio")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE",
                        help="also write every figure as JSON here (the model card quotes them)")


def handle_train_frontend(args: argparse.Namespace, settings: Settings) -> Outcome:
    require_training_packages("tensorflow", "keras")
    from core.cli.demo import DEMO_CLIPS
    from core.training.musicnn_port import convert
    from core.training.musicnn_reference import package_dir

    try:
        source = args.musicnn_dir or package_dir()
    except ModuleNotFoundError as exc:
        raise UserError(f"{exc}; or point --musicnn-dir at a copy of it") from None
    if not (source / "MSD_musicnn").is_dir():
        raise FileMissing(f"{source} has no MSD_musicnn checkpoint folder")
    paths = convert(source, args.out or settings.models_dir, sorted(DEMO_CLIPS.glob("*.ogg")))
    return Outcome({k: str(p) for k, p in paths.items()},
                   "wrote " + ", ".join(f"{p.name} ({p.stat().st_size // 1024} kB)" for p in paths.values()))


def handle_train_genre(args: argparse.Namespace, settings: Settings) -> Outcome:
    require_training_packages("tensorflow", "keras", "sklearn", "scipy")
    from core.training.genre_data import DEFAULT_CACHE, DEFAULT_SHARED, VARIANTS
    from core.training.genre_train import load_data, train

    shared, out = args.shared or DEFAULT_SHARED, args.out or settings.models_dir
    for folder in ("gtzan-audio", "gtzan-split", "emotify", "mood4q-dev"):
        if not (shared / folder).is_dir():
            raise FileMissing(f"no {folder} folder in {shared} (point --shared at the team's data folder)")
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "clean" not in variants:
        raise UserError(f"--variants {args.variants!r}: name clean and any of {', '.join(VARIANTS[1:])}")
    command = shlex.join(["cratedigger", "train", "genre", "--shared", shown_path(shared),
                          "--folds", str(args.folds), "--variants", ",".join(variants)])
    data = load_data(shared, settings.models_dir, cache_dir=args.cache or DEFAULT_CACHE, workers=args.workers,
                     variants=variants)
    report = train(data, out, k=args.folds, command=command)
    if args.report:
        args.report.write_text(report.to_json())
    lines = [f"{c['name']:<40} selection {c['selection_score']:.3f} "
             + " ".join(f"{g} {m:.3f}" for g, m in c["macro"].items()) for c in report.candidates]
    if report.untouched:
        lines.append(f"set-aside 4Q artists (scored once): {report.untouched['clean']['4q_aside']['macro']:.3f} macro")
    lines += [f"chosen: {report.chosen['name']}, temperature {report.calibration['temperature']:.3f}, "
              f"ECE {report.calibration['ece']:.3f}", "wrote " + ", ".join(Path(f).name for f in report.files)]
    return Outcome(json.loads(report.to_json()), "\n".join(lines))


def handle_train_mood(args: argparse.Namespace, settings: Settings) -> Outcome:
    require_training_packages("sklearn", "scipy")
    from core.training.genre_data import DEFAULT_SHARED
    from core.training.mood_train import AUGMENTED, DEFAULT_CACHE, train

    shared, out = args.shared or DEFAULT_SHARED, args.out or settings.models_dir
    for folder in ("mood4q-dev", "emotify"):
        if not (shared / folder).is_dir():
            raise FileMissing(f"no {folder} folder in {shared} (point --shared at the team's data folder)")
    command = shlex.join(["cratedigger", "train", "mood", "--shared", shown_path(shared),
                          "--augment", args.augment])
    augment = tuple(v for v in args.augment.split(",") if v)
    unknown = sorted(set(augment) - set(AUGMENTED))
    if unknown:
        raise UserError(f"unknown --augment variant(s) {', '.join(unknown)}: "
                        f"choose from {', '.join(AUGMENTED)}")
    report = train(shared, out, args.cache or DEFAULT_CACHE, args.workers, settings.models_dir, command,
                   augment)
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    cv = report["cv"][report["chosen"]]  # type: ignore[index]
    lines = [f"{name:<40} quadrant {r['clean']['quadrant']:.3f} balanced {r['clean']['balanced']:.3f} "
             f"top-{_top_k()} fit {sum(r['top_fit'].values()) / len(r['top_fit']):.2f}"
             for name, r in report["cv"].items()]  # type: ignore[union-attr]
    lines += [f"chosen: {report['chosen']} (quadrant {cv['clean']['quadrant']:.3f}); untouched artists: "
              f"quadrant {report['untouched']['clean']['quadrant']:.3f}; "  # type: ignore[index]
              "Emotify GEMS R² "
              f"{report['gems_cv']['r2_mean']:.3f}", f"wrote {report['artefact']}"]  # type: ignore[index]
    return Outcome(report, "\n".join(lines))


def _top_k() -> int:
    from core.training.mood_train import TOP_K

    return TOP_K


def _confusion_text(confusion: list[list[int]], genres: list[str]) -> str:
    width = max(len(g) for g in genres)
    head = " " * (width + 1) + " ".join(g[:4].rjust(4) for g in genres)
    rows = [g.rjust(width) + " " + " ".join(str(v).rjust(4) for v in row) for g, row in zip(genres, confusion)]
    return "\n".join([head, *rows])


def handle_evaluate(args: argparse.Namespace, settings: Settings) -> Outcome:
    from core.training.evaluate import evaluate_folder, evaluate_listed_folder, evaluate_mood_folder
    from core.training.genre_data import DEFAULT_SHARED

    if args.model == "mood":
        result = evaluate_mood_folder(args.data, settings)
        lines = [f"mood model on {result['songs']} songs of {args.data}"]
        for reading in ("six_moods_as_quadrant", "valence_arousal_signs"):
            f = result[reading]
            lines.append(f"{reading.replace('_', ' ')}: quadrant {f['quadrant']:.3f}, "
                         f"balanced {f['balanced']:.3f}, "
                         f"arousal {f['arousal']:.3f}, valence {f['valence']:.3f}, recall "
                         + ", ".join(f"{q} {r:.2f}" for q, r in f["recall"].items()))
        return Outcome(result, "\n".join(lines))

    if (args.data / "tracks.csv").is_file():
        result = evaluate_listed_folder(args.data, settings)
        per_label = "; ".join(f"{label} {v['recall']:.2f} ({v['n']}: "
                              + ", ".join(f"{g} {n}" for g, n in v["called"].items()) + ")"
                              for label, v in result["per_label"].items())
        return Outcome(result, f"{result['model']} on {result['clips']} clips of {args.data}: macro "
                               f"{result['macro']:.3f}, accuracy {result['accuracy']:.3f}, ECE {result['ece']:.3f}\n"
                               f"per label (recall, clips: called): {per_label}")
    result = evaluate_folder(args.data, args.split or DEFAULT_SHARED / "gtzan-split", args.subset, settings)
    per_genre = ", ".join(f"{g} {v['recall']:.2f} ({v['n']})" for g, v in result["per_genre"].items())
    text = "\n".join([
        f"{result['model']} on the {args.subset} split: {result['clips']} clips, accuracy "
        f"{result['accuracy']:.3f}, ECE {result['ece']:.3f}",
        f"per genre: {per_genre}",
        _confusion_text(result["confusion"], result["genres"]),
    ])
    return Outcome(result, text)
