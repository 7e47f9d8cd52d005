"""A built wheel carries everything the runtime and the demo read (clips, models, migrations): installed into
a fresh environment, outside the source tree, `cratedigger demo` and `cratedigger genre` run from it.

The wheel's own dependencies are not downloaded again: the fresh environment sees this one's site-packages
through a path file (whose own .pth files, such as an editable install's finder, are not run), and the wheel
is installed with --no-deps. It sees them through a folder of links that leaves out what only the extras
install (librosa, numba, llvmlite, SciPy, scikit-learn, TensorFlow, Keras, LiteRT...), so the demo and
`genre` run here as in a runtime-only install, where none of those can be imported. Building the wheel
needs the build backend pyproject.toml names, which pip
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

EXTRAS_ONLY = {"librosa", "numba", "llvmlite", "scipy", "sklearn", "scikit_learn", "tensorflow",
               "tensorflow_cpu", "keras", "tf_keras", "tf2onnx", "lightgbm", "ai_edge_litert", "musicnn"}
"""Top-level names (modules, their .libs and dist-info folders) that only an extra installs."""


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
    runtime_only = root / "runtime-site"
    runtime_only.mkdir()
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(folder).iterdir():
            top = entry.name.split("-")[0].split(".")[0].lower()
            link = runtime_only / entry.name
            if top not in EXTRAS_ONLY and entry.suffix != ".pth" and not link.exists():
                link.symlink_to(entry)
    (Path(site.stdout.strip()) / "_outer_site.pth").write_text(f"{runtime_only}\n")
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


def test_the_environment_has_none_of_the_extras(installed: tuple[Path, dict[str, str]],
                                                tmp_path: Path) -> None:
    bin_dir, env = installed
    names = ("librosa", "scipy", "sklearn", "numba", "tensorflow", "keras", "onnxruntime", "soxr")
    probe = f"import importlib.util as u; print(sorted(n for n in {names!r} if u.find_spec(n)))"
    found = _run([str(bin_dir / "python"), "-c", probe], tmp_path, env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "['onnxruntime', 'soxr']"


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


def test_a_descriptor_model_names_the_extra_it_needs(installed: tuple[Path, dict[str, str]],
                                                     tmp_path: Path) -> None:
    """The descriptor genre kind reads librosa's features: without them its loader refuses in one line that
    names the pip command, and the manifest's loader passes over it to the next model."""
    bin_dir, env = installed
    models = shutil.copytree(REPO_ROOT / "models", tmp_path / "models")
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["genre"].sort(key=lambda entry: entry["kind"] != "descriptor")  # the descriptor kind first
    (models / "manifest.json").write_text(json.dumps(manifest))
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from core.genre import load_genre_model\n"
        "logging.basicConfig(stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        f"print(load_genre_model(Path({str(models)!r})).name)\n")
    out = _run([str(bin_dir / "python"), "-c", script], tmp_path, env)
    assert out.returncode == 0, out.stderr[-3000:]
    refusal, chosen = out.stdout.strip().splitlines()
    assert refusal.startswith("WARNING genre model descriptor-") and "librosa" in refusal
    assert refusal.endswith("pip install 'cratedigger[descriptors]'")
    assert chosen.startswith("bilstm")


@pytest.mark.parametrize("kind", ["frontend", "genre", "mood"])
def test_training_says_which_extra_it_needs(installed: tuple[Path, dict[str, str]], tmp_path: Path,
                                            kind: str) -> None:
    """Before reading any data: the runtime install has none of the training packages."""
    bin_dir, env = installed
    out = _run([str(bin_dir / "cratedigger"), "train", kind], tmp_path, env)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().endswith("pip install 'cratedigger[train]'")
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_exact_backend_says_which_extra_it_needs(installed: tuple[Path, dict[str, str]],
                                                     tmp_path: Path) -> None:
    """Refused when the settings are read, before any audio is touched: scikit-learn is the exact extra."""
    bin_dir, env = installed
    clip = sorted(DEMO_CLIPS.glob("*.ogg"))[0]
    out = _run([str(bin_dir / "cratedigger"), "genre", str(clip)], tmp_path,
               {**env, "CRATEDIGGER_INDEX_BACKEND": "exact"})
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().endswith("pip install 'cratedigger[exact]'")
    assert len(out.stderr.strip().splitlines()) == 1
