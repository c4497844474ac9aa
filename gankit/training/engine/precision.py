"""Picking the training precision by measurement: `--precision auto` keeps bf16 only where it pays.

Heavy tier (torch). bf16 autocast helps on a CPU only when the CPU has native bf16
instructions (AVX512-BF16 or AMX, e.g. AMD Zen 4 or Intel Sapphire Rapids); elsewhere
torch emulates it and it is no faster, or slower, than fp32. So ``auto``:

1. stays fp32 when the device has no native bf16 (no timing at all, so such runs are
   bit-for-bit the runs an explicit ``--precision fp32`` gives);
2. otherwise times a few training steps in each precision on throwaway copies of the
   nets and optimizers (the run's own weights, optimizer state and random streams are
   untouched), in `ROUNDS` alternating rounds, and keeps bf16 only if its best round is
   at least `MIN_SPEEDUP` times faster than fp32's best round.

The margin keeps the choice stable: two precisions within timing noise of each other
would otherwise flip between runs of the same command. The chosen precision is written
into the run's config.json, so a resume keeps it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

MIN_SPEEDUP = 1.15
WARMUP_STEPS = 3
TIMED_STEPS = 8
# Rounds of (fp32, bf16) timings, alternated, each precision scored by its best round.
# One fp32-then-bf16 pair of 10 steps each was measured at 1.10x, 1.43x and 1.17x for the
# same per-digit command on a quiet Zen 4 (a 1.55x step): a burst of other work or a
# clock change hits one precision only. Alternating spreads such events over both, and
# the best round is the one least disturbed, which is the rate the run will mostly see.
ROUNDS = 4

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` chose and why; steps/s are None when no timing was needed."""

    precision: str
    reason: str
    fp32_steps_per_s: float | None = None
    bf16_steps_per_s: float | None = None


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU advertises bf16 instructions (Linux /proc/cpuinfo flags; False where unreadable)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return any(f in flags for f in _BF16_FLAGS)
    return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (not emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def steps_per_second(step: Callable[[], None], device: torch.device, warmup: int = WARMUP_STEPS,
                     timed: int = TIMED_STEPS) -> float:
    """Rate of ``step()`` after ``warmup`` untimed calls (which absorb one-off kernel selection)."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(timed):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return timed / max(time.perf_counter() - start, 1e-9)


def choose_precision(device: torch.device, make_step: Callable[[str], Callable[[], None]], *,
                     native: Callable[[torch.device], bool] = native_bf16,
                     measure: Callable[[Callable[[], None], torch.device], float] = steps_per_second,
                     ) -> PrecisionChoice:
    """Resolve ``auto``. ``make_step(precision)`` returns a function taking one throwaway training step.

    ``native`` and ``measure`` are the hardware probe and the timer (replaceable in tests).
    """
    if not native(device):
        return PrecisionChoice("fp32", f"no native bf16 on this {device.type}")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        steps = {p: make_step(p) for p in ("fp32", "bf16")}
        rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(ROUNDS):
            for p, step in steps.items():
                rates[p].append(measure(step, device))
        fp32, bf16 = max(rates["fp32"]), max(rates["bf16"])
    if bf16 >= MIN_SPEEDUP * fp32:
        return PrecisionChoice("bf16", f"bf16 {bf16 / fp32:.2f}x faster than fp32", fp32, bf16)
    return PrecisionChoice("fp32", f"bf16 only {bf16 / fp32:.2f}x fp32 (needs {MIN_SPEEDUP}x)", fp32, bf16)


def bf16_warning(device: torch.device) -> str | None:
    """The warning for an explicit ``--precision bf16`` where it is emulated (slow), else None."""
    if native_bf16(device):
        return None
    return (f"--precision bf16: this {device.type} has no native bf16 instructions, so torch emulates it; "
            "training will likely be slower than fp32 (use --precision auto or fp32)")
