"""Capturing the step: `--compile {off,auto,default,reduce-overhead}` compiles the nets a step calls.

Heavy tier (torch). What is compiled is each net's ``forward`` (and, through
AOTAutograd, its backward) with ``torch.compile(net, mode=..., dynamic=False)``: the
step still calls the nets through ``forward`` only, so every plugin's step, hooks and
losses run unchanged around them. The shapes are static (the sampler's batches all have
the same size, the last short batch of an epoch being dropped), so each distinct call
(D on real+fake, D on fake, G) is compiled once. ``reduce-overhead`` adds CUDA graphs on
a GPU (on a CPU it is the same as ``default``). Optimizers stay the fused kernels of
`gankit.training.engine.optim`; the EMA stays one ``_foreach_lerp_``.

``auto`` resolves once per run, from the table `AUTO` (what bench/bench_gpu.py measured
per device type), and the choice replaces ``auto`` in the run's config.json, as
``--precision auto`` does. A device type the bench has not measured stays eager.

Falling back: a missing compiler toolchain (inductor needs a C++ compiler on a CPU and
Triton on a GPU), a torch without ``torch.compile`` or any failure while compiling
makes the run train eagerly after one line saying why, never a traceback. Compilation
happens during the first step, so that step is guarded: the state it could have moved
(weights, optimizer moments, random streams, the sampler) is saved before it and
restored before the eager retry, and the run is exactly the eager run from there on.

Numbers: a compiled step fuses elementwise ops and so rounds differently from the eager
step; the two runs are not bit-identical (docs/scaling.md gives the measured drift). A
compiled run is deterministic on a CPU: the same command, or a resume, compiles the same
kernels and gives the same bits.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch

from gankit.config import COMPILE_MODES as MODES

# What `auto` picks per device type, from bench/bench_gpu.py (docs/scaling.md has the tables).
# cpu: compiled per-digit and conditional steps took 0.77-0.89x eager's CPU time on a 2-core
# Xeon (their time is in matmuls, Adam and dropout masks, which compiling does not change);
# cuda: not yet measured by the bench, so eager until it is.
AUTO: Mapping[str, str] = {"cpu": "off", "cuda": "off"}


@dataclass(frozen=True)
class CompileChoice:
    """The mode a run uses (``off``, ``default`` or ``reduce-overhead``) and why."""

    mode: str
    reason: str


def resolve(requested: str, device: torch.device, *, distributed: bool = False) -> CompileChoice:
    """The mode for ``requested`` on ``device``: ``auto`` looked up in `AUTO`, the rest as given.

    A multi-process run (``distributed``) stays eager: DDP's gradient hooks and the
    ranks' lock step are not captured here.
    """
    if requested not in MODES:
        raise ValueError(f"unknown compile mode {requested!r}")
    mode = AUTO.get(device.type, "off") if requested == "auto" else requested
    if mode != "off" and distributed:
        return CompileChoice("off", "a multi-process run trains eagerly")
    if requested == "auto":
        return CompileChoice(mode, f"the bench's choice for {device.type}")
    return CompileChoice(mode, "asked for")


def unavailable(mode: str) -> Optional[str]:
    """Why ``mode`` cannot run with this torch (None when it can); checked before anything is compiled."""
    if mode == "off":
        return None
    if not callable(getattr(torch, "compile", None)):
        return f"torch {torch.__version__} has no torch.compile"
    return None


def compile_module(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``module`` compiled for ``mode`` (shares its parameters and buffers), or itself for ``off``."""
    if mode == "off":
        return module
    return torch.compile(module, mode=mode, dynamic=False)


class _Snapshot:
    """What one training step can move, copied, so a failed first compiled step can be undone."""

    def __init__(self, modules, optimizers, generators, sampler):
        self.modules = [(m, copy.deepcopy(m.state_dict())) for m in modules]
        self.optimizers = [(o, copy.deepcopy(o.state_dict())) for o in optimizers]
        self.generators = [(g, g.get_state()) for g in generators]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        self.sampler = (sampler, sampler.state()) if sampler is not None else None

    def restore(self) -> None:
        with torch.no_grad():
            for m, state in self.modules:
                m.load_state_dict(state)
        for o, state in self.optimizers:
            o.load_state_dict(state)
        for g, state in self.generators:
            g.set_state(state)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        if self.sampler is not None:
            self.sampler[0].load_state(self.sampler[1])


@contextlib.contextmanager
def _compiler_logs_quiet():
    """Keep the compiler's own log lines (kept temp folders, retries) out of a failed compile's one line."""
    loggers = [logging.getLogger(name) for name in ("torch._inductor", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class CompiledStep:
    """A train step run on compiled nets, falling back to the eager nets if compiling fails.

    ``ctx`` is the step context the trainer passes to every step; its ``generator`` and
    ``discriminator`` are swapped for the compiled nets here (and back on a fall-back).
    ``state`` lists what a step may move: modules, optimizers, torch generators and the
    sampler (anything with ``state()`` / ``load_state()``).
    """

    def __init__(self, train_step: Callable, ctx: Any, mode: str, *, modules, optimizers, generators,
                 sampler=None, on_message: Callable[[str], None] = lambda text: None):
        self.train_step = train_step
        self.ctx = ctx
        self.mode = mode
        self.eager = (ctx.generator, ctx.discriminator)
        self._state = dict(modules=modules, optimizers=optimizers, generators=generators, sampler=sampler)
        self.on_message = on_message
        self.proven = False
        self.failed: Optional[str] = None
        self.compile_seconds: Optional[float] = None
        self._mark_steps = mode == "reduce-overhead" and torch.device(ctx.device).type == "cuda"
        try:
            ctx.generator = compile_module(ctx.generator, mode)
            ctx.discriminator = compile_module(ctx.discriminator, mode)
        except Exception as exc:  # noqa: BLE001 - any failure means: train eagerly
            self._fall_back(exc)

    def _fall_back(self, exc: BaseException) -> None:
        self.failed = _first_line(exc)
        self.ctx.generator, self.ctx.discriminator = self.eager
        self.on_message(f"--compile {self.mode}: compiling failed ({self.failed}); training eagerly")

    def __call__(self, ctx: Any, real: torch.Tensor, labels: torch.Tensor) -> Mapping[str, Any]:
        if self.failed is not None or self.proven:
            if self._mark_steps and self.failed is None:
                torch.compiler.cudagraph_mark_step_begin()
            return self.train_step(ctx, real, labels)
        snapshot = _Snapshot(**self._state)
        start = time.perf_counter()
        try:
            if self._mark_steps:
                torch.compiler.cudagraph_mark_step_begin()
            with _compiler_logs_quiet():
                out = self.train_step(ctx, real, labels)
        except Exception as exc:  # noqa: BLE001 - compiling happens here, in the first step
            snapshot.restore()
            self._fall_back(exc)
            return self.train_step(ctx, real, labels)
        self.proven = True
        self.compile_seconds = time.perf_counter() - start
        self.on_message(f"--compile {self.mode}: step compiled in {self.compile_seconds:.1f}s")
        return out
