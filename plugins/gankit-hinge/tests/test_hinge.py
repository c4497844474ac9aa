"""gankit-hinge's own tests: the gankit conformance check plus the hinge maths itself."""

import pytest

from gankit.testing import check_plugin
from gankit_hinge import hinge_d_loss, hinge_g_loss, plugin, validate_options


def test_conforms_to_the_gankit_plugin_contract():
    # Builds the nets, trains two real steps through hinge_step, exports to ONNX and
    # reloads it with onnxruntime; raises PluginCheckError listing anything wrong.
    report = check_plugin(plugin, arch="mlp", classes=(0, 1, 2), steps=2)
    assert report.ok


def test_hinge_losses():
    torch = pytest.importorskip("torch")
    real = torch.tensor([2.0, 0.5])   # beyond the margin -> 0; inside -> 0.5
    fake = torch.tensor([-2.0, 0.0])  # beyond the margin -> 0; inside -> 1.0
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)


@pytest.mark.parametrize("margin", [0, -1, "wide", float("nan"), True])
def test_bad_margin_is_refused(margin):
    with pytest.raises(ValueError, match="margin"):
        validate_options({"margin": margin})
