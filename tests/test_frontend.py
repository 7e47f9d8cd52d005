"""Our port of musicnn's MSD_musicnn front-end against the original graph, on real clips.

`tests/data/frontend_reference.npz` holds the original graph's outputs (the musicnn package run by
core.training.musicnn_reference, with the float32 fix) for the eight demo clips, made with

    TF_USE_LEGACY_KERAS=1 python -m core.training.musicnn_reference tests/data/frontend_reference.npz demo/clips/*.ogg

so this runs in CI without musicnn; a live comparison runs too when musicnn and tf-keras are installed.
Tolerances: on the same log-mel patches, 1e-4 absolute on `penultimate` (values up to about 3; measured
worst 2.4e-6 in Keras, 8.7e-6 in LiteRT) and on the tag probabilities. From audio file to embedding through
the package's own pipeline (librosa.load at 16 kHz over the whole file, instead of our 22 050-Hz segments
resampled one by one), the clip's mean embedding keeps a cosine of at least 0.985 (measured 0.991-0.999).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.audio import load_segments
from core.constants import FRONTEND_LOG_SCALE, SAMPLE_RATE, SEGMENT_SAMPLES
from core.errors import ModelMismatch
from core.frontend import ARTEFACT, artefact_path, load_frontend, log_mel, patches_from_segments
from tests.conftest import REPO_ROOT, needs_tensorflow

MODELS = REPO_ROOT / "models"
DEMO = sorted((REPO_ROOT / "demo" / "clips").glob("*.ogg"))
REFERENCE = REPO_ROOT / "tests" / "data" / "frontend_reference.npz"
PATCH_ATOL = 1e-4
TRACK_COSINE = 0.985


def demo_patches(path: Path) -> np.ndarray:
    return patches_from_segments(load_segments(path, max_seconds=1200, max_segments=40).audio)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("runtime", ["litert", "onnx", pytest.param("keras", marks=needs_tensorflow)])
def test_our_network_gives_the_original_graphs_outputs(runtime: str, reference: dict[str, np.ndarray]) -> None:
    frontend = load_frontend(MODELS, runtime=runtime)
    assert frontend.runtime == runtime
    for i, path in enumerate(DEMO):
        assert str(reference[f"{i}/name"]) == path.name
        ours = frontend(demo_patches(path))
        for layer in ("penultimate", "tags"):
            expected = reference[f"{i}/ours/{layer}"]
            assert ours[layer].shape == expected.shape
            np.testing.assert_allclose(ours[layer], expected, rtol=0, atol=PATCH_ATOL,
                                       err_msg=f"{path.name} {layer} ({runtime})")


def test_from_file_to_embedding_agrees_with_the_packages_own_pipeline(reference: dict[str, np.ndarray]) -> None:
    frontend = load_frontend(MODELS)
    for i, path in enumerate(DEMO):
        ours = frontend(demo_patches(path))["penultimate"].mean(axis=0)
        theirs = reference[f"{i}/package/penultimate"].mean(axis=0)
        cosine = float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs))
        assert cosine >= TRACK_COSINE, f"{path.name}: cosine {cosine:.4f}"


def test_loud_audio_stays_finite_where_the_packages_float16_step_overflows() -> None:
    t = np.arange(48_000) / 16_000
    loud = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)  # a full-scale square wave
    ours = log_mel(loud)
    assert np.isfinite(ours).all()
    mel_power = (10 ** ours - 1) / FRONTEND_LOG_SCALE
    with np.errstate(over="ignore"):
        package_step = np.log10(FRONTEND_LOG_SCALE * mel_power.astype(np.float16) + 1)
    assert not np.isfinite(package_step).all(), "the float16 step no longer overflows here: pick louder audio"


def test_a_segment_is_one_patch_of_187_frames_by_96_bands() -> None:
    rng = np.random.default_rng(0)
    segments = (0.1 * rng.standard_normal((3, SEGMENT_SAMPLES))).astype(np.float32)
    assert patches_from_segments(segments).shape == (3, 187, 96)
    assert SEGMENT_SAMPLES / SAMPLE_RATE == pytest.approx(3.0, abs=1e-3)


def _network_with_dead_filters(live: list[int]) -> object:
    """The architecture with random weights, biases and batch-norm statistics, and all but `live` filters of
    each front-end convolution zeroed: dead, as most of MSD_musicnn's are."""
    from core.training.musicnn_port import FRONTEND_FILTERS, build_network, conv_name

    rng = np.random.default_rng(0)
    model = build_network()
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.name.startswith("batch_normalization"):
            n = weights[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.5, 2.0, n)])
        elif weights:
            layer.set_weights([weights[0], rng.normal(0, 0.5, weights[1].shape)])
    for i, (keep, filters) in enumerate(zip(live, FRONTEND_FILTERS)):
        kernel, bias = model.get_layer(conv_name(i)).get_weights()
        kernel[..., rng.permutation(filters)[keep:]] = 0.0
        model.get_layer(conv_name(i)).set_weights([kernel, bias])
    return model


@needs_tensorflow
def test_pruning_the_dead_filters_leaves_every_output_where_it_was() -> None:
    from core.training.musicnn_port import prune

    live = [23, 14, 3, 7, 17]
    model = _network_with_dead_filters(live)
    pruned, kept = prune(model, demo_patches(DEMO[0]))
    assert kept == live
    assert pruned.count_params() < model.count_params() / 2
    unseen = demo_patches(DEMO[1])  # not the probe prune checked itself on
    before, after = model.predict(unseen, verbose=0), pruned.predict(unseen, verbose=0)
    assert np.abs(before["penultimate"]).max() > 0.1  # the comparison is not between two zero outputs
    for layer in ("penultimate", "tags"):
        np.testing.assert_allclose(after[layer], before[layer], rtol=0, atol=PATCH_ATOL)


@needs_tensorflow
def test_pruning_that_would_drop_live_filters_is_refused() -> None:
    from core.training.musicnn_port import prune

    model = _network_with_dead_filters([23, 14, 3, 7, 17])
    with pytest.raises(ValueError, match="moves the outputs"):
        prune(model, demo_patches(DEMO[0]), tolerance=0.9)  # 'dead' below 90 % of the largest kernel's norm


@needs_tensorflow
def test_a_network_with_no_dead_filter_is_left_as_it_is() -> None:
    from core.training.musicnn_port import FRONTEND_FILTERS, prune

    model = _network_with_dead_filters(list(FRONTEND_FILTERS))
    pruned, kept = prune(model, demo_patches(DEMO[0]))
    assert kept == list(FRONTEND_FILTERS) and pruned is model


@needs_tensorflow
def test_the_shipped_network_is_the_pruned_one() -> None:
    """The speed the card reports is the pruned network's: 64 front-end filters of 561, as its sidecar says."""
    from core.runtime import tensorflow
    from core.training.musicnn_port import FRONTEND_FILTERS, conv_name

    tensorflow()
    import keras

    network = keras.models.load_model(artefact_path(MODELS))
    filters = [network.get_layer(conv_name(i)).get_weights()[0].shape[-1] for i in range(len(FRONTEND_FILTERS))]
    assert sum(filters) == 64
    assert filters == load_frontend(MODELS, runtime="keras").sidecar.origin["frontend_filters"]["kept"]


def test_an_artefact_made_with_other_constants_is_refused(tmp_path: Path) -> None:
    for suffix in (".keras", ".tflite", ".json"):
        shutil.copy(artefact_path(MODELS).with_suffix(suffix), tmp_path / f"{ARTEFACT}{suffix}")
    sidecar = tmp_path / f"{ARTEFACT}.json"
    raw = json.loads(sidecar.read_text())
    raw["constants"]["n_mels"] = 128
    sidecar.write_text(json.dumps(raw))
    with pytest.raises(ModelMismatch, match="n_mels"):
        load_frontend(tmp_path)


def test_without_a_litert_export_the_front_end_runs_on_onnx_runtime(tmp_path: Path) -> None:
    """Where no LiteRT wheel exists, pip installs ONNX Runtime instead; the .tflite's absence stands in."""
    for suffix in (".onnx", ".json"):
        shutil.copy(artefact_path(MODELS).with_suffix(suffix), tmp_path / f"{ARTEFACT}{suffix}")
    frontend = load_frontend(tmp_path)
    assert frontend.runtime == "onnx"
    patches = demo_patches(DEMO[0])
    expected = load_frontend(MODELS, runtime="litert")(patches)
    for layer, values in frontend(patches).items():
        np.testing.assert_allclose(values, expected[layer], rtol=0, atol=PATCH_ATOL)


def test_with_no_runtime_for_any_export_the_error_says_what_to_install(tmp_path: Path) -> None:
    shutil.copy(artefact_path(MODELS).with_suffix(".json"), tmp_path / f"{ARTEFACT}.json")
    with pytest.raises(FileNotFoundError, match="install ai-edge-litert or onnxruntime"):
        load_frontend(tmp_path)


def test_the_runtime_needs_neither_musicnn_nor_tensorflow() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.analysis import Limits, analyse\n"
        f"r = analyse(Path({str(DEMO[0])!r}), Limits(Path({str(MODELS)!r}), 1200, 40))\n"
        "assert r.genre is not None and r.embedding is not None\n"
        "loaded = sorted(m for m in ('musicnn', 'tf_keras', 'tensorflow', 'keras') if m in sys.modules)\n"
        "print(','.join(loaded) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "none"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("musicnn") is None or importlib.util.find_spec("tf_keras") is None,
                    reason="musicnn and tf-keras are not installed (pip install --no-deps musicnn tf-keras): "
                           "the committed reference outputs are checked instead")
def test_live_against_the_installed_musicnn_graph(tmp_path: Path) -> None:
    out = tmp_path / "live.npz"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-m", "core.training.musicnn_reference", str(out), *map(str, DEMO[:2])],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=600)
    frontend = load_frontend(MODELS)
    with np.load(out) as live:
        for i, path in enumerate(DEMO[:2]):
            ours = frontend(demo_patches(path))
            for layer in ("penultimate", "tags"):
                np.testing.assert_allclose(ours[layer], live[f"{i}/ours/{layer}"], rtol=0, atol=PATCH_ATOL)


def test_litert_load_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """`cratedigger genre` output is ours alone: LiteRT's C++ XNNPACK notice must not reach the terminal."""
    from core.runtime import LiteRunner

    capfd.readouterr()
    runner = LiteRunner(artefact_path(MODELS).with_suffix(".tflite"))
    assert runner(np.zeros((3, 187, 96), np.float32))["penultimate"].shape == (3, 200)
    assert capfd.readouterr().err == ""


def test_other_native_stderr_is_kept_as_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from core.runtime import XNNPACK_NOTICE, native_stderr_to_log

    with caplog.at_level("WARNING", logger="core.runtime"), native_stderr_to_log():
        os.write(sys.stderr.fileno(), f"{XNNPACK_NOTICE}\nERROR: something native broke\n".encode())
    assert [r.getMessage() for r in caplog.records] == ["LiteRT: ERROR: something native broke"]
