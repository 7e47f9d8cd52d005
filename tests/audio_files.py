"""Write real audio files of every format we claim to read, with the bundled ffmpeg where libsndfile can't."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio import ffmpeg_exe

FFMPEG_CODECS = {".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"], ".m4a": ["-c:a", "aac", "-b:a", "64k"],
                 ".opus": ["-c:a", "libopus", "-b:a", "48k"]}


def write_audio(path: Path, y: np.ndarray, sr: int = 22_050) -> Path:
    """Encode `y` (mono float) to `path`, the format chosen by its extension."""
    suffix = path.suffix.lower()
    if suffix in FFMPEG_CODECS:
        wav = path.with_suffix(".src.wav")
        sf.write(wav, y, sr)
        subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav), *FFMPEG_CODECS[suffix],
                        str(path)], check=True)
        wav.unlink()
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
