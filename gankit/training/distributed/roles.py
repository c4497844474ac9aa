"""Who runs where: a run's `Role`, torchrun's variables, digit shards, and the `--nproc` launcher.

Heavy tier by placement, but this module needs no torch: it plans the ranks and starts
them as ``python -m gankit`` subprocesses with a watchdog parent (`launch`). What a rank
does once started is `gankit.training.distributed.parallel`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from gankit.errors import UsageError
from gankit.inputs import envvars

MODES = ("ddp", "shard-digits")
LAUNCHER_ENV = "GANKIT_LAUNCHER_PID"  # set by `launch`: a rank whose launcher dies stops too
TIMEOUT_ENV = "GANKIT_DIST_TIMEOUT"
# Long enough for rank 0 to write a checkpoint or run an evaluation while the others wait in
# their next collective; a dead rank is noticed much sooner (closed socket, the launcher).
DEFAULT_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week; torch's timedelta would overflow on much larger values


def dist_timeout() -> float:
    """Seconds a collective may wait for the other ranks: `GANKIT_DIST_TIMEOUT`, else 300."""
    return envvars.number(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, low=0.0, high=MAX_TIMEOUT_S, above_low=True,
                          what="a positive number of seconds")


# ----------------------------------------------------------------------------- who am I
@dataclass(frozen=True)
class Role:
    """This process's part in a run: its rank, the world size, the mode, and whether it must launch."""

    world_size: int
    rank: int = 0
    local_rank: int = 0
    mode: str = "ddp"
    launcher: bool = False  # `gankit train --nproc N` before the ranks exist

    @property
    def writes(self) -> bool:
        return self.rank == 0


def env_world() -> Optional[tuple[int, int, int]]:
    """(rank, world size, local rank) from torchrun's variables, or None outside a launch."""
    if "WORLD_SIZE" not in os.environ:
        return None
    rank, world, local = (envvars.integer(k, 0, low=0, high=1 << 20, what="a whole number (set by torchrun)")
                          for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK {rank} is not below WORLD_SIZE {world}")
    return rank, world, local


def holds_run_lock() -> bool:
    """Whether this process should hold the run folder's lock: a plain run, `--nproc N`'s
    launcher, or torchrun's rank 0. The ranks a gankit launcher starts leave it to the
    launcher, which holds it for as long as they live."""
    if launcher_pid() is not None:
        return False
    env = env_world()
    return env is None or env[0] == 0


def shard_classes(classes: Sequence[int], world_size: int, rank: int) -> tuple[int, ...]:
    """Rank ``rank``'s contiguous block of the sorted digits (the first ranks take one more)."""
    ordered = sorted(classes)
    base, extra = divmod(len(ordered), world_size)
    start = rank * base + min(rank, extra)
    return tuple(ordered[start:start + base + (1 if rank < extra else 0)])


def plan_role(nproc: Optional[int], shard_digits: bool, cfg, plugin) -> Optional[Role]:
    """Check --nproc / --shard-digits against the machine and the run; None for a plain run.

    Usage errors (exit 2): fewer than 1 process, more than cores (CPU) or GPUs (CUDA), more
    than digits with --shard-digits, a batch that does not split evenly, a plugin whose
    digits are not independent.
    """
    from gankit.training.engine.trainer import resolve_device

    env = env_world()
    if nproc is not None and not isinstance(nproc, int):
        raise UsageError(f"--nproc must be an integer, got {nproc!r}")
    if nproc is not None and nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if env is not None and nproc is not None and nproc != env[1]:
        raise UsageError(f"--nproc {nproc} disagrees with WORLD_SIZE {env[1]} set by the launcher (torchrun); "
                         "give one or the other")
    world = env[1] if env is not None else (nproc or 1)
    if world == 1 and not shard_digits:
        return None
    dist_timeout()  # a malformed GANKIT_DIST_TIMEOUT is said once, here, not by every rank
    device = resolve_device(cfg.device)  # --device cuda without a GPU is a usage error here
    if env is None:  # torchrun on several nodes counts all nodes' processes: only check what we start
        if device.type == "cuda":
            import torch  # only to count GPUs: planning a CPU run stays torch-free

            gpus = torch.cuda.device_count()
            if world > gpus:
                raise UsageError(f"--nproc {world} asks for more processes than this machine's {gpus} GPU(s)")
        else:
            cores = os.cpu_count() or 1
            if world > cores:
                raise UsageError(f"--nproc {world} asks for more processes than this machine's {cores} CPU core(s)")
    mode = "shard-digits" if shard_digits else "ddp"
    if shard_digits:
        if plugin.batch_layout != "per-class" or plugin.label_mode != "per-class":
            raise UsageError(f"--shard-digits needs a plugin that trains one independent GAN per digit "
                             f"(per-digit); plugin {plugin.name!r} does not")
        if world > len(cfg.classes):
            raise UsageError(f"--shard-digits with {world} processes needs at least {world} digits; "
                             f"the run trains {len(cfg.classes)} ({','.join(map(str, sorted(cfg.classes)))})")
        if cfg.eval_every:
            raise UsageError("--eval-every is not supported with --shard-digits (each rank holds only some "
                             "digits); evaluate the exported model with `gankit evaluate` instead")
    elif cfg.batch_size % world:
        what = "per digit " if plugin.batch_layout == "per-class" else ""
        raise UsageError(f"--batch-size {cfg.batch_size} ({what}global batch) does not split evenly over "
                         f"{world} processes; use a multiple of {world}")
    if env is None:
        return Role(world_size=world, mode=mode, launcher=True)
    rank, _, local = env
    return Role(world_size=world, rank=rank, local_rank=local, mode=mode)


def check_resume(role: Optional[Role], state) -> None:
    """A checkpoint continues only with the world size and mode it was written with."""
    saved_world = int(state.extra.get("world_size", 1))
    saved_mode = state.extra.get("parallel", "ddp")
    world = role.world_size if role else 1
    mode = role.mode if role else "ddp"
    if saved_world == world and (world == 1 or saved_mode == mode):
        return
    how = "one process" if saved_world == 1 else f"--nproc {saved_world}" + (
        " --shard-digits" if saved_mode == "shard-digits" else "")
    raise UsageError(
        f"this run was trained with {how}; resume it the same way. A different number of processes "
        "would sum each gradient in a different order, so the run would not continue exactly")


# ----------------------------------------------------------------------------- the launcher
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with status {rc}"


def launch(role: Role, argv: Sequence[str], grace_s: float = 3.0) -> int:
    """Run ``python -m gankit <argv>`` as ``role.world_size`` local ranks; return the exit code.

    The parent is only a watchdog. Ctrl-C is forwarded once to every rank (they stop at the
    same step with a checkpoint); a second Ctrl-C kills them. When a rank fails, the others
    get ``grace_s`` to notice and exit, then SIGTERM, then SIGKILL, and the parent says
    which rank it was. The ranks run in their own session so the terminal's Ctrl-C reaches
    them only through the parent, exactly once.
    """
    n = role.world_size
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(n),
               LOCAL_WORLD_SIZE=str(n), **{LAUNCHER_ENV: str(os.getpid())})
    # One rank per core: without this every rank starts a thread per core and they fight.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    procs = []
    for rank in range(n):
        procs.append(subprocess.Popen([sys.executable, "-m", "gankit", *argv], start_new_session=True,
                                      env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank))))
    interrupts = 0

    def on_signal(signum, frame):
        nonlocal interrupts
        interrupts += 1
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGKILL if interrupts > 1 else signum)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed: Optional[tuple[int, int]] = None
        deadline = None
        while any([p.poll() is None for p in procs]):  # a list: poll every rank, not up to the first alive
            if failed is None:
                bad = [(rank, p.returncode) for rank, p in enumerate(procs) if p.returncode not in (None, 0)]
                if bad:  # a rank killed by a signal is the cause; the others then fail on its socket
                    failed, deadline = min(bad, key=lambda f: (f[1] >= 0, f[0])), time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                sig = signal.SIGTERM if time.monotonic() < deadline + 2.0 else signal.SIGKILL
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(sig)
            time.sleep(0.05)
        codes = [p.returncode for p in procs]
        if failed is None:
            failed = next(((r, c) for r, c in enumerate(codes) if c != 0), None)
        if failed is None:
            return 0
        rank, rc = failed
        if interrupts:
            return 130 if interrupts > 1 else 1
        others = [r for r in range(n) if r != rank]
        sys.stderr.write(f"error: rank {rank} of {n} {_describe_exit(rc)}; stopped the other rank(s) "
                         f"{','.join(map(str, others))}. The last committed checkpoint is intact.\n")
        return 2 if rc == 2 and all(c == 2 for c in codes) else 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def launcher_pid() -> Optional[int]:
    """The launcher's PID that `launch` gives its ranks (`GANKIT_LAUNCHER_PID`), or None outside a launch."""
    return envvars.integer(LAUNCHER_ENV, None, low=1, high=1 << 31, what="a process id (set by `gankit train --nproc`)")


def _watch_launcher() -> None:
    """A rank whose launcher disappears (SIGKILLed) stops instead of training on as an orphan."""
    pid = launcher_pid()
    if pid is None:
        return

    def watch():
        while os.getppid() == pid:
            time.sleep(1.0)
        sys.stderr.write(f"error: rank {os.environ.get('RANK')}: the launcher (pid {pid}) is gone; stopping\n")
        os._exit(1)

    threading.Thread(target=watch, name="gankit-launcher-watch", daemon=True).start()


def role_for(nproc: Optional[int], shard_digits: bool, plan, state) -> Optional[Role]:
    """`gankit train`'s role from --nproc / --shard-digits / torchrun's variables; checks a resume fits."""
    role = plan_role(nproc, shard_digits, plan.config, plan.plugin)
    if state is not None:
        check_resume(role, state)
    return role


def rank_argv(run_dir, fresh: bool) -> list[str]:
    """This command line for the ranks: without --nproc, and with the run folder's name fixed
    (a default name holds the time, which the ranks would each read differently)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    if fresh:
        args += ["--name", run_dir.name]
    return args


