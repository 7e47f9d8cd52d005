"""core.embedding: unit vectors that ignore level and codec low-passing, yet tell timbres apart.

musicnn-v1 (the shipped kind) runs the real front-end on synthesised clips; descriptor-v1 (kept for the
benchmark's side-by-side comparison) is checked on its own recipe."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from core import audio, embedding, features
from core.constants import SAMPLE_RATE
from core.embedding import EMBEDDING_DIM, EMBEDDING_KIND, EMBEDDERS, embed
from core.features import DESCRIPTOR_NAMES, SegmentFeatures
from core.frontend import load_frontend
from tests.conftest import REPO_ROOT, synth_tone

OLD = "descriptor-v1"


@pytest.fixture(scope="module")
def network():
    return load_frontend(REPO_ROOT / "models")


def features_of(y: np.ndarray, network=None) -> SegmentFeatures:
    return features.extract(audio.segment(y, max_segments=40),
                            network.embed_segments if network is not None else None)


def old(f: SegmentFeatures) -> np.ndarray:
    return embed(f, kind=OLD)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def broadband(seconds: float = 6.0, seed: int = 1) -> np.ndarray:
    """A tone over pink-ish noise: energy up to the top of the band, as real mixes have."""
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.standard_normal(int(seconds * SAMPLE_RATE))) * 0.02
    noise = noise - scipy.signal.savgol_filter(noise, 101, 2)
    y = synth_tone(seconds, freq=330.0, seed=seed) + 0.5 * noise / np.max(np.abs(noise))
    return (0.4 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="module")
def tone_features() -> SegmentFeatures:
    return features_of(synth_tone(6.0, freq=220.0))


def test_shipped_kind_is_the_front_end_mean(network):
    f = features_of(synth_tone(6.0, freq=220.0), network)
    v = embed(f)
    assert EMBEDDING_KIND == "musicnn-v1" and v.dtype == np.float32
    assert v.shape == (EMBEDDING_DIM,) == (EMBEDDERS[EMBEDDING_KIND].dim,) == (200,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(v, f.embeddings.mean(axis=0) / np.linalg.norm(f.embeddings.mean(axis=0)),
                               atol=1e-6)
    assert f.computed() == ["embeddings"]  # no descriptor was computed for it


def test_front_end_kind_keeps_a_clip_through_level_and_low_passing_and_tells_timbres_apart(network):
    y = broadband()
    v = embed(features_of(y, network))
    sos = scipy.signal.butter(10, 8000, fs=SAMPLE_RATE, output="sos")
    lowpassed = scipy.signal.sosfiltfilt(sos, y).astype(np.float32)
    rng = np.random.default_rng(3)
    hiss = (0.2 * rng.standard_normal(6 * SAMPLE_RATE)).astype(np.float32)
    near = {"quieter": cosine(v, embed(features_of(0.3 * y, network))),
            "low-passed": cosine(v, embed(features_of(lowpassed, network)))}
    far = cosine(v, embed(features_of(hiss, network)))
    # The front-end's log-mel is log(1 + 10000 x): level is not fully divided out, so a copy
    # 10 dB quieter stays "close" rather than "very close" (measured 0.85); losing the top
    # octave barely moves it (0.9999).
    assert near["low-passed"] > EMBEDDERS[EMBEDDING_KIND].very_close, near
    assert near["quieter"] > EMBEDDERS[EMBEDDING_KIND].close, near
    assert far < min(near.values()) - 0.1, (far, near)


def test_descriptor_kind_is_unit_float32_of_its_dimension(tone_features):
    v = old(tone_features)
    assert v.dtype == np.float32 and v.shape == (EMBEDDERS[OLD].dim,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_louder_and_quieter_copies_embed_close(tone_features):
    y = synth_tone(6.0, freq=220.0)
    v = old(tone_features)
    for gain in (0.25, 2.5):
        assert cosine(v, old(features_of(y * gain))) > 0.99


def test_very_different_timbres_embed_far():
    low_tone = old(features_of(synth_tone(6.0, freq=110.0)))
    rng = np.random.default_rng(3)
    hiss = old(features_of((0.2 * rng.standard_normal(6 * SAMPLE_RATE)).astype(np.float32)))
    same_tone_later = old(features_of(synth_tone(6.0, freq=110.0, seed=7)))
    assert cosine(low_tone, hiss) < 0.3
    assert cosine(low_tone, same_tone_later) > 0.95


def test_low_passing_like_a_low_bitrate_codec_moves_the_descriptor_recipe_less_than_plain_mfccs():
    y = broadband()
    sos = scipy.signal.butter(10, 8000, fs=SAMPLE_RATE, output="sos")
    lowpassed = scipy.signal.sosfiltfilt(sos, y).astype(np.float32)
    original, copy = features_of(y), features_of(lowpassed)
    full_band = embedding.DescriptorRecipe(kept_mel_bands=128, cepstral_coefficients=20)
    shipped = cosine(old(original), old(copy))
    plain = cosine(embedding.descriptor_embedding(original, full_band),
                   embedding.descriptor_embedding(copy, full_band))
    assert shipped > 0.9
    assert shipped > plain


def with_descriptors(f: SegmentFeatures, descriptors: np.ndarray) -> SegmentFeatures:
    return SegmentFeatures(None, starts=f.starts, clip_seconds=f.clip_seconds, descriptors=descriptors)


def test_rms_hpss_and_tempo_columns_are_not_read(tone_features):
    """So reindexing with this kind may skip HPSS and the beat tracker, the slow descriptors."""
    unused = [i for i, name in enumerate(DESCRIPTOR_NAMES)
              if name.split("_")[0] in {"rms", "harmony", "perceptr", "tempo"}]
    scrambled = tone_features.descriptors.copy()
    scrambled[:, unused] = np.random.default_rng(0).uniform(1e-3, 500.0, size=(len(scrambled), len(unused)))
    np.testing.assert_array_equal(old(with_descriptors(tone_features, scrambled)), old(tone_features))


def test_overall_level_in_mfcc1_does_not_move_the_embedding(tone_features):
    """MFCC 1 is the log energy: a gain adds a constant to it, which the embedding must ignore."""
    shifted = tone_features.descriptors.copy()
    shifted[:, DESCRIPTOR_NAMES.index("mfcc1_mean")] += 25.0
    moved = old(with_descriptors(tone_features, shifted))
    np.testing.assert_allclose(moved, old(tone_features), atol=1e-6)


def test_track_statistics_pool_segments_like_one_long_clip():
    rng = np.random.default_rng(5)
    frames = rng.gamma(2.0, size=(4, 28, 130)) * rng.uniform(0.5, 3.0, size=(4, 1, 1))
    per_segment = np.zeros((4, len(DESCRIPTOR_NAMES)))
    pairs = [i for i, name in enumerate(DESCRIPTOR_NAMES) if name.endswith("_mean")]
    for j, i in enumerate(pairs):
        per_segment[:, i] = frames[:, j].mean(axis=1)
        per_segment[:, i + 1] = frames[:, j].var(axis=1)
    pooled = embedding.track_statistics(per_segment)
    for j, i in enumerate(pairs):
        assert pooled[i] == pytest.approx(frames[:, j].mean())
        assert pooled[i + 1] == pytest.approx(frames[:, j].var())


def test_band_limited_map_without_a_band_limit_is_the_identity():
    np.testing.assert_allclose(embedding.band_limited_cepstrum_map(128, 20), np.eye(20), atol=1e-12)


def test_unknown_kind_is_refused_with_the_known_ones(tone_features):
    with pytest.raises(ValueError, match=EMBEDDING_KIND):
        embed(tone_features, kind="nope-v0")


@pytest.mark.shared_data
def test_shipped_statistics_are_the_gtzan_training_rows(shared_data: Path):
    fitted = embedding.fit_descriptor_stats(embedding.read_training_table(shared_data))
    shipped = json.loads(embedding.STATS_FILE.read_text())
    assert shipped["rows"] == fitted["rows"] == 405
    for name in DESCRIPTOR_NAMES:
        for key, value in fitted["columns"][name].items():
            assert shipped["columns"][name][key] == pytest.approx(value, rel=1e-9), (name, key)
    np.testing.assert_allclose(shipped["mfcc_cov"], fitted["mfcc_cov"], rtol=1e-9)
