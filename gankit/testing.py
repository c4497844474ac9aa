"""Conformance checks for gankit plugins: `check_plugin(plugin)` for plugin authors' own tests.

Light tier to import; heavy tier (torch, onnx, onnxruntime) when `check_plugin` runs.
It exercises a plugin the way gankit will: builds small nets, checks what they return,
runs real training steps through the same step code the trainer uses, exports the
generator with gankit's exporter and reloads it with onnxruntime. Every check runs (a
failure does not hide the ones after it, unless they need what failed), and if any
fails, one `PluginCheckError` lists them all in plain words instead of a bare assert.

    from gankit.testing import check_plugin
    from my_plugin import plugin

    def test_conforms():
        check_plugin(plugin)                       # mlp, digits 0-9, 2 training steps
        check_plugin(plugin, arch="dcgan", classes=(3, 8))
        check_plugin(plugin, spec_overrides={"output_activation": "relu"})  # other NetSpec fields
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from gankit.errors import GankitError, UsageError
from gankit.plugin_api import GanPlugin, NetSpec, Nets, StepContext, validate_plugin

__all__ = ["check_plugin", "CheckReport", "CheckResult", "PluginCheckError", "small_spec"]

PASS, FAIL, SKIP = "pass", "fail", "skip"

# NetSpec fields that check_plugin sets through its own keywords, not through spec_overrides.
_OWN_KEYWORDS = ("arch", "classes", "image_size", "options")

# How far outputs may stray: value range (float rounding at the tanh/sigmoid ends),
# torch vs onnxruntime, and export module vs training generator (the contract's 1e-4).
RANGE_SLACK = 1e-5
EXPORT_TOLERANCE = 1e-4


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


class _Fail(Exception):
    """Raised inside a check body to fail it with a plain message."""


def _where(exc: BaseException) -> str:
    """The innermost traceback frame outside torch, i.e. most likely the plugin's own line."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "/torch/" not in f.filename.replace("\\", "/")]
    frame = (own or frames or [None])[-1]
    return f" (at {frame.filename}:{frame.lineno} in {frame.name})" if frame else ""


class _Runner:
    """Runs named checks, recording pass/fail/skip; a check's return value is its detail."""

    def __init__(self, report: CheckReport):
        self.report = report

    def check(self, name: str, fn: Callable[[], Optional[str]], *, needs: Sequence[bool] = ()) -> bool:
        if not all(needs):
            self.report.results.append(CheckResult(name, SKIP, "needs an earlier check that failed"))
            return False
        try:
            detail = fn()
        except _Fail as exc:
            self.report.results.append(CheckResult(name, FAIL, str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raises is a failed check
            self.report.results.append(
                CheckResult(name, FAIL, f"raised {type(exc).__name__}: {exc}{_where(exc)}"))
            return False
        self.report.results.append(CheckResult(name, PASS, detail or ""))
        return True


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


def _describe_range(t) -> str:
    return f"min {float(t.min()):.4g}, max {float(t.max()):.4g}"


def _expect_tensor(torch, out, what: str):
    if not isinstance(out, torch.Tensor):
        raise _Fail(f"{what} returned {type(out).__name__}, not a torch.Tensor")
    return out


def _fake_batch(torch, spec: NetSpec, layout: str, batch_size: int, gen) -> tuple[Any, Any]:
    """Random "real" images in the spec's value range, laid out as the trainer's sampler would."""
    classes = torch.tensor(spec.classes, dtype=torch.long)
    if layout == "per-class":
        # batch_size images of each class, grouped in spec.classes order.
        labels = classes.repeat_interleave(batch_size)
    else:
        labels = classes[torch.randint(len(classes), (batch_size,), generator=gen)]
    lo, hi = spec.value_range
    images = torch.rand(len(labels), 1, spec.image_size, spec.image_size, generator=gen) * (hi - lo) + lo
    return images, labels


def _loss_values(torch, out) -> dict[str, float]:
    if not isinstance(out, Mapping):
        raise _Fail(f"train_step returned {type(out).__name__}; it must return a dict with d_loss and g_loss")
    missing = [k for k in ("d_loss", "g_loss") if k not in out]
    if missing:
        raise _Fail(f"train_step's result lacks {', '.join(missing)} (it returned keys {sorted(out)})")
    values: dict[str, float] = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise _Fail(f"train_step's {key!r} is a tensor of shape {list(value.shape)}, not a scalar")
            if value.requires_grad:
                raise _Fail(f"train_step's {key!r} still requires grad; return loss.detach()")
            value = value.item()
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            raise _Fail(f"train_step's {key!r} is {type(value).__name__}, not a number") from None
    return values


def _train(torch, plugin: GanPlugin, spec: NetSpec, *, steps: int, d_steps: int, batch_size: int,
           seed: int) -> tuple[Nets, dict[str, Any], list[dict[str, float]]]:
    """Build fresh nets and run `steps` steps as the trainer does. Returns nets, initial weights, losses."""
    from gankit.training.losses import get_losses
    from gankit.training.step import standard_step

    torch.manual_seed(seed)
    nets = plugin.build(spec)
    G, D = nets.generator, nets.discriminator
    before = {f"generator.{k}": v.detach().clone() for k, v in G.named_parameters()}
    before.update({f"discriminator.{k}": v.detach().clone() for k, v in D.named_parameters()})
    # Adam as the trainer uses it, with a learning rate large enough that two steps
    # visibly move every weight that gets a gradient.
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    d_loss_fn, g_loss_fn = get_losses("bce")
    noise_gen = torch.Generator().manual_seed(seed + 1)
    data_gen = torch.Generator().manual_seed(seed + 2)

    def next_batch():
        return _fake_batch(torch, spec, plugin.batch_layout, batch_size, data_gen)

    ctx = StepContext(
        generator=G, discriminator=D, opt_g=opt_g, opt_d=opt_d, g_loss_fn=g_loss_fn, d_loss_fn=d_loss_fn,
        noise=lambda n: torch.randn(n, spec.z_dim, generator=noise_gen), d_steps=d_steps, step=0,
        spec=spec, torch_generator=noise_gen, autocast=contextlib.nullcontext, next_batch=next_batch)
    step_fn = plugin.train_step or standard_step
    G.train()
    D.train()
    losses = []
    for i in range(steps):
        ctx.step = i
        real, labels = next_batch()
        losses.append(_loss_values(torch, step_fn(ctx, real, labels)))
    return nets, before, losses


def check_plugin(
    plugin: GanPlugin | str,
    *,
    arch: str = "mlp",
    classes: Sequence[int] = tuple(range(10)),
    steps: int = 2,
    options: Optional[Mapping[str, Any]] = None,
    d_steps: int = 1,
    batch_size: int = 4,
    image_size: int = 28,
    export: bool = True,
    seed: int = 0,
    spec_overrides: Optional[Mapping[str, Any]] = None,
) -> CheckReport:
    """Check that ``plugin`` honours the gankit plugin contract; return the report or raise.

    Args:
        plugin: the GanPlugin object (or the name of an installed plugin).
        arch: architecture to build; must be in ``plugin.supported_archs``.
        classes: class ids the small test run trains on.
        steps: real training steps to run (through ``plugin.train_step`` or the
            standard step, exactly as the trainer calls them).
        options: plugin options, merged over ``plugin.default_options``.
        d_steps: discriminator updates per step (``ctx.d_steps``).
        batch_size: images per batch (per class for a ``per-class`` batch layout).
        image_size: 28, or 32 to check a plugin at the Paddle recipe's size.
        export: also export to ONNX with gankit's exporter and reload with onnxruntime.
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
    report = CheckReport(plugin=str(name), spec=small_spec(arch, classes, image_size=image_size))
    run = _Runner(report)

    def contract() -> str:
        try:
            validate_plugin(plugin, f"plugin {name!r}")
        except ValueError as exc:
            raise _Fail(str(exc)) from None
        return f"label mode {plugin.label_mode}, batch layout {plugin.batch_layout}, API {plugin.api_version}"

    if not run.check("contract", contract) and not (isinstance(plugin, GanPlugin) and callable(plugin.build)):
        raise PluginCheckError(report)  # nothing more can be tried on this object
    if arch not in plugin.supported_archs:
        raise UsageError(f"plugin {name!r} supports arch {', '.join(plugin.supported_archs) or '(none)'}, "
                         f"not {arch!r}; call check_plugin(..., arch=...) with one of those")
    unknown = sorted(set(options or {}) - set(plugin.default_options))
    if unknown:
        raise UsageError(f"plugin {name!r} has no option {', '.join(unknown)} "
                         f"(its options: {', '.join(plugin.default_options) or 'none'})")
    overrides = dict(spec_overrides or {})
    own = [k for k in _OWN_KEYWORDS if k in overrides]
    if own:
        raise UsageError(f"spec_overrides cannot set {', '.join(own)}; "
                         f"use check_plugin(..., {own[0]}=...) instead")
    fields = {f.name for f in dataclasses.fields(NetSpec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"spec_overrides: NetSpec has no field {', '.join(unknown)} "
                         f"(its fields: {', '.join(sorted(fields - set(_OWN_KEYWORDS)))})")
    spec = small_spec(arch, classes, image_size=image_size,
                      options={**plugin.default_options, **(options or {})})
    spec = dataclasses.replace(spec, **overrides)
    report.spec = spec

    import torch

    def check_options() -> str:
        if plugin.validate_options is not None:
            try:
                plugin.validate_options(dict(spec.options))
            except ValueError as exc:
                raise _Fail(f"validate_options rejects the options {dict(spec.options)}: {exc}") from None
        return f"{dict(spec.options)}" if spec.options else "no options"

    run.check("options", check_options)

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        _check_nets(torch, run, plugin, spec, report, steps=steps, d_steps=d_steps,
                    batch_size=batch_size, export=export, seed=seed)
    if not report.ok:
        raise PluginCheckError(report)
    return report


def _check_nets(torch, run: _Runner, plugin: GanPlugin, spec: NetSpec, report: CheckReport, *,
                steps: int, d_steps: int, batch_size: int, export: bool, seed: int) -> None:
    S = spec.image_size
    state: dict[str, Any] = {}

    def build() -> str:
        torch.manual_seed(seed)
        nets = plugin.build(spec)
        if not isinstance(nets, Nets):
            raise _Fail(f"build returned {type(nets).__name__}; it must return gankit.plugin_api.Nets")
        for part in ("generator", "discriminator"):
            if not isinstance(getattr(nets, part), torch.nn.Module):
                raise _Fail(f"the {part} is {type(getattr(nets, part)).__name__}, not a torch.nn.Module")
        state["nets"] = nets
        n_g = sum(p.numel() for p in nets.generator.parameters())
        n_d = sum(p.numel() for p in nets.discriminator.parameters())
        return f"generator {n_g:,} parameters, discriminator {n_d:,}"

    built = run.check("build", build)

    # Inputs for the forward checks: two of each class, in class order.
    gen = torch.Generator().manual_seed(seed + 3)
    labels = torch.tensor(spec.classes, dtype=torch.long).repeat_interleave(2)
    z = torch.randn(len(labels), spec.z_dim, generator=gen)
    n = len(labels)

    def generator_output() -> str:
        G = state["nets"].generator.eval()
        with torch.no_grad():
            out = _expect_tensor(torch, G(z, labels), "G(z, labels)")
        problems = []
        if list(out.shape) != [n, 1, S, S]:
            problems.append(f"shape {list(out.shape)}, expected [{n}, 1, {S}, {S}]")
        if out.dtype != torch.float32:
            problems.append(f"dtype {out.dtype}, expected torch.float32")
        if not torch.isfinite(out).all():
            problems.append("contains NaN or inf")
        else:
            lo, hi = spec.value_range
            # A ReLU output (the DL4J recipe) has no upper bound; the exported graph clamps
            # it to value_range, so only the lower end is the generator's to keep.
            too_high = spec.output_activation != "relu" and float(out.max()) > hi + RANGE_SLACK
            if float(out.min()) < lo - RANGE_SLACK or too_high:
                problems.append(f"values outside value_range [{lo:g}, {hi:g}] "
                                f"(output activation {spec.output_activation}): {_describe_range(out)}")
        if problems:
            raise _Fail("; ".join(problems))
        state["images"] = out
        return f"{list(out.shape)} float32, {_describe_range(out)}"

    gen_ok = run.check("generator output", generator_output, needs=[built])

    def batch_independence() -> str:
        # generate and the export parity check run any batch size; an image must
        # depend only on its own z and label (no batch statistics in eval mode).
        G = state["nets"].generator.eval()
        with torch.no_grad():
            singles = torch.cat([G(z[i:i + 1], labels[i:i + 1]) for i in range(n)])
        diff = float((singles - state["images"]).abs().max())
        if diff > 1e-5:
            raise _Fail(f"in eval mode an image changes with the rest of its batch (max difference {diff:.3g}); "
                        "each image must depend only on its own z and label")
        return f"max difference {diff:.2g}"

    run.check("batch independence", batch_independence, needs=[gen_ok])

    def label_handling() -> str:
        if len(spec.classes) < 2:
            return "only one class; nothing to compare"
        G = state["nets"].generator.eval()
        k = len(spec.classes)
        same_z = z[:1].expand(k, -1).contiguous()
        each = torch.tensor(spec.classes, dtype=torch.long)
        with torch.no_grad():
            out = G(same_z, each).flatten(1)
        diffs = (out[:, None, :] - out[None, :, :]).abs().amax(dim=2)
        if plugin.label_mode == "none":
            worst = float(diffs.max())
            if worst > 1e-6:
                raise _Fail(f"label_mode is 'none' but the label changes the image (max difference {worst:.3g}); "
                            "an unconditional generator must ignore its labels")
            return "labels ignored, as label_mode 'none' says"
        off_diag = diffs.masked_fill(torch.eye(k, dtype=torch.bool), float("inf"))
        i, j = divmod(int(off_diag.argmin()), k)
        if float(off_diag[i, j]) <= 1e-6:
            raise _Fail(f"label_mode is {plugin.label_mode!r} but labels {spec.classes[i]} and {spec.classes[j]} "
                        "give the same image for the same z; the generator must use its labels")
        return f"{k} labels give {k} different images for one z (smallest difference {float(off_diag[i, j]):.3g})"

    run.check("label handling", label_handling, needs=[gen_ok])

    def discriminator_output() -> str:
        D = state["nets"].discriminator.eval()
        with torch.no_grad():
            scores = _expect_tensor(torch, D(state["images"], labels), "D(images, labels)")
        problems = []
        if list(scores.shape) != [n]:
            problems.append(f"shape {list(scores.shape)}, expected [{n}] (one raw score per image)")
        if scores.dtype != torch.float32:
            problems.append(f"dtype {scores.dtype}, expected torch.float32")
        if not torch.isfinite(scores).all():
            problems.append("contains NaN or inf")
        if problems:
            raise _Fail("; ".join(problems))
        return f"[{n}] float32"

    run.check("discriminator output", discriminator_output, needs=[gen_ok])

    def training() -> str:
        nets, before, losses = _train(torch, plugin, spec, steps=steps, d_steps=d_steps,
                                      batch_size=batch_size, seed=seed)
        state["trained"], state["before"], state["losses"] = nets, before, losses
        report.losses = losses
        bad = [f"step {i}: {k}={v}" for i, row in enumerate(losses) for k, v in row.items()
               if not (v == v and abs(v) != float("inf"))]
        if bad:
            raise _Fail("non-finite loss: " + ", ".join(bad))
        frozen = [f"{part}.{k}" for part, module in (("generator", nets.generator),
                                                     ("discriminator", nets.discriminator))
                  for k, p in module.named_parameters() if not p.requires_grad]
        if frozen:
            raise _Fail(f"after the step these parameters no longer require grad: {', '.join(frozen[:5])}; "
                        "a step that freezes a net must unfreeze it before returning")
        last = losses[-1]
        return f"{steps} step(s); last d_loss {last['d_loss']:.4g}, g_loss {last['g_loss']:.4g}"

    trained = run.check("training steps", training, needs=[built])

    def weights_change() -> str:
        nets, before = state["trained"], state["before"]
        after = {f"generator.{k}": v for k, v in nets.generator.named_parameters()}
        after.update({f"discriminator.{k}": v for k, v in nets.discriminator.named_parameters()})
        problems = []
        for part in ("generator", "discriminator"):
            names = [k for k in before if k.startswith(part + ".")]
            if not names:
                problems.append(f"the {part} has no parameters")
                continue
            if not any(not torch.equal(before[k], after[k].detach()) for k in names):
                problems.append(f"no {part} weight changed in {steps} step(s) "
                                f"(does the step call opt_{part[0]}.step()?)")
        nonfinite = [k for k, v in after.items() if not torch.isfinite(v).all()]
        if nonfinite:
            problems.append(f"non-finite weights after training: {', '.join(nonfinite[:5])}")
        if problems:
            raise _Fail("; ".join(problems))
        return "generator and discriminator weights updated, all finite"

    run.check("weights change", weights_change, needs=[trained])

    def reproducible() -> str:
        # Resume and `--seed` promise bit-for-bit repeats: the same seeds must give the
        # same losses and weights, so a step may draw randomness only from torch's
        # seeded generators (ctx.noise, ctx.torch_generator, the global torch RNG).
        nets, _, losses = _train(torch, plugin, spec, steps=steps, d_steps=d_steps,
                                 batch_size=batch_size, seed=seed)
        if losses != state["losses"]:
            raise _Fail(f"two runs with the same seeds gave different losses: {state['losses']} vs {losses}; "
                        "draw randomness from ctx.noise / ctx.torch_generator, not Python's or numpy's RNG")
        first = state["trained"]
        for part in ("generator", "discriminator"):
            a = dict(getattr(first, part).state_dict())
            b = dict(getattr(nets, part).state_dict())
            for k in a:
                if not torch.equal(a[k], b[k]):
                    raise _Fail(f"two runs with the same seeds gave different {part} weights ({k})")
        return "same seeds, same losses and weights"

    run.check("reproducible", reproducible, needs=[trained])

    if not export:
        report.results.append(CheckResult("export", SKIP, "export=False"))
        return

    def export_module() -> str:
        G = state["trained"].generator.eval()
        module = plugin.export_module(G) if plugin.export_module is not None else G
        if not isinstance(module, torch.nn.Module):
            raise _Fail(f"export_module returned {type(module).__name__}, not a torch.nn.Module")
        module.eval()
        with torch.no_grad():
            want = G(z, labels)
            got = _expect_tensor(torch, module(z, labels), "the export module")
        if got.shape != want.shape:
            raise _Fail(f"the export module returns shape {list(got.shape)}, the generator {list(want.shape)}")
        diff = float((got - want).abs().max())
        if diff > EXPORT_TOLERANCE:
            raise _Fail(f"the export module's images differ from the generator's by {diff:.3g} "
                        f"(allowed {EXPORT_TOLERANCE:g})")
        state["export_module"], state["export_ref"] = module, want
        return ("the generator itself" if plugin.export_module is None
                else f"export_module(G) matches G within {diff:.2g}")

    mod_ok = run.check("export module", export_module, needs=[trained])

    def onnx_export() -> str:
        import numpy as np
        import onnxruntime as ort

        from gankit import __version__
        from gankit.contract import (CONTRACT_VERSION, IMAGE_SIZE, INPUT_LABEL, INPUT_Z, OUTPUT_IMAGE,
                                     ModelCard)
        from gankit.training.export import export_generator

        card = ModelCard(
            gankit_version=__version__, contract_version=CONTRACT_VERSION, plugin=plugin.name,
            label_mode=plugin.label_mode, arch=spec.arch, z_dim=spec.z_dim, noise="normal",
            classes=tuple(spec.classes), image_size=IMAGE_SIZE, value_range=spec.value_range,
            training_steps=steps, dataset="gankit.testing (random images)",
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            weights_sha256="")
        with tempfile.TemporaryDirectory(prefix="gankit-check-") as tmp:
            path = Path(tmp) / f"{plugin.name}.onnx"
            export_generator(state["export_module"], card, path, parity_batches=(1, 7, 256),
                             tolerance=EXPORT_TOLERANCE, seed=seed)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            inputs = {i.name: i for i in session.get_inputs()}
            outputs = [o.name for o in session.get_outputs()]
            if set(inputs) != {INPUT_Z, INPUT_LABEL} or outputs != [OUTPUT_IMAGE]:
                raise _Fail(f"ONNX inputs {sorted(inputs)} / outputs {outputs}; the contract wants "
                            f"inputs {INPUT_Z}, {INPUT_LABEL} and output {OUTPUT_IMAGE}")
            (image,) = session.run([OUTPUT_IMAGE], {INPUT_Z: z.numpy().astype(np.float32),
                                                   INPUT_LABEL: labels.numpy().astype(np.int64)})
            meta = session.get_modelmeta().custom_metadata_map
        if list(image.shape) != [n, 1, IMAGE_SIZE, IMAGE_SIZE] or image.dtype != np.float32:
            raise _Fail(f"onnxruntime returned {image.dtype} {list(image.shape)}, expected float32 "
                        f"[{n}, 1, {IMAGE_SIZE}, {IMAGE_SIZE}]")
        # The exported graph resizes a 32x32 generator to 28x28 (area, i.e. the mean of each
        # cell) and clamps to value_range (see gankit.training.export): do the same to torch's.
        want = state["export_ref"]
        if want.shape[-1] != IMAGE_SIZE:
            want = torch.nn.functional.interpolate(want, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
        lo, hi = spec.value_range
        want = want.clamp(float(lo), float(hi))
        diff = float(np.abs(image - want.numpy()).max())
        if diff > EXPORT_TOLERANCE:
            raise _Fail(f"onnxruntime and torch differ by {diff:.3g} (allowed {EXPORT_TOLERANCE:g})")
        detail = f"onnxruntime output {list(image.shape)} float32, matches torch within {diff:.2g}"
        if spec.image_size != IMAGE_SIZE:
            detail += f" (torch's {spec.image_size}x{spec.image_size} resized as the exporter does)"
        try:
            read = ModelCard.from_metadata(meta)
        except ValueError as exc:
            raise _Fail(f"the exported metadata does not parse: {exc}") from None
        wrong = [k for k in ("plugin", "label_mode", "z_dim", "classes")
                 if getattr(read, k) != getattr(card, k)]
        if wrong:
            raise _Fail(f"the exported metadata disagrees with the plugin on {', '.join(wrong)}")
        return detail

    run.check("onnx export", onnx_export, needs=[mod_ok])
