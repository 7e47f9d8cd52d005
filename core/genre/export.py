"""Run the BiLSTM in the lightest runtime installed: LiteRT (TFLite) when its export is present, else Keras.

Why LiteRT first: it answers without importing TensorFlow. Measured on the project's 2-core machine with the
shipped model (64/32 units), each runtime in a fresh process, one thread: LiteRT loads in about 10 ms and
gives its first answer 0.2 s after start in 46 MB; Keras needs 3.3-3.8 s (importing TensorFlow) and
620 MB. A 30-s clip (10 segments) takes about 12-15 ms in either; 40 segments (a long track at the default
`max_segments`) about 50 ms in LiteRT against 25 ms in Keras, which batches better. Feature extraction
costs far more than either, so the load time and memory decide. Keras stays the reference and the fallback.

How the export works with TensorFlow 2.21 and Keras 3: Keras 3's LSTM is not the fused function the TFLite
converter recognises, and with a dynamic batch its TensorList ops only convert as Flex (select TF) ops,
which ai-edge-litert's interpreter cannot run. With a *static* batch the converter lowers the recurrence to
builtin WHILE loops, so the export takes a fixed batch of `LITE_BATCH` segments and the runner pads the last
chunk. Conversion goes through a SavedModel, which freezes the variables into constants (converting a Keras 3
concrete function directly leaves READ_VARIABLE ops that the interpreter runs uninitialised: NaN out).
Unrolling the 130 steps also converts (with a dynamic batch), but took 35-50 s instead of about 6 s and gave
a file three times larger, for a gain of about 5 ms per 30-s clip.

TensorFlow is imported only inside functions: the CLI and the bot import this module at start-up.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("litert", "keras")
"""Runtime preference, fastest first (by load time and per-clip latency, measured as described above)."""

LITE_BATCH = 10
"""Segments per LiteRT invocation: one 30-s clip. Shorter inputs are padded, longer ones run in chunks."""

DEFAULT_THREADS = 1
"""Per-call threads for inference. The model is small: on 2 shared cores a second thread made each call
slower, and the service already runs several analyses side by side."""

_tf_lock = threading.Lock()
_tf_threads: int | None = None


def tensorflow(threads: int = DEFAULT_THREADS) -> ModuleType:
    """Import TensorFlow quietly with a deliberate thread budget, once per process.

    TensorFlow fixes its thread pools when its runtime starts, so the first caller's `threads` wins; a later
    different request is logged, not an error."""
    global _tf_threads
    # TensorFlow's C++ INFO/WARNING lines would land on stderr at every start; an operator's setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    with _tf_lock:
        if _tf_threads is None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
                _tf_threads = threads
            except RuntimeError:  # someone started the runtime before us: keep what it has
                _tf_threads = tf.config.threading.get_intra_op_parallelism_threads()
        if _tf_threads != threads:
            log.debug("TensorFlow already runs with %s threads (asked for %s)", _tf_threads, threads)
    return tf


class Runner(Protocol):
    """Standardised MFCC sequences (n, frames, n_mfcc) float32 in, segment probabilities (n, classes) out."""

    runtime: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class KerasRunner:
    """A Keras model, loaded from its .keras file or still in memory (to score it before it is saved)."""

    runtime = "keras"

    def __init__(self, model: Any) -> None:
        self._model = model
        self._lock = threading.Lock()

    @classmethod
    def load(cls, keras_path: Path, threads: int = DEFAULT_THREADS) -> KerasRunner:
        tensorflow(threads)
        import keras

        return cls(keras.models.load_model(keras_path, compile=False))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Padded to a multiple of LITE_BATCH rows: every new batch size costs Keras a retrace (seconds and a
        warning); clips differ in segment count, so a handful of sizes must serve them all."""
        n = x.shape[0]
        padded = np.zeros((-(-n // LITE_BATCH) * LITE_BATCH, *x.shape[1:]), np.float32)
        padded[:n] = x
        with self._lock:
            return np.asarray(self._model.predict_on_batch(padded), dtype=np.float32)[:n]


XNNPACK_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
"""LiteRT prints this from C++ on every interpreter it builds, whatever TF_CPP_MIN_LOG_LEVEL says (the
runtime offers no Python switch for it). Without the XNNPACK delegate there is no line, but each 10-segment
batch took 19 ms instead of 12 ms here, so we keep the delegate and drop the line."""


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 while the block runs; re-log all of it except
    the XNNPACK notice, so that a user of `cratedigger genre` sees only our own output and nothing is lost."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by something without a descriptor
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and line.strip() != XNNPACK_NOTICE:
                    log.warning("LiteRT: %s", line)


class LiteRunner:
    """A LiteRT interpreter over a fixed-batch export. Interpreters are not thread-safe, hence the lock."""

    runtime = "litert"

    def __init__(self, tflite_path: Path, threads: int = DEFAULT_THREADS) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_to_log():
            self._interpreter = Interpreter(model_path=str(tflite_path), num_threads=threads)
            self._interpreter.allocate_tensors()
            inp = self._interpreter.get_input_details()[0]
            self._input = inp["index"]
            self._shape = tuple(int(d) for d in inp["shape"])
            self._output = self._interpreter.get_output_details()[0]["index"]
            self._interpreter.invoke()  # the delegate may be applied on the first run: let that happen here
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self._shape[1:]:
            raise ValueError(f"input of shape {x.shape} for a model that reads {self._shape}")
        batch = self._shape[0]
        out: list[np.ndarray] = []
        with self._lock:
            for start in range(0, x.shape[0], batch):
                chunk = x[start:start + batch]
                n = chunk.shape[0]
                if n < batch:
                    chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
                self._interpreter.set_tensor(self._input, np.ascontiguousarray(chunk))
                self._interpreter.invoke()
                out.append(self._interpreter.get_tensor(self._output)[:n].copy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def tflite_path_for(keras_path: Path) -> Path:
    return keras_path.with_suffix(".tflite")


def export_tflite(keras_path: Path, out_path: Path | None = None, *, batch: int = LITE_BATCH) -> Path:
    """Convert the .keras model to a fixed-batch .tflite next to it (or at `out_path`); written atomically."""
    tf = tensorflow()
    import keras

    out_path = out_path or tflite_path_for(keras_path)
    model = keras.models.load_model(keras_path, compile=False)
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32)
    with tempfile.TemporaryDirectory(prefix="bilstm-export-") as saved:
        model.export(saved, format="tf_saved_model", verbose=False, input_signature=[spec])
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
    with tempfile.NamedTemporaryFile(dir=out_path.parent, prefix=out_path.name, delete=False) as tmp:
        tmp.write(flatbuffer)
    os.chmod(tmp.name, 0o644)  # an artefact others read, not the private file mkstemp makes
    os.replace(tmp.name, out_path)
    log.info("exported %s (%d kB)", out_path, len(flatbuffer) // 1024)
    return out_path


def lite_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def open_runner(keras_path: Path, *, runtime: str | None = None, threads: int = DEFAULT_THREADS) -> Runner:
    """The first runtime of RUNTIMES whose artefact and package are present, or exactly `runtime`."""
    for name in (runtime,) if runtime else RUNTIMES:
        if name == "litert" and tflite_path_for(keras_path).is_file() and lite_available():
            return LiteRunner(tflite_path_for(keras_path), threads)
        if name == "keras" and keras_path.is_file():
            return KerasRunner.load(keras_path, threads)
    raise FileNotFoundError(f"no runnable {runtime or 'BiLSTM'} artefact for {keras_path}")
