"""The plugin conformance kit behind `gankit.testing.check_plugin`.

Heavy tier (torch; onnx and onnxruntime for the export check). It exercises a plugin
the way gankit will: builds small nets, checks what they return, runs real training
steps through the trainer's own `make_step_context` with the plugin's
``train_defaults`` (in fp32 and under bf16 autocast), exports the generator with
gankit's exporter and reloads the file with gankit's own runtime loader
(`gankit.runtime.load_generator`, which checks the I/O and metadata contract).

Each check is a module-level function of one `Subject`, listed in `CHECKS` with the
checks it needs. Every check runs unless one it needs failed (then it is skipped, and
says so); if any fails, one `PluginCheckError` lists them all in plain words.
"""

from __future__ import annotations

import dataclasses
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from gankit.errors import GankitError, UsageError
from gankit.plugin_api import GanPlugin, NetSpec, Nets, validate_plugin
from gankit.training.context import make_step_context
from gankit.training.step import standard_step

PASS, FAIL, SKIP = "pass", "fail", "skip"

# NetSpec fields that check_plugin sets through its own keywords, not through spec_overrides.
OWN_KEYWORDS = ("arch", "classes", "image_size", "options")

# How far outputs may stray: value range (float rounding at the tanh/sigmoid ends),
# torch vs onnxruntime, and export module vs training generator (the contract's 1e-4).
RANGE_SLACK = 1e-5
EXPORT_TOLERANCE = 1e-4

# The kit's optimiser unless the plugin's train_defaults say otherwise: a learning rate
# large enough that two steps visibly move every weight that gets a gradient.
KIT_TRAINING = {"optimizer": "adam", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5, "beta2": 0.999,
                "momentum": 0.0, "loss": "bce", "ls_sigmoid": False, "noise": "normal", "d_steps": 1}


@dataclass(frozen=True)
class CheckResult:
    """One named check: status is "pass", "fail" or "skip", detail says what was seen."""

    name: str
    status: str
    detail: str = ""


@dataclass
class CheckReport:
    """Everything `check_plugin` checked, with the losses of the training steps it ran."""

    plugin: str
    spec: NetSpec
    results: list[CheckResult] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line per check, e.g. ``[pass] generator output: [20, 1, 28, 28] float32 ...``."""
        lines = [f"plugin {self.plugin!r} (arch {self.spec.arch}, classes {list(self.spec.classes)}):"]
        for r in self.results:
            lines.append(f"  [{r.status}] {r.name}" + (f": {r.detail}" if r.detail else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class PluginCheckError(GankitError):
    """A plugin failed one or more conformance checks; ``.report`` holds the full CheckReport."""

    def __init__(self, report: CheckReport):
        self.report = report
        failed = report.failures
        lines = [f"plugin {report.plugin!r} failed {len(failed)} of {len(report.results)} checks "
                 f"(arch {report.spec.arch}, classes {list(report.spec.classes)}):"]
        lines += [f"  - {r.name}: {r.detail}" for r in failed]
        skipped = [r.name for r in report.results if r.status == SKIP]
        if skipped:
            lines.append(f"  (not run because of the above: {', '.join(skipped)})")
        super().__init__("\n".join(lines))


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
    losses: list = field(default_factory=list)
    export_module: Any = None
    export_ref: Any = None

    @property
    def n(self) -> int:
        return len(self.labels)


def small_spec(arch: str = "mlp", classes: Sequence[int] = tuple(range(10)), *,
               image_size: int = 28, options: Optional[Mapping[str, Any]] = None) -> NetSpec:
    """A NetSpec with tiny nets (fast on a CPU) that still has every layer type of the real ones."""
    if arch == "dcgan":
        g_hidden, d_hidden = (16, 8), (8, 16)
    else:
        g_hidden, d_hidden = (32, 64), (64, 32)
    return NetSpec(arch=arch, z_dim=8, image_size=image_size, num_classes=10,
                   classes=tuple(sorted(classes)), g_hidden=g_hidden, d_hidden=d_hidden,
                   options=dict(options or {}))


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


def _loss_values(out) -> dict[str, float]:
    if not isinstance(out, Mapping):
        raise Fail(f"train_step returned {type(out).__name__}; it must return a dict with d_loss and g_loss")
    missing = [k for k in ("d_loss", "g_loss") if k not in out]
    if missing:
        raise Fail(f"train_step's result lacks {', '.join(missing)} (it returned keys {sorted(out)})")
    values: dict[str, float] = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise Fail(f"train_step's {key!r} is a tensor of shape {list(value.shape)}, not a scalar")
            if value.requires_grad:
                raise Fail(f"train_step's {key!r} still requires grad; return loss.detach()")
            value = value.item()
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            raise Fail(f"train_step's {key!r} is {type(value).__name__}, not a number") from None
    return values


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
        precision=precision, device="cpu")
    step_fn = s.plugin.train_step or standard_step
    G.train()
    D.train()
    losses = []
    for i in range(s.steps):
        ctx.step = i
        real, labels = next_batch()
        losses.append(_loss_values(step_fn(ctx, real, labels)))
    return nets, before, losses


# ----- the checks (each returns its detail line or raises Fail) ---------------------------

def check_options(s: Subject) -> str:
    if s.plugin.validate_options is not None:
        try:
            s.plugin.validate_options(dict(s.spec.options))
        except ValueError as exc:
            raise Fail(f"validate_options rejects the options {dict(s.spec.options)}: {exc}") from None
    return f"{dict(s.spec.options)}" if s.spec.options else "no options"


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
    S, n = s.spec.image_size, s.n
    G = s.nets.generator.eval()
    with torch.no_grad():
        out = _expect_tensor(G(s.z, s.labels), "G(z, labels)")
    problems = []
    if list(out.shape) != [n, 1, S, S]:
        problems.append(f"shape {list(out.shape)}, expected [{n}, 1, {S}, {S}]")
    if out.dtype != torch.float32:
        problems.append(f"dtype {out.dtype}, expected torch.float32")
    if not torch.isfinite(out).all():
        problems.append("contains NaN or inf")
    else:
        lo, hi = s.spec.value_range
        # A ReLU output (the DL4J recipe) has no upper bound; the exported graph clamps
        # it to value_range, so only the lower end is the generator's to keep.
        too_high = s.spec.output_activation != "relu" and float(out.max()) > hi + RANGE_SLACK
        if float(out.min()) < lo - RANGE_SLACK or too_high:
            problems.append(f"values outside value_range [{lo:g}, {hi:g}] "
                            f"(output activation {s.spec.output_activation}): {_describe_range(out)}")
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


def _frozen(nets: Nets) -> list[str]:
    return [f"{part}.{k}" for part, module in (("generator", nets.generator), ("discriminator", nets.discriminator))
            for k, p in module.named_parameters() if not p.requires_grad]


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
    frozen = _frozen(nets)
    if frozen:
        raise Fail(f"after the step these parameters no longer require grad: {', '.join(frozen[:5])}; "
                   "a step that freezes a net must unfreeze it before returning")
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
    frozen = _frozen(nets)
    if frozen:
        raise Fail(f"under bf16 autocast these parameters no longer require grad: {', '.join(frozen[:5])}")
    wrong = [f"{part}.{k} is {p.dtype}" for part, m in (("generator", nets.generator),
                                                        ("discriminator", nets.discriminator))
             for k, p in m.named_parameters() if p.dtype != torch.float32 or not torch.isfinite(p).all()]
    if wrong:
        raise Fail(f"under bf16 autocast the weights must stay finite float32: {', '.join(wrong[:5])}")
    return f"{s.steps} step(s) under bf16 autocast; last d_loss {losses[-1]['d_loss']:.4g}"


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
    from gankit.training.export import card_for, export_generator

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
    # cell) and clamps to value_range (see gankit.training.export): do the same to torch's.
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


def _training_settings(plugin: GanPlugin, d_steps: Optional[int]) -> dict[str, Any]:
    """The kit's optimiser settings with the plugin's train_defaults over them (d_steps too)."""
    t = dict(KIT_TRAINING)
    t.update({k: v for k, v in plugin.train_defaults.items() if k in KIT_TRAINING})
    if d_steps is not None:
        t["d_steps"] = d_steps
    return t


def check_plugin(
    plugin: GanPlugin | str,
    *,
    arch: Optional[str] = None,
    classes: Sequence[int] = tuple(range(10)),
    steps: int = 2,
    options: Optional[Mapping[str, Any]] = None,
    d_steps: Optional[int] = None,
    batch_size: int = 4,
    image_size: int = 28,
    export: bool = True,
    seed: int = 0,
    spec_overrides: Optional[Mapping[str, Any]] = None,
) -> CheckReport:
    """Check that ``plugin`` honours the gankit plugin contract; return the report or raise.

    Args:
        plugin: the GanPlugin object (or the name of an installed plugin).
        arch: architecture to build; one of ``plugin.supported_archs`` (default: the
            first, the plugin's own default).
        classes: class ids the small test run trains on.
        steps: real training steps to run (through ``plugin.train_step`` or the
            standard step, exactly as the trainer calls them), in fp32 and again under
            bf16 autocast.
        options: plugin options, merged over ``plugin.default_options``.
        d_steps: discriminator updates per step (``ctx.d_steps``); default: the
            plugin's ``train_defaults`` (e.g. a WGAN's critic steps), else 1. The
            optimiser and loss settings in ``train_defaults`` are honoured too.
        batch_size: images per batch (per class for a ``per-class`` batch layout).
        image_size: 28, or 32 to check a plugin at the Paddle recipe's size.
        export: also export to ONNX with gankit's exporter and reload it with gankit's
            runtime (`gankit.runtime.load_generator`).
        seed: seeds every random draw, so a failing check fails the same way again.
        spec_overrides: other `NetSpec` fields to set on the small spec, e.g.
            ``{"output_activation": "relu", "g_hidden": (128, 512)}`` to check a
            plugin with a recipe's nets (arch, classes, image_size and options have
            their own keywords).

    Raises:
        PluginCheckError: one or more checks failed; the message lists each of them.
        UsageError: the arguments ask for something the plugin does not claim to support.
    """
    if isinstance(plugin, str):
        from gankit.registry import load_plugin

        plugin = load_plugin(plugin)
    if steps < 1:
        raise UsageError(f"check_plugin needs steps >= 1, got {steps}")
    name = getattr(plugin, "name", None) or repr(plugin)
    report = CheckReport(plugin=str(name), spec=small_spec(arch or "mlp", classes, image_size=image_size))
    try:
        validate_plugin(plugin, f"plugin {name!r}")
    except ValueError as exc:
        report.results.append(CheckResult("contract", FAIL, str(exc)))
        if not (isinstance(plugin, GanPlugin) and callable(plugin.build)):
            raise PluginCheckError(report) from None  # nothing more can be tried on this object
    else:
        report.results.append(CheckResult(
            "contract", PASS, f"label mode {plugin.label_mode}, batch layout {plugin.batch_layout}, "
                              f"API {plugin.api_version}"))
    archs = tuple(plugin.supported_archs or ())
    arch = arch or (archs[0] if archs else "mlp")
    if arch not in archs:
        raise UsageError(f"plugin {name!r} supports arch {', '.join(archs) or '(none)'}, "
                         f"not {arch!r}; call check_plugin(..., arch=...) with one of those")
    unknown = sorted(set(options or {}) - set(plugin.default_options))
    if unknown:
        raise UsageError(f"plugin {name!r} has no option {', '.join(unknown)} "
                         f"(its options: {', '.join(plugin.default_options) or 'none'})")
    overrides = dict(spec_overrides or {})
    own = [k for k in OWN_KEYWORDS if k in overrides]
    if own:
        raise UsageError(f"spec_overrides cannot set {', '.join(own)}; "
                         f"use check_plugin(..., {own[0]}=...) instead")
    spec_fields = {f.name for f in dataclasses.fields(NetSpec)}
    unknown = sorted(set(overrides) - spec_fields)
    if unknown:
        raise UsageError(f"spec_overrides: NetSpec has no field {', '.join(unknown)} "
                         f"(its fields: {', '.join(sorted(spec_fields - set(OWN_KEYWORDS)))})")
    spec = small_spec(arch, classes, image_size=image_size, options={**plugin.default_options, **(options or {})})
    spec = dataclasses.replace(spec, **overrides)
    report.spec = spec
    training = _training_settings(plugin, d_steps)
    report.training = dict(training)
    if isinstance(training["d_steps"], bool) or not isinstance(training["d_steps"], int) or training["d_steps"] < 1:
        raise UsageError(f"check_plugin needs d_steps >= 1, got {training['d_steps']!r}")

    gen = torch.Generator().manual_seed(seed + 3)
    labels = torch.tensor(spec.classes, dtype=torch.long).repeat_interleave(2)
    subject = Subject(plugin=plugin, spec=spec, steps=steps, batch_size=batch_size, seed=seed,
                      training=training, export=export, report=report,
                      z=torch.randn(len(labels), spec.z_dim, generator=gen), labels=labels)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        run_checks(subject)
    if not report.ok:
        raise PluginCheckError(report)
    return report
