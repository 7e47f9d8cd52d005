#!/usr/bin/env python3
"""Quick start, with nothing but Python 3.11+:

    python3 dev.py run     # install into .venv, then run the bot (DISCORD_TOKEN set) or the offline demo
    python3 dev.py test    # install into .venv (with test extras), then run the whole test suite

Extra arguments after `test` go to pytest. The install step is skipped when pyproject.toml has not changed
since the last one.
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


def ensure_installed() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Cratedigger needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".cratedigger-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("installing Cratedigger and its dependencies (the first time takes a few minutes)", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test,train]"], check=True)
    stamp.write_text(wanted)


def has_token() -> bool:
    check = "from core.config import load_settings; import sys; sys.exit(0 if load_settings().discord_token else 1)"
    return subprocess.run([str(PYTHON), "-c", check], cwd=ROOT).returncode == 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    ensure_installed()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if argv[0] == "test":
        command = [str(PYTHON), "-m", "pytest", *argv[1:]]
    else:
        command = [str(BIN / "cratedigger"), "run" if has_token() else "demo"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
