"""Write real audio files of every format we claim to read, with the bundled ffmpeg where libsndfile can't."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio import ffmpeg_exe

FFMPEG_CODECS = {".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"], ".m4a": ["-c:a", "aac", "-b:a", "64k"],
                 ".opus": ["-c:a", "libopus", "-b:a", "48k"]}


def encode_audio(path: Path, y: np.ndarray, options: list[str], *, sr: int = 22_050,
                 ffmpeg: str | None = None) -> Path:
    """Encode `y` (mono float) to `path` with ffmpeg's `options` (codec and quality), through the bundled
    binary or `ffmpeg`: a user's file made by another encoder."""
    wav = path.with_suffix(".src.wav")
    sf.write(wav, y, sr)
    command = [ffmpeg or ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav), *options, str(path)]
    subprocess.run(command, check=True)
    wav.unlink()
    return path


def write_audio(path: Path, y: np.ndarray, sr: int = 22_050) -> Path:
    """Encode `y` (mono float) to `path`, the format chosen by its extension."""
    suffix = path.suffix.lower()
    if suffix in FFMPEG_CODECS:
        encode_audio(path, y, FFMPEG_CODECS[suffix], sr=sr)
    elif suffix == ".au":
        sf.write(path, y, sr, format="AU", subtype="PCM_16")
    elif suffix == ".ogg":
        # in blocks: libsndfile 1.2 crashes (SIGSEGV) encoding a minute or more of Vorbis in one write
        with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="OGG", subtype="VORBIS") as f:
            for i in range(0, y.size, sr):
                f.write(y[i:i + sr])
    else:
        sf.write(path, y, sr)
    return path
