"""Where a library track's analysis spends its CPU, stage by stage (bench_reindex --stages).

Each track is analysed in this process on one thread, exactly as a pool worker analyses it
(`core.analysis.analyse` with the library's limits), while the functions below are wrapped to count their
CPU time: this process's own (time.process_time) plus, for ffmpeg, its child processes' (getrusage). A
stage's time is exclusive (a wrapped call inside another is counted to the inner stage only), so the stages
add up to the whole; "rest of the analysis" is what no wrapper covers (the genre, mood and embedding heads,
the cutting and stacking of segments, the bookkeeping of sections).

CPU time rather than wall time: the machine is shared, and what a stage costs one core is what decides how
many tracks two cores analyse a second.
"""
from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES: tuple[tuple[str, str, str], ...] = (
    # (stage, module, attribute: a function, or Class.method)
    ("ffmpeg processes (start, decode, resample)", "subprocess", "run"),
    ("Ogg pages (own reader)", "core.ogg_vorbis", "_pages"),
    ("decode (FFmpeg Vorbis)", "core.ogg_vorbis", "OggVorbis.read"),
    ("decode (libsndfile)", "soundfile", "SoundFile.read"),
    ("mix down to mono", "core.audio", "_mix_down"),
    ("resample to 22 050 Hz", "core.audio", "_resample"),
    ("trim search (RMS frames)", "core.audio", "_Chunk.of"),
    ("trim (whole file)", "core.audio", "trim_silence"),
    ("resample to 16 kHz", "core.frontend", "to_frontend_rate"),
    ("log-mel", "core.frontend", "log_mel"),
    ("network", "core.frontend", "Frontend.__call__"),
    ("fingerprint", "core.fingerprint", "fingerprint_sections"),
)
REST = "rest of the analysis"


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class StageClock:
    """Exclusive CPU seconds per stage: a stack of running stages, each paying for its own time only."""

    seconds: dict[str, float] = field(default_factory=dict)
    _stack: list[list[float]] = field(default_factory=list)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = _cpu()
            self._stack.append([0.0])  # CPU of the stages called from inside this one
            try:
                return fn(*args, **kwargs)
            finally:
                inner = self._stack.pop()[0]
                spent = _cpu() - started
                self.seconds[stage] = self.seconds.get(stage, 0.0) + spent - inner
                if self._stack:
                    self._stack[-1][0] += spent
        return timed


@contextmanager
def _wrapped(clock: StageClock) -> Iterator[None]:
    import importlib

    undo = []
    for stage, module_name, attribute in STAGES:
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        if isinstance(original, classmethod):
            setattr(owner, name, classmethod(clock.wrap(stage, original.__func__)))
        else:
            setattr(owner, name, clock.wrap(stage, original))
        undo.append((owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def stage_split(paths: list[Path], *, segments: int) -> tuple[dict[str, float], int]:
    """({stage: CPU seconds per track}, tracks analysed) for `paths` at `segments` per track."""
    from threadpoolctl import threadpool_limits

    import core.analysis
    from core.analysis import Limits, analyse
    from core.config import Settings

    settings = Settings(library_segments=segments)
    limits = Limits.of(settings, max_segments=segments)
    core.analysis._inference_threads = 1  # as in a pool worker (core.analysis.init_worker)
    core.analysis.frontend.cache_clear()  # a Service in this process loaded it on every core (its version)
    analyse(paths[0], limits, fingerprint=True)  # imports, loading, first compilations: not a track's cost
    clock = StageClock()
    whole = clock.wrap(REST, analyse)
    # One BLAS thread, as in a pool worker (core.background): numpy's OpenBLAS threads otherwise spin
    # beside ONNX Runtime after the heads' matrix products and doubled the network's CPU time here.
    with threadpool_limits(limits=1), _wrapped(clock):
        for path in paths:
            whole(path, limits, fingerprint=True)  # as the service analyses a library track
    return {stage: spent / len(paths) for stage, spent in clock.seconds.items()}, len(paths)


def print_split(split: dict[str, float], label: str) -> None:
    total = sum(split.values())
    print(f"{label}: {total * 1000:.0f} ms of CPU a track (two cores at this cost: {2 / total:.1f} tracks/s)")
    for stage, _module, _attribute in (*STAGES, (REST, "", "")):
        if stage in split:
            print(f"  {stage:<44} {split[stage] * 1000:>7.1f} ms  {split[stage] / total:>5.1%}")
