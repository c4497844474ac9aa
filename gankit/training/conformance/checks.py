"""The conformance checks themselves: each a function of one `Subject`, run in order by `run_checks`.

Heavy tier (torch; onnx and onnxruntime for the export checks). Each check returns its
detail line or raises `Fail`; a check whose prerequisites failed is skipped, and says so.
"""

from __future__ import annotations

import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from gankit.plugin_api import (GanPlugin, NetSpec, Nets, generator_output_problems, resolve_options,
                               step_output_problems)
from gankit.training.engine.context import make_step_context
from gankit.training.engine.step import standard_step

from gankit.training.conformance.report import FAIL, PASS, SKIP, CheckReport, CheckResult

# How far outputs may stray: torch vs onnxruntime, and export module vs training
# generator (the contract's 1e-4). The value range's slack is the contract's own.
EXPORT_TOLERANCE = 1e-4

# The kit's optimiser unless the plugin's train_defaults say otherwise: a learning rate
# large enough that two steps visibly move every weight that gets a gradient.
KIT_TRAINING = {"optimizer": "adam", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5, "beta2": 0.999,
                "momentum": 0.0, "loss": "bce", "ls_sigmoid": False, "noise": "normal", "d_steps": 1, "ema": 0.0}


class Fail(Exception):
    """Raised inside a check to fail it with a plain message."""


@dataclass
class Subject:
    """The plugin under check and what the checks have learned about it so far."""

    plugin: GanPlugin
    spec: NetSpec
    steps: int
    batch_size: int
    seed: int
    training: Mapping[str, Any]
    export: bool
    report: CheckReport
    # Inputs of the forward checks: two of each class, in class order.
    z: Any = None
    labels: Any = None
    nets: Optional[Nets] = None
    images: Any = None
    trained: Optional[Nets] = None
    before: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)
    export_module: Any = None
    export_ref: Any = None

    @property
    def n(self) -> int:
        return len(self.labels)


def small_spec(arch: str = "mlp", classes: Sequence[int] = tuple(range(10)), *,
               image_size: int = 28, options: Optional[Mapping[str, Any]] = None) -> NetSpec:
    """A NetSpec with tiny nets (fast on a CPU) that still has every layer type of the real ones.

    Only the built-in archs get tiny widths; an arch of a plugin's own keeps gankit's
    default widths (what `gankit train` would give it), since only the plugin knows what
    its nets make of them.
    """
    widths = {}
    if arch == "dcgan":
        widths = {"g_hidden": (16, 8), "d_hidden": (8, 16)}
    elif arch == "mlp":
        widths = {"g_hidden": (32, 64), "d_hidden": (64, 32)}
    return NetSpec(arch=arch, z_dim=8, image_size=image_size, num_classes=10,
                   classes=tuple(sorted(classes)), options=dict(options or {}), **widths)


def _where(exc: BaseException) -> str:
    """The innermost traceback frame outside torch, i.e. most likely the plugin's own line."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "/torch/" not in f.filename.replace("\\", "/")]
    frame = (own or frames or [None])[-1]
    return f" (at {frame.filename}:{frame.lineno} in {frame.name})" if frame else ""


def _describe_range(t) -> str:
    return f"min {float(t.min()):.4g}, max {float(t.max()):.4g}"


def _expect_tensor(out, what: str):
    if not isinstance(out, torch.Tensor):
        raise Fail(f"{what} returned {type(out).__name__}, not a torch.Tensor")
    return out


def fake_batch(spec: NetSpec, layout: str, batch_size: int, gen: torch.Generator) -> tuple[Any, Any]:
    """Random "real" images in the spec's value range, laid out as the trainer's sampler would."""
    classes = torch.tensor(spec.classes, dtype=torch.long)
    if layout == "per-class":
        labels = classes.repeat_interleave(batch_size)  # batch_size of each class, in class order
    else:
        labels = classes[torch.randint(len(classes), (batch_size,), generator=gen)]
    lo, hi = spec.value_range
    images = torch.rand(len(labels), 1, spec.image_size, spec.image_size, generator=gen) * (hi - lo) + lo
    return images, labels


def _loss_values(out, step: int) -> dict[str, float]:
    """One step's result as numbers, or Fail with the contract's own words (`step_output_problems`)."""
    problems = step_output_problems(out)
    if problems:
        raise Fail(f"step {step}: " + "; ".join(problems))
    return {k: float(v.detach().float().cpu()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}


def _optimizer(params, kind: str, lr: float, t: Mapping[str, Any]) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t["momentum"])
    return torch.optim.Adam(params, lr=lr, betas=(t["beta1"], t["beta2"]))


def train_fresh(s: Subject, precision: str = "fp32") -> tuple[Nets, dict[str, Any], list[dict[str, float]]]:
    """Build fresh nets and run ``s.steps`` steps as the trainer does: nets, initial weights, losses."""
    t = s.training
    torch.manual_seed(s.seed)
    nets = s.plugin.build(s.spec)
    G, D = nets.generator, nets.discriminator
    before = {f"generator.{k}": v.detach().clone() for k, v in G.named_parameters()}
    before.update({f"discriminator.{k}": v.detach().clone() for k, v in D.named_parameters()})
    data_gen = torch.Generator().manual_seed(s.seed + 2)

    def next_batch():
        return fake_batch(s.spec, s.plugin.batch_layout, s.batch_size, data_gen)

    ctx = make_step_context(
        nets, s.spec, opt_g=_optimizer(G.parameters(), t["optimizer"], t["lr_g"], t),
        opt_d=_optimizer(D.parameters(), t["optimizer"], t["lr_d"], t), next_batch=next_batch,
        loss=t["loss"], ls_sigmoid=t["ls_sigmoid"], noise=t["noise"], seed=s.seed, d_steps=t["d_steps"],
        precision=precision, device="cpu", d_regularizer=s.plugin.d_regularizer)
    step_fn = s.plugin.train_step or standard_step
    G.train()
    D.train()
    s.flags = _grad_flags(nets)
    losses = []
    for i in range(s.steps):
        ctx.step = i
        real, labels = next_batch()
        losses.append(_loss_values(step_fn(ctx, real, labels), i))
    return nets, before, losses


# ----- the checks (each returns its detail line or raises Fail) ---------------------------

def check_options(s: Subject) -> str:
    try:
        resolve_options(s.plugin, s.spec.options)
    except ValueError as exc:
        raise Fail(f"the options {dict(s.spec.options)} are refused: {exc}") from None
    kind = "typed" if s.plugin.options else "untyped (API 1)"
    return f"{dict(s.spec.options)}, {kind}" if s.spec.options else "no options"


def check_build(s: Subject) -> str:
    torch.manual_seed(s.seed)
    nets = s.plugin.build(s.spec)
    if not isinstance(nets, Nets):
        raise Fail(f"build returned {type(nets).__name__}; it must return gankit.plugin_api.Nets")
    for part in ("generator", "discriminator"):
        if not isinstance(getattr(nets, part), torch.nn.Module):
            raise Fail(f"the {part} is {type(getattr(nets, part)).__name__}, not a torch.nn.Module")
    s.nets = nets
    n_g = sum(p.numel() for p in nets.generator.parameters())
    n_d = sum(p.numel() for p in nets.discriminator.parameters())
    return f"generator {n_g:,} parameters, discriminator {n_d:,}"


def check_generator_output(s: Subject) -> str:
    n = s.n
    G = s.nets.generator.eval()
    with torch.no_grad():
        out = _expect_tensor(G(s.z, s.labels), "G(z, labels)")
    problems = generator_output_problems(out, n, s.spec)  # the trainer's own check
    if problems:
        raise Fail("; ".join(problems))
    s.images = out
    return f"{list(out.shape)} float32, {_describe_range(out)}"


def check_batch_independence(s: Subject) -> str:
    # generate and the export parity check run any batch size; an image must depend
    # only on its own z and label (no batch statistics in eval mode).
    G = s.nets.generator.eval()
    with torch.no_grad():
        singles = torch.cat([G(s.z[i:i + 1], s.labels[i:i + 1]) for i in range(s.n)])
    diff = float((singles - s.images).abs().max())
    if diff > 1e-5:
        raise Fail(f"in eval mode an image changes with the rest of its batch (max difference {diff:.3g}); "
                   "each image must depend only on its own z and label")
    return f"max difference {diff:.2g}"


def check_label_handling(s: Subject) -> str:
    classes = s.spec.classes
    if len(classes) < 2:
        return "only one class; nothing to compare"
    G = s.nets.generator.eval()
    k = len(classes)
    same_z = s.z[:1].expand(k, -1).contiguous()
    with torch.no_grad():
        out = G(same_z, torch.tensor(classes, dtype=torch.long)).flatten(1)
    diffs = (out[:, None, :] - out[None, :, :]).abs().amax(dim=2)
    if s.plugin.label_mode == "none":
        worst = float(diffs.max())
        if worst > 1e-6:
            raise Fail(f"label_mode is 'none' but the label changes the image (max difference {worst:.3g}); "
                       "an unconditional generator must ignore its labels")
        return "labels ignored, as label_mode 'none' says"
    off_diag = diffs.masked_fill(torch.eye(k, dtype=torch.bool), float("inf"))
    i, j = divmod(int(off_diag.argmin()), k)
    if float(off_diag[i, j]) <= 1e-6:
        raise Fail(f"label_mode is {s.plugin.label_mode!r} but labels {classes[i]} and {classes[j]} "
                   "give the same image for the same z; the generator must use its labels")
    return f"{k} labels give {k} different images for one z (smallest difference {float(off_diag[i, j]):.3g})"


def check_discriminator_output(s: Subject) -> str:
    n = s.n
    D = s.nets.discriminator.eval()
    with torch.no_grad():
        scores = _expect_tensor(D(s.images, s.labels), "D(images, labels)")
    problems = []
    if list(scores.shape) != [n]:
        problems.append(f"shape {list(scores.shape)}, expected [{n}] (one raw score per image)")
    if scores.dtype != torch.float32:
        problems.append(f"dtype {scores.dtype}, expected torch.float32")
    if not torch.isfinite(scores).all():
        problems.append("contains NaN or inf")
    if problems:
        raise Fail("; ".join(problems))
    return f"[{n}] float32"


def _grad_flags(nets: Nets) -> dict[str, bool]:
    return {f"{part}.{k}": p.requires_grad
            for part, module in (("generator", nets.generator), ("discriminator", nets.discriminator))
            for k, p in module.named_parameters()}


def _flipped(before: dict[str, bool], nets: Nets) -> str:
    """Parameters whose requires_grad the steps changed, in words ('' when none did)."""
    after = _grad_flags(nets)
    off = [k for k, v in before.items() if v and not after.get(k, True)]
    on = [k for k, v in before.items() if not v and after.get(k, False)]
    parts = []
    if off:
        parts.append(f"these parameters no longer require grad: {', '.join(off[:5])}")
    if on:
        parts.append(f"these parameters that build froze now require grad: {', '.join(on[:5])}")
    return "; ".join(parts)


def _nonfinite_losses(losses: list[dict[str, float]]) -> list[str]:
    return [f"step {i}: {k}={v}" for i, row in enumerate(losses) for k, v in row.items()
            if not (v == v and abs(v) != float("inf"))]


def check_training(s: Subject) -> str:
    nets, before, losses = train_fresh(s)
    s.trained, s.before, s.losses = nets, before, losses
    s.report.losses = losses
    bad = _nonfinite_losses(losses)
    if bad:
        raise Fail("non-finite loss: " + ", ".join(bad))
    flipped = _flipped(s.flags, nets)
    if flipped:
        raise Fail(f"after the step {flipped}; a step leaves requires_grad as it found it "
                   "(one that freezes a net must unfreeze it before returning)")
    last = losses[-1]
    return (f"{s.steps} step(s), d_steps {s.training['d_steps']}; "
            f"last d_loss {last['d_loss']:.4g}, g_loss {last['g_loss']:.4g}")


def check_weights_change(s: Subject) -> str:
    nets, before = s.trained, s.before
    after = {f"generator.{k}": v for k, v in nets.generator.named_parameters()}
    after.update({f"discriminator.{k}": v for k, v in nets.discriminator.named_parameters()})
    problems = []
    for part in ("generator", "discriminator"):
        names = [k for k in before if k.startswith(part + ".")]
        if not names:
            problems.append(f"the {part} has no parameters")
            continue
        if not any(not torch.equal(before[k], after[k].detach()) for k in names):
            problems.append(f"no {part} weight changed in {s.steps} step(s) "
                            f"(does the step call opt_{part[0]}.step()?)")
    nonfinite = [k for k, v in after.items() if not torch.isfinite(v).all()]
    if nonfinite:
        problems.append(f"non-finite weights after training: {', '.join(nonfinite[:5])}")
    if problems:
        raise Fail("; ".join(problems))
    return "generator and discriminator weights updated, all finite"


def check_reproducible(s: Subject) -> str:
    # Resume and `--seed` promise bit-for-bit repeats: the same seeds must give the same
    # losses and weights, so a step may draw randomness only from torch's seeded
    # generators (ctx.noise, ctx.torch_generator, the global torch RNG).
    nets, _, losses = train_fresh(s)
    if losses != s.losses:
        raise Fail(f"two runs with the same seeds gave different losses: {s.losses} vs {losses}; "
                   "draw randomness from ctx.noise / ctx.torch_generator, not Python's or numpy's RNG")
    for part in ("generator", "discriminator"):
        a = dict(getattr(s.trained, part).state_dict())
        b = dict(getattr(nets, part).state_dict())
        for k in a:
            if not torch.equal(a[k], b[k]):
                raise Fail(f"two runs with the same seeds gave different {part} weights ({k})")
    return "same seeds, same losses and weights"


def check_bf16(s: Subject) -> str:
    # `--precision bf16` runs the same step inside ctx.autocast(); a step that bypasses
    # it, or casts wrongly, fails here rather than in a user's long run.
    nets, _, losses = train_fresh(s, precision="bf16")
    bad = _nonfinite_losses(losses)
    if bad:
        raise Fail("non-finite loss under bf16 autocast: " + ", ".join(bad))
    flipped = _flipped(s.flags, nets)
    if flipped:
        raise Fail(f"under bf16 autocast {flipped}")
    wrong = [f"{part}.{k} is {p.dtype}" for part, m in (("generator", nets.generator),
                                                        ("discriminator", nets.discriminator))
             for k, p in m.named_parameters() if p.dtype != torch.float32 or not torch.isfinite(p).all()]
    if wrong:
        raise Fail(f"under bf16 autocast the weights must stay finite float32: {', '.join(wrong[:5])}")
    return f"{s.steps} step(s) under bf16 autocast; last d_loss {losses[-1]['d_loss']:.4g}"


def check_trainer(s: Subject) -> str:
    from gankit.training.conformance.trainer_run import TrainerFail, run_through_trainer

    try:
        return run_through_trainer(s, s.training)
    except TrainerFail as exc:
        raise Fail(str(exc)) from None


def check_export_module(s: Subject) -> str:
    G = s.trained.generator.eval()
    module = s.plugin.export_module(G) if s.plugin.export_module is not None else G
    if not isinstance(module, torch.nn.Module):
        raise Fail(f"export_module returned {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    with torch.no_grad():
        want = G(s.z, s.labels)
        got = _expect_tensor(module(s.z, s.labels), "the export module")
    if got.shape != want.shape:
        raise Fail(f"the export module returns shape {list(got.shape)}, the generator {list(want.shape)}")
    diff = float((got - want).abs().max())
    if diff > EXPORT_TOLERANCE:
        raise Fail(f"the export module's images differ from the generator's by {diff:.3g} "
                   f"(allowed {EXPORT_TOLERANCE:g})")
    s.export_module, s.export_ref = module, want
    return ("the generator itself" if s.plugin.export_module is None
            else f"export_module(G) matches G within {diff:.2g}")


def check_onnx_export(s: Subject) -> str:
    import numpy as np

    from gankit.contract import IMAGE_SIZE
    from gankit.errors import ModelFileError
    from gankit.runtime import load_generator
    from gankit.training.export.to_onnx import card_for, export_generator

    source = SimpleNamespace(spec=s.spec, plugin=s.plugin.name, label_mode=s.plugin.label_mode,
                             noise=s.training["noise"], steps=s.steps, dataset="gankit.testing (random images)")
    card = card_for(source)
    with tempfile.TemporaryDirectory(prefix="gankit-check-") as tmp:
        path = Path(tmp) / f"{s.plugin.name}.onnx"
        export_generator(s.export_module, card, path, parity_batches=(1, 7, 256),
                         tolerance=EXPORT_TOLERANCE, seed=s.seed)
        try:
            # The runtime's own loader: what `gankit generate` will do with the file,
            # including its checks of the inputs, outputs and metadata.
            model = load_generator(path)
            image = model.generate_float(s.z.numpy().astype(np.float32), s.labels.numpy().astype(np.int64))
        except ModelFileError as exc:
            raise Fail(f"gankit's runtime refuses the exported file: {exc}") from None
    # The exported graph resizes a 32x32 generator to 28x28 (area, i.e. the mean of each
    # cell) and clamps to value_range (see gankit.training.export.to_onnx): do the same to torch's.
    want = s.export_ref
    if want.shape[-1] != IMAGE_SIZE:
        want = torch.nn.functional.interpolate(want, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
    lo, hi = s.spec.value_range
    want = want.clamp(float(lo), float(hi))
    diff = float(np.abs(image - want.numpy()).max())
    if diff > EXPORT_TOLERANCE:
        raise Fail(f"onnxruntime and torch differ by {diff:.3g} (allowed {EXPORT_TOLERANCE:g})")
    wrong = [k for k in ("plugin", "label_mode", "z_dim", "classes") if getattr(model.card, k) != getattr(card, k)]
    if wrong:
        raise Fail(f"the exported metadata disagrees with the plugin on {', '.join(wrong)}")
    detail = f"onnxruntime output {list(image.shape)} float32, matches torch within {diff:.2g}"
    if s.spec.image_size != IMAGE_SIZE:
        detail += f" (torch's {s.spec.image_size}x{s.spec.image_size} resized as the exporter does)"
    return detail


# (name, check, names of the checks it needs)
CHECKS: tuple[tuple[str, Callable[[Subject], str], tuple[str, ...]], ...] = (
    ("options", check_options, ()),
    ("build", check_build, ()),
    ("generator output", check_generator_output, ("build",)),
    ("batch independence", check_batch_independence, ("generator output",)),
    ("label handling", check_label_handling, ("generator output",)),
    ("discriminator output", check_discriminator_output, ("generator output",)),
    ("training steps", check_training, ("build",)),
    ("weights change", check_weights_change, ("training steps",)),
    ("reproducible", check_reproducible, ("training steps",)),
    ("trainer run", check_trainer, ("training steps",)),
    ("bf16 autocast", check_bf16, ("training steps",)),
    ("export module", check_export_module, ("training steps",)),
    ("onnx export", check_onnx_export, ("export module",)),
)
EXPORT_CHECKS = ("export module", "onnx export")


def run_checks(s: Subject) -> None:
    """Run every check in `CHECKS` on ``s``, recording pass / fail / skip in ``s.report``."""
    passed: set[str] = {r.name for r in s.report.results if r.status == PASS}
    for name, check, needs in CHECKS:
        if name in EXPORT_CHECKS and not s.export:
            if name == EXPORT_CHECKS[0]:
                s.report.results.append(CheckResult("export", SKIP, "export=False"))
            continue
        missing = [n for n in needs if n not in passed]
        if missing:
            s.report.results.append(CheckResult(name, SKIP, f"needs {', '.join(missing)}, which did not pass"))
            continue
        try:
            detail = check(s)
        except Fail as exc:
            s.report.results.append(CheckResult(name, FAIL, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raises is a failed check
            s.report.results.append(CheckResult(name, FAIL, f"raised {type(exc).__name__}: {exc}{_where(exc)}"))
            continue
        s.report.results.append(CheckResult(name, PASS, detail or ""))
        passed.add(name)

