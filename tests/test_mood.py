"""Mood: the written definitions, the shipped model on real Emotify excerpts, and `cratedigger mood`."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from core.analysis import Limits, analyse
from core.cli import main
from core.config import DEFAULT_MODELS_DIR
from core.errors import ModelMismatch, UnknownMood, UserError
from core.mood import (
    GEMS,
    GEMS_BASE_RATE,
    GEMS_SPREAD,
    MOOD_WEIGHTS,
    MOODS,
    MoodEstimate,
    load_mood_model,
    mood_z,
    moods_from_gems,
    parse_mood,
    read_artefact,
    read_mood_model,
)
from core.mood import TRACK_FEATURE_NAMES as MODEL_FEATURES
from tests.conftest import synth_tone

TYPICAL = dict(GEMS_BASE_RATE)


def with_gems(**changes: float) -> dict[str, float]:
    return {**TYPICAL, **changes}


# --- parse_mood ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "mood"), [
    ("calm", "calm"), ("  Happy ", "happy"), ("ENERGETIC", "energetic"), ("s a d", "sad"),
    ("Nostalgic", "nostalgic"), ("tense", "tense"),
])
def test_parse_mood_accepts_the_six_names(text: str, mood: str) -> None:
    assert parse_mood(text) == mood


@pytest.mark.parametrize(("text", "suggestion"),
                         [("chill", "calm"), ("Melancholy", "sad"), ("dark", "tense")])
def test_a_synonym_is_never_taken_silently_but_suggested(text: str, suggestion: str) -> None:
    """`recommend --mood chill` used to mean calm without a word: now it is refused, naming the mood."""
    with pytest.raises(UnknownMood) as info:
        parse_mood(text)
    message = str(info.value)
    assert f"(did you mean {suggestion}?)" in message and "\n" not in message
    assert all(mood in message for mood in MOODS)


def test_cli_recommend_with_an_unknown_mood_exits_2_with_the_valid_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(tmp_path))
    assert main(["recommend", "--user", "1", "--mood", "chill"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "did you mean calm?" in captured.err and "nostalgic" in captured.err


@pytest.mark.parametrize("text", ["angry", "", "calm-ish", "42"])
def test_parse_mood_refuses_unknown_with_the_valid_ones(text: str) -> None:
    with pytest.raises(UnknownMood) as info:
        parse_mood(text)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert message.startswith(f"unknown mood '{text}'")
    assert "\n" not in message
    for mood in MOODS:
        assert mood in message


# --- the written definitions ---------------------------------------------------------------------------

def test_typical_track_scores_one_half_everywhere() -> None:
    assert moods_from_gems(TYPICAL) == pytest.approx({m: 0.5 for m in MOODS})


@pytest.mark.parametrize(("gems", "expected"), [
    (with_gems(calmness=0.8, tenderness=0.6, power=0.05, joyful_activation=0.05, tension=0.05), "calm"),
    (with_gems(joyful_activation=0.8, amazement=0.45, power=0.15, sadness=0.05), "happy"),
    (with_gems(power=0.75, joyful_activation=0.6, calmness=0.05), "energetic"),
    (with_gems(sadness=0.75, joyful_activation=0.05), "sad"),
    (with_gems(nostalgia=0.7), "nostalgic"),
    (with_gems(tension=0.8, calmness=0.05, tenderness=0.02), "tense"),
])
def test_listeners_answers_give_the_obvious_mood(gems: dict[str, float], expected: str) -> None:
    moods = moods_from_gems(gems)
    assert max(moods, key=moods.__getitem__) == expected


def test_judged_against_base_rates_not_raw_fractions() -> None:
    """Amazement 0.30 is far above its base rate (0.12); tension 0.30 only a little above its own (0.24)."""
    moods = moods_from_gems(with_gems(amazement=0.30, tension=0.30))
    assert moods["happy"] > moods["tense"] > 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=9, max_size=9), st.sampled_from(GEMS),
       st.floats(0.01, 0.5))
def test_scores_are_bounded_and_rise_with_their_emotions(values: list[float], emotion: str,
                                                         step: float) -> None:
    gems = dict(zip(GEMS, values))
    before = moods_from_gems(gems)
    after = moods_from_gems({**gems, emotion: gems[emotion] + step})
    for mood in MOODS:
        assert 0.0 <= before[mood] <= 1.0
        if MOOD_WEIGHTS[mood].get(emotion, 0.0) > 0:
            assert after[mood] >= before[mood]
        else:
            assert after[mood] == pytest.approx(before[mood])


def test_missing_emotion_is_a_bug_not_a_guess() -> None:
    partial = dict(TYPICAL)
    del partial["sadness"]
    with pytest.raises(ValueError, match="sadness"):
        moods_from_gems(partial)


def emotify_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "emotify" / "tracks.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_definition_constants_are_emotify_base_rates(shared_data: Path) -> None:
    rows = emotify_rows(shared_data)
    y = np.array([[float(r[f"{g}_frac"]) for g in GEMS] for r in rows])
    assert [GEMS_BASE_RATE[g] for g in GEMS] == pytest.approx(y.mean(axis=0), abs=1e-4)
    assert [GEMS_SPREAD[g] for g in GEMS] == pytest.approx(y.std(axis=0, ddof=1), abs=1e-4)
    z = mood_z(y)  # divided by MOOD_SPREAD: each mood's score has unit spread over Emotify
    assert z.std(axis=0, ddof=1) == pytest.approx(np.ones(len(MOODS)), abs=1e-3)
    # Every mood is the listeners' top mood for a fair share of excerpts: no mood is unreachable.
    counts = np.bincount(z.argmax(axis=1), minlength=len(MOODS))
    assert counts.min() >= 0.1 * len(rows)


# --- the shipped model ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    loaded = load_mood_model(DEFAULT_MODELS_DIR)
    assert loaded is not None, "models/mood.npz is missing: python -m core.training.mood_train --out models/"
    return loaded


def test_shipped_model_loads_and_estimates(model) -> None:
    assert model.name.startswith("mood-v3-")
    x = np.asarray(model.heads.x_mean)  # the average training track
    estimate = model.estimate(x)
    assert isinstance(estimate, MoodEstimate)
    doc = estimate.to_dict()
    assert set(doc) == {"mood", "confidence", "moods", "valence", "arousal", "gems"}
    assert list(doc["moods"]) == list(MOODS) and list(doc["gems"]) == list(GEMS)
    assert doc["mood"] in MOODS and doc["confidence"] == doc["moods"][doc["mood"]]
    assert -1.0 <= doc["valence"] <= 1.0 and -1.0 <= doc["arousal"] <= 1.0
    quadrant_moods = [doc["moods"][m] for m in ("calm", "happy", "sad", "tense")]
    assert sum(quadrant_moods) == pytest.approx(1.0)  # the quadrant head's four probabilities
    assert all(0.0 <= v <= 1.0 for v in [*doc["moods"].values(), *doc["gems"].values()])
    json.dumps(doc)


def test_no_artefact_means_no_model(tmp_path: Path) -> None:
    assert load_mood_model(tmp_path) is None


def test_no_front_end_means_no_model(tmp_path: Path) -> None:
    """The model reads the front-end's outputs: without the front-end beside it, there is no mood."""
    (tmp_path / "mood.npz").write_bytes((DEFAULT_MODELS_DIR / "mood.npz").read_bytes())
    assert load_mood_model(tmp_path) is None


@pytest.mark.parametrize("tamper", ["audio_constants", "frontend_constants", "feature_names"])
def test_refuses_an_artefact_made_for_other_constants_or_features(tmp_path: Path, tamper: str) -> None:
    from core.training.mood_train import write_npz

    arrays, meta = read_artefact(DEFAULT_MODELS_DIR / "mood.npz")
    if tamper == "feature_names":
        meta["feature_names"] = list(reversed(meta["feature_names"]))
    else:
        meta[tamper] = {**meta[tamper], "sample_rate": 44_100}
    write_npz(tmp_path / "mood.npz", arrays, meta)
    with pytest.raises(ModelMismatch, match=tamper):
        read_mood_model(tmp_path / "mood.npz")


def test_feature_code_has_not_drifted_since_training(model) -> None:
    """The model was trained on features of this code: a probe clip's features still match the stored
    ones to within 2 % of their spread over the training tracks. If not, retrain the model."""
    from core.training.mood_train import probe_features

    arrays, _ = read_artefact(DEFAULT_MODELS_DIR / "mood.npz")
    drift = np.abs(probe_features(DEFAULT_MODELS_DIR) - arrays["probe_features"]) / arrays["x_scale"]
    worst = int(drift.argmax())
    assert drift[worst] < 0.02, f"{MODEL_FEATURES[worst]} moved by {drift[worst]:.1%} of its spread"


def test_estimates_follow_listeners_on_real_excerpts(shared_data: Path, model) -> None:
    """Five calmest and five most powerful excerpts by listeners' answers (held-in tracks): the GEMS head
    must rank every calm one above every powerful one on calmness; calm, energetic and arousal must tell
    the two groups apart."""
    rows = emotify_rows(shared_data)
    by_calm = sorted(rows, key=lambda r: float(r["calmness_frac"]) - float(r["power_frac"]))
    calmest, most_powerful = by_calm[-5:], by_calm[:5]
    estimates = {}
    limits = Limits(DEFAULT_MODELS_DIR, max_seconds=70, max_segments=10)
    for row in calmest + most_powerful:
        result = analyse(shared_data / "emotify" / row["file"], limits, genre=False, embedding=False)
        estimates[row["file"]] = MoodEstimate(result.mood, result.mood_confidence, result.mood_scores,
                                              result.valence, result.arousal, result.gems)
    calm_gems = [estimates[r["file"]].gems["calmness"] for r in calmest]
    power_gems = [estimates[r["file"]].gems["calmness"] for r in most_powerful]
    assert min(calm_gems) > max(power_gems)
    # The moods and arousal come from heads that read 4Q's perceived emotion first: felt calm and perceived
    # calm differ on some excerpts (a pop excerpt 75 % of listeners felt calm reads as happy), so on
    # average, by a clear margin, rather than every excerpt.
    def mean(key: str, rows: list[dict[str, str]]) -> float:
        return float(np.mean([estimates[r["file"]].moods[key] if key in MOODS else
                              getattr(estimates[r["file"]], key) for r in rows]))

    assert mean("calm", calmest) > mean("calm", most_powerful) + 0.2
    assert mean("energetic", most_powerful) > mean("energetic", calmest)
    assert mean("arousal", most_powerful) > mean("arousal", calmest) + 0.5


# --- the command line ----------------------------------------------------------------------------------

def test_cli_json_on_a_synthesised_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "tone.wav"
    sf.write(clip, synth_tone(7.0), 22_050)
    assert main(["mood", str(clip), "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert len(docs) == 1
    doc = docs[0]
    assert set(doc) == {"file", "mood", "confidence", "moods", "valence", "arousal", "gems"}
    assert doc["file"] == str(clip) and doc["mood"] in MOODS
    assert set(doc["moods"]) == set(MOODS) and set(doc["gems"]) == set(GEMS)
    assert doc["mood"] == max(doc["moods"], key=doc["moods"].get)
    assert -1.0 <= doc["valence"] <= 1.0 and -1.0 <= doc["arousal"] <= 1.0


def test_cli_text_says_each_number_once_and_lists_the_nine_gems(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The text used to read "happy (confidence 17%; happy 0.58, ...)": two numbers for one claim, and no
    GEMS scores although the README promises them."""
    clip = tmp_path / "tone.wav"
    sf.write(clip, synth_tone(7.0), 22_050)
    assert main(["mood", str(clip), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)[0]
    assert main(["mood", str(clip)]) == 0
    head, moods, gems = capsys.readouterr().out.strip().splitlines()
    top = doc["mood"]
    assert head.startswith(f"{clip}: {top} {doc['moods'][top]:.2f} · valence {doc['valence']:+.2f}")
    assert f"arousal {doc['arousal']:+.2f}" in head and "confidence" not in head
    assert moods.startswith(f"  moods: {top} {doc['moods'][top]:.2f}")
    assert all(f"{m} {v:.2f}" in moods for m, v in doc["moods"].items())
    assert all(f"{g.replace('_', ' ')} {v:.2f}" in gems for g, v in doc["gems"].items())


def test_cli_bad_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "song.mp3"
    fake.write_text("not audio at all")
    assert main(["mood", str(fake), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "song.mp3" in captured.err
    [doc] = json.loads(captured.out)  # --json: still one document, the file's reason in it
    assert doc == {"file": str(fake), "error": captured.err.strip().removeprefix("cratedigger: ")}


def test_cli_without_a_model_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    clip = tmp_path / "tone.wav"
    sf.write(clip, synth_tone(3.0), 22_050)
    monkeypatch.setenv("CRATEDIGGER_MODELS_DIR", str(tmp_path))
    assert main(["mood", str(clip)]) == 2
    err = capsys.readouterr().err
    assert "no mood model" in err and err.count("\n") == 1


def test_cli_evaluate_mood_on_a_4q_layout_folder(shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`cratedigger evaluate --model mood` reads a 4Q-layout tracks.csv (here eight songs of mood4q-dev,
    two per quadrant, listed by absolute path) through the upload path and reports both readings."""
    with open(shared_data / "mood4q-dev" / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = [r for q in ("Q1", "Q2", "Q3", "Q4") for r in [r for r in rows if r["quadrant"] == q][:2]]
    with open(tmp_path / "tracks.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "quadrant"])
        writer.writeheader()
        writer.writerows({"file": str(shared_data / "mood4q-dev" / r["file"]), "quadrant": r["quadrant"]}
                         for r in picked)
    assert main(["evaluate", "--model", "mood", "--data", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["songs"] == 8 and doc["skipped"] == []
    for reading in ("six_moods_as_quadrant", "valence_arousal_signs"):
        figures = doc[reading]
        assert set(figures["recall"]) == {"Q1", "Q2", "Q3", "Q4"}
        assert all(0.0 <= figures[k] <= 1.0 for k in ("quadrant", "balanced", "arousal", "valence"))
    (tmp_path / "tracks.csv").unlink()
    assert main(["evaluate", "--model", "mood", "--data", str(tmp_path)]) == 2
    assert "no tracks.csv" in capsys.readouterr().err


def test_cli_train_mood_without_the_data_exits_2_with_one_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "mood", "--shared", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no mood4q-dev folder" in err
    (tmp_path / "mood4q-dev").mkdir()
    (tmp_path / "emotify").mkdir()
    assert main(["train", "mood", "--shared", str(tmp_path), "--augment", "mp3,vinyl"]) == 2
    assert "unknown --augment variant(s) vinyl" in capsys.readouterr().err
