"""What one analysed segment costs, and what each way of making it cheaper earns, side by side in one run.

On real library tracks at the library's coverage (--segments per track), one thread, CPU time of this
process (the machine is shared: CPU time is what "on one core" means when other processes steal it; the
ratios within one run are what to read, not the absolute figures):

- **decode**: today's `load_segments` (sections decoded and resampled to 22 050 Hz), then each segment
  resampled to the front-end's 16 kHz and turned into a log-mel patch;
- **resampling chain**: the same sections taken from the file at its own rate, resampled to 22 050 Hz and
  then to 16 kHz (today) or straight to 16 kHz (possible when no loaded model reads 22 050-Hz audio), and
  how far the network's outputs move between the two (the front-end's pipeline tolerance: a clip's mean
  embedding within cosine 0.985 of the reference pipeline's, models/frontend.md);
- **network**: the pruned front-end in LiteRT (today: one patch per invoke) and batched, and in ONNX
  Runtime fp32 and int8 (dynamic quantisation), converted from the shipped .tflite by tf2onnx into
  --cache on the first run; worst absolute difference from today's outputs (the artefact tolerance: 1e-4);
- **overlap**: the tracks analysed one after the other, against decoding the next track in a thread while
  the network runs on the current one (wall time: this is the one figure that is not CPU time).

    .venv/bin/python benchmarks/bench_segment_cost.py [--library DIR] [--tracks 12] [--segments 24]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core.audio import AUDIO_EXTENSIONS, load_segments  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.constants import FRONTEND_PATCH_FRAMES, FRONTEND_SAMPLE_RATE, SAMPLE_RATE  # noqa: E402
from core.frontend import OUTPUTS, artefact_path, load_frontend, log_mel, patches_from_segments  # noqa: E402
from core.runtime import LiteRunner  # noqa: E402

DEFAULT_CACHE = Path.home() / ".cache" / "cratedigger" / "segment-cost"
BATCHES = (1, 8, 32)


def cpu(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    """(best CPU seconds of this process over `repeats` runs, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        c0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c0)
    return best, out


def patches_16k(audio_16k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(log_mel(audio_16k)[:, :FRONTEND_PATCH_FRAMES, :])


def native_sections(path: Path, starts: np.ndarray, clip_seconds: float) -> tuple[list[np.ndarray], int]:
    """The analysed segments' spans (plus the trimmed lead-in, found again here) at the file's own rate."""
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    y22 = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    _, (lead, _) = librosa.effects.trim(y22, top_db=60, frame_length=2048, hop_length=512)
    seg = int(round(3.0 * sr)) + 64  # a little more than a segment, cut to length after resampling
    return [y[int((lead / SAMPLE_RATE + s) * sr):int((lead / SAMPLE_RATE + s) * sr) + seg] for s in starts], sr


def resample_chains(paths: list[Path], segments: int, max_seconds: float, network) -> dict[str, float]:
    import librosa

    from core.frontend import to_frontend_rate

    today_s = straight_s = 0.0
    cosines, diffs = [], []
    for path in paths:
        seg = load_segments(path, max_seconds=max_seconds, max_segments=segments)
        pieces, sr = native_sections(path, seg.starts, seg.clip_seconds)
        if sr not in (44_100, 48_000, 32_000, 22_050):
            continue
        n16 = 48_000

        def today() -> np.ndarray:
            y22 = [librosa.resample(p, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")[:66_149]
                   for p in pieces]
            return to_frontend_rate(np.stack([np.resize(p, 66_149) for p in y22]))[:, :n16]

        def straight() -> np.ndarray:
            return np.stack([np.resize(librosa.resample(p, orig_sr=sr, target_sr=FRONTEND_SAMPLE_RATE,
                                                        res_type="soxr_hq"), n16 + 64)[:n16] for p in pieces])

        t, a = cpu(today)
        s, b = cpu(straight)
        today_s, straight_s = today_s + t, straight_s + s
        out_a = network(patches_16k(a))["penultimate"]
        out_b = network(patches_16k(b))["penultimate"]
        ma, mb = out_a.mean(axis=0), out_b.mean(axis=0)
        cosines.append(float(ma @ mb / np.linalg.norm(ma) / np.linalg.norm(mb)))
        diffs.append(float(np.abs(out_a - out_b).max()))
    return {"today_s": today_s, "straight_s": straight_s, "min_cos": min(cosines), "max_diff": max(diffs),
            "tracks": len(cosines)}


def onnx_models(cache: Path, tflite: Path) -> dict[str, Path]:
    """fp32 (tf2onnx from the shipped .tflite) and int8 (dynamic quantisation) exports, made once."""
    cache.mkdir(parents=True, exist_ok=True)
    stamp = f"{tflite.stat().st_size}-{int(tflite.stat().st_mtime)}"
    fp32, int8 = cache / f"frontend-{stamp}.onnx", cache / f"frontend-{stamp}.int8.onnx"
    if not fp32.is_file():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tf2onnx

        tf2onnx.convert.from_tflite(str(tflite), output_path=str(fp32))
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"onnx fp32": fp32, "onnx int8": int8}


class OnnxRunner:
    """ONNX Runtime on one thread; outputs matched to ours by width (200 = penultimate, 50 = tags)."""

    def __init__(self, path: Path, batch: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.batch = batch

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUTS}
        for start in range(0, len(x), self.batch):
            outs = self.session.run(None, {self.input: x[start:start + self.batch]})
            for out in outs:
                parts["penultimate" if out.shape[-1] == 200 else "tags"].append(out)
        return {k: np.concatenate(v) for k, v in parts.items()}


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(env_file=None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "library")
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--segments", type=int, default=settings.library_segments)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.library.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)[:args.tracks]
    frontend = load_frontend(settings.models_dir, threads=1)
    max_s = settings.max_clip_seconds
    print(f"{len(paths)} tracks of {args.library}, {args.segments} segments each, one thread, CPU seconds "
          f"of this process (load average {os.getloadavg()[0]:.1f}: read the ratios)")

    decode_s, segs = cpu(lambda: [load_segments(p, max_seconds=max_s, max_segments=args.segments) for p in paths])
    patch_s, patches = cpu(lambda: np.concatenate([patches_from_segments(s.audio) for s in segs]))
    n = len(patches)
    print(f"\n{n} segments. per segment: decode + cut {1e3 * decode_s / n:.1f} ms, resample to 16 kHz + "
          f"log-mel {1e3 * patch_s / n:.1f} ms")

    chains = resample_chains(paths, args.segments, max_s, frontend)
    print(f"resampling the sections ({chains['tracks']} tracks): file rate -> 22 050 -> 16 kHz "
          f"{1e3 * chains['today_s'] / n:.1f} ms a segment, straight to 16 kHz {1e3 * chains['straight_s'] / n:.1f}"
          f" ms; outputs moved by up to {chains['max_diff']:.3g}, clip mean embedding cosine >= "
          f"{chains['min_cos']:.4f} (tolerance 0.985)")

    tflite = artefact_path(settings.models_dir).with_suffix(".tflite")
    runners: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]] = {
        f"litert batch {b}": LiteRunner(tflite, 1, batch=b) for b in BATCHES}
    try:
        for name, path in onnx_models(args.cache, tflite).items():
            for b in BATCHES:
                runners[f"{name} batch {b}"] = OnnxRunner(path, b)
    except Exception as exc:  # noqa: BLE001 - report a missing converter or runtime, measure the rest
        print(f"ONNX not measured: {exc!r}")
    reference = runners["litert batch 1"](patches)
    print(f"\n{'network':<22} {'ms/segment':>10} {'vs today':>8} {'max |diff| penultimate':>23} {'tags':>9}")
    today = None
    for name, runner in runners.items():
        seconds, out = cpu(lambda r=runner: r(patches), repeats=3)
        today = today or seconds
        diff = {k: float(np.abs(out[k] - reference[k]).max()) for k in OUTPUTS}
        print(f"{name:<22} {1e3 * seconds / n:>10.2f} {today / seconds:>7.2f}x {diff['penultimate']:>23.2e} "
              f"{diff['tags']:>9.2e}")

    def serial() -> None:
        for p in paths:
            frontend.embed_segments(load_segments(p, max_seconds=max_s, max_segments=args.segments).audio)

    def overlapped() -> None:
        with ThreadPoolExecutor(max_workers=1) as decoder:
            pending = decoder.submit(load_segments, paths[0], max_seconds=max_s, max_segments=args.segments)
            for nxt in [*paths[1:], None]:
                seg = pending.result()
                if nxt is not None:
                    pending = decoder.submit(load_segments, nxt, max_seconds=max_s, max_segments=args.segments)
                frontend.embed_segments(seg.audio)

    for name, fn in (("one after the other", serial), ("decode overlapped", overlapped)):
        w0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - w0
        print(f"{name:<22} {len(paths) / wall:6.2f} tracks/s wall, one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
