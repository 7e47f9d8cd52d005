"""The genre BiLSTM over front-end embeddings: its NumPy runtime equals Keras, it learns, it is saved, loaded,
checked and chosen by the manifest, and the training protocol keeps recordings on one side of every split.

Synthetic embedding sequences stand in for audio here (genre = a direction in embedding space plus noise);
the real model's figures come from `cratedigger train genre` on the team's data (models/genre-bilstm.md).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.constants import GENRES
from core.errors import ModelMismatch
from core.genre.bilstm import load, log_softmax
from core.training.genre_data import Clip
from core.training.genre_heads import HeadConfig, build_bilstm, fit_head, keras_weights
from core.training.genre_train import Data, calibration, cross_validate, folds, save, train
from core.training.genre_weak import fourq_clips
from tests.conftest import REPO_ROOT, needs_tensorflow

MODELS = REPO_ROOT / "models"


def synthetic_data(clips_per_genre: int = 6, seed: int = 0, songs: int = 0) -> Data:
    """Clips of 1-8 segments; each genre's embeddings scatter around a centre of its own. With `songs`,
    Emotify-like excerpts and that many 4Q-like weakly-labelled songs (two per artist, some artists set
    aside) join them, read through core.training.genre_weak as the real ones are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(GENRES), 200)) * 0.8
    clips, sequences = [], {"clean": [], "mp3": []}

    def add(clip: Clip, genre: str, n: int) -> None:
        clips.append(clip)
        clean = centres[GENRES.index(genre)] + rng.standard_normal((n, 200))
        sequences["clean"].append(clean.astype(np.float32))
        sequences["mp3"].append((clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32))

    for genre in GENRES:
        for i in range(clips_per_genre):
            kind = "short2to3s_22k" if i % 2 else "full30_22k"
            add(Clip(f"gtzan:{genre}/{genre}.{i:05d}", genre, "train" if i < 4 else "valid", kind,
                     Path(f"{genre}.{i:05d}.opus")), genre, 1 if kind.startswith("short") else int(rng.integers(2, 9)))
    if songs:
        for i, genre in enumerate(("classical", "rock", "pop") * 4):
            add(Clip(f"emotify:{i:03d}", genre, "emotify", "emotify", Path(f"e{i}.opus")), genre, 6)
        kinds = ((["Jazz", "Vocal"], "jazz"), (["Pop/Rock"], "metal"), (["Country", "Pop/Rock"], "country"),
                 (["Rap"], "hiphop"), (["Blues", "R&B"], "blues"), (["Pop/Rock", "Electronic"], "pop"))
        files = [Path(f"4q{i}.opus") for i in range(songs)]
        genres = [kinds[i % len(kinds)][0] for i in range(songs)]
        for clip in fourq_clips(files, [f"artist {i // 2}" for i in range(songs)], genres,
                                [i // 2 % 7 == 0 for i in range(songs)]):
            add(clip, kinds[int(clip.path.stem[2:]) % len(kinds)][1], 10)
    return Data(clips, sequences)


@needs_tensorflow
@pytest.mark.parametrize("skip", [True, False])
def test_numpy_runtime_equals_keras(skip: bool) -> None:
    model = build_bilstm(8, 0.3, skip)
    rng = np.random.default_rng(1)
    model.set_weights([(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()])
    weights = keras_weights(model)
    for n in (1, 4, 40):
        x = rng.standard_normal((n, 200)).astype(np.float32)
        expected = model.predict_on_batch(x[None])[0]
        ours = np.exp(log_softmax(weights.logits(x.astype(np.float64))))
        np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


@needs_tensorflow
def test_the_bilstm_learns_and_round_trips(tmp_path: Path) -> None:
    data = synthetic_data()
    train_idx = [i for i, c in enumerate(data.clips) if c.split == "train"]
    valid_idx = [i for i, c in enumerate(data.clips) if c.split == "valid"]
    head = fit_head(*data.training_set(train_idx), HeadConfig("bilstm", units=8, epochs=25, seed=3))
    hits = [head.segment_log_probs(data.sequences["clean"][i]).mean(axis=0).argmax() == data.clips[i].label
            for i in valid_idx]
    assert np.mean(hits) >= 0.8, f"valid accuracy {np.mean(hits):.2f} on separable synthetic genres"
    # saved with the front-end beside it (the loader needs it), loaded by the manifest's loader
    for suffix in (".keras", ".tflite", ".json"):
        shutil.copy(MODELS / f"frontend_msd_musicnn{suffix}", tmp_path)
    save(head, tmp_path, temperature=1.7, training={"test": True})
    model = load(tmp_path / "genre_bilstm.npz", {"name": "synthetic"})
    assert model.name == "synthetic" and model.sidecar.temperature == 1.7
    x = data.sequences["clean"][valid_idx[0]]
    np.testing.assert_allclose(model.segment_log_probs(x), head.segment_log_probs(x), atol=1e-5)


@needs_tensorflow
def test_training_is_deterministic() -> None:
    data = synthetic_data(clips_per_genre=2)
    seqs, labels = data.training_set(range(len(data.clips)))
    config = HeadConfig("bilstm", units=4, epochs=2, seed=5)
    a, b = fit_head(seqs, labels, config), fit_head(seqs, labels, config)
    for x, y in zip(a.weights.arrays().values(), b.weights.arrays().values()):
        np.testing.assert_array_equal(x, y)


def test_folds_keep_every_recording_on_one_side() -> None:
    data = synthetic_data()
    # a second copy of each track (another kind of the same recording) shares its group
    data.clips += [Clip(c.group, c.genre, c.split, "full30_16k", c.path) for c in data.clips[:10]]
    for v in data.sequences:
        data.sequences[v] += data.sequences[v][:10]
    everything = list(range(len(data.clips)))
    held = folds(data, everything, 3, seed=0)
    assert sorted(np.concatenate(held).tolist()) == everything
    for test in held:
        inside = {data.clips[i].group for i in test}
        outside = {data.clips[i].group for i in everything if i not in set(test.tolist())}
        assert not inside & outside


def test_calibration_fits_a_temperature_and_cross_fits_its_ece() -> None:
    data = synthetic_data()
    scores = cross_validate(data, HeadConfig("logistic", c=0.1), range(len(data.clips)), k=3)
    result = calibration(scores, data)
    assert 0.05 < result["temperature"] < 50
    assert 0 <= result["ece"] <= 1 and 0 <= result["ece_untempered"] <= 1


@needs_tensorflow
def test_train_chooses_saves_and_reports(tmp_path: Path) -> None:
    data = synthetic_data(songs=28)
    for suffix in (".keras", ".tflite", ".json"):
        shutil.copy(MODELS / f"frontend_msd_musicnn{suffix}", tmp_path)
    candidates = (HeadConfig("logistic", c=0.1, weak="partial"), HeadConfig("bilstm", units=4, epochs=3),
                  HeadConfig("bilstm", units=4, epochs=3, weak="clean"))
    report = train(data, tmp_path, k=2, candidates=candidates, seeds=(), command="test")
    assert [c["name"] for c in report.candidates] == [c.name for c in candidates]
    assert report.chosen["config"]["kind"] == "bilstm"
    assert {Path(f).name for f in report.files} == {"genre_bilstm.keras", "genre_bilstm.npz", "genre_bilstm.json"}
    sidecar = json.loads((tmp_path / "genre_bilstm.json").read_text())
    assert sidecar["temperature"] == report.calibration["temperature"]
    for candidate in report.candidates:  # every check of the protocol is scored for every candidate
        assert set(candidate["macro"]) == {"gtzan_full", "gtzan_cut", "emotify", "4q"}
        assert set(candidate["scores"]["clean"]["4q"]["per_genre"]) <= {"Jazz", "Pop/Rock", "Rap", "Blues"}
    # the set-aside artists are scored once, by a fit that did not see them
    assert report.untouched["clean"]["4q_aside"]["n"] == sum(c.split == "4q_aside" and bool(c.check)
                                                             for c in data.clips)
    # the confusion counts the held-out clips with one true genre: GTZAN valid, Emotify, one-genre songs
    one_genre = [c for c in data.clips if len(c.allowed) <= 1 and c.split in ("valid", "emotify", "4q")]
    assert sum(sum(row) for row in report.confusion_cv) == len(one_genre)


def test_mismatched_sidecars_are_refused(tmp_path: Path) -> None:
    for suffix in (".keras", ".tflite", ".json"):
        shutil.copy(MODELS / f"frontend_msd_musicnn{suffix}", tmp_path)
    for suffix in (".npz", ".json", ".keras"):
        shutil.copy(MODELS / f"genre_bilstm{suffix}", tmp_path)
    sidecar = json.loads((tmp_path / "genre_bilstm.json").read_text())
    for key, value, match in (("constants", {"sample_rate": 44_100}, "sample_rate"),
                              ("frontend", {"n_mels": 128}, "front-end"),
                              ("mean", [0.0] * 13, "standardises")):
        broken = json.loads(json.dumps(sidecar))
        broken[key] = {**broken[key], **value} if isinstance(value, dict) else value
        (tmp_path / "genre_bilstm.json").write_text(json.dumps(broken))
        with pytest.raises(ModelMismatch, match=match):
            load(tmp_path / "genre_bilstm.npz")


def test_without_the_front_end_the_manifest_falls_back(tmp_path: Path) -> None:
    from core.genre import load_genre_model

    for name in ("manifest.json", "genre_bilstm.npz", "genre_bilstm.json", "genre_descriptor.json"):
        shutil.copy(MODELS / name, tmp_path)
    model = load_genre_model(tmp_path)  # no frontend_msd_musicnn.* here
    assert model is not None and model.name.startswith("descriptor")
    for suffix in (".keras", ".tflite", ".json"):
        shutil.copy(MODELS / f"frontend_msd_musicnn{suffix}", tmp_path)
    assert load_genre_model(tmp_path).name == json.loads((MODELS / "manifest.json").read_text())["genre"][0]["name"]
