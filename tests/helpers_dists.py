"""Fake plugin distributions for tests: package files plus a hand-written ``.dist-info``.

As far as importlib.metadata is concerned each is a real installed distribution (a
METADATA and an entry_points.txt next to the code), which is what pip leaves behind,
minus the seconds a pip install costs. Put the folder on sys.path (in-process) or
PYTHONPATH (subprocesses).
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_dist(root: Path, dist: str, version: str, files: dict[str, str], entry_points: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> source) and the distribution's metadata under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    meta = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (meta / "entry_points.txt").write_text(f"[gankit.plugins]\n{lines}")
    return root


def plugin_dist(root: Path, name: str, source: str, version: str = "1.0") -> Path:
    """One-module plugin distribution ``gk-<name>`` whose module ``gk_<name>`` holds ``plugin``."""
    module = "gk_" + name.replace("-", "_")
    return write_dist(root / name, "gk-" + name, version, {f"{module}.py": source}, {name: f"{module}:plugin"})
