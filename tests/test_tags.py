"""MSD tags in genre answers: only tags with a threshold chosen on labelled audio, clearest first, at most
three; the threshold chooser's precision rule; the mood4q labels it learns from."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.config import DEFAULT_MODELS_DIR
from core.frontend import TAGS
from core.tags import ARTEFACT, KIND, MAX_SHOWN, clear_tags, thresholds
from core.training.tag_thresholds import (
    LOWER_BOUND,
    MIN_SHOWN,
    TARGET_PRECISION,
    choose_threshold,
    mood4q_labels,
    wilson_lower,
)


def _segments(**scores: float) -> np.ndarray:
    out = np.full((3, len(TAGS)), 0.01, np.float32)
    for tag, score in scores.items():
        out[:, TAGS.index(tag.replace("_", " "))] = score
    return out


def test_only_tags_over_their_threshold_clearest_first_at_most_three() -> None:
    table = {"rock": 0.3, "jazz": 0.2, "blues": 0.1, "country": 0.1, "Hip-Hop": 0.05}
    tags = clear_tags(_segments(rock=0.35, jazz=0.5, blues=0.3, country=0.09, **{"Hip-Hop": 0.5}), table)
    assert tags == ["hip-hop", "jazz", "blues"]  # log-odds over the threshold 2.94, 1.39, 1.35; rock 0.23
    assert len(tags) == MAX_SHOWN
    assert clear_tags(_segments(guitar=0.99), table) == []  # no threshold: never shown, however sure
    assert clear_tags(np.zeros((0, len(TAGS))), table) == []


def test_a_tag_table_naming_an_unknown_tag_is_refused(tmp_path: Path) -> None:
    (tmp_path / ARTEFACT).write_text(json.dumps({"kind": KIND, "thresholds": {"polka": 0.5}}))
    with pytest.raises(ValueError, match="polka"):
        thresholds(tmp_path)
    assert thresholds(tmp_path / "nowhere") == {}


def test_the_threshold_is_the_lowest_score_that_is_right_often_enough() -> None:
    scores = np.linspace(1, 0, 40)
    truth = np.array([1] * 10 + [1, 0] * 5 + [0] * 20)  # the top 10 right, then half right, then wrong
    threshold = choose_threshold(scores, truth)
    shown = scores >= threshold

    def trusted(k: int) -> bool:
        right = truth[:k].sum()
        return right / k >= TARGET_PRECISION and wilson_lower(np.array(right), np.array(k)) >= LOWER_BOUND

    assert shown.sum() >= MIN_SHOWN and trusted(int(shown.sum()))
    assert not any(trusted(k) for k in range(int(shown.sum()) + 1, 41))  # no lower threshold would do
    assert choose_threshold(scores, np.zeros(40, int)) is None  # never right: never shown
    assert choose_threshold(scores[:5], truth[:5]) is None  # right, but on too few clips to trust


def test_mood4q_labels_use_the_quadrant_where_the_words_are_silent() -> None:
    row = {"genres": "Jazz; Pop/Rock", "moods": "Gloomy; Reserved", "quadrant": "Q4"}
    labels = mood4q_labels(row)
    assert {"allmusic:Jazz", "allmusic:Pop/Rock", "mood:sad", "mood:calm"} <= labels
    assert "mood:happy" not in labels and "mood:not-happy" not in labels  # Q4 says nothing of happy
    assert "mood:not-happy" in mood4q_labels({**row, "quadrant": "Q2", "moods": "Tense"})


def _models_with(tmp_path: Path, table: dict[str, float]) -> Path:
    models = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS_DIR, models, ignore=shutil.ignore_patterns("*.md", "*.png", ARTEFACT))
    (models / ARTEFACT).write_text(json.dumps({"kind": KIND, "thresholds": table}))
    return models


@pytest.mark.parametrize(("threshold", "shown"), [(0.0, ["rock"]), (1.01, [])])
def test_genre_json_carries_the_tags(threshold: float, shown: list[str], tmp_path: Path, tone,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile as sf

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRATEDIGGER_MODELS_DIR", str(_models_with(tmp_path, {"rock": threshold})))
    clip = tmp_path / "tone.wav"
    sf.write(clip, tone(7.0), 22_050)
    assert main(["genre", "--json", str(clip)]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["tags"] == shown
    assert main(["genre", str(clip)]) == 0
    assert ("sounds like: rock" in capsys.readouterr().out) == bool(shown)


def test_the_embed_says_what_it_sounds_like() -> None:
    from bot.render import genre_embed
    from core.service import GenreReport

    report = GenreReport(file="a.mp3", genre="rock", confidence=0.8, top=[("rock", 0.8), ("pop", 0.1)],
                         segments=10, clip_seconds=30.0, model="m", tags=["90s", "alternative rock"])
    fields = {f.name: f.value for f in genre_embed(report).fields}
    assert fields["Sounds like"] == "90s · alternative rock"
    quiet = GenreReport(**{**report.__dict__, "tags": []})
    assert "Sounds like" not in {f.name for f in genre_embed(quiet).fields}  # nothing clear: nothing said
