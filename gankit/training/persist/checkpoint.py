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
new one is committed, and by renaming them out of the way first, so a kill mid-delete
never leaves a ``step-*`` folder behind. Loading checks the manifest and every hash, then
the content against an explicit schema (`validate_state`) and, on resume, against the
nets it is loaded into (`check_fits`): a bad checkpoint is one `ModelFileError`, never a
traceback from deep inside torch.

A write that fails (disk full, file too large) removes its temporary folder and raises
`CheckpointWriteError`; the checkpoints committed before it are untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors

import gankit
from gankit.atomic import replace_dir, write_synced
from gankit.config import TrainConfig
from gankit.errors import GankitError, ModelFileError, UsageError
from gankit.inputs import bounded
from gankit.training.persist.runlog import describe, fault_point

FORMAT_VERSION = 1
TENSORS = "tensors.safetensors"
STATE = "state.json"
MANIFEST = "manifest.json"
PREFIX = "step-"
# A safetensors header is a few KB of JSON; anything past this is a corrupt or hostile file.
MAX_HEADER_BYTES = 64 << 20
# A manifest lists two files in ~300 bytes. state.json is read within bounded's default limits.
MAX_MANIFEST_BYTES = 1 << 20
# Names of the leftovers a killed write, swap or prune can leave in a checkpoints folder.
_LEFTOVER = re.compile(r"^\.(tmp|old|del)-.+-(\d+)$")


class CheckpointWriteError(GankitError):
    """A checkpoint could not be written; the ones committed before it are intact."""




def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    final = folder / (name or f"{PREFIX}{step:09d}")
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_files(tmp, step, config, generator=generator, discriminator=discriminator, ema=ema,
                     opt_g=opt_g, opt_d=opt_d, rng=rng, sampler=sampler, extra=extra)
        fault_point("before-commit")
        replace_dir(tmp, final)  # re-saving a name (e.g. 'best') swaps the old one out
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = committed(folder)
        where = f"the last committed checkpoint ({kept[-1]}) is intact" if kept else "no checkpoint was committed"
        raise CheckpointWriteError(f"cannot write the checkpoint for step {step} under {folder}: "
                                   f"{describe(exc)}; {where}") from None
    if name is None:
        prune(folder, keep)
    return final


def _write_files(tmp: Path, step: int, config: TrainConfig, *, generator, discriminator, ema, opt_g, opt_d,
                 rng: dict[str, Any], sampler: dict[str, Any], extra: dict[str, Any] | None) -> None:

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

    # Serialised here and written with open() (through write_synced) so the file gets the
    # umask's mode; safetensors' own save_file creates it 0600.
    write_synced(tmp / TENSORS, save_tensors(tensors))
    fault_point("mid-checkpoint")
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
    write_synced(tmp / STATE, json.dumps(state, indent=1).encode())
    manifest = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in (tmp / TENSORS, tmp / STATE)},
    }
    write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())


def committed(folder: Path) -> list[Path]:
    """Committed step checkpoints in ``folder``, oldest first (a manifest marks commitment)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` committed checkpoints, and leftovers of killed writes.

    Each old checkpoint is first renamed to a hidden name (one atomic step), then deleted:
    a kill mid-delete leaves a ``.del-*`` folder that the next prune removes, never a
    half-deleted ``step-*`` folder that could still look committed.
    """
    for old in committed(folder)[:-keep]:
        doomed = folder / f".del-{old.name}-{os.getpid()}"
        try:
            os.rename(old, doomed)
        except OSError:
            continue
        fault_point("mid-prune")
        shutil.rmtree(doomed, ignore_errors=True)
    clean_leftovers(folder)


def clean_leftovers(folder: Path) -> None:
    """Remove what killed writes and prunes left: hidden temp folders of other processes and
    ``step-*`` folders without a manifest (never committed, or cut by an old-style prune)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and int(match.group(2)) != os.getpid():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(PREFIX) and entry.is_dir() and not (entry / MANIFEST).is_file():
            shutil.rmtree(entry, ignore_errors=True)


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
    if (path / "config.json").exists() or (path / "checkpoints").is_dir():
        raise ModelFileError(
            f"{path}: no committed checkpoint found: the run stopped before its first checkpoint, so there "
            "is nothing to resume or export. Run the same `gankit train` command again without --resume; "
            "it takes this folder over and starts from step 0.")
    raise ModelFileError(f"{path}: no committed checkpoint found (looked for {PREFIX}*/{MANIFEST})")


# ----- what a checkpoint may contain -------------------------------------------------------
class _Bad(Exception):
    """A schema violation; load_checkpoint turns it into one ModelFileError."""


def _int(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise _Bad(f"{what} must be an integer {bounds}, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _Bad(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _dict(value: Any, what: str, keys: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{what} must be a JSON object, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise _Bad(f"{what} lacks {', '.join(missing)}")
    return value


def _list(value: Any, what: str, length: int | None = None) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise _Bad(f"{what} must be a list{f' of {length}' if length is not None else ''}")
    return value


def validate_manifest(manifest: Any) -> dict[str, dict[str, Any]]:
    """The manifest's file table, checked: exactly the two files a checkpoint holds."""
    m = _dict(manifest, "manifest.json", ("format_version", "step", "files"))
    if m["format_version"] != FORMAT_VERSION:
        raise _Bad(f"checkpoint format {m['format_version']!r} is not {FORMAT_VERSION}")
    _int(m["step"], "manifest step")
    files = _dict(m["files"], "manifest files")
    if sorted(files) != sorted((TENSORS, STATE)):
        raise _Bad(f"manifest must list exactly {TENSORS} and {STATE}, got {sorted(files)}")
    for fname, info in files.items():
        _dict(info, f"manifest entry {fname}", ("bytes", "sha256"))
        _int(info["bytes"], f"size of {fname}")
        if not isinstance(info["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", info["sha256"]):
            raise _Bad(f"sha256 of {fname} is not 64 hex digits")
    return files


def validate_state(state: Any) -> dict[str, Any]:
    """Check state.json's structure and value ranges before anything uses it; return it."""
    s = _dict(state, "state.json", ("format_version", "step", "config", "optimizers", "rng", "sampler"))
    if s["format_version"] != FORMAT_VERSION:
        raise _Bad(f"checkpoint format {s['format_version']!r} is not {FORMAT_VERSION}")
    _int(s["step"], "step")
    _dict(s["config"], "config")
    opts = _dict(s["optimizers"], "optimizers", ("g", "d"))
    for tag in ("g", "d"):
        opt = _dict(opts[tag], f"optimizer {tag}", ("param_groups", "scalars"))
        groups = _list(opt["param_groups"], f"optimizer {tag} param_groups")
        if not groups:
            raise _Bad(f"optimizer {tag} has no param groups")
        for group in groups:
            _dict(group, f"optimizer {tag} param group", ("params", "lr"))
            for idx in _list(group["params"], f"optimizer {tag} params"):
                _int(idx, f"optimizer {tag} parameter index")
            _number(group["lr"], f"optimizer {tag} lr")
        for idx, values in _dict(opt["scalars"], f"optimizer {tag} scalars").items():
            if not idx.isdigit():
                raise _Bad(f"optimizer {tag} scalars key {idx!r} is not a parameter index")
            _dict(values, f"optimizer {tag} scalars {idx}")
    rng = _dict(s["rng"], "rng", ("python", "numpy"))
    py = _list(rng["python"], "python RNG state", 3)
    _int(py[0], "python RNG version")
    internal = _list(py[1], "python RNG internal state", 625)
    for v in internal:
        _int(v, "python RNG word", 0, 2**32 - 1)
    if py[2] is not None:
        _number(py[2], "python RNG gauss")
    npst = _list(rng["numpy"], "numpy RNG state", 5)
    if npst[0] != "MT19937":
        raise _Bad(f"numpy RNG must be MT19937, got {npst[0]!r}")
    for v in _list(npst[1], "numpy RNG keys", 624):
        _int(v, "numpy RNG key", 0, 2**32 - 1)
    _int(npst[2], "numpy RNG position", 0, 624)
    _int(npst[3], "numpy RNG has_gauss", 0, 1)
    _number(npst[4], "numpy RNG cached gauss")
    sampler = _dict(s["sampler"], "sampler", ("streams",))
    streams = _list(sampler["streams"], "sampler streams")
    if not streams:
        raise _Bad("sampler has no streams")
    for st in streams:
        pair = _list(st, "sampler stream", 2)
        _int(pair[0], "sampler epoch")
        _int(pair[1], "sampler position")
    if not isinstance(s.get("has_ema", False), bool):
        raise _Bad("has_ema must be true or false")
    extra = _dict(s.get("extra", {}), "extra")
    if extra.get("best_score") is not None:
        _number(extra["best_score"], "best_score")
    pending_from_json(extra.get(PENDING, []))
    return s


def _check_safetensors_header(path: Path) -> None:
    """Refuse a header length that cannot be true before the library sizes a buffer from it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) != 8:
        raise _Bad(f"{path.name} is too short to be a safetensors file")
    n = int.from_bytes(head, "little")
    if n > min(size - 8, MAX_HEADER_BYTES):
        raise _Bad(f"{path.name} claims a {n}-byte header in a {size}-byte file")


def _tensor_checks(state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    for tag, what in (("g.", "generator"), ("d.", "discriminator")):
        if not any(k.startswith(tag) for k in tensors):
            raise _Bad(f"no {what} weights")
    if state.get("has_ema") and not any(k.startswith("ema.") for k in tensors):
        raise _Bad("has_ema is set but there are no EMA weights")
    for key in ("rng.torch_cpu", "rng.noise"):
        t = tensors.get(key)
        if t is None or t.dtype != torch.uint8 or t.dim() != 1:
            raise _Bad(f"{key} must be a 1-D uint8 tensor")
    for name, t in tensors.items():
        if name.startswith(("g.", "d.", "ema.")) and t.is_floating_point() and not torch.isfinite(t).all():
            raise _Bad(f"tensor {name} holds NaN or infinite values")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> TrainingState:
    """Load and verify a checkpoint (hashes, then schema); raise ModelFileError when anything is off."""
    ckpt = find_checkpoint(Path(path))
    try:
        files = validate_manifest(bounded.load_file(ckpt / MANIFEST, limit=MAX_MANIFEST_BYTES))
        for fname, info in files.items():
            fpath = ckpt / fname
            if not fpath.is_file() or fpath.stat().st_size != info["bytes"] or _sha256(fpath) != info["sha256"]:
                raise ModelFileError(f"{fpath}: missing or does not match its manifest (corrupt checkpoint)")
        state = validate_state(bounded.load_file(ckpt / STATE))
        try:
            config = TrainConfig.from_json(state["config"]).validate()
        except (UsageError, TypeError, ValueError) as exc:
            raise _Bad(f"its config is not valid ({exc})") from None
        _check_safetensors_header(ckpt / TENSORS)
        tensors = load_file(str(ckpt / TENSORS), device=str(map_location))
        _tensor_checks(state, tensors)

        def part(tag: str) -> dict[str, torch.Tensor]:
            head = tag + "."
            return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}

        rng: dict[str, Any] = dict(state["rng"])
        rng.update(part("rng"))
        return TrainingState(
            step=state["step"],
            config=config,
            generator=part("g"),
            discriminator=part("d"),
            ema=part("ema") if state.get("has_ema") else None,
            opt_g=_unflatten_optimizer("opt_g", state["optimizers"]["g"], tensors),
            opt_d=_unflatten_optimizer("opt_d", state["optimizers"]["d"], tensors),
            rng=rng,
            sampler=state["sampler"],
            extra=state.get("extra", {}),
        )
    except ModelFileError:
        raise
    except _Bad as exc:
        raise ModelFileError(f"{ckpt}: invalid checkpoint: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError, IndexError, RecursionError, SafetensorError) as exc:
        raise ModelFileError(f"{ckpt}: unreadable checkpoint ({describe(exc)})") from None


# ----- does it fit the run it is loaded into? ----------------------------------------------
def same_tensors(saved: dict[str, torch.Tensor], live: dict[str, torch.Tensor], what: str) -> None:
    """ValueError naming the first tensor of ``saved`` whose name, shape or dtype ``live`` does not share.

    ``live`` may be a state dict on torch's meta device: only names, shapes and dtypes are compared.
    """
    try:
        _same_tensors(saved, live, what)
    except _Bad as exc:
        raise ValueError(str(exc)) from None


def _same_tensors(saved: dict[str, torch.Tensor], live: dict[str, torch.Tensor], what: str) -> None:
    missing, unexpected = sorted(set(live) - set(saved)), sorted(set(saved) - set(live))
    if missing or unexpected:
        raise _Bad(f"{what} tensors do not match the nets: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, t in live.items():
        if saved[key].shape != t.shape or saved[key].dtype != t.dtype:
            raise _Bad(f"{what} tensor {key} is {tuple(saved[key].shape)} {saved[key].dtype}, "
                       f"the nets need {tuple(t.shape)} {t.dtype}")


def _optimizer_fits(saved: dict, live: torch.optim.Optimizer, what: str) -> None:
    live_sd = live.state_dict()
    groups = saved["param_groups"]
    if [g["params"] for g in groups] != [g["params"] for g in live_sd["param_groups"]]:
        raise _Bad(f"{what} optimizer parameter groups do not match the nets")
    params = [p for group in live.param_groups for p in group["params"]]
    for idx, pstate in saved["state"].items():
        if not 0 <= idx < len(params):
            raise _Bad(f"{what} optimizer has state for parameter {idx}, the nets have {len(params)}")
        for key, value in pstate.items():
            if key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer") and value is not None:
                if not torch.is_tensor(value) or value.shape != params[idx].shape:
                    raise _Bad(f"{what} optimizer {key} of parameter {idx} has the wrong shape")
                if not torch.isfinite(value).all():
                    raise _Bad(f"{what} optimizer {key} of parameter {idx} holds NaN or infinite values")
            elif key == "step" and not (torch.is_tensor(value) and value.numel() == 1) \
                    and not isinstance(value, (int, float)):
                raise _Bad(f"{what} optimizer step of parameter {idx} is not a number")


def check_fits(state: TrainingState, *, generator: torch.nn.Module, discriminator: torch.nn.Module,
               opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, ema_shadow: dict | None,
               sampler_streams: int, noise_state: torch.Tensor, where: Path | str = "checkpoint") -> None:
    """Check a loaded checkpoint against the nets, optimizers and sampler it is about to fill.

    Raises ModelFileError naming the first mismatch, so `--resume` never reaches a torch
    error (wrong shapes, missing keys, a wrong-sized RNG state) half way through loading.
    """
    try:
        _same_tensors(state.generator, generator.state_dict(), "generator")
        _same_tensors(state.discriminator, discriminator.state_dict(), "discriminator")
        if ema_shadow is not None:
            if not state.ema:
                raise _Bad("the run keeps EMA weights but the checkpoint has none")
            _same_tensors(state.ema, ema_shadow, "EMA")
        _optimizer_fits(state.opt_g, opt_g, "generator")
        _optimizer_fits(state.opt_d, opt_d, "discriminator")
        if len(state.sampler["streams"]) != sampler_streams:
            raise _Bad(f"sampler has {len(state.sampler['streams'])} streams, the run needs {sampler_streams}")
        if state.rng["torch_cpu"].numel() != torch.get_rng_state().numel():
            raise _Bad("the torch RNG state has the wrong size")
        if state.rng["noise"].numel() != noise_state.numel():
            raise _Bad("the noise RNG state has the wrong size")
    except _Bad as exc:
        raise ModelFileError(f"{where}: checkpoint does not fit this run: {exc}") from None


@contextlib.contextmanager
def loading_errors(where: Path | str) -> Iterator[None]:
    """Last line of defence while torch copies a checked state in: any error is a ModelFileError."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelFileError(f"{where}: checkpoint could not be loaded into this run ({exc})") from None


# ----- log rows not yet written when a checkpoint was taken ---------------------------------
PENDING = "pending_losses"


def pending_to_json(pending: list[dict[str, Any]]) -> list[dict[str, list]]:
    """The per-step losses since the last log row, exactly: float32 tensors keep their float32 value.

    Stored in the checkpoint so the first row logged after a resume averages the same
    steps, with the same arithmetic, as the uninterrupted run's row.
    """
    out = []
    for losses in pending:
        out.append({k: ["t", float(v.detach().float().cpu())] if torch.is_tensor(v) else ["f", float(v)]
                    for k, v in losses.items()})
    return out


def pending_from_json(data: Any, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Inverse of `pending_to_json`, with the tensors on ``device`` (where the live losses are)."""
    rows = _list(data, PENDING)
    out = []
    for row in rows:
        losses = {}
        for key, cell in _dict(row, "pending loss row").items():
            kind, value = _list(cell, f"pending loss {key}", 2)
            if kind not in ("t", "f") or not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _Bad(f"pending loss {key} is not a number")
            losses[key] = torch.tensor(float(value), dtype=torch.float32, device=device) if kind == "t" else float(value)
        out.append(losses)
    return out
