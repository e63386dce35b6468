"""Weights that arrive as Python packages (pinned with hashes in requirements-weights.txt).

The package is found without importing it: its __init__ is not ours to run, and the weights file
is all we need from it. The file's sha256 is checked against the prefix its name carries before
anything reads it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os

from .torch_pth import check_name_hash


def locate(module: str, file: str) -> dict:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module} is not installed in this environment; run `npm run setup:train`")
    if os.path.basename(file) != file:
        raise ValueError(f"{file!r}: a file name, not a path")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{module} has no models/{file}")
    dist = module.replace("_", "-")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"path": path, "sha256": check_name_hash(path), "package": dist, "version": version}
