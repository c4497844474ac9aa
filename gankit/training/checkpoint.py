"""Checkpoints: one directory each, committed atomically, never unpickled.

Heavy tier (torch, safetensors). A checkpoint directory holds:

* ``tensors.safetensors``: generator, discriminator and EMA weights, optimizer tensors
  (Adam moments, step counters), and the torch RNG states as uint8 tensors;
* ``state.json``: step, the full TrainConfig, optimizer scalars (param groups), numpy and
  Python RNG states, the data sampler's position, and library versions;
* ``manifest.json``: written last, listing every file with its size and sha256.

It is written under a temporary name in the same folder and renamed into place, so a
kill at any moment leaves either the old set of checkpoints or the new one, never a
half-written directory that looks complete. Old checkpoints are pruned only after the
new one is committed. Loading checks the manifest and every hash before reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import gankit
from gankit.config import TrainConfig
from gankit.errors import ModelFileError

FORMAT_VERSION = 1
TENSORS = "tensors.safetensors"
STATE = "state.json"
MANIFEST = "manifest.json"
PREFIX = "step-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> dict:
    """Put an optimizer's tensors into ``tensors``; return its JSON-able remainder."""
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in sd["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, saved: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    head = prefix + ".state."
    for name, value in tensors.items():
        if name.startswith(head):
            idx, key = name[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in saved["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": saved["param_groups"]}


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped."""

    step: int
    config: TrainConfig
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    opt_g: dict
    opt_d: dict
    rng: dict[str, Any]
    sampler: dict[str, Any]
    extra: dict[str, Any]


def save_checkpoint(folder: Path, step: int, config: TrainConfig, *, generator, discriminator, ema,
                    opt_g, opt_d, rng: dict[str, Any], sampler: dict[str, Any], keep: int,
                    extra: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """Write and commit a checkpoint for ``step`` under ``folder``; prune to ``keep`` afterwards.

    ``rng`` maps names to either uint8 torch tensors (stored in safetensors) or JSON values.
    ``name`` overrides the directory name (e.g. ``best``); such checkpoints are never pruned.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / (name or f"{PREFIX}{step:09d}")
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    tensors: dict[str, torch.Tensor] = {}
    for tag, module_state in (("g", generator), ("d", discriminator), ("ema", ema or {})):
        for key, value in module_state.items():
            tensors[f"{tag}.{key}"] = value.detach().cpu().contiguous()
    opt_json = {"g": _flatten_optimizer("opt_g", opt_g, tensors), "d": _flatten_optimizer("opt_d", opt_d, tensors)}
    rng_json: dict[str, Any] = {}
    for key, value in rng.items():
        if torch.is_tensor(value):
            tensors[f"rng.{key}"] = value.detach().cpu().contiguous()
        else:
            rng_json[key] = value

    save_file(tensors, str(tmp / TENSORS))
    state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config.to_json(),
        "optimizers": opt_json,
        "rng": rng_json,
        "sampler": sampler,
        "has_ema": bool(ema),
        "extra": extra or {},
        "versions": {"gankit": gankit.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    _fsync_write(tmp / STATE, json.dumps(state, indent=1).encode())
    manifest = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in (tmp / TENSORS, tmp / STATE)},
    }
    _fsync_write(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())

    if final.exists():  # re-saving the same step (e.g. 'best'): swap, then drop the old one
        old = folder / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(folder)
    if name is None:
        prune(folder, keep)
    return final


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def committed(folder: Path) -> list[Path]:
    """Committed step checkpoints in ``folder``, oldest first (a manifest marks commitment)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` committed checkpoints, and leftovers of killed writes."""
    for old in committed(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in folder.glob(".tmp-*"):
        if not leftover.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)


def find_checkpoint(path: Path) -> Path:
    """A checkpoint directory from a checkpoint, a run folder, or a run's checkpoints folder."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    for folder in (path / "checkpoints", path):
        found = committed(folder)
        if found:
            return found[-1]
    if not path.exists():
        raise ModelFileError(f"{path}: no such run folder or checkpoint")
    raise ModelFileError(f"{path}: no committed checkpoint found (looked for {PREFIX}*/{MANIFEST})")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> TrainingState:
    """Load and verify a checkpoint (hashes first); raise ModelFileError when anything is off."""
    ckpt = find_checkpoint(Path(path))
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
        for fname, info in manifest["files"].items():
            fpath = ckpt / fname
            if not fpath.is_file() or fpath.stat().st_size != info["bytes"] or _sha256(fpath) != info["sha256"]:
                raise ModelFileError(f"{fpath}: missing or does not match its manifest (corrupt checkpoint)")
        state = json.loads((ckpt / STATE).read_text())
        if state.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(f"{ckpt}: checkpoint format {state.get('format_version')} is not {FORMAT_VERSION}")
        tensors = load_file(str(ckpt / TENSORS), device=str(map_location))
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{ckpt}: unreadable checkpoint ({exc})") from None

    def part(tag: str) -> dict[str, torch.Tensor]:
        head = tag + "."
        return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}

    rng: dict[str, Any] = dict(state["rng"])
    rng.update(part("rng"))
    return TrainingState(
        step=int(state["step"]),
        config=TrainConfig.from_json(state["config"]),
        generator=part("g"),
        discriminator=part("d"),
        ema=part("ema") if state.get("has_ema") else None,
        opt_g=_unflatten_optimizer("opt_g", state["optimizers"]["g"], tensors),
        opt_d=_unflatten_optimizer("opt_d", state["optimizers"]["d"], tensors),
        rng=rng,
        sampler=state["sampler"],
        extra=state.get("extra", {}),
    )


@dataclass
class ExportSource:
    """A trained generator ready for export, with what the ONNX metadata needs."""

    generator: torch.nn.Module
    export_module: Any
    spec: Any
    plugin: str
    label_mode: str
    noise: str
    steps: int
    dataset: str
    config: TrainConfig


def load_export_source(path: Path) -> ExportSource:
    """Rebuild a run's generator (EMA weights when the run kept them) in eval mode on the CPU."""
    from gankit.registry import load_plugin
    from gankit.training.spec import spec_from_config

    state = load_checkpoint(path)
    cfg = state.config
    plugin = load_plugin(cfg.plugin)
    spec = spec_from_config(cfg, plugin)
    nets = plugin.build(spec)
    weights = state.ema if state.ema else state.generator
    try:
        nets.generator.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit the nets plugin {cfg.plugin!r} builds ({exc})") from None
    nets.generator.eval()
    return ExportSource(
        generator=nets.generator,
        export_module=plugin.export_module,
        spec=spec,
        plugin=cfg.plugin,
        label_mode=plugin.label_mode,
        noise=cfg.noise,
        steps=state.step,
        dataset=state.extra.get("dataset", cfg.data),
        config=cfg,
    )
