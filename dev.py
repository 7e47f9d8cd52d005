#!/usr/bin/env python3
"""Quick start, with nothing but Python 3.11+:

    python3 dev.py run     # install the runtime into .venv, then run the bot (token set) or the offline demo
    python3 dev.py test    # install it with the test and train extras, then run the whole test suite

Extra arguments after `test` go to pytest. `run` installs neither TensorFlow nor librosa (the runtime runs
its networks on ONNX Runtime and its signal processing in core/dsp.py); `test` adds TensorFlow (the `train`
extra), LiteRT (`litert`) and librosa (`descriptors`) because the suite checks the exported networks against
their Keras originals and against each other, core/dsp.py against librosa, and the descriptor models. The install step is skipped
when pyproject.toml has not changed since the last one that covered the same extras.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


EXTRAS = {"run": (), "test": ("test", "train")}
"""What each command installs besides the runtime."""


def ensure_installed(extras: tuple[str, ...]) -> None:
    """Install (editable, so the tree's code is what runs) unless the last install covered these extras of
    this pyproject.toml. pip's own progress lines show while it works: the first time takes minutes."""
    if sys.version_info < (3, 11):
        sys.exit(f"Cratedigger needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".cratedigger-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    done = stamp.read_text().split() if stamp.exists() else []
    if done[:1] == [digest] and set(extras) <= set(done[1:]):
        return
    what = f"with the {' and '.join(extras)} extras" if extras else "the runtime only"
    print(f"installing Cratedigger into {VENV}, {what} (the first time takes a few minutes)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on"]
    subprocess.run([*pip, "--quiet", "--upgrade", "pip"], check=True)
    target = f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)
    # setuptools warns in a box that folders named like a package may shadow it, for any editable install of
    # a project laid out in its root: true of every such project, and nothing a user can act on.
    quiet_backend = {**os.environ, "PYTHONWARNINGS": "ignore:Editable installation"}
    subprocess.run([*pip, "-e", target], check=True, env=quiet_backend)
    stamp.write_text(" ".join([digest, *sorted(set(extras) | set(done[1:] if done[:1] == [digest] else []))]))


def has_token() -> bool:
    check = "from core.config import load_settings; import sys; sys.exit(0 if load_settings().discord_token else 1)"
    return subprocess.run([str(PYTHON), "-c", check], cwd=ROOT).returncode == 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    ensure_installed(EXTRAS[argv[0]])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if argv[0] == "test":
        command = [str(PYTHON), "-m", "pytest", *argv[1:]]
    else:
        command = [str(BIN / "cratedigger"), "run" if has_token() else "demo"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
