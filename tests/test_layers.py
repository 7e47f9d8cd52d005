"""The layers hold: `core` never imports `bot` (or discord.py), and process start-up has one home."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_bot_or_discord() -> None:
    offenders = {str(path.relative_to(REPO_ROOT)): sorted(n for n in _imports(path)
                                                         if n.split(".")[0] in {"bot", "discord"})
                 for path in (REPO_ROOT / "core").rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_command_has_every_verb_and_the_process_verbs_live_in_the_launcher() -> None:
    out = subprocess.run([sys.executable, "-c", "from bot.launcher import main; main(['--help'])"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for verb in ("run", "worker", "sync-commands", "library", "genre", "db"):
        assert verb in out
    core_only = subprocess.run([sys.executable, "-m", "core", "--help"], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True).stdout
    assert "library" in core_only and "worker" not in core_only and "sync-commands" not in core_only


def test_the_cli_and_the_worker_start_without_discord(tmp_path: Path) -> None:
    code = ("import sys; from bot.launcher import main; main(['db', 'upgrade', '--data-dir', sys.argv[1]]); "
            "import core.jobs.worker; assert 'discord' not in sys.modules, 'discord.py imported'; "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
