"""The training loop, top to bottom: data in memory, plugin-built nets, steps, logs, checkpoints.

Heavy tier (torch). Nothing here is specific to one plugin or to the CLI: the loop
reports through a `Callbacks` object (progress bars live in the CLI), and a plugin
changes the maths only through its ``build`` and optional ``train_step``.

A run folder ``runs/<name>/`` holds config.json, metrics.jsonl, checkpoints/,
samples/step-*.png (from fixed noise), loss_curve.png and, when tensorboard is
installed, TensorBoard event files under tb/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gankit.config import TrainConfig
from gankit.errors import GankitError, PluginError, TrainingError, UsageError
from gankit.plugin_api import (COUNT_SUFFIX, REQUIRED_LOSSES, GanPlugin, NetSpec, Nets, generator_output_problems,
                               step_output_problems)
from gankit.training.persist import checkpoint as ckpt
from gankit.training.persist import runlog
from gankit.training.engine.context import draw_latent, make_step_context
from gankit.training.engine.sampler import BatchSampler
from gankit.training.engine.spec import RunPlan, build_checked, spec_from_config
from gankit.training.engine.optim import EMA, make_optimizer
from gankit.training.engine.step import standard_step

SAMPLES_PER_CLASS = 8


def window_means(pending: list[dict[str, Any]]) -> dict[str, Any]:
    """A log row's losses (gankit.plugin_api's logging rules): each key's mean over the steps that
    returned it, and ``<key>_count`` when that is not every step of the window."""
    keys: dict[str, None] = {}
    for losses in pending:
        keys.update(dict.fromkeys(losses))
    row: dict[str, Any] = {}
    for key in keys:
        vals = [p[key] for p in pending if key in p]
        if all(torch.is_tensor(v) for v in vals):
            # reshape(()): a [1] tensor on one step and a 0-d one on another still stack.
            row[key] = float(torch.stack([v.float().reshape(()) for v in vals]).mean())
        else:
            row[key] = float(np.mean([float(v) for v in vals]))
        if len(vals) < len(pending):
            row[key + COUNT_SUFFIX] = len(vals)
    return row


class Interrupted(GankitError):
    """Training stopped on Ctrl-C after committing a checkpoint."""


class Callbacks:
    """Hooks the loop calls; the CLI overrides them to drive a progress bar. All optional."""

    def on_start(self, start_step: int, total_steps: int) -> None: ...
    def on_log(self, row: dict[str, Any]) -> None: ...
    def on_sample(self, step: int, path: Path) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def on_eval(self, step: int, report: dict[str, Any]) -> None: ...
    def on_message(self, text: str) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    last_checkpoint: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    start_step: int = 0  # where this invocation began (0, or the resumed step)
    planned: int = 0  # the run's --steps
    stopped_early: bool = False  # the --max-seconds budget ran out before --steps

    @property
    def steps_run(self) -> int:
        """Steps this invocation ran (not counting those before a resume)."""
        return self.steps - self.start_step


def early_stop_note(step: int, planned: int) -> str:
    """What stopping at ``step`` of ``planned`` means for the digits a user will see."""
    return (f"{step / planned:.0%} of the planned training, so its digits are rougher and less varied "
            "than the finished run's")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device here; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step (and checkpoint); a second one aborts."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _rng_state(noise_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "noise": noise_gen.get_state(),
        "python": json.loads(json.dumps(random.getstate())),
    }
    np_state = np.random.get_state()
    state["numpy"] = [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict[str, Any], noise_gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch_cpu"].cpu())
    noise_gen.set_state(state["noise"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].cpu(), device)


class Trainer:
    """One training run. Build with a validated config, a plugin and the data; call `run()`.

    `Trainer.from_plan` takes a resolved `RunPlan`; passing ``spec`` (the plan's) saves
    rebuilding it. The config the run saves holds the plugin options merged with the
    plugin's defaults.
    """

    @classmethod
    def from_plan(cls, plan: RunPlan, images_u8: np.ndarray, labels: np.ndarray, run_dir: Path,
                  **kwargs: Any) -> "Trainer":
        return cls(plan.config, plan.plugin, images_u8, labels, run_dir, spec=plan.spec, **kwargs)

    def __init__(self, cfg: TrainConfig, plugin: GanPlugin, images_u8: np.ndarray, labels: np.ndarray,
                 run_dir: Path, *, dataset_name: str, callbacks: Callbacks | None = None,
                 resume: ckpt.TrainingState | None = None,
                 evaluator: Callable[[torch.nn.Module, int], dict[str, Any]] | None = None,
                 spec: NetSpec | None = None, parallel: Any = None):
        self.spec = spec if spec is not None else spec_from_config(cfg, plugin)
        self.cfg = dataclasses.replace(cfg, options=dict(self.spec.options))
        cfg = self.cfg
        self.plugin = plugin
        self.run_dir = Path(run_dir)
        self.dataset_name = dataset_name
        self.cb = callbacks or Callbacks()
        self.device = resolve_device(cfg.device)
        self.evaluator = evaluator
        self.tb = None
        # One rank of a multi-process run (gankit.training.distributed.Parallel): rank 0 alone writes.
        self.parallel = parallel
        self.writes = parallel is None or parallel.writes

        seed_everything(cfg.seed)
        nets = build_checked(plugin, self.spec, error=TrainingError)
        self.G = nets.generator.to(self.device)
        self.D = nets.discriminator.to(self.device)
        self.opt_g = make_optimizer(cfg, self.G.parameters(), cfg.lr_g, self.device)
        self.opt_d = make_optimizer(cfg, self.D.parameters(), cfg.lr_d, self.device)
        self.ema = EMA(self.G, cfg.ema, cfg.ema_warmup) if cfg.ema > 0 else None
        self.noise_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        try:
            self.sampler = BatchSampler(
                torch.from_numpy(np.ascontiguousarray(images_u8)), torch.from_numpy(labels.astype(np.int64)),
                classes=tuple(sorted(cfg.classes)), batch_size=cfg.batch_size, layout=plugin.batch_layout,
                seed=cfg.seed, value_range=self.spec.value_range, image_size=cfg.net.image_size, device=self.device)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if parallel is not None:  # this rank's rows of the one-process batch
            self.sampler = parallel.shard_batches(self.sampler)
        self.step = 0
        self.best_score: float | None = None
        # Per-step losses since the last log row; checkpointed so a resume logs the same rows.
        self.pending_losses: list[dict[str, Any]] = []
        self.precision_choice = self._resolve_precision()
        if parallel is not None:  # each rank timed its own steps; all follow rank 0's choice
            self.cfg = parallel.same_precision(self.cfg)
        self.compile_choice = self._resolve_compile()
        if resume is not None:
            self._load(resume)
        self.fixed_z, self.fixed_labels = self._fixed_inputs()

    def _resolve_precision(self):
        """Settle ``--precision auto`` by timing throwaway steps (gankit.training.engine.precision); warn on emulated bf16.

        The chosen precision replaces ``auto`` in the config the run saves, so a resume
        (and config.json) says what really ran.
        """
        from gankit.training.engine import precision as prec

        if self.cfg.precision == "bf16":
            warning = prec.bf16_warning(self.device)
            if warning:
                self.cb.on_message(warning)
            return None
        if self.cfg.precision != "auto":
            return None
        cfg, batch_state = self.cfg, self.sampler.state()
        real, labels = self.sampler.next()
        self.sampler.load_state(batch_state)  # the run's data stream is left where it was
        train_step = self.plugin.train_step or standard_step

        def make_step(precision: str):
            import copy

            nets = Nets(copy.deepcopy(self.G), copy.deepcopy(self.D))
            ctx = make_step_context(
                nets, self.spec, opt_g=make_optimizer(cfg, nets.generator.parameters(), cfg.lr_g, self.device),
                opt_d=make_optimizer(cfg, nets.discriminator.parameters(), cfg.lr_d, self.device),
                next_batch=lambda: (real, labels), loss=cfg.loss, ls_sigmoid=cfg.ls_sigmoid, noise=cfg.noise,
                seed=cfg.seed, d_steps=cfg.d_steps, precision=precision, device=self.device,
                d_regularizer=self.plugin.d_regularizer)
            return lambda: train_step(ctx, real, labels)

        self._check_generator(None, *self._fixed_inputs())  # before trial steps would trip over it
        try:
            choice = prec.choose_precision(self.device, make_step)
        except PluginError as exc:  # a contract problem found inside gankit's own step (its d_regularizer)
            raise self._plugin_failure(str(exc), None) from None
        self.cfg = dataclasses.replace(cfg, precision=choice.precision)
        self.cb.on_message(f"precision auto: {choice.precision} ({choice.reason})")
        return choice

    def _resolve_compile(self):
        """Settle ``--compile`` (gankit.training.engine.compile): ``auto`` becomes the mode saved in config.json."""
        from gankit.training.engine import compile as compiling

        choice = compiling.resolve(self.cfg.compile, self.device, distributed=self.parallel is not None)
        missing = compiling.unavailable(choice.mode)
        if missing:
            self.cb.on_message(f"--compile {choice.mode}: {missing}; training eagerly")
            choice = compiling.CompileChoice("off", missing)
        elif self.cfg.compile != choice.mode and self.cfg.compile != "auto":
            self.cb.on_message(f"--compile {self.cfg.compile}: {choice.reason}")
        self.cfg = dataclasses.replace(self.cfg, compile=choice.mode)
        return choice

    def _compiled(self, train_step, ctx):
        """``train_step`` on compiled nets when ``--compile`` says so; its first step falls back to eager on failure."""
        if self.compile_choice.mode == "off":
            return train_step
        from gankit.training.engine.compile import CompiledStep

        return CompiledStep(train_step, ctx, self.compile_choice.mode, modules=[self.G, self.D],
                            optimizers=[self.opt_g, self.opt_d], generators=[self.noise_gen],
                            sampler=self.sampler, on_message=self.cb.on_message)

    # ----- state -------------------------------------------------------------------------
    def _load(self, state: ckpt.TrainingState) -> None:
        ckpt.check_fits(state, generator=self.G, discriminator=self.D, opt_g=self.opt_g, opt_d=self.opt_d,
                        ema_shadow=self.ema.shadow if self.ema else None, sampler_streams=len(self.sampler.streams),
                        noise_state=self.noise_gen.get_state(), where=self.run_dir)
        with ckpt.loading_errors(self.run_dir):
            self.G.load_state_dict(state.generator)
            self.D.load_state_dict(state.discriminator)
            self.opt_g.load_state_dict(state.opt_g)
            self.opt_d.load_state_dict(state.opt_d)
            if self.ema is not None and state.ema:
                self.ema.shadow = {k: v.to(self.device) for k, v in state.ema.items()}
            self.sampler.load_state(state.sampler)
            _restore_rng(state.rng, self.noise_gen, self.device)
        self.step = state.step
        self.best_score = state.extra.get("best_score")
        self.pending_losses = ckpt.pending_from_json(state.extra.get(ckpt.PENDING, []), self.device)

    def _save(self, name: str | None = None) -> Path:
        if self.parallel is not None:  # every rank takes part; rank 0 writes what one process would
            return self.parallel.save(self, name)
        return self._write_checkpoint(self.cfg, self._checkpoint_parts(), name)

    def _checkpoint_parts(self) -> dict[str, Any]:
        return dict(
            generator=self.G.state_dict(), discriminator=self.D.state_dict(),
            ema=self.ema.shadow if self.ema else None, opt_g=self.opt_g, opt_d=self.opt_d,
            rng=_rng_state(self.noise_gen, self.device), sampler=self.sampler.state(),
            extra={"dataset": self.dataset_name, "plugin": self.plugin.name, "best_score": self.best_score,
                   ckpt.PENDING: ckpt.pending_to_json(self.pending_losses)})

    def _write_checkpoint(self, config: TrainConfig, parts: dict[str, Any], name: str | None) -> Path:
        return ckpt.save_checkpoint(self.run_dir / "checkpoints", self.step, config,
                                    keep=self.cfg.keep_checkpoints, name=name, **parts)

    def _fixed_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise and labels for the progress grids, from their own seed so they never disturb training."""
        g = torch.Generator().manual_seed(self.cfg.seed + 7919)
        classes = tuple(sorted(self.cfg.classes))
        if self.plugin.label_mode == "none":
            labels = torch.full((64,), classes[0], dtype=torch.long)
        else:
            labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(SAMPLES_PER_CLASS)
        z = self.noise_like(len(labels), g, torch.device("cpu"))
        return z.to(self.device), labels.to(self.device)

    def noise_like(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return draw_latent(n, self.cfg.net.z_dim, self.cfg.noise, generator, device)

    def generator_for_eval(self) -> torch.nn.Module:
        """The generator to sample from: the EMA weights when kept, in eval mode (caller restores train())."""
        if self.ema is None:
            return self.G
        import copy

        g = copy.deepcopy(self.G)
        g.load_state_dict(self.ema.shadow)
        return g

    # ----- outputs -----------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self) -> Path:
        from gankit.images import save_grid, to_uint8

        g = self.generator_for_eval()
        g.eval()
        images = g(self.fixed_z, self.fixed_labels).float().cpu().numpy()
        self.G.train()
        u8 = to_uint8(images, self.spec.value_range)
        row_labels = None
        if self.plugin.label_mode != "none":
            row_labels = [str(c) for c in sorted(self.cfg.classes)]
        path = save_grid(u8, self.run_dir / "samples" / f"step-{self.step:09d}.png", nrow=8, scale=2,
                         row_labels=row_labels, caption=f"step {self.step:,}")
        self._tb_image(u8)
        return path

    def _tb_image(self, u8: np.ndarray) -> None:
        if self.tb is not None:
            from gankit.images import make_grid

            self.tb.add_image("samples", make_grid(u8, nrow=8)[None], self.step)

    def _write_loss_curve(self, rows: list[dict[str, Any]]) -> None:
        from gankit.training.persist.plots import save_loss_curves

        save_loss_curves(rows, self.run_dir, run=self.run_dir.name, plugin=self.plugin.name)

    # ----- the loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to ``cfg.steps`` holding the run folder's lock (a second writer stops at once).

        A one-process run takes the lock here (re-entrant: `gankit train` already holds
        it); a multi-process run is locked by whoever started it (see
        `gankit.training.distributed.holds_run_lock`).
        """
        if self.parallel is not None or not self.writes:
            return self._loop()
        from gankit.training.persist.lock import run_folder_lock

        with run_folder_lock(self.run_dir, "train"):
            return self._loop()

    def _loop(self) -> TrainResult:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.run_dir / runlog.METRICS
        if self.writes:
            saved = self.parallel.saved_config(cfg) if self.parallel is not None else cfg
            runlog.write_config(self.run_dir, saved.dumps())
        rows = self._read_metrics(metrics_path) if self.writes else []
        self.tb = self._open_tensorboard() if self.writes else None
        train_step = self.plugin.train_step or standard_step
        nets, noise = Nets(self.G, self.D), cfg.noise
        if self.parallel is not None:  # DDP replicas, and this rank's rows of the one-process noise
            nets = Nets(*self.parallel.wrap(self.G, self.D))
            noise = self.parallel.noise(cfg.noise, cfg.net.z_dim, self.noise_gen,
                                        cfg.batch_size if self.plugin.batch_layout == "per-class" else None)
        ctx = make_step_context(
            nets, self.spec, opt_g=self.opt_g, opt_d=self.opt_d, next_batch=self.sampler.next,
            loss=cfg.loss, ls_sigmoid=cfg.ls_sigmoid, noise=noise, torch_generator=self.noise_gen,
            d_steps=cfg.d_steps, precision=cfg.precision, device=self.device, step=self.step,
            d_regularizer=self.plugin.d_regularizer)
        train_step = self._compiled(train_step, ctx)
        self._tb_graph()
        self.G.train()
        self.D.train()
        self.cb.on_start(self.step, cfg.steps)
        last_ckpt = ckpt.find_checkpoint(self.run_dir) if self.step > 0 else None
        start = time.perf_counter()
        t_log, s_log = start, self.step
        start_step = self.step
        pending = self.pending_losses  # the same list: _save stores what it holds
        self._check_generator(last_ckpt)
        with _StopFlag() as stop, runlog.MetricsLog(metrics_path if self.writes else Path(os.devnull)) as metrics_file, self._finishing(rows):
            while self.step < cfg.steps:
                ctx.step = self.step
                real, labels = self.sampler.next()
                losses = self._plugin_step(train_step, ctx, real, labels, self.step == start_step, last_ckpt)
                if self.ema is not None:
                    self.ema.update(self.G, self.step)
                self.step += 1
                pending.append(losses)
                out_of_time = cfg.max_seconds > 0 and time.perf_counter() - start >= cfg.max_seconds
                if self.parallel is not None:  # every rank stops at the same step
                    stop.requested, out_of_time = self.parallel.agree(stop.requested, out_of_time)
                final = self.step == cfg.steps or out_of_time
                # Not on Ctrl-C: an extra row there would make the log differ from an uninterrupted
                # run's; the checkpoint carries the pending losses instead.
                if self.step % cfg.log_every == 0 or final:
                    now = time.perf_counter()
                    row = self._log_row(pending, (self.step - s_log) / max(now - t_log, 1e-9), now - start)
                    if self.parallel is not None:  # the losses of the whole global batch
                        row = self.parallel.reduce_row(row)
                    pending.clear()
                    t_log, s_log = now, self.step
                    if not all(np.isfinite(v) for k, v in row.items() if k.endswith("loss")):
                        where = f"the last good checkpoint ({last_ckpt}) is kept" if last_ckpt else "no checkpoint was written"
                        raise TrainingError(
                            f"loss became non-finite by step {self.step} ({row}); stopping, {where}. "
                            "Try a lower learning rate or the least-squares loss.")
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    rows.append(row)
                    if self.tb is not None:
                        for k, v in row.items():
                            if k != "step":
                                self.tb.add_scalar(k, v, self.step)
                    self.cb.on_log(row)
                if (self.step % cfg.sample_every == 0 or final) and self.writes:
                    self.cb.on_sample(self.step, self.sample_grid())
                if cfg.eval_every and (self.step % cfg.eval_every == 0 or final) and self.evaluator:
                    self._evaluate(rows, metrics_file)
                if self.step % cfg.checkpoint_every == 0 or final or stop.requested:
                    self._check_finite_weights(last_ckpt)
                    last_ckpt = self._save()
                    self._tb_histograms()
                    self.cb.on_checkpoint(self.step, last_ckpt)
                if out_of_time:
                    self.cb.on_message(f"time budget of {cfg.max_seconds:g}s reached at step {self.step}")
                    break
                if stop.requested and not final:
                    import shlex

                    raise Interrupted(
                        f"interrupted at step {self.step} of {cfg.steps} planned ("
                        f"{early_stop_note(self.step, cfg.steps)}); checkpoint committed at {last_ckpt}. "
                        f"Resume with: gankit train --resume {shlex.quote(str(self.run_dir))}")
        return TrainResult(self.run_dir, self.step, last_ckpt, rows, time.perf_counter() - start,
                           start_step=start_step, planned=cfg.steps, stopped_early=self.step < cfg.steps)

    @contextlib.contextmanager
    def _finishing(self, rows: list[dict[str, Any]]):
        """Close TensorBoard and draw the loss curve however the loop ends (Ctrl-C included)."""
        try:
            yield
        except BaseException:
            self._close_outputs(rows, quietly=True)
            raise
        self._close_outputs(rows, quietly=False)

    def _close_outputs(self, rows: list[dict[str, Any]], quietly: bool) -> None:
        try:
            if self.tb is not None:
                self.tb.close()
                self.tb = None
            if self.writes:
                self._write_loss_curve(rows)
        except Exception:  # noqa: BLE001 - never hide the error that stopped the run
            if not quietly:
                raise

    def _evaluate(self, rows, metrics_file) -> None:
        g = self.generator_for_eval()
        g.eval()
        report = self.evaluator(g, self.step)
        self.G.train()
        row = {"step": self.step, **{f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))}}
        metrics_file.write(json.dumps(row) + "\n")
        rows.append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, self.step)
        score = report.get("score")
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score = float(score)
            self._save(name="best")
        self.cb.on_eval(self.step, report)

    def _log_row(self, pending: list[dict[str, Any]], steps_per_s: float, elapsed: float) -> dict[str, Any]:
        row: dict[str, Any] = {"step": self.step}
        try:
            row.update(window_means(pending))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise self._plugin_failure(f"its step returned a value that is not a number ({exc})", None) from None
        row["steps_per_s"] = round(steps_per_s, 3)
        row["elapsed_s"] = round(elapsed, 3)
        return row

    # ----- the plugin's outputs, checked at run time (gankit.plugin_api's rules) -------------
    def _plugin_failure(self, what: str, last_ckpt: Path | None) -> TrainingError:
        from gankit.registry import origin_of

        if last_ckpt is None and self.step > 0:
            try:
                last_ckpt = ckpt.find_checkpoint(self.run_dir)
            except GankitError:
                pass
        kept = f"the last checkpoint ({last_ckpt}) is kept" if last_ckpt else "no checkpoint was written"
        return TrainingError(f"{origin_of(self.plugin.name)}: {what}. Stopped at step {self.step}; {kept}. "
                             "The contract is gankit.plugin_api (docs/writing-a-plugin.md).")

    def _check_generator(self, last_ckpt: Path | None, z=None, labels=None) -> None:
        """The generator's images for the sample-grid inputs: shape, dtype, finite, value range."""
        g = self.G
        z, labels = (self.fixed_z, self.fixed_labels) if z is None else (z, labels)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):  # draws nothing from the run's streams
            was_training = g.training
            g.eval()
            try:
                images = g(z, labels)
            finally:
                g.train(was_training)
        problems = generator_output_problems(images, len(labels), self.spec)
        if problems:
            raise self._plugin_failure("; ".join(problems) + " (checked before the first step)", last_ckpt)

    def _plugin_step(self, train_step, ctx, real, labels, first: bool, last_ckpt: Path | None) -> Any:
        """One step; the first of this invocation is checked in full, the others for their dict and losses."""
        if first:
            flags = [p.requires_grad for m in (self.G, self.D) for p in m.parameters()]
        try:
            losses = train_step(ctx, real, labels)
        except PluginError as exc:  # a contract problem found inside gankit's own step (its d_regularizer)
            raise self._plugin_failure(str(exc), last_ckpt) from None
        if not first:
            if not isinstance(losses, Mapping) or any(k not in losses for k in REQUIRED_LOSSES):
                raise self._plugin_failure("; ".join(step_output_problems(losses)) or "bad step result", last_ckpt)
            return losses
        problems = step_output_problems(losses, check_finite=False)  # a diverged loss: see the log-row check
        names = [f"{tag}.{k}" for tag, m in (("generator", self.G), ("discriminator", self.D))
                 for k, _ in m.named_parameters()]
        now = [p.requires_grad for m in (self.G, self.D) for p in m.parameters()]
        flipped = [n for n, a, b in zip(names, flags, now) if a != b]
        if flipped:
            problems.append(f"its step changed requires_grad of {', '.join(flipped[:3])}"
                            + (f" and {len(flipped) - 3} more" if len(flipped) > 3 else "")
                            + "; a step leaves requires_grad as it found it (unfreeze what it froze)")
        if problems:
            raise self._plugin_failure("; ".join(problems) + " (checked after the first step)", last_ckpt)
        return losses

    def _check_finite_weights(self, last_ckpt: Path | None) -> None:
        for module in (self.G, self.D):
            for p in module.parameters():
                if not torch.isfinite(p).all():
                    where = f"the last good checkpoint ({last_ckpt}) is kept" if last_ckpt else "no checkpoint was written"
                    raise TrainingError(f"weights became non-finite by step {self.step}; stopping, {where}.")

    def _read_metrics(self, path: Path) -> list[dict[str, Any]]:
        """Rows already logged up to the resumed step; later rows (after the last checkpoint) are dropped."""
        return runlog.truncate_to(path, self.step)

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        # Events after the resumed checkpoint's step were logged by the run that died; they are
        # logged again. purge_step removes events at steps >= it, so the checkpoint's own step stays.
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step + 1 if self.step else None)

    def _tb_graph(self) -> None:
        """The generator's graph in TensorBoard (``tb_graph``); a graph that cannot be traced is skipped."""
        if self.tb is None or not self.cfg.tb_graph or self.step > 0:
            return
        try:
            import copy

            # A copy in eval mode: tracing runs a forward pass, which must not move the
            # live generator's batch-norm statistics.
            self.tb.add_graph(copy.deepcopy(self.G).eval(), (self.fixed_z[:2], self.fixed_labels[:2]))
        except Exception as exc:  # noqa: BLE001 - tracing is best effort; training goes on
            self.cb.on_message(f"TensorBoard graph skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")

    def _tb_histograms(self) -> None:
        """Weight histograms at each checkpoint (``tb_histograms``): a few ms per net."""
        if self.tb is None or not self.cfg.tb_histograms:
            return
        for tag, module in (("generator", self.G), ("discriminator", self.D)):
            for name, p in module.named_parameters():
                self.tb.add_histogram(f"{tag}/{name}", p.detach().float().cpu(), self.step)
