"""A built wheel carries everything the runtime and the demo read (clips, models, migrations): installed into
a fresh environment, outside the source tree, `cratedigger demo` and `cratedigger genre` run from it.

The wheel's own dependencies are not downloaded again: the fresh environment sees this one's site-packages
through a path file (whose own .pth files, such as an editable install's finder, are not run), and the wheel
is installed with --no-deps. Building the wheel needs the build backend pyproject.toml names, which pip
fetches into an isolated build environment (or takes from its cache).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from core.cli.demo import DEMO_CLIPS
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the fresh environment's bin folder, an environment for its processes) with the wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRATEDIGGER_", "DISCORD_", "PYTHON"))}
    env["CRATEDIGGER_DATA_DIR"] = str(root / "data")
    # Built from a copy: setuptools builds in the source folder, and its build/ would keep deleted modules.
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "data"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                  "-w", str(root / "dist"), str(source)], root, env)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((root / "dist").glob("cratedigger-*.whl"))

    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.stdout.strip()) / "_outer_site.pth").write_text("\n".join(sorted(ours)) + "\n")
    pip = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
                "-q", str(wheel)], root, env)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return target / "bin", env


def test_the_installed_package_is_the_wheels_not_the_source_tree(installed: tuple[Path, dict[str, str]],
                                                                 tmp_path: Path) -> None:
    bin_dir, env = installed
    where = _run([str(bin_dir / "python"), "-c", "import core, models, demo; print(core.__file__)"],
                 tmp_path, env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(bin_dir.parent)


def test_the_demo_runs_from_the_wheel(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    demo = _run([str(bin_dir / "cratedigger"), "demo", "--json"], tmp_path, env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    doc = json.loads(demo.stdout)
    assert len(doc["library"]["add"]["added"]) == len(list(DEMO_CLIPS.glob("*.ogg")))
    assert doc["genre"]["genre"] == doc["genre"]["top"][0][0]
    assert doc["similar"]["results"]
    assert doc["library_map"]["tracks"] == len(doc["library"]["add"]["added"])
    assert Path(doc["library_map"]["file"]).read_bytes().startswith(b"\x89PNG")


def test_genre_runs_from_the_wheel(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    clip = sorted(DEMO_CLIPS.glob("*.ogg"))[0]
    out = _run([str(bin_dir / "cratedigger"), "genre", "--json", str(clip)], tmp_path, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)[0]["genre"]
