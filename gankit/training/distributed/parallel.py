"""One rank of a multi-process run: DDP over the global batch, or digits per rank (`Parallel`).

Heavy tier (torch). ``gankit train --nproc N`` starts N local ranks itself (this module's
`launch`, a watchdog parent); ``torchrun --nproc-per-node N -m gankit train ...`` starts
them with torchrun's own rendezvous (several nodes included). Either way each rank reads
the standard variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and runs
the ordinary `Trainer` with a `Parallel` attached. Two modes:

``ddp`` (default)
    G and D are wrapped in `DistributedDataParallel` (gloo on CPU, NCCL on CUDA). Every
    rank builds the same nets from the same seed, draws the *same* batch indices and the
    *same* latent noise as a single process would, and keeps its own rows (`ShardedBatches`,
    `Parallel.noise`). Gradients are averaged over ranks: the mean of N per-rank means of
    equal shards is the global batch mean, so with no dropout and no batch norm a DDP run
    equals a one-process run up to float rounding (tests/test_distributed.py states the
    tolerance). Every rank holds the full replicated state, so rank 0 alone writes it.
    A step may call any method of the nets (``forward_blocks``, ``scores_and_aux``): the
    wrapper routes each method call through DDP's forward (`_Calls`), so no call skips
    the gradient all-reduce; a step that reaches around the nets (a submodule called
    directly) is caught by `Parallel.check_replicas` after the first step.

``shard-digits`` (``--shard-digits``, per-digit plugins)
    The digit GANs are independent, so rank r trains only a contiguous block of the
    digits and no gradient crosses ranks. The per-digit plugin draws each class's
    initial weights, noise rows, dropout masks and data from class-keyed streams, so
    a digit trains the same whichever rank holds it. At checkpoint time rank 0 gathers
    every rank's slices and writes the checkpoint a one-process run would write.

The ranks step in lock step: each step starts a non-blocking all-reduce of two flags
(Ctrl-C seen, time budget spent) and reads the previous step's, so all ranks stop at
the same step, commit the same checkpoint and exit. A rank that dies takes the others
down: its peers' next collective fails (gloo sees the closed socket), and the launcher
kills what is left within seconds, naming the rank.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import re
import sys
from dataclasses import replace
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gankit.errors import GankitError, TrainingError
from gankit.training.distributed.roles import Role, _watch_launcher, dist_timeout, shard_classes
from gankit.training.persist.runlog import fault_point

_PER_CLASS_KEY = re.compile(r"^(.+)_(\d)$")  # per-digit log keys: d_loss_3, g_loss_3


# ----------------------------------------------------------------------------- batches and noise
class ShardedBatches:
    """A rank's rows of the batch the single-process sampler draws.

    Every rank runs the full sampler (same seeded index stream), so the global batch and
    the sampler state are exactly one process's; rank r keeps rows ``[r*m, (r+1)*m)`` of
    each of ``groups`` equal blocks (1 block for a shuffled batch, one per class for a
    per-class batch, so every rank still gets every class in class order).
    """

    def __init__(self, sampler, rank: int, world_size: int, groups: int):
        self.inner = sampler
        self.rank, self.world_size, self.groups = rank, world_size, groups

    def keep(self, t: torch.Tensor) -> torch.Tensor:
        m = t.shape[0] // (self.groups * self.world_size)
        blocks = t.view(self.groups, self.world_size * m, *t.shape[1:])
        return blocks[:, self.rank * m:(self.rank + 1) * m].reshape(self.groups * m, *t.shape[1:])

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.inner.next()
        return self.keep(images), self.keep(labels)

    def __getattr__(self, name: str) -> Any:  # state(), load_state(), streams, classes ...
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)


# ----------------------------------------------------------------------------- nets
class _Calls(nn.Module):
    """Runs any method of ``net`` from ``forward``: DDP synchronises only what goes through forward."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, *args: Any, gankit_method: str = "forward", **kwargs: Any) -> Any:
        return getattr(self.net, gankit_method)(*args, **kwargs)


class _Replica(DistributedDataParallel):
    """A DDP-wrapped net on which ``net.forward_blocks(...)`` etc. also go through DDP's forward."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
        value = getattr(super().__getattr__("module").net, name)
        if inspect.ismethod(value):
            return functools.partial(self.__call__, gankit_method=name)
        return value


def _fingerprint(module: nn.Module) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in module.parameters()]).cpu()


# ----------------------------------------------------------------------------- one rank
class Parallel:
    """What the trainer asks of the process group. Build with `start`; see the module docstring."""

    def __init__(self, role: Role, device: torch.device, classes: tuple[int, ...], plugin, spec):
        self.role = role
        self.rank, self.world_size, self.mode = role.rank, role.world_size, role.mode
        self.device = device
        self.all_classes = tuple(sorted(classes))
        self.classes = (shard_classes(classes, self.world_size, self.rank) if self.mode == "shard-digits"
                        else self.all_classes)
        self.counts = [len(shard_classes(classes, self.world_size, r)) for r in range(self.world_size)]
        self.plugin, self.spec = plugin, spec  # the full run's spec (all digits)
        backend = "nccl" if device.type == "cuda" else "gloo"
        self.group = dist.group.WORLD
        # Flags, rows and checkpoint pieces are small host objects: a gloo group beside NCCL
        # carries them without a device sync.
        self.cpu_group = dist.new_group(backend="gloo") if backend == "nccl" else self.group
        self._flags: Optional[tuple[torch.Tensor, Any]] = None
        self._local = (False, False)
        self._checked = False
        self._nets: tuple[nn.Module, nn.Module] | None = None
        self._shapes: dict[tuple[int, ...], dict[str, Any]] = {}

    @property
    def writes(self) -> bool:
        return self.rank == 0

    # ----- what each rank trains ------------------------------------------------------
    def saved_config(self, cfg):
        """The run's config as saved (all digits), from a rank's own config."""
        return cfg.with_overrides(classes=self.all_classes) if self.mode == "shard-digits" else cfg

    def same_precision(self, cfg):
        """``cfg`` with rank 0's precision: ``--precision auto`` times steps on each rank, and the
        ranks must not train in different precisions."""
        chosen = [cfg.precision]
        dist.broadcast_object_list(chosen, src=0, group=self.cpu_group)
        return replace(cfg, precision=chosen[0])

    def shard_batches(self, sampler):
        if self.mode == "shard-digits":
            return sampler  # the rank's sampler holds only its digits already
        groups = len(sampler.classes) if sampler.layout == "per-class" else 1
        return ShardedBatches(sampler, self.rank, self.world_size, groups)

    def noise(self, kind: str, z_dim: int, generator: torch.Generator, per_class_batch: Optional[int] = None):
        """``ctx.noise``: every rank draws the full batch's noise (one process's stream), keeps its rows.

        ``per_class_batch`` (the global per-class batch of a per-class layout): the rows are
        then blocks per class, whether the step draws for its classes (``K * b``) or for all
        ten digits (``num_classes * b``, as per-digit does).
        """
        from gankit.training.engine.context import draw_latent

        device, rank, world = self.device, self.rank, self.world_size
        if self.mode == "shard-digits":
            return lambda n: draw_latent(n, z_dim, kind, generator, device)
        candidates = (self.spec.num_classes, len(self.all_classes)) if per_class_batch else ()

        def draw(n: int) -> torch.Tensor:
            full = draw_latent(n * world, z_dim, kind, generator, device)
            groups = next((g for g in candidates if n % g == 0 and (n // g) * world == per_class_batch), 1)
            m = n // groups
            return full.view(groups, world * m, z_dim)[:, rank * m:(rank + 1) * m].reshape(n, z_dim)

        return draw

    def wrap(self, generator: nn.Module, discriminator: nn.Module):
        """The nets the step sees: DDP replicas (ddp), or the nets themselves (shard-digits)."""
        self._nets = (generator, discriminator)
        if self.mode == "shard-digits":
            return generator, discriminator
        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        return _Replica(_Calls(generator), device_ids=ids), _Replica(_Calls(discriminator), device_ids=ids)

    # ----- lock step ------------------------------------------------------------------
    def agree(self, stop: bool, out_of_time: bool) -> tuple[bool, bool]:
        """(stop, out of time) as every rank will see them this step: the previous step's flags, any rank.

        One step of lag hides the all-reduce behind the step; since every rank reads the
        same reduced flags at the same step, all stop together.
        """
        fault_point(f"rank{self.rank}-step")  # tests/test_distributed.py kills one rank here
        if not self._checked:
            self._checked = True
            self.check_replicas()
        # Sticky: a request sent while the previous flags were in flight is sent again.
        self._local = (self._local[0] or stop, self._local[1] or out_of_time)
        flags = torch.tensor([int(self._local[0]), int(self._local[1])], dtype=torch.int32)
        previous, self._flags = self._flags, (flags, dist.all_reduce(flags, op=dist.ReduceOp.MAX,
                                                                     group=self.cpu_group, async_op=True))
        if previous is None:
            return False, False
        previous[1].wait()
        return bool(previous[0][0]), bool(previous[0][1])

    def check_replicas(self) -> None:
        """DDP replicas must be identical after a step; a step that bypassed DDP makes them differ."""
        if self.mode != "ddp" or self._nets is None:
            return
        mine = torch.cat([_fingerprint(m) for m in self._nets])
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(everyone, mine, group=self.cpu_group)
        if not all(torch.equal(everyone[0], x) for x in everyone[1:]):
            raise TrainingError(
                f"plugin {self.plugin.name!r}: after one step the ranks' weights differ, so its step updated "
                "the nets without going through their forward (DistributedDataParallel synchronises only "
                "calls of the nets themselves); run it in one process, or make its step call only the nets")

    # ----- logs -----------------------------------------------------------------------
    def _split(self, key: str) -> Optional[int]:
        match = _PER_CLASS_KEY.match(key)
        if match and int(match.group(2)) in self.all_classes:
            return int(match.group(2))
        return None

    def _merge_rows(self, rows: list[dict[str, Any]], numbers=float) -> dict[str, Any]:
        """One process's row from the ranks' rows (shard-digits): per-digit keys from their owner,
        run-wide keys as the mean over digits (each rank's mean weighted by its digit count)."""
        total = sum(self.counts)
        merged: dict[str, Any] = {}
        for key in rows[0]:
            if self._split(key) is None:
                merged[key] = sum(float(r[key]) * k for r, k in zip(rows, self.counts)) / total
        for row in rows:
            merged.update({k: v for k, v in row.items() if self._split(k) is not None})
        return {k: numbers(v) for k, v in merged.items()}

    def reduce_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A log row with the losses of the whole global batch (every rank calls it at the same step)."""
        keep = {"step", "steps_per_s", "elapsed_s"}
        if self.mode == "shard-digits":
            rows: list = [None] * self.world_size
            dist.all_gather_object(rows, {k: v for k, v in row.items() if k not in keep}, group=self.cpu_group)
            return {"step": row["step"], **self._merge_rows(rows),
                    **{k: row[k] for k in ("steps_per_s", "elapsed_s") if k in row}}
        keys = [k for k in row if k not in keep]
        values = torch.tensor([float(row[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(values, group=self.cpu_group)
        out = dict(row)
        out.update({k: float(v) / self.world_size for k, v in zip(keys, values.tolist())})
        return out

    def sync_pending(self, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Make the not-yet-logged per-step losses global on every rank; return what the checkpoint saves.

        Done in place at every checkpoint, on every rank, so an uninterrupted run and one
        resumed from this checkpoint average the very same numbers into their next row.
        """
        def as_tensor(v: Any) -> torch.Tensor:
            return torch.tensor(float(v), dtype=torch.float32, device=self.device)

        if not pending:
            return []
        if self.mode == "ddp":
            # Each step's own keys (a key may be missing on some steps); every rank ran the
            # same steps, so the cells line up across ranks.
            cells = [(p, k) for p in pending for k in p]
            values = torch.tensor([float(p[k]) for p, k in cells], dtype=torch.float32)
            dist.all_reduce(values, group=self.cpu_group)
            values /= self.world_size
            for (p, k), v in zip(cells, values.tolist()):
                p[k] = as_tensor(v)
            return pending
        everyone: list = [None] * self.world_size
        dist.all_gather_object(everyone, [{k: float(v) for k, v in p.items()} for p in pending],
                               group=self.cpu_group)
        merged = [self._merge_rows([rank_rows[i] for rank_rows in everyone], numbers=as_tensor)
                  for i in range(len(pending))]
        for p, m in zip(pending, merged):
            p.update({k: v for k, v in m.items() if self._split(k) is None})
        return merged

    # ----- checkpoints ------------------------------------------------------------------
    def checkpoint_extra(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "parallel": self.mode}

    def save(self, trainer, name: Optional[str]):
        """Commit a checkpoint (rank 0 writes; every rank must call it at a step checkpoint).

        ``name`` (the 'best' checkpoint) is saved by rank 0 alone, from its own state, with
        no collective: only rank 0 evaluates.
        """
        from gankit.training.persist import checkpoint as ckpt

        if name is None:
            saved_pending = self.sync_pending(trainer.pending_losses)
        elif not self.writes:
            return None
        else:
            saved_pending = trainer.pending_losses
        parts = trainer._checkpoint_parts()
        parts["extra"] = {**parts["extra"], **self.checkpoint_extra(),
                          ckpt.PENDING: ckpt.pending_to_json(saved_pending)}
        if self.mode == "shard-digits" and name is None:
            parts = self._gather_parts(parts)
        if not self.writes:
            return None
        return trainer._write_checkpoint(self.saved_config(trainer.cfg), parts, name)

    def _net_shapes(self, classes: tuple[int, ...]) -> dict[str, Any]:
        """State-dict and parameter shapes of the nets for ``classes``, from a throwaway CPU build."""
        if classes not in self._shapes:
            spec = replace(self.spec, classes=classes)
            with torch.random.fork_rng(devices=[]):
                nets = self.plugin.build(spec)
            self._shapes[classes] = {
                tag: ({k: tuple(v.shape) for k, v in net.state_dict().items()},
                      [tuple(p.shape) for p in net.parameters()])
                for tag, net in (("g", nets.generator), ("d", nets.discriminator))}
        return self._shapes[classes]

    def _gather_parts(self, parts: dict[str, Any]) -> dict[str, Any]:
        """Rank 0: the checkpoint parts of the one-process run, from every rank's digit slices."""
        mine = {
            "generator": _cpu(parts["generator"]), "discriminator": _cpu(parts["discriminator"]),
            "ema": _cpu(parts["ema"]) if parts["ema"] else None,
            "opt_g": _cpu_opt(parts["opt_g"].state_dict()), "opt_d": _cpu_opt(parts["opt_d"].state_dict()),
            "sampler": parts["sampler"],
        }
        everyone: Optional[list] = [None] * self.world_size if self.writes else None
        dist.gather_object(mine, everyone, dst=0, group=self.cpu_group)
        if not self.writes:
            return parts
        full = self._net_shapes(self.all_classes)
        out = dict(parts)
        for key, tag in (("generator", "g"), ("discriminator", "d"), ("ema", "g")):
            if everyone[0][key] is not None:
                out[key] = {k: _join([e[key][k] for e in everyone], full[tag][0][k]) for k in everyone[0][key]}
        for key, tag in (("opt_g", "g"), ("opt_d", "d")):
            out[key] = _StateOnly(_join_opt([e[key] for e in everyone], full[tag][1]))
        out["sampler"] = {**parts["sampler"],
                          "streams": [s for e in everyone for s in e["sampler"]["streams"]]}
        return out

    def resume_state(self, state):
        """The rank's share of a loaded checkpoint (shard-digits: its digits' slices; ddp: all of it)."""
        from gankit.training.persist import checkpoint as ckpt

        if self.mode != "shard-digits":
            return state
        start = sum(self.counts[:self.rank])
        k, total = len(self.classes), len(self.all_classes)
        local = self._net_shapes(self.classes)

        def cut(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
            if tuple(t.shape) == shape:
                return t
            per = t.shape[0] // total
            return t[start * per:(start + k) * per].clone()

        def cut_module(d, tag):
            return {name: cut(t, local[tag][0][name]) for name, t in d.items()}

        def cut_opt(sd, tag):
            shapes = local[tag][1]
            st = {i: {key: (cut(v, shapes[int(i)]) if torch.is_tensor(v) and v.dim() else v)
                      for key, v in s.items()} for i, s in sd["state"].items()}
            return {**sd, "state": st}

        pending = [{key: v for key, v in row.items() if self._split(key) is None or self._split(key) in self.classes}
                   for row in ckpt.pending_from_json(state.extra.get(ckpt.PENDING, []))]
        return replace(
            state, config=state.config.with_overrides(classes=self.classes),
            generator=cut_module(state.generator, "g"), discriminator=cut_module(state.discriminator, "d"),
            ema=cut_module(state.ema, "g") if state.ema else state.ema,
            opt_g=cut_opt(state.opt_g, "g"), opt_d=cut_opt(state.opt_d, "d"),
            sampler={**state.sampler, "streams": state.sampler["streams"][start:start + k]},
            extra={**state.extra, ckpt.PENDING: ckpt.pending_to_json(pending)})

    def run(self, trainer):
        """``trainer.run()`` on this rank: errors name the rank, a lost peer is said plainly.

        Returns the result on rank 0 and None on the others (rank 0 reports). Ranks other
        than 0 exit silently with status 1 on Ctrl-C: rank 0 prints the one message.
        """
        from gankit.training.engine.trainer import Interrupted

        try:
            result = trainer.run()
        except Interrupted:
            if self.writes:
                raise
            sys.exit(1)
        except GankitError as exc:
            if self.writes:
                raise
            err = GankitError(f"rank {self.rank}: {exc}")
            err.exit_code = exc.exit_code
            raise err from None
        except RuntimeError as exc:
            if is_peer_failure(exc):
                raise lost_peer(self.rank, exc) from None
            raise
        self.close()
        return result if self.writes else None

    def close(self) -> None:
        if self._flags is not None:
            self._flags[1].wait()
            self._flags = None
        if dist.is_initialized():
            dist.destroy_process_group()


class _StateOnly:
    """What `save_checkpoint` needs of an optimizer (its ``state_dict()``), for merged state."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state


def _cpu(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in d.items()}


def _cpu_opt(sd: dict) -> dict:
    return {"state": {i: {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in s.items()}
                      for i, s in sd["state"].items()}, "param_groups": sd["param_groups"]}


def _join(parts: list[torch.Tensor], full_shape: tuple[int, ...]) -> torch.Tensor:
    """One tensor of the all-digit nets from the ranks' slices: shared ones as they are, stacked ones joined."""
    if parts[0].dim() == 0 or tuple(parts[0].shape) == tuple(full_shape):
        return parts[0]
    joined = torch.cat(parts, 0)
    if tuple(joined.shape) != tuple(full_shape):
        raise TrainingError(f"cannot join the ranks' digit slices: {tuple(joined.shape)} is not {full_shape}")
    return joined


def _join_opt(states: list[dict], param_shapes: list[tuple[int, ...]]) -> dict:
    merged = {}
    for i, s in states[0]["state"].items():
        merged[i] = {k: (_join([st["state"][i][k] for st in states], param_shapes[int(i)])
                         if torch.is_tensor(v) and v.dim() else v) for k, v in s.items()}
    return {"state": merged, "param_groups": states[0]["param_groups"]}


def join(role: Role, plan, state):
    """(Parallel, the rank's plan, the rank's resume state): with --shard-digits, its digits only."""
    from gankit.training.engine.spec import plan_run
    from gankit.training.engine.trainer import resolve_device

    parallel = start(role, resolve_device(plan.config.device), plan.config, plan.plugin, plan.spec)
    if role.mode == "shard-digits":
        plan = plan_run(plan.config.with_overrides(classes=parallel.classes), plan.plugin)
        if state is not None:
            state = parallel.resume_state(state)
    return parallel, plan, state


def start(role: Role, device: torch.device, cfg, plugin, spec) -> Parallel:
    """Join the process group for this rank (gloo on CPU, NCCL on CUDA) and return its `Parallel`."""
    _watch_launcher()
    if device.type == "cuda":
        torch.cuda.set_device(role.local_rank)
        device = torch.device("cuda", role.local_rank)
    timeout = dist_timeout()
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(f"rank {role.rank}: cannot join the other ranks ({_first_line(exc)})") from None
    return Parallel(role, device, tuple(cfg.classes), plugin, spec)


def _first_line(exc: BaseException) -> str:
    """The gist of a (gloo, NCCL) error: first line, without the source location and the advice."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = re.sub(r"^\[[^\]]*\]\s*", "", line)
    return line.split(". ")[0].rstrip(".")


def lost_peer(rank: int, exc: BaseException) -> TrainingError:
    """The error a rank reports when a collective fails because another rank is gone."""
    return TrainingError(f"rank {rank}: lost contact with the other ranks ({_first_line(exc)}); stopping. "
                         "The last committed checkpoint is intact")


def is_peer_failure(exc: BaseException) -> bool:
    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("Connection", "connection", "gloo", "NCCL",
                                                                      "Timed out", "timed out")))

