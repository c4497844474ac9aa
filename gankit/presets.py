"""Named presets: each seed tutorial's recipe as a gankit configuration (`--preset NAME`).

Light tier. Each preset names its seed file in ../shared/seeds/ and says where it
departs from the original and why. Command-line options given beside `--preset`
override the preset's values.
"""

from __future__ import annotations

from dataclasses import dataclass

from gankit.config import TrainConfig
from gankit.errors import UsageError


@dataclass(frozen=True)
class Preset:
    name: str
    seed_file: str
    summary: str
    config: TrainConfig
    notes: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="dl4j-mlp",
            seed_file="000_be8afac14315a972.txt",
            summary="Deeplearning4j: MLP z(10)->128->512->784, ReLU; D 784->256->128->128->1; BCE; SGD 0.01; 10 D steps per G step",
            config=TrainConfig.make(
                z_dim=10, g_hidden=(128, 512), d_hidden=(256, 128, 128),
                g_activation="relu", d_activation="relu", output_activation="relu",
                d_dropout=0.0, init="xavier", loss="bce", optimizer="sgd",
                lr_g=0.01, lr_d=0.01, d_steps=10, noise="uniform", batch_size=32,
                preset="dl4j-mlp",
            ),
            notes="The seed freezes D by setting its learning rate to 0; gankit steps each optimizer separately, "
            "which is the same update. Its generator ends in ReLU, so images are clipped to [0, 1].",
        ),
        Preset(
            name="keras-dcgan",
            seed_file="001_f9865a5ae1e2709d.txt",
            summary="Keras DCGAN at 28x28: Dense->7x7x128, upsample+conv 128/64, BN(0.8), tanh; D conv 32/64/128/256, LeakyReLU 0.2, dropout 0.25; BCE; Adam(2e-4, 0.5); batch 32",
            config=TrainConfig.make(
                arch="dcgan", z_dim=100, g_hidden=(128, 64), d_hidden=(32, 64, 128, 256),
                g_activation="relu", d_activation="leaky_relu", output_activation="tanh",
                d_dropout=0.25, loss="bce", optimizer="adam", lr_g=2e-4, lr_d=2e-4,
                beta1=0.5, batch_size=32, preset="keras-dcgan",
            ),
            notes="Keras BatchNormalization(momentum=0.8) is torch momentum 0.2, eps 1e-3.",
        ),
        Preset(
            name="paddle-lsgan",
            seed_file="002_3a7560f01b916c3b.txt",
            summary="PaddlePaddle: MLP 100->256->512->1024 (32x32), ReLU, tanh; D 1024->512->256->1, LeakyReLU 0.2, sigmoid; MSE (least squares); Adam(2e-4, 0.5); batch 32; 32x32 images",
            config=TrainConfig.make(
                image_size=32, z_dim=100, g_hidden=(256, 512), d_hidden=(512, 256),
                g_activation="relu", d_activation="leaky_relu", output_activation="tanh",
                d_dropout=0.0, loss="ls", ls_sigmoid=True, optimizer="adam",
                lr_g=2e-4, lr_d=2e-4, beta1=0.5, batch_size=32, preset="paddle-lsgan",
            ),
            notes="The seed scales data to [0, 1] but its generator ends in tanh; gankit scales the data to the "
            "generator's range ([-1, 1]) so real and fake live in one space. Its 'one GAN per digit' idea is "
            "the per-digit plugin: add --plugin per-digit.",
        ),
        Preset(
            name="tf1-mlp",
            seed_file="003_0ff622aefcfd5a36.txt",
            summary="TensorFlow 1: MLP z(100, uniform[-1,1])->128->784, ReLU, sigmoid; D 784->128->1; BCE non-saturating; Adam defaults; batch 128; Xavier init; 10k iterations",
            config=TrainConfig.make(
                z_dim=100, g_hidden=(128,), d_hidden=(128,), g_activation="relu",
                d_activation="relu", output_activation="sigmoid", d_dropout=0.0, init="he",
                loss="bce", optimizer="adam", lr_g=1e-3, lr_d=1e-3, beta1=0.9, beta2=0.999,
                noise="uniform", batch_size=128, steps=10000, preset="tf1-mlp",
            ),
            notes="The seed's 'xavier_init' draws N(0, 1/sqrt(fan_in/2)), which is He-normal; gankit names it so.",
        ),
        Preset(
            name="pytorch-mlp",
            seed_file="004_156ffc9b714fac87.txt",
            summary="PyTorch: MLP 100->256->512->1024->784, LeakyReLU 0.2, tanh; D 784->1024->512->256->1, dropout 0.3; BCE; Adam 2e-4; batch 32",
            config=TrainConfig.make(preset="pytorch-mlp"),
            notes="gankit's defaults are this recipe. The seed applies dropout even at evaluation time "
            "(F.dropout without training=self.training); gankit only drops out while training.",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """Look up a preset, or raise UsageError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
