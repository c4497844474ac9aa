"""The per-digit plugin: K stacked GANs are exactly K independent GANs, and the CLI drives them.

Heavy tier (torch). What is proved here:

1. Nets: slice k of the stacked MLP / DCGAN generator and discriminator, copied into
   gankit's standard nets (`gankit.training.nets.builtin`), gives the same outputs and the same
   weight gradients as the stacked nets' class-k block (train mode, so DCGAN batch norm
   uses batch statistics), and the mixed-label ``forward(z, labels)`` path agrees too,
   within the worst-case rounding of the computation's depth in float32 and float64
   (`_rounding_tol`).
2. Training maths: three steps of the vectorised `per_digit_step` on K=3 classes give
   the same weights as K separate standard GANs trained with gankit's `standard_step`
   and their own Adam optimizers on the same data and noise (dropout off, because the
   standard nets draw dropout masks from the global RNG), in float64, within the float64
   rounding of the gradients as Adam can amplify it (`_adam_tol`). This is what summing
   (not averaging) the class losses buys.
3. Runs: training digit 3 alone (``classes=(3,)``) with the real Trainer on MNIST, with
   dropout on, ends with the same digit-3 weights and losses as digit 3's slice of a
   run on digits 1, 3, 8 with the same seed (within `_run_tol`; for DCGAN, conv biases that feed
   batch norm have an exactly-zero gradient whose rounding noise Adam amplifies, so
   those are left out and the generator's output is compared instead).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gankit.config import TrainConfig  # noqa: E402
from gankit.plugin_api import Nets, StepContext  # noqa: E402
from gankit.testing import check_plugin, small_spec  # noqa: E402
from gankit.training.engine.context import make_step_context  # noqa: E402
from gankit.training.engine.step import standard_step  # noqa: E402
from gankit.training.engine.trainer import Trainer  # noqa: E402
from gankit.training.nets.stacked import copy_class_into  # noqa: E402
from gankit_plugins.per_digit import build, class_nets, per_digit_step, plugin  # noqa: E402

from conftest import MNIST  # noqa: E402


def _spec(arch: str, classes=(1, 4, 7), dropout: float = 0.0):
    return dataclasses.replace(small_spec(arch, classes), d_dropout=dropout)


def _grads_of_class(stacked: torch.nn.Module, k: int, like: torch.nn.Module) -> list[torch.Tensor]:
    """Class k's slice of the stacked net's gradients, laid out as the standard net ``like``'s parameters."""
    holder = copy.deepcopy(stacked)
    with torch.no_grad():
        for p, q in zip(holder.parameters(), stacked.parameters()):
            p.copy_(q.grad)
    out = copy_class_into(holder, k, copy.deepcopy(like))
    return [p.detach() for p in out.parameters()]


def _reductions(spec, bn_batch: int) -> tuple[int, int]:
    """(layers, longest reduction) of G and D forward: what bounds their rounding error.

    The longest sum is a dot product over a layer's fan-in (784 for the MLP
    discriminator's first layer, 9 * channels for a 3x3 conv, the conv features for the
    DCGAN head) or, with DCGAN batch norm in train mode, a mean over ``bn_batch * 28 * 28``
    values (``bn_batch`` 0: eval mode, no batch statistics).
    """
    if spec.arch == "mlp":
        g = (spec.z_dim, *spec.g_hidden)
        d = (spec.image_size ** 2, *spec.d_hidden)
        return len(g) + len(d), max(*g, *d)
    size = spec.image_size
    for i in range(len(spec.d_hidden)):  # the discriminator's feature map, as its layout computes it
        stride = 2 if i < 3 else 1
        size = (size + 2 - 3) // stride + 1 + (i == 1)
    fan_ins = (spec.z_dim, *(9 * c for c in (*spec.g_hidden, 1, *spec.d_hidden)), spec.d_hidden[-1] * size * size)
    layers = (1 + len(spec.g_hidden) + 1) + (len(spec.d_hidden) + 1)
    return layers, max(*fan_ins, bn_batch * spec.image_size ** 2)


def _rounding_tol(dtype: torch.dtype, spec, bn_batch: int, backward: bool) -> float:
    """Worst-case rounding of the nets' forward (and backward) pass: n_ops * eps * scale.

    Each of ``layers`` steps is a sum of at most ``longest`` terms, and a sum of n terms
    rounds to within n * eps of its exact value (relative to the sum of the terms'
    magnitudes); backward repeats the depth. Inputs lie in [-1, 1] and weights are about
    1/sqrt(fan_in), so those magnitudes stay O(1): scale 1. This bounds every correct
    implementation on every CPU (the realistic error is a random walk, ~sqrt(n) times
    smaller) and is still orders of magnitude below what a wrong class slice gives (O(0.1)).
    """
    layers, longest = _reductions(spec, bn_batch)
    n_ops = layers * longest * (2 if backward else 1)
    return n_ops * torch.finfo(dtype).eps


DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_stacked_nets_match_separate_standard_nets(arch, dtype):
    spec = _spec(arch)
    torch.manual_seed(0)
    nets = build(spec)
    singles = [class_nets(nets, spec, c) for c in spec.classes]  # standard nets, class slices copied out
    for module in [nets.generator, nets.discriminator] + [m for s in singles for m in (s.generator, s.discriminator)]:
        module.to(dtype)
    G, D = nets.generator.train(), nets.discriminator.train()
    k, b = len(spec.classes), 6
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(k, b, spec.z_dim, generator=gen, dtype=dtype)
    x = torch.rand(k, b, 1, 28, 28, generator=gen, dtype=dtype) * 2 - 1
    tol = _rounding_tol(dtype, spec, b, backward=True)

    images, scores = G(z), D(x)  # no labels: the [K, B, ...] block form of forward
    assert images.shape == (k, b, 1, 28, 28) and scores.shape == (k, b)
    # Any differentiable per-class objective; summed over classes as the plugin's step does.
    (images.square().mean(dim=(1, 2, 3, 4)) + scores.sin().mean(1)).sum().backward()

    for i, single in enumerate(singles):
        g, d = single.generator.train(), single.discriminator.train()
        img_i, score_i = g(z[i], None), d(x[i], None)
        assert (img_i - images[i]).abs().max().item() < tol
        assert (score_i - scores[i]).abs().max().item() < tol
        (img_i.square().mean() + score_i.sin().mean()).backward()
        for stacked, standard in ((G, g), (D, d)):
            want = [p.grad for p in standard.parameters()]
            got = _grads_of_class(stacked, i, standard)
            assert len(want) == len(got) > 0
            worst = max((a - w).abs().max().item() for a, w in zip(got, want))
            scale = max(w.abs().max().item() for w in want)
            assert worst < tol * max(1.0, scale), f"class {spec.classes[i]}: gradients differ by {worst}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_mixed_labels_use_each_samples_own_net(arch, dtype):
    spec = _spec(arch)
    torch.manual_seed(0)
    nets = build(spec)
    G, D = nets.generator.eval().to(dtype), nets.discriminator.eval().to(dtype)
    labels = torch.tensor([7, 1, 1, 4, 7, 7, 1])  # mixed order, uneven counts, classes (1, 4, 7)
    z = torch.randn(len(labels), spec.z_dim, generator=torch.Generator().manual_seed(2), dtype=dtype)
    tol = _rounding_tol(dtype, spec, 0, backward=False)  # eval mode: no batch statistics
    with torch.no_grad():
        images = G(z, labels)
        scores = D(images, labels)
        for i, c in enumerate(labels.tolist()):
            single = class_nets(nets, spec, c)
            single.generator.eval().to(dtype)
            single.discriminator.eval().to(dtype)
            assert (single.generator(z[i:i + 1], None) - images[i:i + 1]).abs().max().item() < tol
            assert abs(single.discriminator(images[i:i + 1], None).item() - scores[i].item()) < tol
    with pytest.raises(ValueError, match="not among this model's classes"):
        G(z[:2], torch.tensor([1, 5]))


LR, ADAM_EPS = 1e-3, 1e-8


def _ctx(G, D, spec, noise):
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=(0.5, 0.999), eps=ADAM_EPS, fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=(0.5, 0.999), eps=ADAM_EPS, fused=True)
    return make_step_context(Nets(G, D), spec, opt_g=opt_g, opt_d=opt_d, next_batch=None, loss="bce",
                             noise=noise, torch_generator=torch.Generator().manual_seed(99))


def _adam_tol(spec, batch: int, steps: int) -> float:
    """How far float64 weights may drift apart after ``steps`` Adam steps from rounding alone.

    The two sides compute the same gradients in a different order (batched vs single
    kernels), so each gradient entry may differ by the rounding bound `_rounding_tol`
    (absolute, gradients being O(1) at most). Adam's step ``lr * m / (sqrt(v) + eps)``
    turns a gradient difference d into a step difference of at most ``lr / eps * d``
    (its slope at a zero gradient), so ``steps * lr / eps * rounding`` bounds the drift.
    The factor lr / eps = 1e5 is why float32 cannot be used here, and why a fixed 1e-12
    failed on another CPU (6.7e-11). A wrong reduction (a mean over classes instead of
    a sum) moves the near-zero-gradient entries by ~lr, far outside this bound.
    """
    return steps * LR / ADAM_EPS * _rounding_tol(torch.float64, spec, batch, backward=True)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_vectorised_training_equals_separate_standard_gans(arch):
    # In float64: Adam's first steps move each weight by about lr * sign(gradient), so in
    # float32 the rounding noise of the few gradient entries that are almost exactly zero
    # can become lr-sized differences (seen: 15 of 50k entries). See `_adam_tol`.
    spec = _spec(arch)
    classes, k, b, steps = spec.classes, len(spec.classes), 8, 3
    tol = _adam_tol(spec, b, steps)
    loss_tol = (2 * b + 4) * torch.finfo(torch.float32).eps
    assert tol < LR / 100  # still far tighter than the ~lr differences a wrong reduction makes
    torch.manual_seed(0)
    nets = build(spec)
    start = copy.deepcopy(nets)
    singles = [class_nets(nets, spec, c) for c in classes]  # same initial weights, standard modules
    for module in [nets.generator, nets.discriminator] + [m for s in singles for m in (s.generator, s.discriminator)]:
        module.double()
    gen = torch.Generator().manual_seed(5)
    reals = [torch.rand(k * b, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(steps)]
    labels = torch.tensor(classes).repeat_interleave(b)

    drawn: list[torch.Tensor] = []
    noise_gen = torch.Generator().manual_seed(6)

    def noise(n):  # record what the vectorised step draws, to replay it to the separate GANs
        drawn.append(torch.randn(n, spec.z_dim, generator=noise_gen, dtype=torch.float64))
        return drawn[-1]

    ctx = _ctx(nets.generator.train(), nets.discriminator.train(), spec, noise)
    vec_losses = []
    for s in range(steps):
        ctx.step = s
        vec_losses.append(per_digit_step(ctx, reals[s], labels))
    assert len(drawn) == steps and drawn[0].shape == (10 * b, spec.z_dim)  # all ten digits' rows, fixed order
    moved = max((p.double() - q).abs().max().item()
                for p, q in zip(start.generator.parameters(), nets.generator.parameters()))
    assert moved > 1e-3  # the comparison below is between nets that really trained

    for i, (c, single) in enumerate(zip(classes, singles)):
        replay = iter(z.view(10, b, -1)[c] for z in drawn)  # class c's own rows of each draw
        sctx = _ctx(single.generator.train(), single.discriminator.train(), spec, lambda n: next(replay))
        for s in range(steps):
            sctx.step = s
            out = standard_step(sctx, reals[s][i * b:(i + 1) * b], labels[i * b:(i + 1) * b])
            # Both steps cast the scores to float32 for the loss (as under mixed precision), so
            # the losses agree to float32 rounding of the loss's own ops (two means over b
            # scores, a few more ops), on scores that agree to float64 rounding. The weights
            # Adam lets drift by up to `tol` are those whose gradient (the loss's sensitivity)
            # is below Adam's eps, so they add no more than `tol`.
            for key in ("d_loss", "g_loss"):
                want, got = out[key].item(), vec_losses[s][f"{key}_{c}"].item()
                assert abs(want - got) < loss_tol * max(1.0, abs(want)) + tol, (key, want, got)
        for part in ("generator", "discriminator"):
            standard = getattr(single, part)
            want = list(standard.parameters()) + [t for t in standard.buffers() if t.is_floating_point()]
            got_net = copy_class_into(getattr(nets, part), i, copy.deepcopy(standard))
            got = list(got_net.parameters()) + [t for t in got_net.buffers() if t.is_floating_point()]
            worst = max((a - w).abs().max().item() for a, w in zip(got, want))
            assert worst < tol, f"digit {c} {part}: weights differ by {worst} after {steps} steps (bound {tol:.2g})"
    # The reported overall losses are the mean over the K GANs (one GAN's scale).
    last = vec_losses[-1]
    # A float32 mean of K O(1) numbers (the losses are float32) against numpy's float64 one:
    # within K float32 roundings.
    mean = np.mean([last[f"d_loss_{c}"].item() for c in classes])
    assert abs(last["d_loss"].item() - mean) < k * torch.finfo(last["d_loss"].dtype).eps * max(1.0, abs(mean))


def _cancelled_by_batchnorm(net: torch.nn.Module) -> set[str]:
    """Conv biases that feed straight into a batch norm (and that norm's running mean).

    Batch norm subtracts the batch mean, so such a bias has an exactly-zero gradient;
    float rounding leaves ~1e-9 noise there, which Adam (whose early steps are about
    lr * sign(gradient)) turns into lr-sized random steps. They change no training-mode
    output, so the comparison leaves them out and checks the outputs instead.
    """
    names: set[str] = set()
    for prefix, module in net.named_modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (name, conv), (bn_name, bn) in zip(children, children[1:]):
                if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                    names |= {f"{prefix}.{name}.bias", f"{prefix}.{bn_name}.running_mean"}
    return names


def _cfg(classes, arch="mlp", steps=12, **kw):
    nets = dict(g_hidden=(32, 64), d_hidden=(64, 32)) if arch == "mlp" else dict(g_hidden=(8, 4), d_hidden=(4, 8))
    return TrainConfig.make(plugin="per-digit", data=str(MNIST), arch=arch, z_dim=16, batch_size=8, steps=steps,
                       classes=classes, d_dropout=0.3, seed=3, device="cpu", log_every=4, sample_every=10**6,
                       checkpoint_every=10**6, precision="fp32", **nets, **kw).validate()


def _run_tol(cfg, spec, steps: int) -> tuple[float, float]:
    """(weights, outputs) tolerance between digit 3 alone and digit 3 in a multi-digit float32 run.

    Both runs do the same arithmetic per class, but batched kernels over 1 or 3 classes may
    round differently: each gradient entry by a relative ``rho`` of at most the float32
    rounding bound of the nets' depth (`_rounding_tol`). Adam's step ``lr * m / (sqrt(v)
    + eps)`` is scale-free in the gradient, so a relative gradient error rho moves it by at
    most ``2 * rho`` of its size, and its size is at most ``lr * (1 - beta1) / sqrt(1 -
    beta2)`` (Kingma & Ba, section 2.1). Gradients that are exactly zero in exact
    arithmetic are the exception (Adam turns their rounding noise into lr-sized steps):
    those are the batch-norm-cancelled biases the test leaves out. An output sums
    ``fan_in`` weight drifts of independent sign per layer, so it drifts by about
    ``sqrt(fan_in)`` times the weights' per layer.
    """
    rho = _rounding_tol(torch.float32, spec, cfg.batch_size, backward=True)
    adam_step = max(cfg.lr_g, cfg.lr_d) * max(1.0, (1 - cfg.beta1) / (1 - cfg.beta2) ** 0.5)
    weights = steps * 2 * rho * adam_step
    layers, longest = _reductions(spec, cfg.batch_size)
    return weights, weights * layers * longest ** 0.5


def _train(cfg, tmp_path, name):
    from gankit.data import load_dataset

    ds = load_dataset(str(MNIST), "train")
    trainer = Trainer(cfg, plugin, ds.images, ds.labels, tmp_path / name, dataset_name="mnist")
    result = trainer.run()
    return trainer, result


@pytest.mark.skipif(not MNIST.exists(), reason="needs the MNIST subset")
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_digit_trained_alone_equals_its_slice_of_a_multi_digit_run(arch, tmp_path):
    steps = 12 if arch == "mlp" else 4
    alone, res_alone = _train(_cfg((3,), arch, steps), tmp_path, "alone")
    multi, res_multi = _train(_cfg((1, 3, 8), arch, steps), tmp_path, "multi")
    w_tol, out_tol = _run_tol(alone.cfg, alone.spec, steps)
    assert w_tol < 1e-4  # far below the > 1e-3 that separates two digits' nets (checked below)
    a = class_nets(Nets(alone.G, alone.D), alone.spec, 3)
    m = class_nets(Nets(multi.G, multi.D), multi.spec, 3)
    other = class_nets(Nets(multi.G, multi.D), multi.spec, 8)
    for part in ("generator", "discriminator"):
        sa, sm = getattr(a, part).state_dict(), getattr(m, part).state_dict()
        skip = _cancelled_by_batchnorm(getattr(a, part))
        worst = max((sa[n] - sm[n]).abs().max().item() for n in sa if sa[n].is_floating_point() and n not in skip)
        assert worst < w_tol, f"{part}: digit 3 alone vs in a 3-digit run differ by {worst} (bound {w_tol:.2g})"
        so = getattr(other, part).state_dict()
        assert max((sa[n] - so[n]).abs().max().item() for n in sa if sa[n].is_floating_point()) > 1e-3
    # What the skipped tensors cannot change: the generator's training-mode output.
    z = torch.randn(16, alone.spec.z_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out_a, out_m = a.generator.train()(z, None), m.generator.train()(z, None)
    assert (out_a - out_m).abs().max().item() < out_tol
    # Same per-digit losses, logged by the trainer.
    rows_a = [r for r in res_alone.metrics if "d_loss_3" in r]
    rows_m = [r for r in res_multi.metrics if "d_loss_3" in r]
    assert len(rows_a) == len(rows_m) == steps // 4
    for ra, rm in zip(rows_a, rows_m):
        # A loss is a mean of 1-Lipschitz functions of D's scores: it drifts like an output.
        assert abs(ra["d_loss_3"] - rm["d_loss_3"]) < out_tol and abs(ra["g_loss_3"] - rm["g_loss_3"]) < out_tol
        assert set(rm) >= {f"{p}_loss_{c}" for p in "dg" for c in (1, 3, 8)}


@pytest.mark.skipif(not MNIST.exists(), reason="needs the MNIST subset")
def test_resumed_run_is_the_same_run(tmp_path):
    # Dropout masks come from (run seed, step, class), noise from the checkpointed noise
    # generator: stopping at step 4 and resuming to 8 must give the uninterrupted run.
    from gankit.data import load_dataset
    from gankit.training.persist.checkpoint import load_checkpoint

    straight, _ = _train(_cfg((2, 5), steps=8), tmp_path, "straight")
    _train(_cfg((2, 5), steps=4), tmp_path, "resumed")
    ds = load_dataset(str(MNIST), "train")
    resumed = Trainer(_cfg((2, 5), steps=8), plugin, ds.images, ds.labels, tmp_path / "resumed",
                      dataset_name="mnist", resume=load_checkpoint(tmp_path / "resumed"))
    resumed.run()
    for a, b in ((straight.G, resumed.G), (straight.D, resumed.D)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_plugin_contract(arch):
    report = check_plugin(plugin, arch=arch, classes=(2, 5, 7))
    assert report.ok
    row = report.losses[-1]
    assert {"d_loss_2", "g_loss_5", "d_loss_7"} <= set(row)


def _gankit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real `gankit` command (the console script beside this Python, else ``python -m gankit.cli``)."""
    script = Path(sys.executable).with_name("gankit")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gankit.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("digits, message", [("3,11", "11 is not one"), ("x", "comma-separated integers")])
def test_bad_digits_exit_2(digits, message, tmp_path):
    proc = _gankit("train", "--plugin", "per-digit", "--data", "synthetic", "--digits", digits, "--steps", "1",
                   "--runs-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr + proc.stdout
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.skipif(not MNIST.exists(), reason="needs the MNIST subset")
def test_short_real_run_writes_grid_and_per_digit_curves(tmp_path):
    from PIL import Image

    proc = _gankit("train", "--plugin", "per-digit", "--data", str(MNIST), "--digits", "0,1,7", "--steps", "40",
                   "--batch-size", "16", "--g-hidden", "64,128", "--d-hidden", "128,64", "--lr", "1e-3",
                   "--beta1", "0.5", "--log-every", "10", "--sample-every", "20", "--runs-dir", str(tmp_path),
                   "--name", "pd", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "pd"
    grid = Image.open(run / "samples" / "step-000000040.png")
    # 3 digits x 8 samples, 8 per row -> 3 rows of 28 px + 2 px padding, drawn at scale 2.
    # Plus a one-line caption strip above (the step): less than one more row of height.
    rows_px = 2 * (2 + 3 * (28 + 2))
    assert rows_px <= grid.height < rows_px + 2 * 28
    assert grid.width > 2 * (2 + 8 * 30)  # plus the row labels' margin
    assert (run / "loss_curve_per_class.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    for r in rows:
        per_d = [r[f"d_loss_{c}"] for c in (0, 1, 7)]
        assert all(np.isfinite(per_d)) and all(0.0 < v < 10.0 for v in per_d)
        # The overall loss is the mean of the three GANs', taken in float32: within 3 float32
        # roundings of numpy's float64 mean of the same three numbers.
        for key in ("d_loss", "g_loss"):
            mean = np.mean([r[f"{key}_{c}"] for c in (0, 1, 7)])
            assert abs(r[key] - mean) <= 3 * np.finfo(np.float32).eps * max(1.0, abs(mean))
    # The three GANs really train apart: their losses are not copies of each other.
    assert len({round(rows[-1][f"g_loss_{c}"], 6) for c in (0, 1, 7)}) == 3
