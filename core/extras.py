"""What the install's optional extras provide. The runtime install leaves out what only some model kinds,
index backends and training read; each of those looks for its packages here, without importing them
(TensorFlow's and librosa's imports are slow), and refuses in one line naming `install_command`."""
from __future__ import annotations

import importlib.util


def importable(module: str) -> bool:
    """Whether `module` (dotted names too) can be imported here, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def missing(*modules: str) -> list[str]:
    """The `modules` this install cannot import, in the order given."""
    return [name for name in modules if not importable(name)]


def install_command(extra: str) -> str:
    """The pip command that adds the `extra` of this package."""
    return f"pip install 'cratedigger[{extra}]'"
