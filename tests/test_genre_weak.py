"""Commercial songs as weak genre labels: AllMusic genres read as sets of ours, and the partial-label loss
that trains on such sets (core.training.genre_weak, core.training.genre_heads)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import check_grad

from core.constants import GENRES
from core.training.genre_heads import as_masks, clip_weights, fit_partial_logistic, partial_label_loss
from core.training.genre_weak import allowed_genres, check_label, fourq_clips


def test_pop_rock_is_a_set_and_several_genres_support_any_of_them() -> None:
    assert allowed_genres(["Pop/Rock"]) == ("metal", "pop", "rock")
    assert allowed_genres(["Rap"]) == ("hiphop",)
    assert allowed_genres(["Jazz", "Vocal"]) == ("jazz",)  # Vocal has no counterpart: it adds nothing
    assert allowed_genres(["Country", "Pop/Rock"]) == ("country", "metal", "pop", "rock")
    assert allowed_genres(["Blues", "Jazz", " Classical "]) == ("blues", "classical", "jazz")
    assert allowed_genres(["Electronic", "R&B", "Latin"]) == ()


def test_the_check_label_is_the_one_of_the_six_a_song_has() -> None:
    assert check_label(["Jazz", "Vocal"]) == "Jazz"
    assert check_label(["Electronic", "International", "Pop/Rock"]) == "Pop/Rock"
    assert check_label(["Country", "Pop/Rock"]) == ""  # two of the six: not scored
    assert check_label(["Classical"]) == ""  # trained on, not one of the team's six
    assert check_label(["R&B"]) == ""


def test_songs_become_clips_grouped_by_artist_with_their_sets() -> None:
    clips = fourq_clips([Path("a.opus"), Path("b.opus"), Path("c.opus")], ["Dismember", "dismember ", "Bob"],
                        [["Pop/Rock", "Electronic"], ["R&B"], ["Reggae"]], [False, False, True])
    assert [c.path.name for c in clips] == ["a.opus", "c.opus"]  # b maps to none of ours: left out
    metal, reggae = clips
    assert metal.group == "4q:dismember" and metal.split == "4q" and metal.check == "Pop/Rock"
    assert metal.mask.tolist() == [float(g in ("metal", "pop", "rock")) for g in GENRES]
    assert reggae.split == "4q_aside" and reggae.mask.sum() == 1 and reggae.genre == "reggae"


def test_the_partial_label_loss_on_a_tiny_case() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    masks = np.array([[0, 1, 1], [1, 0, 0]], float)
    loss, grad = partial_label_loss(logits, masks, np.array([1.0, 2.0]))
    # -log(0.3 + 0.2) for the set {1, 2}; twice -log(0.5) for the one-genre clip
    assert loss == pytest.approx(-np.log(0.5) - 2 * np.log(0.5))
    # the set's gradient moves mass from outside it to inside, in the proportions already given
    np.testing.assert_allclose(grad[0], [0.5, 0.3 - 0.6, 0.2 - 0.4])
    np.testing.assert_allclose(grad[1], 2 * np.array([0.5 - 1, 0.3, 0.2]))
    rng = np.random.default_rng(0)
    z, m = rng.standard_normal((6, 4)), (rng.random((6, 4)) < 0.5).astype(float)
    m[:, 2] = 1
    w = rng.random(6)
    error = check_grad(lambda v: partial_label_loss(v.reshape(6, 4), m, w)[0],
                       lambda v: partial_label_loss(v.reshape(6, 4), m, w)[1].ravel(), z.ravel())
    assert error < 1e-5


def test_a_partial_label_logistic_learns_the_genre_a_set_leaves_open() -> None:
    """Genre 0 and 1 have clean examples; the set {1, 2} examples sit at genre 2's place. The head learns that
    genre 2 is where they sit (a set the loss leaves open to it), and with one-genre sets it equals
    scikit-learn's logistic regression."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    truth = np.repeat([0, 1, 2], 60)
    x = centres[truth] + rng.standard_normal((len(truth), 2))
    masks = np.eye(3)[truth]
    masks[truth == 2] = [0, 1, 1]
    head = fit_partial_logistic(x, masks, np.ones(len(truth)), c=1.0)
    assert (head.log_proba(x).argmax(axis=1) == truth).mean() > 0.95
    one_genre = fit_partial_logistic(x, np.eye(3)[truth], np.ones(len(truth)), c=0.1)
    reference = LogisticRegression(C=0.1, max_iter=3000).fit(x, truth)
    np.testing.assert_allclose(one_genre.kernel, reference.coef_.T, atol=1e-3)


def test_class_weights_count_a_set_fractionally() -> None:
    masks = as_masks(np.array([0, 0, 0, 1]))
    assert clip_weights(masks).tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    assert clip_weights(masks, balance=0).tolist() == [1.0] * 4
    with_set = np.vstack([masks, np.eye(len(GENRES))[[0]] + np.eye(len(GENRES))[[1]]])
    weights = clip_weights(with_set)
    # genre 0 has 3.5 clips' worth, genre 1 1.5: the set's weight is the mean of theirs
    assert weights[-1] == pytest.approx((5 / (2 * 3.5) + 5 / (2 * 1.5)) / 2)


def test_every_mood4q_dev_song_with_one_of_the_six_is_mapped(shared_data: Path) -> None:
    from core.training.mood_sources import read_fourq

    fourq = read_fourq(shared_data / "mood4q-dev")
    clips = fourq_clips(fourq.files, fourq.artists, fourq.genres, fourq.untouched)
    checked = [c for c in clips if c.check]
    assert len(checked) == sum(bool(check_label(g)) for g in fourq.genres) > 300
    assert all(c.path.is_file() for c in clips)
    # no artist is on both sides of the set-aside line
    assert not {c.group for c in clips if c.split == "4q"} & {c.group for c in clips if c.split == "4q_aside"}


def test_cli_evaluate_genre_on_a_listed_folder(shared_data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`cratedigger evaluate --data DIR` with a tracks.csv: 4Q's AllMusic genres scored on the team's six
    labels (a Pop/Rock song is right as rock, pop or metal; a Country; Pop/Rock song is not scored), through
    the upload path. Here six songs of mood4q-dev listed by absolute path."""
    import csv
    import json

    from core.cli import main

    with open(shared_data / "mood4q-dev" / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = [next(r for r in rows if check_label(r["genres"].split(";")) == label)
              for label in ("Pop/Rock", "Jazz", "Rap")]
    picked.append(next(r for r in rows if r["genres"] == "Country; Pop/Rock"))
    with open(tmp_path / "tracks.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "genres"])
        writer.writeheader()
        writer.writerows({"file": str(shared_data / "mood4q-dev" / r["file"]), "genres": r["genres"]}
                         for r in picked)
    assert main(["evaluate", "--data", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["clips"] == 3 and doc["skipped"] == []
    assert set(doc["per_label"]) == {"Pop/Rock", "Jazz", "Rap"}
    for label, figures in doc["per_label"].items():
        assert figures["n"] == 1 and sum(figures["called"].values()) == 1
        called = next(iter(figures["called"]))
        assert figures["recall"] == float(called in {"Pop/Rock": ("rock", "pop", "metal"), "Jazz": ("jazz",),
                                                     "Rap": ("hiphop",)}[label])
    assert doc["macro"] == pytest.approx(np.mean([v["recall"] for v in doc["per_label"].values()]), abs=1e-4)
    with open(tmp_path / "tracks.csv", "w", newline="") as fh:
        fh.write("file,genres\nx.opus,Electronic\n")
    assert main(["evaluate", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lists no file with a genre" in err


def test_cli_train_genre_refuses_missing_data_and_unknown_variants_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    assert main(["train", "genre", "--shared", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no gtzan-audio folder" in err
    for folder in ("gtzan-audio", "gtzan-split", "emotify"):
        (tmp_path / folder).mkdir()
    assert main(["train", "genre", "--shared", str(tmp_path)]) == 2
    assert "no mood4q-dev folder" in capsys.readouterr().err
    (tmp_path / "mood4q-dev").mkdir()
    assert main(["train", "genre", "--shared", str(tmp_path), "--variants", "clean,flac"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "name clean and any of mp3, gain_noise, offset" in err
