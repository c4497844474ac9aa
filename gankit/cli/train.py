"""`gankit train`: train a GAN with a plugin on a data set, with a live rich progress bar.

Light tier at import (so `--help` never loads torch); the command body needs the heavy
tier and says how to install it when torch is missing. Options given beside `--preset`
override the preset. Everything is checked (options, plugin, data) before the run
folder is created, so a bad invocation writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gankit.errors import UsageError


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"--{name} must be a positive integer, got {value}")


def train(
    plugin: Annotated[Optional[str], typer.Option(help="Plugin to train (see `gankit plugins`).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="A seed recipe: dl4j-mlp, keras-dcgan, paddle-lsgan, tf1-mlp, pytorch-mlp.")] = None,
    data: Annotated[Optional[str], typer.Option(help="IDX folder, 'mnist', 'fashion-mnist', 'synthetic', or 'default' (local MNIST, else synthetic).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Generator steps to train (total, also when resuming).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Batch size (per digit for per-digit).")] = None,
    d_steps: Annotated[Optional[int], typer.Option(help="Discriminator steps per generator step.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="Nets: mlp or dcgan.")] = None,
    loss: Annotated[Optional[str], typer.Option(help="bce (non-saturating) or ls (least squares).")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam or sgd.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate for both nets.")] = None,
    lr_g: Annotated[Optional[float], typer.Option(help="Generator learning rate.")] = None,
    lr_d: Annotated[Optional[float], typer.Option(help="Discriminator learning rate.")] = None,
    beta1: Annotated[Optional[float], typer.Option(help="Adam beta1.")] = None,
    beta2: Annotated[Optional[float], typer.Option(help="Adam beta2.")] = None,
    z_dim: Annotated[Optional[int], typer.Option(help="Latent size.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="28, or 32 (the Paddle recipe).")] = None,
    g_hidden: Annotated[Optional[str], typer.Option(help="Generator widths, e.g. 256,512,1024.")] = None,
    d_hidden: Annotated[Optional[str], typer.Option(help="Discriminator widths, e.g. 1024,512,256.")] = None,
    noise: Annotated[Optional[str], typer.Option(help="normal or uniform (on [-1, 1]).")] = None,
    ema: Annotated[Optional[float], typer.Option(help="EMA decay of the generator's weights (0 = off).")] = None,
    digits: Annotated[Optional[str], typer.Option(help="Train on these digits only, e.g. 3,8.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-O", help="Plugin option key=value (repeatable).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed; a CPU run with the same seed is bit-for-bit repeatable.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32 or bf16 (autocast).")] = None,
    sample_every: Annotated[Optional[int], typer.Option(help="Write a sample grid every K steps.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Commit a checkpoint every K steps.")] = None,
    keep_checkpoints: Annotated[Optional[int], typer.Option(help="Checkpoints to keep.")] = None,
    log_every: Annotated[Optional[int], typer.Option(help="Log losses every K steps.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate quality every K steps and keep the best checkpoint (0 = off).")] = None,
    eval_samples: Annotated[Optional[int], typer.Option(help="Images per evaluation.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option(help="Stop after this much wall-clock time (0 = no limit).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (folder under --runs-dir).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    resume: Annotated[Optional[Path], typer.Option(help="Continue a run exactly from its last checkpoint (a run folder).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a GAN; writes runs/<name>/ with checkpoints, sample grids and loss curves."""
    from gankit.config import TrainConfig, parse_digits, parse_int_list, parse_options
    from gankit.errors import require_torch
    from gankit.presets import get_preset

    for opt_name, value in (("steps", steps), ("batch-size", batch_size), ("d-steps", d_steps),
                            ("z-dim", z_dim), ("sample-every", sample_every),
                            ("checkpoint-every", checkpoint_every), ("log-every", log_every)):
        _positive(opt_name, value)
    overrides = dict(
        plugin=plugin, data=data, steps=steps, batch_size=batch_size, d_steps=d_steps, arch=arch, loss=loss,
        optimizer=optimizer, lr_g=lr_g if lr_g is not None else lr, lr_d=lr_d if lr_d is not None else lr,
        beta1=beta1, beta2=beta2, z_dim=z_dim, image_size=image_size,
        g_hidden=parse_int_list(g_hidden, "--g-hidden") if g_hidden else None,
        d_hidden=parse_int_list(d_hidden, "--d-hidden") if d_hidden else None,
        noise=noise, ema=ema, classes=parse_digits(digits) if digits else None,
        options=parse_options(option) if option else None, seed=seed, device=device, precision=precision,
        sample_every=sample_every, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
        log_every=log_every, eval_every=eval_every, eval_samples=eval_samples, max_seconds=max_seconds,
    )
    if resume is not None:
        require_torch("train")
        from gankit.training.checkpoint import load_checkpoint

        state = load_checkpoint(resume)
        given = {k for k, v in overrides.items() if v is not None and k not in ("steps", "device", "max_seconds")}
        if given or preset:
            raise UsageError(f"--resume continues the saved config; only --steps and --device may change (got {', '.join(sorted(given)) or '--preset'})")
        cfg = state.config.with_overrides(steps=steps, device=device, max_seconds=max_seconds).validate()
        if cfg.steps <= state.step:
            raise UsageError(f"the run is already at step {state.step}; pass --steps larger than that to continue")
        run_dir = Path(resume)
        if not (run_dir / "checkpoints").is_dir():
            raise UsageError(f"--resume takes a run folder (runs/<name>), got {resume}")
    else:
        state = None
        if preset:
            base = get_preset(preset).config
        else:
            # No preset: the plugin's recommended trainer settings replace gankit's defaults.
            from gankit.registry import load_plugin as _load

            base = TrainConfig().with_overrides(**dict(_load(plugin or TrainConfig.plugin).train_defaults))
        cfg = base.with_overrides(**overrides).validate()
        require_torch("train")
        run_dir = None

    from gankit.data import default_dataset, load_dataset
    from gankit.registry import load_plugin
    from gankit.training.spec import spec_from_config

    plugin_obj = load_plugin(cfg.plugin)
    spec_from_config(cfg, plugin_obj)  # option and arch errors before anything is written
    dataset = default_dataset("train") if cfg.data == "default" else load_dataset(cfg.data, "train")
    if run_dir is None:
        import time

        run_name = name or f"{cfg.plugin}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = runs_dir / run_name
        if run_dir.exists():
            raise UsageError(f"{run_dir} already exists; pick another --name or continue it with --resume {run_dir}")
    _run(cfg, plugin_obj, dataset, run_dir, state, quiet)


def _run(cfg, plugin_obj, dataset, run_dir: Path, state, quiet: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from gankit.training.trainer import Callbacks, Trainer

    console = Console(stderr=True)
    label = "synthetic digits (rendered with Pillow; no MNIST found)" if dataset.synthetic else dataset.source
    console.print(f"[bold]gankit train[/] plugin={cfg.plugin} preset={cfg.preset or '-'} data={label} "
                  f"({len(dataset)} images) steps={cfg.steps} -> {run_dir}")

    progress = Progress(
        TextColumn("[bold blue]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("D {task.fields[d]}  G {task.fields[g]}  {task.fields[rate]} steps/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=quiet, transient=False,
    )

    class ProgressCallbacks(Callbacks):
        def on_start(self, start_step, total_steps):
            self.task = progress.add_task("train", total=total_steps, completed=start_step, d="-", g="-", rate="-")

        def on_log(self, row):
            progress.update(self.task, completed=row["step"], d=f"{row.get('d_loss', float('nan')):.3f}",
                            g=f"{row.get('g_loss', float('nan')):.3f}", rate=f"{row['steps_per_s']:.1f}")

        def on_checkpoint(self, step, path):
            progress.console.log(f"checkpoint {path}") if not quiet else None

        def on_message(self, text):
            progress.console.log(text)

        def on_eval(self, step, report):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in report.items() if isinstance(v, float))
            progress.console.log(f"eval @ {step}: {shown}")

    evaluator = _make_evaluator(cfg, plugin_obj) if cfg.eval_every else None
    trainer = Trainer(cfg, plugin_obj, dataset.images, dataset.labels, run_dir, dataset_name=dataset.name,
                      callbacks=ProgressCallbacks(), resume=state, evaluator=evaluator)
    with progress:
        result = trainer.run()
    console.print(f"[green]done[/]: {result.steps} steps in {result.seconds:.1f}s; checkpoint {result.last_checkpoint}")
    console.print(f"samples: {run_dir / 'samples'}  loss curve: {run_dir / 'loss_curve.png'}")
    console.print(f"next: gankit export {run_dir} -o exports/{run_dir.name}.onnx")


def _make_evaluator(cfg, plugin_obj):
    from gankit.training.evaluation import make_training_evaluator

    return make_training_evaluator(cfg, plugin_obj)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
