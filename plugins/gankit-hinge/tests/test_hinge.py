"""gankit-hinge's own tests: the gankit conformance check plus the hinge maths itself."""

import pytest

from gankit.plugin_api import resolve_options
from gankit.testing import check_plugin
from gankit_hinge import hinge_d_loss, hinge_g_loss, plugin


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
    # The typed option schema (plugin API 2) is what gankit checks --option values against.
    with pytest.raises(ValueError, match="option margin must be a positive number"):
        resolve_options(plugin, {"margin": margin})


def test_an_integer_margin_arrives_as_a_float():
    assert resolve_options(plugin, {"margin": 2}) == {"margin": 2.0}
