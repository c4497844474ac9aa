"""The conditional plugin: every discriminator conditioning builds, trains and uses the label.

Heavy tier (torch).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gankit.config import TrainConfig  # noqa: E402
from gankit.errors import UsageError  # noqa: E402
from gankit.testing import check_plugin, small_spec  # noqa: E402
from gankit.training.engine.spec import spec_from_config  # noqa: E402
from gankit_plugins.conditional import DEFAULT_OPTIONS, D_CONDS, build, plugin  # noqa: E402

from conftest import MNIST  # noqa: E402

F32_EPS = torch.finfo(torch.float32).eps


def _rounding_tol(spec) -> float:
    """Worst-case float32 rounding of one pass of the small MLP nets: n_ops * eps * scale.

    Each layer is a sum over its fan-in (at most 784, the image), a sum of n terms rounds
    within n * eps of its exact value, and inputs and weights keep the terms O(1) (scale
    1). Two evaluations of the same maths (other batch rows, other op order) can differ
    by that much on any CPU, and a real difference must exceed it.
    """
    widths = (spec.z_dim, *spec.g_hidden, spec.image_size ** 2, *spec.d_hidden)
    return (len(spec.g_hidden) + len(spec.d_hidden) + 2) * max(widths) * F32_EPS


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("mode", D_CONDS)
def test_each_mode_builds_and_trains(mode, arch):
    # check_plugin runs real steps through the plugin's own train_step (two D updates per
    # step here, so the AC-GAN step's extra-batch path runs too), checks shapes, batch
    # independence, that labels change the image, reproducibility; ONNX export for one mode.
    report = check_plugin(plugin, arch=arch, options={"d_cond": mode}, steps=3, d_steps=2,
                          export=(mode == "projection" and arch == "mlp"))
    assert report.ok, report.summary()
    losses = report.losses
    assert len(losses) == 3 and all(np.isfinite(v) for row in losses for v in row.values())
    if mode == "acgan":
        # The class terms are there and start near log(10) (an untrained classifier).
        assert {"d_class_loss", "g_class_loss"} <= set(losses[0])
        assert 1.0 < losses[0]["g_class_loss"] < 4.0


@pytest.mark.parametrize("mode", D_CONDS)
def test_labels_change_the_image_and_the_score(mode):
    spec = small_spec("mlp", options={**DEFAULT_OPTIONS, "d_cond": mode})
    torch.manual_seed(0)
    nets = build(spec)
    G, D = nets.generator.eval(), nets.discriminator.eval()
    z = torch.randn(1, spec.z_dim).expand(10, -1)  # one z, every digit
    labels = torch.arange(10)
    with torch.no_grad():
        images = G(z, labels).flatten(1)
        pairwise = (images[:, None] - images[None]).abs().amax(-1) + torch.eye(10) * 1e9
        assert pairwise.min().item() > _rounding_tol(spec)  # ten different images for the same z, beyond rounding
        same = images[3:4].view(1, 1, 28, 28).expand(10, -1, -1, -1)
        scores = D(same, labels)
    if mode == "acgan":
        # AC-GAN's real/fake score ignores the label; the label enters through the class head.
        # (Ten copies of one image in one batch: rows may round differently, no more.)
        assert (scores - scores[0]).abs().max().item() <= _rounding_tol(spec)
        _, logits = D(same, labels, aux=True)  # the auxiliary outputs, through forward
        assert logits.shape == (10, 10)
    else:
        assert scores.unique().numel() == 10  # D judges (image, label) pairs


def test_projection_discriminator_is_psi_plus_inner_product():
    spec = small_spec("mlp", options={**DEFAULT_OPTIONS, "d_cond": "projection"})
    torch.manual_seed(0)
    D = build(spec).discriminator.eval()
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    y = torch.tensor([0, 1, 2, 7, 8, 9])
    with torch.no_grad():
        phi = D.net.features(x)
        want = D.net.head(phi).squeeze(1) + (D.embed.weight[y] * phi).sum(1)
        assert (D(x, y) - want).abs().max().item() <= _rounding_tol(spec) * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("options, message", [
    ({"d_cond": "hinge"}, "d_cond must be one of projection, concat, acgan"),
    ({"embed_dim": 0}, "embed_dim must be a positive integer"),
    ({"ac_weight": -1}, "ac_weight must be a non-negative number"),
    ({"nope": 1}, "has no option nope"),
])
def test_bad_options_are_usage_errors(options, message):
    cfg = TrainConfig(plugin="conditional", options=options)
    with pytest.raises(UsageError, match=message):
        spec_from_config(cfg, plugin)


def test_bad_option_exits_2_from_the_cli(tmp_path):
    script = Path(sys.executable).with_name("gankit")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gankit.cli"]
    proc = subprocess.run([*cmd, "train", "--plugin", "conditional", "--data", "synthetic", "-O", "d_cond=foo",
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "d_cond must be one of" in proc.stderr + proc.stdout


@pytest.mark.skipif(not MNIST.exists(), reason="needs the MNIST subset")
def test_short_real_run_writes_one_row_per_digit(tmp_path):
    from PIL import Image

    from gankit.data import load_dataset
    from gankit.training.engine.trainer import Trainer

    ds = load_dataset(str(MNIST), "train")
    cfg = TrainConfig.make(plugin="conditional", data=str(MNIST), steps=60, batch_size=32, g_hidden=(64, 128),
                      d_hidden=(128, 64), beta1=0.5, lr_g=1e-3, lr_d=1e-3, log_every=20, sample_every=60,
                      checkpoint_every=60, device="cpu", options={"d_cond": "projection"}).validate()
    result = Trainer(cfg, plugin, ds.images, ds.labels, tmp_path / "run", dataset_name="mnist").run()
    grid = Image.open(tmp_path / "run" / "samples" / "step-000000060.png")
    # Ten digits x 8 samples, 8 per row: ten rows of 28 px + 2 px padding, at scale 2.
    # Plus a one-line caption strip above (the step): less than one more row of height.
    rows_px = 2 * (2 + 10 * (28 + 2))
    assert rows_px <= grid.height < rows_px + 2 * 28
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [20, 40, 60]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in rows)
    # D learns within 60 steps: its loss falls below the 2*log(2) of a coin-flipping D.
    assert rows[-1]["d_loss"] < 2 * np.log(2)
    assert result.steps == 60
