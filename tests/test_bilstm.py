"""The BiLSTM pipeline end to end on a synthetic GTZAN-layout folder: it learns, exports, refuses, reports.

Four "genres" with distinct timbres and rhythms are synthesised into tmp_path with our own split lists; a
tiny model trains for a few seconds through `cratedigger train bilstm`. These weights live in tmp_path only.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.cli import main
from core.constants import GENRES, SAMPLE_RATE
from core.errors import ModelMismatch

SR = SAMPLE_RATE
TRACK_SECONDS = 9.0
"""Three 3-s segments per track."""
SPLIT_SIZES = {"train": 4, "valid": 2, "test": 3}
SYNTH_GENRES = ("classical", "disco", "metal", "reggae")
CHANCE = 1 / len(SYNTH_GENRES)
PASS_ACCURACY = 0.75
"""With 12 held-out tracks of 4 classes, guessing reaches 9 correct with probability below 0.001."""


def _bursts(t: np.ndarray, rate: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    """An envelope of sharp attacks at `rate` per second, each decaying with time constant `decay` s."""
    phase = (t * rate + rng.uniform()) % 1.0 / rate
    return np.exp(-phase / decay)


def synth_track(genre: str, seed: int, seconds: float = TRACK_SECONDS) -> np.ndarray:
    """A clip whose timbre and rhythm say its class, with per-track variation in pitch, tempo and level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    noise = rng.standard_normal(t.size)
    if genre == "classical":  # soft harmonic tones gliding slowly, no percussion
        f0 = rng.uniform(200, 400) * 2 ** (0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        y = sum(np.sin(k * phase) / k**2 for k in range(1, 6)) * (0.7 + 0.3 * np.sin(2 * np.pi * 0.5 * t))
    elif genre == "disco":  # bright hi-hat noise bursts at 4-5 per second over a bass line
        bass = np.sin(2 * np.pi * rng.uniform(55, 90) * t)
        hats = np.diff(noise, prepend=0.0) * _bursts(t, rng.uniform(4, 5), 0.02, rng)
        y = 0.6 * bass + hats
    elif genre == "metal":  # clipped, harmonically dense tone with constant broadband noise
        phase = 2 * np.pi * rng.uniform(80, 160) * t
        y = np.clip(3 * sum(np.sin(k * phase) / k for k in range(1, 12)), -1, 1) + 0.3 * noise
    else:  # reggae: low kick-like sweeps on a slow beat, quiet mid tone between them
        env = _bursts(t, rng.uniform(1.2, 1.8), 0.12, rng)
        kick = np.sin(2 * np.pi * (50 + 120 * env) * t) * env
        y = kick + 0.2 * np.sin(2 * np.pi * rng.uniform(500, 700) * t)
    y = y * rng.uniform(0.3, 0.8) / np.max(np.abs(y))
    return y.astype(np.float32)


def make_dataset(root: Path) -> tuple[Path, Path]:
    """<root>/audio in GTZAN's layout (some tracks as .au, as in GTZAN) and <root>/split lists."""
    audio, split = root / "audio", root / "split"
    split.mkdir(parents=True)
    lists: dict[str, list[str]] = {name: [] for name in SPLIT_SIZES}
    for g, genre in enumerate(SYNTH_GENRES):
        (audio / genre).mkdir(parents=True)
        number = 0
        for name, size in SPLIT_SIZES.items():
            for _ in range(size):
                ext = "au" if number % 3 == 0 else "wav"
                path = audio / genre / f"{genre}.{number:05d}.{ext}"
                sf.write(path, synth_track(genre, seed=100 * g + number), SR)
                lists[name].append(f"{genre}/{genre}.{number:05d}.wav")
                number += 1
    for name, ids in lists.items():
        (split / f"{name}_filtered.txt").write_text("\n".join(ids) + "\n")
    return audio, split


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


TRAIN_ARGS = ("--epochs", "25", "--units", "8", "--patience", "25", "--batch-size", "16", "--seed", "3")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("synthetic-gtzan")
    audio, split = make_dataset(root)
    out = root / "model"
    code, stdout = run_cli("train", "bilstm", "--data", str(audio), "--split", str(split), "--out", str(out),
                           *TRAIN_ARGS, "--json")
    assert code == 0, stdout
    return {"root": root, "audio": audio, "split": split, "out": out, "report": json.loads(stdout)}


def test_train_writes_artefact_card_and_confusion_matrix(trained: dict) -> None:
    out, report = trained["out"], trained["report"]
    for name in ("genre_bilstm.keras", "genre_bilstm.json", "genre_bilstm.tflite",
                 "genre_bilstm_confusion.png", "genre-bilstm.md"):
        assert (out / name).is_file(), name
    sidecar = json.loads((out / "genre_bilstm.json").read_text())
    assert sidecar["constants"]["sample_rate"] == SR and sidecar["genres"] == list(GENRES)
    assert len(sidecar["mean"]) == len(sidecar["std"]) == 20 and min(sidecar["std"]) > 0
    assert 0.05 < sidecar["temperature"] < 50
    assert report["valid"]["tracks"] == 8 and report["test"]["tracks"] == 12
    assert report["test"]["segments"] == 36
    assert "cratedigger train bilstm" in (out / "genre-bilstm.md").read_text()


def test_pipeline_learns_well_above_chance(trained: dict) -> None:
    """Held-out synthetic clips, classified through the product's own path (decode → features → load)."""
    from core.audio import load_segments
    from core.features import extract
    from core.genre.bilstm import load

    model = load(trained["out"] / "genre_bilstm.keras")
    test_ids = (trained["split"] / "test_filtered.txt").read_text().split()
    correct = 0
    for tid in test_ids:
        genre, stem = tid.split("/")
        path = next((trained["audio"] / genre).glob(stem.rsplit(".", 1)[0] + ".*"))
        verdict = model.predict(extract(load_segments(path, max_seconds=60, max_segments=40)))
        assert abs(sum(verdict.probabilities.values()) - 1) < 1e-6
        correct += verdict.genre == genre
    accuracy = correct / len(test_ids)
    assert accuracy >= PASS_ACCURACY > CHANCE, f"held-out accuracy {accuracy:.2f}"
    assert trained["report"]["test"]["track_accuracy"] >= PASS_ACCURACY


def test_evaluate_through_the_cli(trained: dict) -> None:
    model = trained["out"] / "genre_bilstm.keras"
    code, stdout = run_cli("evaluate", "--data", str(trained["audio"]), "--split", str(trained["split"]),
                           "--model", str(model), "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert doc["split"] == "test" and doc["tracks"] == 12 and doc["segments"] == 36
    confusion = np.array(doc["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 12
    assert np.trace(confusion) / 12 == pytest.approx(doc["track_accuracy"])
    assert doc["track_accuracy"] >= PASS_ACCURACY
    assert set(doc["f1"]) == set(GENRES)
    assert all(doc["f1"][g] is not None for g in SYNTH_GENRES)
    code, stdout = run_cli("evaluate", "--data", str(trained["audio"]), "--split", str(trained["split"]),
                           "--model", str(model))
    assert code == 0 and "track accuracy" in stdout


def test_runtimes_agree(trained: dict) -> None:
    from core.genre.bilstm import load

    keras_model = load(trained["out"] / "genre_bilstm.keras", runtime="keras")
    lite_model = load(trained["out"] / "genre_bilstm.keras", runtime="litert")
    assert load(trained["out"] / "genre_bilstm.keras").runtime == "litert"
    rng = np.random.default_rng(7)
    for n in (1, 10, 13):  # under, at and over the export's fixed batch
        mfcc = (rng.standard_normal((n, 130, 20)) * 40).astype(np.float32)
        a = np.exp(keras_model.segment_log_probs(mfcc))
        b = np.exp(lite_model.segment_log_probs(mfcc))
        assert a.shape == b.shape == (n, 10)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_litert_load_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """`cratedigger genre` output is ours alone: LiteRT's C++ XNNPACK notice must not reach the terminal."""
    from core.genre.export import LiteRunner

    capfd.readouterr()
    runner = LiteRunner(Path(__file__).resolve().parent.parent / "models" / "genre_bilstm.tflite")
    assert runner(np.zeros((3, *runner._shape[1:]), np.float32)).shape[0] == 3
    assert capfd.readouterr().err == ""


def test_other_native_stderr_is_kept_as_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    import os
    import sys

    from core.genre.export import XNNPACK_NOTICE, native_stderr_to_log

    with caplog.at_level("WARNING", logger="core.genre.export"), native_stderr_to_log():
        os.write(sys.stderr.fileno(), f"{XNNPACK_NOTICE}\nERROR: something native broke\n".encode())
    assert [r.getMessage() for r in caplog.records] == ["LiteRT: ERROR: something native broke"]


def test_mismatched_constants_are_refused(trained: dict, tmp_path: Path) -> None:
    from core.genre.bilstm import load

    for name in ("genre_bilstm.keras", "genre_bilstm.json", "genre_bilstm.tflite"):
        shutil.copy(trained["out"] / name, tmp_path / name)
    sidecar = json.loads((tmp_path / "genre_bilstm.json").read_text())
    sidecar["constants"]["sample_rate"] = 44_100
    (tmp_path / "genre_bilstm.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelMismatch, match="sample_rate"):
        load(tmp_path / "genre_bilstm.keras")


def test_manifest_picks_the_bilstm(trained: dict, tmp_path: Path) -> None:
    from core.genre import load_genre_model

    for name in ("genre_bilstm.keras", "genre_bilstm.json", "genre_bilstm.tflite"):
        shutil.copy(trained["out"] / name, tmp_path / name)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"genre": [{"name": "bilstm-test", "kind": "bilstm", "path": "genre_bilstm.keras"}]}))
    model = load_genre_model(tmp_path)
    assert model is not None and model.name == "bilstm-test"


def test_fit_temperature_recovers_a_known_temperature() -> None:
    from core.genre import softmax
    from core.training.bilstm_train import fit_temperature

    logits = np.random.default_rng(0).standard_normal((200, 10)) * 3
    assert fit_temperature(logits, softmax(logits / 2.5)) == pytest.approx(2.5, rel=1e-3)
    assert fit_temperature(logits, softmax(logits / 0.5)) == pytest.approx(0.5, rel=1e-3)


def test_split_lists_match_wav_and_au_and_refuse_overlaps(tmp_path: Path) -> None:
    from core.training.gtzan import BadDataset, find_tracks, split_tracks

    for name in ("blues/blues.00000.au", "blues/blues.00001.wav", "rock/rock.00007.wav", "rock/notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    tracks = find_tracks(tmp_path)
    assert [t.track_id for t in tracks] == ["blues/blues.00000", "blues/blues.00001", "rock/rock.00007"]
    lists = tmp_path / "split"
    lists.mkdir()
    (lists / "train_filtered.txt").write_text(
        "blues/blues.00000.wav\nrock/rock.00007.wav\nrock/rock.00099.wav\n")
    (lists / "valid_filtered.txt").write_text("blues/blues.00001.wav\n")
    (lists / "test_filtered.txt").write_text("rock/rock.00007.wav\n")
    splits = split_tracks(tracks, lists, splits=("train", "valid"))
    assert [t.path.name for t in splits["train"]] == ["blues.00000.au", "rock.00007.wav"]
    assert [t.label for t in splits["valid"]] == [GENRES.index("blues")]
    with pytest.raises(BadDataset, match="both"):
        split_tracks(tracks, lists)


def test_training_is_deterministic() -> None:
    from core.training.bilstm_train import TrainConfig, fit, one_hot

    rng = np.random.default_rng(1)
    x = rng.standard_normal((24, 130, 20)).astype(np.float32)
    t = one_hot(rng.integers(0, 10, 24))
    config = TrainConfig(units=4, epochs=2, batch_size=8, seed=5)
    first, _, _ = fit(x[:16], t[:16], x[16:], t[16:], config)
    second, _, _ = fit(x[:16], t[:16], x[16:], t[16:], config)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_training_input_exits_2(tmp_path: Path) -> None:
    code, _ = run_cli("train", "bilstm", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m"))
    assert code == 2
    (tmp_path / "jazz").mkdir()
    sf.write(tmp_path / "jazz" / "jazz.00000.wav", synth_track("classical", 0, 4.0), SR)
    code, _ = run_cli("train", "bilstm", "--data", str(tmp_path), "--split", str(tmp_path / "nosplit"),
                      "--out", str(tmp_path / "m"))
    assert code == 2
    code, _ = run_cli("evaluate", "--data", str(tmp_path), "--model", str(tmp_path / "none.keras"))
    assert code == 2
    assert not (tmp_path / "m").exists()


def make_shared(root: Path) -> Path:
    """A miniature ../shared/data: library/*.ogg and emotify/ (tracks.csv + audio) of synthetic clips.

    Check excerpts: "classical" sounds like the synthetic classical class, "rock" like metal, "pop" like
    disco, so a teacher trained on the synthetic classes gets classical right and the others wrong."""
    (root / "library").mkdir(parents=True)
    (root / "emotify" / "audio").mkdir(parents=True)
    for i in range(8):
        genre = SYNTH_GENRES[i % len(SYNTH_GENRES)]
        sf.write(root / "library" / f"game__{i}.ogg", synth_track(genre, seed=500 + i), SR)
    rows = ["file,track_id,genre"]
    sounds = {"electronic": SYNTH_GENRES, "classical": ("classical",), "rock": ("metal",), "pop": ("disco",)}
    for genre, like in sounds.items():
        for i in range(4 if genre == "electronic" else 3):
            number = len(rows)
            name = f"audio/{number:03d}_{genre}.wav"
            sf.write(root / "emotify" / name, synth_track(like[i % len(like)], seed=700 + number), SR)
            rows.append(f"{name},{number},{genre}")
    (root / "emotify" / "tracks.csv").write_text("\n".join(rows) + "\n")
    return root


def test_distillation_learns_the_teacher_without_the_check_tracks(trained: dict, tmp_path: Path) -> None:
    from core.genre.bilstm import load
    from core.training.bilstm_train import TrainConfig
    from core.training.distill import DistillConfig, distill

    shared = make_shared(tmp_path / "shared")
    teacher = load(trained["out"] / "genre_bilstm.keras", {"name": "synthetic-teacher"})
    config = DistillConfig(train=TrainConfig(units=16, epochs=30, patience=30, batch_size=16, seed=2),
                           workers=1)
    result = distill(shared, teacher, tmp_path / "student", tmp_path / "cache", config, command="test",
                     export=False)
    assert set(result.sources) == {"library", "emotify-electronic"}  # the check excerpts are not trained on
    assert sum(c["valid_tracks"] for c in result.sources.values()) == 3
    assert result.teacher_check.tracks == result.student_check.tracks == 9
    assert result.teacher_check.per_genre == {"classical": 1.0, "rock": 0.0, "pop": 0.0}
    same = np.minimum(result.teacher_check.confusion, result.student_check.confusion).sum()
    assert same >= 8, f"student agrees with its teacher on {same} of 9 held-out excerpts"
    assert result.crossfit_check is None and result.held_out_check is result.student_check
    assert result.ship == (result.student_check.accuracy >= result.teacher_check.accuracy)
    card = (tmp_path / "student" / "genre-bilstm.md").read_text()
    assert "The check excerpts were not trained on." in card and "synthetic-teacher" in card


def test_check_folds_spread_each_genre_evenly() -> None:
    from core.training.distill import Source, check_folds

    sources = [Source(Path(f"{i}.mp3"), f"emotify-{g}", g)
               for i, g in enumerate(["classical"] * 6 + ["rock"] * 6 + ["pop"] * 5 + ["electronic"] * 4)]
    fold_of = check_folds(sources, 3, seed=0)
    assert sorted(fold_of) == list(range(17))  # every check excerpt, no electronic one
    for genre in ("classical", "rock", "pop"):
        per_fold = np.bincount([f for i, f in fold_of.items() if sources[i].genre == genre], minlength=3)
        assert per_fold.max() - per_fold.min() <= 1


def test_distill_without_a_descriptor_model_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRATEDIGGER_MODELS_DIR", str(tmp_path))
    code, _ = run_cli("train", "distill", "--shared", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2
