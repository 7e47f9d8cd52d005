"""Writing the artefacts `models/` ships."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_artefact(path: Path, data: bytes) -> None:
    """`data` at `path`, atomically (a reader never sees half a model) and readable by everyone: an
    artefact others load, not the private file a temporary file starts as."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
