"""The step path without host round-trips, and the captured (compiled) step.

Heavy tier (torch). What is proved here:

1. Data on the device: the sampler's batches, drawn from a schedule of indices uploaded
   a few hundred batches at a time, are exactly the batches of a plain batch-by-batch
   reference, across epoch boundaries and across a state save / load in mid-schedule.
2. No syncs per step: between two log rows the trainer's loop turns no tensor into a
   Python value (``item``, ``float``, ``bool``, ``tolist``, ``cpu``...), for the three
   built-in plugins; on a GPU, CUDA's sync debug mode reports no synchronisation there.
3. Fused optimizers: Adam is the fused kernel, and its weights match the foreach path
   within float32 rounding of the updates.
4. ``--compile``: ``auto`` is settled and saved in config.json; a failing compile (no
   C++ compiler, a torch without torch.compile, an error in the first compiled step)
   falls back to eager with one line and then trains exactly the eager run; a compiled
   run resumed from a checkpoint ends bit-for-bit where an uninterrupted compiled run ends.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.overrides import TorchFunctionMode  # noqa: E402

from conftest import SMALL_NETS, run_cli, shared_mnist  # noqa: E402
from gankit.config import TrainConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine import compile as compiling  # noqa: E402
from gankit.training.engine.optim import make_optimizer  # noqa: E402
from gankit.training.engine.sampler import BatchSampler  # noqa: E402
from gankit.training.engine.trainer import Callbacks, Trainer  # noqa: E402

# Tensor -> Python conversions: each waits for the device on a GPU.
CONVERSIONS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "cpu", "numpy", "equal",
               "nonzero", "is_nonzero", "allclose", "__repr__", "__format__", "unique"}


@pytest.fixture(scope="module")
def mnist():
    return load_dataset(str(shared_mnist()), "train", allow_download=False)


def _cfg(plugin: str, **kw) -> TrainConfig:
    nets = dict(g_hidden=(32, 64), d_hidden=(64, 32), z_dim=16)
    settings = dict(plugin=plugin, batch_size=8, steps=30, log_every=10, sample_every=10**6,
                    checkpoint_every=10**6, seed=5, device="cpu", precision="fp32", compile="off", **nets)
    settings.update(kw)
    return TrainConfig.make(**settings).validate()


def _trainer(cfg: TrainConfig, data, run_dir: Path, **kw) -> Trainer:
    return Trainer(cfg, load_plugin(cfg.plugin), data.images, data.labels, run_dir, dataset_name="mnist", **kw)


def _weights(t: Trainer) -> dict[str, torch.Tensor]:
    return {**{f"g.{k}": v for k, v in t.G.state_dict().items()}, **{f"d.{k}": v for k, v in t.D.state_dict().items()}}


# ----------------------------------------------------------------------------- 1. data
class _Reference:
    """The plain sampler: per batch, each stream takes its next indices (new epoch when short)."""

    def __init__(self, sampler: BatchSampler):
        self.s = sampler
        self.state = [[st.epoch, st.pos] for st in sampler.streams]

    def next(self):
        rows = []
        for st, state in zip(self.s.streams, self.state):
            epoch, pos = state
            if pos + self.s.batch_size > len(st.indices):
                epoch, pos = epoch + 1, 0
            g = torch.Generator().manual_seed((st.seed * 0x9E3779B97F4A7C15 + st.stream * 1_000_003 + epoch) % 2**63)
            perm = st.indices[torch.randperm(len(st.indices), generator=g)]
            rows.append(perm[pos:pos + self.s.batch_size])
            state[:] = [epoch, pos + self.s.batch_size]
        idx = torch.cat(rows)
        return self.s.images[idx], self.s.labels[idx]


@pytest.mark.parametrize("layout, classes, batch", [("per-class", (0, 3, 8), 100), ("shuffled", (1, 7), 256)])
def test_sampler_draws_the_reference_batches_across_epochs_and_a_reload(mnist, layout, classes, batch):
    kw = dict(classes=classes, batch_size=batch, layout=layout, seed=4, value_range=(-1.0, 1.0), image_size=28,
              device=torch.device("cpu"))
    images, labels = torch.from_numpy(mnist.images), torch.from_numpy(mnist.labels.astype(np.int64))
    sampler = BatchSampler(images, labels, **kw)
    ref = _Reference(BatchSampler(images, labels, **kw))
    reloaded_at = 300  # inside the second uploaded schedule
    for step in range(400):  # several epochs: each class has ~1,000 images
        if step == reloaded_at:
            state = sampler.state()
            assert state == {"streams": ref.state}
            sampler = BatchSampler(images, labels, **kw)
            sampler.load_state(json.loads(json.dumps(state)))
        x, y = sampler.next()
        want_x, want_y = ref.next()
        assert torch.equal(x, want_x) and torch.equal(y, want_y), step
    assert max(e for e, _ in ref.state) >= 2
    assert x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0


def test_dropout_masks_drawn_ahead_are_each_digits_own_draws():
    """Drawn on several threads (big masks) or one (small), class k's mask is what its generator alone draws."""
    from gankit.training.nets.stacked import dropout_masks

    for shapes in ([(64, 16, 14, 14), (64, 32, 8, 8)], [(4, 8)]):
        gens = [torch.Generator().manual_seed(100 + c) for c in range(5)]
        masks = dropout_masks(gens, shapes, 0.3)
        for k in range(5):
            own = torch.Generator().manual_seed(100 + k)
            for shape, mask in zip(shapes, masks):
                assert torch.equal(mask[k], torch.empty(shape).bernoulli_(0.7, generator=own))


# ----------------------------------------------------------------------------- 2. no syncs
class _Conversions(TorchFunctionMode):
    """Records (trainer step, what) for every tensor -> Python conversion while active."""

    def __init__(self, trainer: Trainer):
        super().__init__()
        self.trainer = trainer
        self.seen: list[tuple[int, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in CONVERSIONS:
            self.seen.append((self.trainer.step, name))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("plugin", ["unconditional", "conditional", "per-digit"])
def test_no_tensor_becomes_a_python_value_between_log_rows(mnist, plugin, tmp_path):
    trainer = _trainer(_cfg(plugin, classes=(2, 5, 7)), mnist, tmp_path / "run")
    with _Conversions(trainer) as mode:
        trainer.run()
    log_every = trainer.cfg.log_every
    # Events are tagged with the step counter before the step runs; a log row's reading
    # happens once the counter has reached a multiple of log_every (and the start of the
    # run may check things once). Every other step must not touch a value.
    in_steps = [(s, name) for s, name in mode.seen if s % log_every]
    assert not in_steps, f"tensor -> Python conversions inside steps: {in_steps[:5]}"
    assert any(s == log_every for s, _ in mode.seen)  # the log rows do read (the recorder works)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_cuda_sync_between_log_rows(mnist, tmp_path):
    # Past step 256, so the sampler's second upload of indices happens inside the checked steps.
    cfg = _cfg("per-digit", classes=(2, 5, 7), device="cuda", steps=270)
    trainer = _trainer(cfg, mnist, tmp_path / "run")
    synced: list[int] = []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message).lower():
            synced.append(trainer.step)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    inside = [s for s in synced if s % cfg.log_every]
    assert not inside, f"CUDA synchronisations inside steps at steps {inside[:5]}"


# ----------------------------------------------------------------------------- 3. optimizer
def test_adam_is_fused_and_matches_foreach_within_rounding():
    cfg = TrainConfig.make(beta1=0.5)
    gen = torch.Generator().manual_seed(0)
    shapes = [(10, 100, 128), (10, 128), (10, 784, 256), (10, 256)]  # per-digit's stacked layers
    start = [torch.randn(s, generator=gen) * 0.05 for s in shapes]
    fused_p = [torch.nn.Parameter(t.clone()) for t in start]
    foreach_p = [torch.nn.Parameter(t.clone()) for t in start]
    fused = make_optimizer(cfg, fused_p, 2e-4, torch.device("cpu"))
    assert fused.defaults.get("fused") is True
    foreach = torch.optim.Adam(foreach_p, lr=2e-4, betas=(0.5, 0.999), foreach=True)
    steps = 20
    for _ in range(steps):
        # The same gradients on both sides (drawn, not computed from the weights), so the
        # difference is the updates' rounding alone, with no feedback through the loss.
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for ps in (fused_p, foreach_p):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
        fused.step()
        foreach.step()
    # Each step's update (<= lr in size) may round differently by a few float32 ulps of
    # the weight and of the update, in an order that differs between the two kernels.
    eps = torch.finfo(torch.float32).eps
    for a, b, s in zip(fused_p, foreach_p, start):
        bound = steps * 4 * eps * (s.abs() + 2e-4 * steps)
        assert ((a - b).abs() <= bound).all()
        assert (a - s).abs().max() > 1e-4  # they really moved


# ----------------------------------------------------------------------------- 4. compile
def test_auto_is_settled_and_saved(mnist, tmp_path):
    trainer = _trainer(_cfg("unconditional", compile="auto", steps=2, log_every=1), mnist, tmp_path / "run")
    assert trainer.cfg.compile == compiling.AUTO["cpu"]
    trainer.run()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["compile"] == compiling.AUTO["cpu"]
    assert compiling.resolve("auto", torch.device("cuda")).mode == compiling.AUTO["cuda"]
    assert compiling.resolve("reduce-overhead", torch.device("cpu"), distributed=True).mode == "off"


class _Messages(Callbacks):
    def __init__(self):
        self.lines: list[str] = []

    def on_message(self, text: str) -> None:
        self.lines.append(text)


def _eager_and_fallback(mnist, tmp_path, monkeypatch, broken_compile, plugin="per-digit"):
    cfg = _cfg(plugin, classes=(2, 5), steps=12, d_dropout=0.3)
    eager = _trainer(cfg, mnist, tmp_path / "eager")
    eager.run()
    monkeypatch.setattr(torch, "compile", broken_compile)
    messages = _Messages()
    fallen = _trainer(cfg.with_overrides(compile="default"), mnist, tmp_path / "fallback", callbacks=messages)
    fallen.run()
    failures = [m for m in messages.lines if "--compile" in m]
    assert len(failures) == 1 and "training eagerly" in failures[0], messages.lines
    assert "\n" not in failures[0] and "Traceback" not in failures[0]
    a, b = _weights(eager), _weights(fallen)
    assert all(torch.equal(a[k], b[k]) for k in a), "the fallen-back run is not the eager run"
    return failures[0]


def test_compile_raising_falls_back_to_the_eager_run(mnist, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated: no compiler backend\nsecond line of the error")

    line = _eager_and_fallback(mnist, tmp_path, monkeypatch, broken)
    assert "simulated: no compiler backend" in line and "second line" not in line


class _FailsWhenCalled(torch.nn.Module):
    """What a lazily compiling module does without a toolchain: the first call fails, here
    after the step has already moved the random streams and one optimizer (as a failure in
    a later compiled graph would), so the fall-back must undo that."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        torch.randn(3)  # the global stream moves
        raise RuntimeError("InvalidCxxCompiler: simulated")


def test_first_step_failing_is_undone_and_retried_eagerly(mnist, tmp_path, monkeypatch):
    calls = {"n": 0}

    def lazy(module, **kwargs):
        calls["n"] += 1
        # G compiles fine (a plain pass-through), D fails on its first call: by then G has
        # drawn noise from the run's generator, which must be rewound.
        return module if calls["n"] % 2 == 1 else _FailsWhenCalled(module)

    line = _eager_and_fallback(mnist, tmp_path, monkeypatch, lazy)
    assert "InvalidCxxCompiler" in line


def test_a_torch_without_compile_trains_eagerly(mnist, tmp_path, monkeypatch):
    monkeypatch.delattr(torch, "compile")
    messages = _Messages()
    trainer = _trainer(_cfg("unconditional", compile="default", steps=2, log_every=1), mnist, tmp_path / "run",
                       callbacks=messages)
    assert trainer.cfg.compile == "off"
    trainer.run()
    assert [m for m in messages.lines if "no torch.compile" in m]


def test_no_cpp_compiler_is_one_line_not_a_traceback(tmp_path):
    """The real toolchain failure: inductor finds no C++ compiler (CXX points nowhere)."""
    env = {"CXX": str(tmp_path / "no-such-c++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")}
    proc = run_cli("train", "--data", "synthetic", "--steps", "4", "--log-every", "2", *SMALL_NETS,
                   "--precision", "fp32", "--compile", "default", "--runs-dir", tmp_path, "--name", "run",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if "--compile default" in line]
    assert len(lines) == 1 and "training eagerly" in lines[0], proc.stderr


@pytest.mark.slow
def test_compiled_run_resumes_bit_for_bit(mnist, tmp_path):
    """A compiled run is deterministic on a CPU: stopped and resumed, it ends where it would have."""
    from gankit.training.persist.checkpoint import load_checkpoint

    cfg = _cfg("per-digit", classes=(2, 5), steps=16, log_every=4, checkpoint_every=8, compile="default",
               d_dropout=0.3, ema=0.9)
    straight = _trainer(cfg, mnist, tmp_path / "straight")
    straight.run()
    assert straight.cfg.compile == "default"
    _trainer(cfg.with_overrides(steps=8), mnist, tmp_path / "resumed").run()
    resumed = _trainer(cfg, mnist, tmp_path / "resumed", resume=load_checkpoint(tmp_path / "resumed"))
    resumed.run()
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]) for k in straight.ema.shadow)
