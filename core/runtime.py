"""Run our Keras models in the fastest runtime installed: ONNX Runtime (a runtime dependency on every
platform), else LiteRT (the `litert` extra, where its wheel exists), else Keras, which imports TensorFlow:
seconds and hundreds of MB, so only in a training install (the `train` extra), never at CLI or bot start.
ONNX Runtime leads because the pruned front-end runs 2.47x faster on it than on LiteRT with XNNPACK (6.8
against 16.9 ms a segment, benchmarks/bench_segment_cost.py), within 1e-4 of the reference
(models/frontend.md).

Each artefact is `<stem>.keras` (the reference, and the last-resort runtime) with optional `<stem>.tflite`
and `<stem>.onnx` exports beside it (the ONNX one converted from the .tflite, core.training.onnx_export).
Every runner takes one float32 array and returns a dict of named float32 outputs.

TensorFlow is imported only inside functions, with a deliberate thread budget (`tensorflow()`).
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

from core.extras import importable

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("onnx", "litert", "keras")
"""Runtime preference, fastest first."""

DEFAULT_THREADS = 1
"""Per-call threads for inference: the service already runs several analyses side by side."""

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
    runtime: str

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


class KerasRunner:
    """A Keras model with named outputs, from its .keras file or still in memory."""

    runtime = "keras"

    def __init__(self, model: Any, batch: int = 8) -> None:
        self._model = model
        self._batch = batch
        self._lock = threading.Lock()

    @classmethod
    def load(cls, keras_path: Path, threads: int = DEFAULT_THREADS) -> KerasRunner:
        tensorflow(threads)
        import keras

        return cls(keras.models.load_model(keras_path, compile=False))

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Padded to a multiple of the batch: every new input shape costs Keras a retrace (seconds)."""
        n = x.shape[0]
        padded = np.zeros((-(-n // self._batch) * self._batch, *x.shape[1:]), np.float32)
        padded[:n] = x
        with self._lock:
            out = self._model.predict_on_batch(padded)
        if not isinstance(out, dict):
            out = {"output": out}
        return {k: np.asarray(v, np.float32)[:n] for k, v in out.items()}


XNNPACK_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
"""LiteRT prints this from C++ on every interpreter it builds, whatever TF_CPP_MIN_LOG_LEVEL says (the
runtime offers no Python switch for it). Without the XNNPACK delegate there is no line, but inference is
slower (12 vs 19 ms a batch for the old BiLSTM), so we keep the delegate and drop the line."""


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
    """A LiteRT interpreter over an export with a dynamic batch, invoked `batch` rows at a time (the last
    chunk padded), so the interpreter is sized once. Interpreters are not thread-safe, hence the lock."""

    runtime = "litert"

    def __init__(self, tflite_path: Path, threads: int = DEFAULT_THREADS, batch: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_to_log():
            self._interpreter = Interpreter(model_path=str(tflite_path), num_threads=threads)
            inp = self._interpreter.get_input_details()[0]
            self._input = inp["index"]
            self._shape = (batch, *(int(d) for d in inp["shape"][1:]))
            self._interpreter.resize_tensor_input(self._input, list(self._shape), strict=False)
            self._interpreter.allocate_tensors()
            signature = self._interpreter.get_signature_list()
            names = next(iter(signature.values()))["outputs"] if signature else []
            details = self._interpreter.get_output_details()
            self._outputs = self._named_outputs(names, details)
            self._interpreter.invoke()  # the delegate may be applied on the first run: let that happen here
        self._lock = threading.Lock()

    def _named_outputs(self, names: list[str], details: list[dict[str, Any]]) -> dict[str, int]:
        """Output tensor index by the Keras output's name (the signature keeps names, tensors do not)."""
        if not names:
            return {"output": details[0]["index"]}
        runner = self._interpreter.get_signature_runner()
        by_name = runner.get_output_details()
        return {name: int(by_name[name]["index"]) for name in names}

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self._shape[1:]:
            raise ValueError(f"input of shape {x.shape} for a model that reads {self._shape}")
        batch = self._shape[0]
        out: dict[str, list[np.ndarray]] = {name: [] for name in self._outputs}
        with self._lock:
            for start in range(0, x.shape[0], batch):
                chunk = x[start:start + batch]
                n = chunk.shape[0]
                if n < batch:
                    chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
                self._interpreter.set_tensor(self._input, np.ascontiguousarray(chunk))
                self._interpreter.invoke()
                for name, index in self._outputs.items():
                    out[name].append(self._interpreter.get_tensor(index)[:n].copy())
        return {name: np.concatenate(parts) if parts else np.zeros((0,), np.float32)
                for name, parts in out.items()}


ONNX_CHUNK = 4
"""Rows an ONNX Runtime run takes at most. The front-end's first convolutions write about 1 MB a patch, so
24 patches at once overflow the cache: a segment cost 6.0-6.4 ms of CPU in runs of 24 and 5.1-5.4 ms in
runs of 1 to 4 (one thread, the shipped export, 4 rounds in one run; models/frontend.md). Runs of 4 give
the outputs of one run of any size bit for bit (runs of 1 differ by up to 2e-6)."""


class OnnxRunner:
    """An ONNX Runtime session over an export with a dynamic batch, run ONNX_CHUNK rows at a time (sessions
    are thread-safe, and a batch of any size costs no re-planning)."""

    runtime = "onnx"

    def __init__(self, session: Any, chunk: int = ONNX_CHUNK) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs()]
        self._chunk = chunk

    @classmethod
    def from_bytes(cls, model: bytes | str, threads: int = DEFAULT_THREADS) -> OnnxRunner:
        """From the serialised graph, or the path of its file."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # `threads` is the caller's budget (core.analysis: every core for a one-clip process, one in a pool
        # worker), as LiteRT gets it. Left at 0, ONNX Runtime would take every core in each worker.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not ours
        return cls(onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"]))

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        runs = [self._session.run(self._outputs, {self._input: x[start:start + self._chunk]})
                for start in range(0, max(1, x.shape[0]), self._chunk)]
        return {name: np.concatenate([np.asarray(run[i], np.float32) for run in runs])
                for i, name in enumerate(self._outputs)}


def lite_available() -> bool:
    return importable("ai_edge_litert.interpreter")


def onnx_available() -> bool:
    return importable("onnxruntime")


def keras_available() -> bool:
    """Without importing it: TensorFlow and Keras are the `train` extra, absent from a runtime install."""
    return importable("keras") and importable("tensorflow")


def open_runner(keras_path: Path, *, runtime: str | None = None, threads: int = DEFAULT_THREADS) -> Runner:
    """The first runtime of RUNTIMES whose artefact and package are present, or exactly `runtime`."""
    tflite, onnx = keras_path.with_suffix(".tflite"), keras_path.with_suffix(".onnx")
    for name in (runtime,) if runtime else RUNTIMES:
        if name == "litert" and tflite.is_file() and lite_available():
            return LiteRunner(tflite, threads)
        if name == "onnx" and onnx.is_file() and onnx_available():
            return OnnxRunner.from_bytes(str(onnx), threads)
        if name == "keras" and keras_path.is_file() and keras_available():
            return KerasRunner.load(keras_path, threads)
    raise FileNotFoundError(f"no runnable {runtime or 'model'} artefact for {keras_path}: install "
                            "onnxruntime (`pip install .` brings it) or ai-edge-litert (`litert` extra)")
