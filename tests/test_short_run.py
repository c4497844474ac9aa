"""A short run never gives silent noise (issue 21): the EMA warms up, `train` ends with one
line saying where the run stopped against the plan and how to go on, `generate` given a
run folder says how to export it, and a few hundred per-digit steps draw readable digits.
Also: a plain `gankit generate` command line runs without typer (its cold start)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import FP32, SMALL_NETS, cli_imports, run_cli
from gankit.training.engine.optim import EMA, ema_decay

# ----- the EMA warm-up --------------------------------------------------------------------


def test_ema_decay_warms_up_to_the_asked_decay():
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 90) == pytest.approx(0.91)
    assert ema_decay(0.999, 500) == pytest.approx(501 / 510)
    assert ema_decay(0.999, 9000) == 0.999  # (1+t)/(10+t) has passed 0.999 by then
    assert ema_decay(0.9, 80) == 0.9
    assert ema_decay(0.999, 0, warmup=False) == 0.999
    decays = [ema_decay(0.999, t) for t in range(20_000)]
    assert decays == sorted(decays)  # never falls back


def _one_param_module(value: float) -> torch.nn.Module:
    module = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(value)
    return module


def test_ema_update_is_the_warmed_up_average_and_repeatable():
    module = _one_param_module(0.0)
    ema = EMA(module, 0.999)
    expected = 0.0
    for step in range(300):
        with torch.no_grad():
            module.weight.fill_(1.0 + step)
        ema.update(module, step)
        d = ema_decay(0.999, step)
        expected = d * expected + (1 - d) * (1.0 + step)
    assert ema.shadow["weight"].item() == pytest.approx(expected, rel=1e-5)
    # After 300 steps the average holds the recent weights (~270), not the initial 0.
    assert ema.shadow["weight"].item() > 250
    plain = EMA(_one_param_module(0.0), 0.999, warmup=False)
    for step in range(300):
        plain.update(_one_param_module(1.0 + step), step)
    assert plain.shadow["weight"].item() < 50  # the old EMA: mostly the initial weights

    again = EMA(_one_param_module(0.0), 0.999)
    for step in range(300):
        again.update(_one_param_module(1.0 + step), step)
    assert torch.equal(again.shadow["weight"], ema.shadow["weight"])


# ----- train's closing line, and generate given a run folder --------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, mnist_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny run with far more steps planned than its 2-second budget allows."""
    root = tmp_path_factory.mktemp("short")
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", root / "runs", "--name", "brief", "--steps", 1_000_000,
                   "--max-seconds", 2, "--log-every", 10, "--sample-every", 100_000, *SMALL_NETS, *FP32, "--quiet",
                   cwd=root, check=True)
    return root, proc


def test_an_early_stop_ends_with_where_it_stopped_and_the_resume_command(stopped_run):
    root, proc = stopped_run
    last = proc.stderr.strip().splitlines()[-1]
    state = json.loads(sorted((root / "runs/brief/checkpoints").glob("step-*/manifest.json"))[-1].read_text())
    assert last.startswith(f"stopped early: {state['step']} steps in ")
    assert f"{state['step']} of 1000000 planned steps, --max-seconds 2 reached: 0% of the planned training" in last
    assert "rougher and less varied" in last
    assert last.endswith(f"Resume with: gankit train --resume {root / 'runs' / 'brief'} --max-seconds 0")


def test_a_finished_run_ends_with_steps_reached_of_planned(tmp_path, mnist_dir):
    proc = run_cli("train", "--data", mnist_dir, "--runs-dir", tmp_path, "--name", "r", "--steps", 6,
                   *SMALL_NETS, *FP32, "--quiet", check=True)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("done: 6 steps in ") and "; 6 of 6 planned steps; checkpoint " in last


def test_generate_given_a_run_folder_prints_the_export_command_that_works(stopped_run):
    root, _ = stopped_run
    run = Path("runs") / "brief"
    proc = run_cli("generate", "--model", run, "-d", 3, "-o", "x.png", cwd=root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    command = f"gankit export {run} -o exports/brief.onnx"
    assert f"is a training run folder, not an exported model. Export it first with: {command} " in proc.stderr
    assert not (root / "x.png").exists()
    # The command it gives works as printed, and generate then takes its output.
    run_cli(*shlex.split(command)[1:], cwd=root, check=True)
    run_cli("generate", "--model", "exports/brief.onnx", "-n", 2, "-o", "x.png", cwd=root, check=True)
    assert (root / "x.png").stat().st_size > 0

    checkpoint = sorted((root / run / "checkpoints").glob("step-*"))[-1].relative_to(root)
    proc = run_cli("generate", "--model", checkpoint, "-o", "y.png", cwd=root)
    assert proc.returncode == 2 and "is a training checkpoint" in proc.stderr
    assert f"gankit export {checkpoint} -o exports/brief.onnx" in proc.stderr
    proc = run_cli("generate", "--model", "exports", "-o", "y.png", cwd=root)
    assert proc.returncode == 2 and "is a folder; give an exported .onnx file" in proc.stderr
    assert not (root / "y.png").exists()


# ----- the short per-digit run ------------------------------------------------------------------


@pytest.mark.slow
def test_a_few_hundred_default_per_digit_steps_export_digits_a_classifier_reads(tmp_path, mnist_dir):
    """The issue's first run, shortened: the plugin's defaults, a few hundred steps, exported."""
    proc = run_cli("train", "--plugin", "per-digit", "--data", mnist_dir, "--steps", 500, *FP32,
                   "--runs-dir", tmp_path, "--name", "short", "--quiet", check=True)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("done: 500 steps in ") and "500 of 500 planned steps" in last
    run_cli("export", tmp_path / "short", "-o", tmp_path / "short.onnx", check=True)
    run_cli("evaluate", tmp_path / "short.onnx", "-n", 1000, "--json", tmp_path / "report.json", check=True)
    report = json.loads((tmp_path / "report.json").read_text())
    accuracy = report["metrics"]["digit_accuracy"]["value"]
    # Chance is 10%. bench/results/time_to_quality_defaults.md: 82% ± 3 at step 500 over
    # three seeds; without the EMA warm-up, or at lr 2e-4, 0%: grey noise read as no digit.
    assert accuracy >= 0.4, report["per_digit_accuracy"]
    assert sum(v >= 0.2 for v in report["per_digit_accuracy"].values()) >= 8


# ----- generate without typer ---------------------------------------------------------------

def test_a_plain_generate_imports_no_typer_rich_or_pydantic(tmp_path):
    code, modules, stderr = cli_imports("generate", "--digit", "7", "-n", "64", "-o", tmp_path / "x.png")
    assert code == 0, stderr
    assert not {"typer", "click", "rich", "pydantic", "torch", "onnx"} & modules
    assert (tmp_path / "x.png").stat().st_size > 0


def test_the_fast_path_knows_exactly_the_typer_commands_options():
    from typer.main import get_command

    from gankit.cli import _get_app, generate

    app = _get_app()
    app.load(["generate"])
    command = get_command(app).commands["generate"]
    declared = {opt for param in command.params for opt in param.opts}
    assert declared == set(generate.OPTIONS)
    assert {p.name: p.default for p in command.params} == generate.DEFAULTS


@pytest.mark.parametrize("args, expected", [
    (["-d", "7", "-n", "64"], {"digit": ["7"], "count": 64}),
    (["--digit=3", "--digit", "8", "--all", "--seed", "5", "-o", "a.npy"],
     {"digit": ["3", "8"], "all_digits": True, "seed": 5, "output": "a.npy"}),
    (["-n", "-3", "--model", "m.onnx", "--scale", "2"], {"count": -3, "model": Path("m.onnx"), "scale": 2}),
    (["-n", "3", "-n", "4"], {"count": 4}),  # the last one wins, as in click
])
def test_fast_arguments_read_plain_command_lines(args, expected):
    from gankit.cli.generate import DEFAULTS, fast_arguments

    assert fast_arguments(args) == {**DEFAULTS, **expected}


@pytest.mark.parametrize("args", [["--help"], ["-n"], ["-n", "x"], ["-n", "1e3"], ["--all=1"], ["-d", "--all"],
                                  ["extra"], ["--", "-d", "3"], ["--count5"], ["-o", "-"], ["-n", "9" * 5000]])
def test_anything_else_goes_through_typer(args):
    from gankit.cli.generate import fast_arguments

    assert fast_arguments(args) is None
