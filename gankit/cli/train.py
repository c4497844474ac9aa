"""`gankit train`: train a GAN with a plugin on a data set, with a live progress bar.

Light tier at import (so `--help` never loads torch); the command body needs the heavy
tier and says how to install it when torch is missing.

The options are not written out here: one is derived from each `gankit.config` setting
(its help, choices and parser come from the field's metadata), so a new setting is a
new option without touching this file. A run's settings are layered, later wins:
gankit's defaults, then the plugin's (its first supported arch and its
``train_defaults``) or a ``--preset``, then a ``--config`` file (TOML, or a run's
config.json), then the command line. `--help` shows the defaults that layering gives
for the ``--plugin`` / ``--preset`` / ``--config`` on the same command line.

Everything is checked (settings, plugin, data, run folder) before the run folder is
created, so a bad invocation writes nothing.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from typer import _click as click
from typer.core import TyperCommand

from gankit.config import (SETTINGS, TrainConfig, check_run_name, check_types, flag_of, load_config_file,
                           setting_of)
from gankit.errors import UsageError

# Settings that may change on --resume: how long and where to go on, not what is trained.
RESUMABLE = ("steps", "device", "max_seconds", "compile")


def _cli_only() -> list[inspect.Parameter]:
    """Options of the command itself, not settings of the run (they are not saved in config.json)."""
    def opt(name, annotation, default=None):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    return [
        opt("config", Annotated[Optional[Path], typer.Option(
            help="Read settings from a TOML file (flat keys, or a \\[net] table) or from a run's config.json; "
                 "command-line options override it.", rich_help_panel="Run")]),
        opt("lr", Annotated[Optional[float], typer.Option(
            help="Learning rate for both nets (sets --lr-g and --lr-d).", rich_help_panel="Optimisation")]),
        opt("name", Annotated[Optional[str], typer.Option(
            help="Run name: a plain folder name under --runs-dir.  [default: <plugin>-<date>-<time>]",
            rich_help_panel="Run")]),
        opt("runs_dir", Annotated[Optional[str], typer.Option(
            help="Where run folders go.  [default: runs]", rich_help_panel="Run")]),
        opt("resume", Annotated[Optional[Path], typer.Option(
            help="Continue a run exactly from its last checkpoint (a run folder); only --steps, --device, "
                 "--compile and --max-seconds may change.", rich_help_panel="Run")]),
        opt("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.",
                                                  rich_help_panel="Outputs")], False),
        opt("progress_seconds", Annotated[Optional[float], typer.Option(
            help="When stderr is not a terminal: a plain progress line at most this often.  [default: 30]",
            rich_help_panel="Outputs")]),
        opt("nproc", Annotated[Optional[int], typer.Option(
            help="Train on N local processes with DistributedDataParallel (gloo on CPU, NCCL on CUDA); "
                 "the global batch stays --batch-size. Under torchrun, leave it out.", rich_help_panel="Run")]),
        opt("shard_digits", Annotated[bool, typer.Option(
            "--shard-digits", help="per-digit: each process trains its own digits, with no gradient traffic.",
            rich_help_panel="Run")], False),
    ]


CLI_ONLY = ("config", "lr", "name", "runs_dir", "resume", "quiet", "progress_seconds", "nproc", "shard_digits")
# What a --config file may set besides the settings (--resume and --config make no sense there).
FILE_CLI_KEYS = ("lr", "name", "runs_dir", "quiet", "progress_seconds")


def _annotation(name: str) -> Any:
    """The typer annotation of the option for one setting, from the field and its metadata."""
    f = SETTINGS[name]
    meta = setting_of(f)
    decls = [flag_of(name)] + ([meta.short] if meta.short else [])
    kwargs: dict[str, Any] = dict(help=meta.help, rich_help_panel=meta.panel)
    if name == "options":
        return Annotated[Optional[list[str]], typer.Option(*decls, metavar="KEY=VALUE", **kwargs)]
    if f.type in ("bool", bool):
        long = flag_of(name)
        return Annotated[Optional[bool], typer.Option(f"{long}/--no-{long[2:]}", **kwargs)]
    if name == "preset":
        from gankit.presets import PRESETS

        return Annotated[Optional[Literal[tuple(PRESETS)]], typer.Option(*decls, **kwargs)]
    if meta.choices and all(isinstance(c, str) for c in meta.choices):
        return Annotated[Optional[Literal[meta.choices]], typer.Option(*decls, **kwargs)]
    if meta.parse is not None:
        return Annotated[Optional[str], typer.Option(*decls, metavar="LIST", **kwargs)]
    python_type = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__,
                                                              str)
    return Annotated[Optional[python_type], typer.Option(*decls, **kwargs)]


def _signature() -> inspect.Signature:
    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(name), default=None)
              for name in SETTINGS]
    return inspect.Signature(params + _cli_only())


# ----- layering ---------------------------------------------------------------------------

def check_command_values(values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """The command's own options (``FILE_CLI_KEYS``), checked the same way from the command
    line and from a --config file; UsageError naming the first bad one."""
    where = f"{source}: " if source else ""
    for key, value in values.items():
        flag = f"--{key.replace('_', '-')}"
        if value is None:
            continue
        if key in ("lr", "progress_seconds"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise UsageError(f"{where}{flag} must be a positive number, got {value!r}")
        elif key == "quiet" and not isinstance(value, bool):
            raise UsageError(f"{where}{flag} is a flag (true or false), got {value!r}")
        elif key in ("name", "runs_dir") and not isinstance(value, str):
            raise UsageError(f"{where}{flag} must be text, got {value!r}")
        elif key == "name":
            check_run_name(value)
        elif key == "runs_dir" and not value.strip():
            raise UsageError(f"{where}--runs-dir is empty; give a folder (default: runs)")
    return values


def _file_layer(path: Optional[Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, command-only values) from a --config file, both checked."""
    if path is None:
        return {}, {}
    data = load_config_file(path)
    cli = {k: data.pop(k) for k in FILE_CLI_KEYS if k in data}
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise UsageError(f"--config {path}: no setting named {', '.join(unknown)}")
    return data, check_command_values(cli, f"--config {path}")


def base_config(plugin_name: str, preset: Optional[str]) -> tuple[TrainConfig, Any]:
    """The defaults a run starts from, and the loaded plugin: a preset's, or gankit's plus the plugin's."""
    from gankit.registry import load_plugin

    plugin = load_plugin(plugin_name)
    if preset:
        from gankit.presets import get_preset

        return get_preset(preset).config.with_overrides(plugin=plugin_name), plugin
    # A plugin's first supported arch is its default; its train_defaults may still say otherwise.
    base = TrainConfig.make(plugin=plugin_name, arch=plugin.supported_archs[0])
    try:
        return base.with_overrides(**dict(plugin.train_defaults)), plugin
    except (TypeError, UsageError) as exc:
        raise UsageError(f"plugin {plugin_name!r} has bad train_defaults: {exc}") from None


def _from_command_line(values: dict[str, Any]) -> dict[str, Any]:
    """Command-line values (text for lists) as settings; options not given are left out."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        meta = setting_of(SETTINGS[name])
        if name == "options":
            from gankit.config import parse_options

            out[name] = parse_options(value) if value else None
        elif meta.parse is not None:
            out[name] = meta.parse(value)
        else:
            out[name] = value
    return {k: v for k, v in out.items() if v is not None}


def resolve(given: dict[str, Any], file_settings: dict[str, Any]) -> tuple[TrainConfig, Any]:
    """The layered config (validated) and its loaded plugin."""
    check_types(file_settings, "--config")  # before the plugin and preset they name are looked up
    check_types(given)
    plugin_name = given.get("plugin") or file_settings.get("plugin") or TrainConfig.plugin
    preset = given.get("preset") or file_settings.get("preset") or None
    base, plugin = base_config(plugin_name, preset)
    options = {**dict(file_settings.get("options") or {}), **dict(given.get("options") or {})}
    try:
        cfg = base.with_overrides(**file_settings).with_overrides(**given)
    except TypeError as exc:
        raise UsageError(f"bad setting: {exc}") from None
    if options:
        cfg = cfg.with_overrides(options=options)
    return cfg.validate(), plugin


# ----- --help with effective defaults -----------------------------------------------------

def _peek(args: list[str], flag: str) -> Optional[str]:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return "none" if value == "" else str(value)  # an empty setting (no --preset) reads as none


def _options_help(plugin: Any) -> list[str]:
    """The plugin's options for --help: one paragraph each, typed for a plugin API 2 schema."""
    from gankit.plugin_api import describe_options

    lines = describe_options(plugin)
    if not lines:
        return [f"Plugin {plugin.name!r} has no options."]
    typed = "" if plugin.options else " (untyped: the plugin checks the values)"
    # rich markup: "\\[" is a literal bracket (as in the --config help).
    return [f"Options of plugin {plugin.name!r}, set with --option KEY=VALUE or an \\[options] table in "
            f"--config{typed}:", *(line.replace("[", "\\[") for line in lines)]


class TrainCommand(TyperCommand):
    """`gankit train`: help shows the layered defaults; click's usage errors become one line."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if "--help" in args:
            self._effective_defaults(ctx, args)
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.UsageError as exc:
            raise UsageError(" ".join(exc.format_message().replace("Value error, ", "").split())) from None

    def _effective_defaults(self, ctx, args: list[str]) -> None:
        plugin_name = _peek(args, "--plugin") or TrainConfig.plugin
        preset = _peek(args, "--preset")
        source = f"plugin {plugin_name}" + (f", preset {preset}" if preset else "")
        try:
            file_settings, _ = _file_layer(Path(_peek(args, "--config"))) if _peek(args, "--config") else ({}, {})
            if _peek(args, "--config"):
                source += f", config {_peek(args, '--config')}"
            cfg, plugin = resolve({"plugin": plugin_name, "preset": preset} if preset else {"plugin": plugin_name},
                                  file_settings)
        except Exception as exc:  # noqa: BLE001 - help must always print; say why the defaults are plain
            cfg, plugin = TrainConfig(), None
            source = f"gankit's own (could not apply {source}: {exc})"
        flat = cfg.flat()
        flat["options"] = {**(dict(plugin.default_options) if plugin else {}), **dict(cfg.options)}
        for param in self.get_params(ctx):
            if getattr(param, "is_flag", False):
                param.metavar = ""  # a flag takes no value; typer would show <bool>
            if param.name in flat:
                param.show_default = _shown(flat[param.name])
                # typer puts a string default in parentheses; show the value as it would be typed.
                param._get_default_string = lambda _shown_value=param.show_default, **_: _shown_value
        notes = [f"Defaults shown are for {source}. Add --plugin, --preset or --config before --help to "
                 "see theirs."]
        if plugin is not None and plugin.train_defaults and not preset:
            notes.append(f"Plugin {plugin.name!r} sets: "
                         + ", ".join(f"{k}={_shown(v)}" for k, v in plugin.train_defaults.items()) + ".")
        if plugin is not None:
            notes.append(f"Archs for plugin {plugin.name!r}: {', '.join(plugin.supported_archs)}.")
            notes.extend(_options_help(plugin))
        self.epilog = "\n\n".join(notes)


def train(**kwargs: Any) -> None:
    """Train a GAN; writes runs/<name>/ with checkpoints, sample grids and loss curves."""
    import contextlib

    # The run folder's lock (gankit.training.persist.lock) is held until the command ends.
    with contextlib.ExitStack() as held:
        _train(kwargs, held)


def _lock_run_folder(run_dir: Path, command: str, held) -> None:
    """Take the run folder's lock for the rest of the command, in the one process that holds it.

    A plain run and `--nproc N`'s launcher hold it; the ranks the launcher starts do not
    (the launcher holds it for them), nor do torchrun's ranks other than rank 0.
    """
    from gankit.training import distributed
    from gankit.training.persist.lock import run_folder_lock

    if distributed.holds_run_lock():
        held.enter_context(run_folder_lock(run_dir, command))


def _train(kwargs: dict[str, Any], held) -> None:
    from gankit.errors import require_torch

    cli = {k: kwargs.pop(k) for k in CLI_ONLY}
    given = _from_command_line(kwargs)
    if cli["lr"] is not None:
        given.setdefault("lr_g", cli["lr"])
        given.setdefault("lr_d", cli["lr"])
    check_command_values({k: cli[k] for k in FILE_CLI_KEYS})

    if cli["resume"] is not None:
        plan, state, run_dir = _resume_plan(cli["resume"], given, cli, held)
        notes: list[str] = []
    else:
        file_settings, file_cli = _file_layer(cli["config"])
        for key, value in file_cli.items():
            if cli.get(key) in (None, False):
                cli[key] = value
        if file_cli.get("lr") is not None:
            file_settings.setdefault("lr_g", file_cli["lr"])
            file_settings.setdefault("lr_d", file_cli["lr"])
        cfg, plugin = resolve(given, file_settings)
        notes = []
        if not plugin.uses_loss:
            set_loss = [flag_of(k) for k in ("loss", "ls_sigmoid") if k in given or k in file_settings]
            if set_loss:
                verb = "does" if len(set_loss) == 1 else "do"
                notes.append(f"warning: plugin {plugin.name!r} has its own loss; {' and '.join(set_loss)} "
                             f"{verb} not apply to it")
        name = cli["name"]  # checked, from the command line or the file, by check_command_values
        runs_dir = Path(cli["runs_dir"] if cli["runs_dir"] is not None else "runs")
        if runs_dir.exists() and not runs_dir.is_dir():
            raise UsageError(f"--runs-dir {runs_dir} is not a folder")
        require_torch("train")
        from gankit.training.engine.spec import plan_run

        plan = plan_run(cfg, plugin)
        state = None
        import time

        run_dir = runs_dir / (name or f"{cfg.plugin}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_evaluation(plan.config)
    from gankit.training import distributed

    role = distributed.role_for(cli["nproc"], cli["shard_digits"], plan, state)
    if state is None:  # a resume took the lock before reading the checkpoint
        _lock_run_folder(run_dir, "train", held)
    if role is not None and role.launcher:  # this process only starts the ranks and watches them
        raise typer.Exit(distributed.launch(role, distributed.rank_argv(run_dir, state is None and not cli["name"])))

    from gankit.data import default_dataset, load_dataset

    cfg = plan.config
    dataset = default_dataset("train") if cfg.data == "default" else load_dataset(cfg.data, "train")
    notes.extend(dataset.messages())  # which files, how many images, and a warning for a named subset
    if state is None and (role is None or role.writes):
        from gankit.training.persist.runlog import claim_folder

        note = claim_folder(run_dir)  # a folder with no committed checkpoint is taken over, and said so
        if note:
            notes.append(f"note: {note}")
    if role is not None and not role.writes:  # the other ranks train silently; rank 0 reports
        cli["quiet"], notes = True, []
    _run(plan, dataset, run_dir, state, bool(cli["quiet"]), cli["progress_seconds"] or 30.0, notes, role)


def _resume_plan(resume: Path, given: dict[str, Any], cli: dict[str, Any], held):
    from gankit.errors import require_torch

    changed = sorted(flag_of(k) for k in given if k not in RESUMABLE)
    changed += [f"--{k.replace('_', '-')}" for k in ("config", "lr", "name", "runs_dir") if cli[k] is not None]
    if changed:
        raise UsageError(f"--resume continues the saved config; only --steps, --device, --compile and --max-seconds "
                         f"may change (got {', '.join(changed)})")
    require_torch("train")
    from gankit.training.persist.checkpoint import load_checkpoint
    from gankit.training.engine.spec import plan_run

    run_dir = Path(resume)
    # A run folder with config.json but no checkpoints/ is one stopped before its first
    # checkpoint: load_checkpoint says so and how to start it over.
    if not (run_dir / "checkpoints").is_dir() and not (run_dir / "config.json").is_file():
        raise UsageError(f"--resume takes a run folder (runs/<name>), got {resume}")
    # Locked before the checkpoint is read: a live run could otherwise commit (and prune)
    # under this resume, and two resumes would append to one metrics.jsonl.
    _lock_run_folder(run_dir, "train --resume", held)
    state = load_checkpoint(run_dir)
    cfg = state.config.with_overrides(**{k: given.get(k) for k in RESUMABLE})
    plan = plan_run(cfg)
    # --steps equal to the saved step is the same command run again after a kill that came
    # after the last checkpoint: nothing to train, but the run is finished off (loss curve,
    # summary) and the command succeeds, as rerunning a killed run's command should.
    if cfg.steps < state.step:
        raise UsageError(f"the run is already at step {state.step}; pass --steps larger than that to continue")
    return plan, state, run_dir


def _check_evaluation(cfg: TrainConfig) -> None:
    """--eval-every needs enough --eval-samples for the metrics; say so before anything is written."""
    if not cfg.eval_every:
        return
    from gankit.eval.classifier import load_classifier
    from gankit.eval.maths import require_fd_samples

    try:
        require_fd_samples(cfg.eval_samples, load_classifier().feature_dim)
    except UsageError as exc:
        raise UsageError(f"--eval-samples {cfg.eval_samples} is too few for --eval-every: {exc}") from None


def _run(plan, dataset, run_dir: Path, state, quiet: bool, progress_seconds: float, notes: list[str],
         role=None) -> None:
    import time

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from gankit.training.engine.trainer import Callbacks, Trainer

    cfg = plan.config
    # log_path=False: progress lines without rich's "file.py:123" suffix.
    console = Console(stderr=True, highlight=False, log_path=False, soft_wrap=True)
    interactive = console.is_terminal and not quiet
    for note in notes:
        console.print(escape(note))
    label = "synthetic digits (rendered with Pillow; no MNIST found)" if dataset.synthetic else dataset.source
    if not quiet:
        console.print(f"[bold]gankit train[/] plugin={cfg.plugin} preset={cfg.preset or '-'} "
                      f"data={escape(str(label))} ({len(dataset)} images) steps={cfg.steps} -> {escape(str(run_dir))}")

    progress = Progress(
        TextColumn("[bold blue]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("D {task.fields[d]}  G {task.fields[g]}  {task.fields[rate]} steps/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not interactive, transient=False,
    )

    def say(text: str) -> None:
        if not quiet:
            console.log(escape(text)) if interactive else console.print(f"[{time.strftime('%H:%M:%S')}] {escape(text)}")

    class ProgressCallbacks(Callbacks):
        def on_start(self, start_step, total_steps):
            self.task = progress.add_task("train", total=total_steps, completed=start_step, d="-", g="-", rate="-")
            self.total, self.last_plain = total_steps, 0.0

        def on_log(self, row):
            d, g = row.get("d_loss", float("nan")), row.get("g_loss", float("nan"))
            progress.update(self.task, completed=row["step"], d=f"{d:.3f}", g=f"{g:.3f}",
                            rate=f"{row['steps_per_s']:.1f}")
            now = time.monotonic()
            # Not a terminal (a log file, CI): a plain line now and then instead of a bar.
            if not interactive and not quiet and (now - self.last_plain >= progress_seconds
                                                  or row["step"] >= self.total):
                self.last_plain = now
                say(f"step {row['step']}/{self.total}  D {d:.3f}  G {g:.3f}  {row['steps_per_s']:.1f} steps/s")

        def on_checkpoint(self, step, path):
            if interactive:
                say(f"checkpoint {path}")

        def on_message(self, text):
            say(text)

        def on_eval(self, step, report):
            say(f"eval @ {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in report.items() if isinstance(v, float)))

    evaluator = None
    if cfg.eval_every and (role is None or role.writes):
        from gankit.training.engine.evaluation import make_training_evaluator

        evaluator = make_training_evaluator(cfg, plan.plugin)
    parallel = None
    if role is not None:  # join the other ranks; with --shard-digits, this rank's digits (and resume slice)
        from gankit.training import distributed

        parallel, plan, state = distributed.join(role, plan, state)
    trainer = Trainer.from_plan(plan, dataset.images, dataset.labels, run_dir, dataset_name=dataset.name,
                                callbacks=ProgressCallbacks(), resume=state, evaluator=evaluator, parallel=parallel)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from None
    with progress:
        result = trainer.run() if parallel is None else parallel.run(trainer)
    if result is None:  # a rank other than 0: rank 0 reports
        return
    console.print(f"samples: {escape(str(run_dir / 'samples'))}  loss curve: {escape(str(run_dir / 'loss_curve.png'))}")
    console.print(f"next: gankit export {escape(str(run_dir))} -o exports/{escape(run_dir.name)}.onnx")
    console.print(_closing_line(result, cfg, run_dir))


def _closing_line(result, cfg: TrainConfig, run_dir: Path) -> str:
    """The last line of every run: steps reached of planned; after an early stop, what it means and how to go on."""
    import shlex

    from rich.markup import escape

    from gankit.training.engine.trainer import early_stop_note

    rate = result.steps_run / result.seconds if result.seconds > 0 else float("nan")
    resumed = f" (resumed at step {result.start_step}; now at {result.steps})" if result.start_step else ""
    ran = f"{result.steps_run} steps in {result.seconds:.1f}s, {rate:.1f} steps/s{resumed}"
    if not result.stopped_early:
        return (f"[green]done[/]: {ran}; {result.steps} of {result.planned} planned steps; "
                f"checkpoint {escape(str(result.last_checkpoint))}")
    # --max-seconds is saved with the run: a plain --resume would stop after another budget.
    return (f"[yellow]stopped early[/]: {ran}; {result.steps} of {result.planned} planned steps, --max-seconds "
            f"{cfg.max_seconds:g} reached: {early_stop_note(result.steps, result.planned)}. Resume with: "
            f"gankit train --resume {escape(shlex.quote(str(run_dir)))} --max-seconds 0")


train.__signature__ = _signature()  # type: ignore[attr-defined]
train.__annotations__ = {}


def register(app: typer.Typer) -> None:
    app.command("train", cls=TrainCommand)(train)
