"""Map images as files named by their content, so rewriting one is harmless and SQL holds only names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ARTIFACTS = "artifacts"


def write_artifact(data_dir: Path, data: bytes, suffix: str = ".png") -> str:
    """Store bytes once under data_dir/artifacts/; return the path relative to data_dir.

    Relative names let the watcher, workers and dashboard mount data_dir at different places.
    The file is created exclusively and written in one call, without a temporary file and a
    rename (which cost as much again); one found with another size, a write cut short, is
    replaced atomically. Nothing reads a map before the result naming it is committed.
    """
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{ARTIFACTS}/{digest[:2]}/{digest}{suffix}"
    target = data_dir / relative
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            fd = os.open(target, flags, 0o666)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, flags, 0o666)
    except FileExistsError:
        if target.stat().st_size != len(data):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return relative
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return relative


def artifact_path(data_dir: Path, relative: str) -> Path:
    """The file behind a stored name, refusing names that would leave the artifacts folder."""
    root = (data_dir / ARTIFACTS).resolve()
    path = (data_dir / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"not an artifact name: {relative!r}")
    return path
