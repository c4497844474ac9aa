"""The MNIST digit classifier behind gankit's quality numbers: net, training data, training, ONNX export.

Heavy tier (torch). Evaluation never runs this module: it reads the exported ONNX file
(``gankit/assets/digit_classifier.onnx``) with onnxruntime through `gankit.eval.classifier`.
``python -m gankit.training.classifier.assets`` (`gankit.training.classifier.assets`) calls `train_classifier`
and `export_classifier` to rebuild that file.

The net is a small VGG-style CNN with 11 outputs: the digits 0-9 and `NOT_A_DIGIT` (10).
Its penultimate layer (``FEATURE_DIM`` = 128 units, taken after batch norm and *before*
the ReLU) is the feature space for the Fréchet distance, KID and diversity numbers:
before the ReLU no unit is clamped to a constant zero, so the Gaussian fit is full rank.

Why an 11th class: a 10-way classifier must call every image some digit, and one trained
on clean MNIST calls a 3 on a speckled background an "8" (the background noise is the
evidence for the extra loops it sees). Generators early in training or with noisy
backgrounds are exactly the ones whose numbers matter, so the training data here has two
parts, drawn fresh for every batch from one seeded generator:

* real digits, keeping their label, pushed through a random affine warp, and with some
  probability an elastic warp, faint strokes, mild blur, background speckle and additive
  noise (`augment_digits`): a readable digit on a noisy background is still that digit;
* images that are no digit, labelled `NOT_A_DIGIT` (`not_digits`): pure noise of several
  kinds and strengths, blank and flat grey images, blurred blobs, real digits blurred
  past reading, and real digits cut into 7x7 tiles and shuffled (strokes without a digit).
Labels are digit values 0-9 (and 10), as in MNIST.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import TrainingError, UsageError

FEATURE_DIM = 128
NUM_DIGITS = 10
NOT_A_DIGIT = 10
NUM_CLASSES = NUM_DIGITS + 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "features")
# Share of each batch that is no digit: enough that the class is learnt firmly, little
# enough that real digits still dominate the features.
NOT_A_DIGIT_SHARE = 0.2
# Non-digits are drawn once into a pool (varied per step by flips and transposes):
# making them costs more than the digits' augmentation, and they need less variety.
NOT_A_DIGIT_POOL = 8000


def _conv(cin: int, cout: int) -> list[nn.Module]:
    # Convs feed batch norm, which has its own shift, so their bias would be dead weight.
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DigitCNN(nn.Module):
    """``image float32[N,1,28,28] in [0,1] -> (logits [N,11], features [N,FEATURE_DIM])``.

    One conv per resolution (28, 14, 7): a third of the compute of two per resolution,
    for the same test accuracy once the augmentation does the regularising.
    """

    def __init__(self, feature_dim: int = FEATURE_DIM, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv(1, 32), nn.MaxPool2d(2),  # 28 -> 14
            *_conv(32, 64), nn.MaxPool2d(2),  # 14 -> 7
            *_conv(64, 128),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(128, feature_dim, bias=False), nn.BatchNorm1d(feature_dim))
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(feature_dim, NUM_CLASSES))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Centre the input here rather than in the data pipeline so the ONNX file takes
        # plain [0, 1] pixels and callers cannot get the normalisation wrong.
        features = self.embed(self.body(image - 0.5))
        return self.head(features), features


# --------------------------------------------------------------------------- image transforms


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _chance(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """[n,1,1,1] bool: which images get a transform applied with probability ``p``."""
    return (torch.rand(n, generator=gen) < p).view(n, 1, 1, 1)


def augment(x: torch.Tensor, gen: torch.Generator, *, rotate_deg: float = 12.0,
            scale: float = 0.12, shear: float = 0.15, shift_px: float = 2.5,
            elastic_px: float = 0.0) -> torch.Tensor:
    """Warp each image of ``x`` [N,1,28,28] by its own random affine map, plus an elastic
    displacement of up to about ``elastic_px`` pixels (a smooth random field)."""
    n = x.shape[0]

    def uniform(lim: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * lim

    angle = uniform(math.radians(rotate_deg))
    s = 1 + uniform(scale)
    sh = uniform(shear)
    # affine_grid works in [-1, 1] coordinates, where one pixel is 2/28.
    tx, ty = uniform(shift_px * 2 / 28), uniform(shift_px * 2 / 28)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos / s, (-sin + sh * cos) / s, tx], dim=1),
        torch.stack([sin / s, (cos + sh * sin) / s, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic_px > 0:
        # A 4x4 field of random shifts, upsampled smoothly: strokes bend, digits stay whole.
        field = torch.randn(n, 2, 4, 4, generator=gen) * (elastic_px * 2 / 28)
        field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``x`` [N,1,H,W] with its own Gaussian of ``sigma`` [N] pixels."""
    n = x.shape[0]
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    # Separable: one grouped conv per axis, each image with its own kernel.
    rows = x.reshape(1, n, *x.shape[-2:])
    rows = F.conv2d(F.pad(rows, (radius, radius, 0, 0)), k.view(n, 1, 1, -1), groups=n)
    cols = F.conv2d(F.pad(rows, (0, 0, radius, radius)), k.view(n, 1, -1, 1), groups=n)
    return cols.reshape_as(x)


def background_speckle(n: int, gen: torch.Generator, *, max_level: float) -> torch.Tensor:
    """[n,1,28,28] speckle: a random share of pixels lit uniformly up to a random level."""
    level = _uniform(n, 0.05, max_level, gen).view(n, 1, 1, 1)
    density = _uniform(n, 0.05, 1.0, gen).view(n, 1, 1, 1)
    lit = torch.rand(n, 1, 28, 28, generator=gen) < density
    return torch.rand(n, 1, 28, 28, generator=gen) * level * lit


_SOFT_KERNEL = (lambda k: (k[:, None] * k[None, :]).view(1, 1, 3, 3))(torch.tensor([0.27, 0.46, 0.27]))


def augment_digits(x: torch.Tensor, gen: torch.Generator, mix: float = 1.0) -> torch.Tensor:
    """Real digits [N,1,28,28] in [0,1], changed the ways a generator's digits differ from
    MNIST's while staying readable; their labels stay what they were. ``mix`` scales how
    often each change beyond the geometric warp is applied."""
    n = x.shape[0]
    x = augment(x, gen, elastic_px=1.5)
    # Faint strokes: generators often stop short of MNIST's full-white ink.
    x = torch.where(_chance(n, 0.2 * mix, gen), x * _uniform(n, 0.55, 1.0, gen).view(n, 1, 1, 1), x)
    # Mild blur as a blend with one fixed 3x3 blur: a per-image kernel costs a grouped conv.
    soft = F.conv2d(x, _SOFT_KERNEL, padding=1)
    t = _uniform(n, 0.0, 1.0, gen).view(n, 1, 1, 1) * _chance(n, 0.25 * mix, gen)
    x = x + t * (soft - x)
    # Background speckle under the strokes: the noise that made 3s read as 8s.
    x = torch.where(_chance(n, 0.5 * mix, gen), torch.maximum(x, background_speckle(n, gen, max_level=0.5)), x)
    noisy = x + torch.randn(x.shape, generator=gen) * _uniform(n, 0.0, 0.12, gen).view(n, 1, 1, 1)
    return torch.where(_chance(n, 0.15 * mix, gen), noisy, x).clamp(0.0, 1.0)


def _blobs(n: int, gen: torch.Generator) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    out = torch.zeros(n, 1, 28, 28)
    count = torch.randint(1, 5, (n,), generator=gen)
    for k in range(4):
        cy, cx = _uniform(n, 4, 24, gen), _uniform(n, 4, 24, gen)
        sigma, amp = _uniform(n, 1.5, 6.0, gen), _uniform(n, 0.3, 1.0, gen) * (count > k)
        d2 = (yy[None] - cy.view(n, 1, 1)) ** 2 + (xx[None] - cx.view(n, 1, 1)) ** 2
        out[:, 0] = torch.maximum(out[:, 0], amp.view(n, 1, 1) * torch.exp(-d2 / (2 * sigma.view(n, 1, 1) ** 2)))
    return out


def _tile_shuffle(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    tiles = x.reshape(n, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(n, 16, 7, 7)
    order = torch.argsort(torch.rand(n, 16, generator=gen), dim=1)
    tiles = torch.gather(tiles, 1, order.view(n, 16, 1, 1).expand(-1, -1, 7, 7))
    return tiles.reshape(n, 4, 4, 7, 7).permute(0, 1, 3, 2, 4).reshape(n, 1, 28, 28)


NOT_A_DIGIT_KINDS = ("uniform noise", "speckle", "gaussian noise", "blank", "blobs", "blurred digit",
                     "shuffled tiles", "noisy blobs")


def not_digits(n: int, digits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``n`` images [n,1,28,28] in [0,1] that are no digit, an even mix of `NOT_A_DIGIT_KINDS`.

    ``digits`` [M,1,28,28] are real digits to blur past reading or cut up (M >= n).
    """
    kind = torch.randint(0, len(NOT_A_DIGIT_KINDS), (n,), generator=gen).view(n, 1, 1, 1)
    level = _uniform(n, 0.05, 1.0, gen).view(n, 1, 1, 1)
    uniform = torch.rand(n, 1, 28, 28, generator=gen) * level
    speckle = background_speckle(n, gen, max_level=1.0)
    gauss = (torch.randn(n, 1, 28, 28, generator=gen).abs() * level * 0.6 + _uniform(n, 0, 0.3, gen).view(n, 1, 1, 1))
    blank = torch.where(_chance(n, 0.5, gen), 0.0, _uniform(n, 0.0, 0.5, gen).view(n, 1, 1, 1)).expand(n, 1, 28, 28)
    blobs = _blobs(n, gen)
    some = digits[:n]
    blurred = gaussian_blur(some, _uniform(n, 3.0, 5.0, gen))
    blurred = blurred / blurred.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-3) * _uniform(n, 0.3, 1.0, gen).view(n, 1, 1, 1)
    shuffled = _tile_shuffle(some, gen)
    noisy_blobs = torch.maximum(_blobs(n, gen), background_speckle(n, gen, max_level=0.6))
    out = torch.zeros(n, 1, 28, 28)
    for i, img in enumerate((uniform, speckle, gauss, blank, blobs, blurred, shuffled, noisy_blobs)):
        out = torch.where(kind == i, img, out)
    return out.clamp(0.0, 1.0)


def not_digit_pool(digits: torch.Tensor, gen: torch.Generator, size: int = NOT_A_DIGIT_POOL) -> torch.Tensor:
    """`NOT_A_DIGIT_POOL` images from `not_digits`, made in chunks from random real ``digits``."""
    parts = []
    for start in range(0, size, 1000):
        m = min(1000, size - start)
        parts.append(not_digits(m, digits[torch.randint(0, len(digits), (m,), generator=gen)], gen))
    return torch.cat(parts)


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    x = torch.where(_chance(n, 0.5, gen), x.flip(-1), x)
    x = torch.where(_chance(n, 0.5, gen), x.flip(-2), x)
    return torch.where(_chance(n, 0.5, gen), x.transpose(-1, -2), x)


def to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N,28,28] -> float32 [N,1,28,28] in [0, 1]."""
    if images_u8.dtype != np.uint8 or images_u8.ndim != 3:
        raise UsageError(f"expected uint8 images [N,28,28], got {images_u8.dtype} {images_u8.shape}")
    return torch.from_numpy(images_u8.astype(np.float32) / 255.0).unsqueeze(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N,1,28,28] in [0,1] -> uint8 [N,28,28], rounded as the evaluation sees images."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()


# --------------------------------------------------------------------------- training


def train_classifier(
    images_u8: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 7,
    polish_epochs: int = 3,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 3e-3,
    polish_lr: float = 1e-3,
    polish_mix: float = 0.4,
    weight_decay: float = 5e-4,
    log: Callable[[str], None] | None = print,
) -> DigitCNN:
    """Train a `DigitCNN` from scratch on ``images_u8`` uint8 [N,28,28] / ``labels`` int [N].

    Each step sees ``batch_size`` augmented real digits plus `NOT_A_DIGIT_SHARE` of the
    batch again as images that are no digit. Two one-cycle stages: ``epochs`` at peak
    ``lr``, then ``polish_epochs`` at peak ``polish_lr`` from where the first ended, with
    the noise and blur augmentations ``polish_mix`` times as frequent (the first stage
    teaches robustness; the second sharpens clean digits, which a short schedule on
    heavily augmented batches leaves under-fitted). Each stage has its own seed, so `polish` can resume
    from a saved first stage and give the same weights. Deterministic for a given seed,
    torch build and thread count. Returns the net in eval mode.
    """
    if len(images_u8) != len(labels) or len(labels) == 0:
        raise UsageError(f"{len(images_u8)} images but {len(labels)} labels")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all = to_tensor(images_u8)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    pool = not_digit_pool(x_all, gen)
    model = DigitCNN()
    _fit(model, x_all, y_all, pool, gen, epochs=epochs, batch_size=batch_size, lr=lr,
         weight_decay=weight_decay, log=log)
    return polish(model, images_u8, labels, epochs=polish_epochs, seed=seed, batch_size=batch_size,
                  lr=polish_lr, mix=polish_mix, weight_decay=weight_decay, log=log)


def polish(model: DigitCNN, images_u8: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int,
           batch_size: int, lr: float, mix: float, weight_decay: float,
           log: Callable[[str], None] | None) -> DigitCNN:
    """The second stage of `train_classifier`, on ``model`` as the first stage left it."""
    x_all = to_tensor(images_u8)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    # The same pool as the first stage (it is the first thing drawn from the seed).
    pool = not_digit_pool(x_all, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed + 1)
    _fit(model, x_all, y_all, pool, torch.Generator().manual_seed(seed + 1), epochs=epochs,
         batch_size=batch_size, lr=lr, mix=mix, weight_decay=weight_decay, log=log)
    return model.eval()


def _fit(model: DigitCNN, x_all: torch.Tensor, y_all: torch.Tensor, pool: torch.Tensor, gen: torch.Generator, *,
         epochs: int, batch_size: int, lr: float, weight_decay: float, log: Callable[[str], None] | None,
         mix: float = 1.0) -> None:
    if epochs <= 0:
        return
    n_none = max(1, round(batch_size * NOT_A_DIGIT_SHARE / (1 - NOT_A_DIGIT_SHARE)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(y_all) / batch_size)
    # One-cycle lets a short run reach the accuracy a long constant-rate run would.
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_all), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            none = _flip(pool[torch.randint(0, len(pool), (n_none,), generator=gen)], gen)
            x = torch.cat([augment_digits(x_all[idx], gen, mix), none])
            y = torch.cat([y_all[idx], torch.full((n_none,), NOT_A_DIGIT, dtype=torch.long)])
            logits, _ = model(x)
            # Mild label smoothing keeps the logits from saturating, so the probabilities
            # the classifier score is built on stay informative.
            loss = F.cross_entropy(logits, y, label_smoothing=0.05)
            if not torch.isfinite(loss):
                raise TrainingError(f"classifier loss became {loss.item()} at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            total += len(y)
            correct += (logits.argmax(1) == y).sum().item()
        if log is not None:
            log(f"epoch {epoch + 1:2d}/{epochs} (peak lr {lr:g})  loss {loss_sum / total:.4f}  "
                f"train acc (augmented) {correct / total:.4f}  {time.perf_counter() - start:.0f}s")


@torch.no_grad()
def predict(model: DigitCNN, images_u8: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Predicted class int64 [N] (0-9, or `NOT_A_DIGIT`) for uint8 images [N,28,28]."""
    model.eval()
    x = to_tensor(images_u8)
    return torch.cat([model(x[i:i + batch_size])[0].argmax(1) for i in range(0, len(x), batch_size)]).numpy()


def export_classifier(model: DigitCNN, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` as one self-contained ONNX file with a dynamic batch dimension.

    Input ``image`` float32[N,1,28,28]; outputs ``logits`` float32[N,11] and
    ``features`` float32[N,FEATURE_DIM]. ``metadata`` goes into metadata_props.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = (torch.zeros(4, 1, 28, 28),)
    program = torch.onnx.export(
        model,
        example,
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=({0: torch.export.Dim("N")},),
        external_data=False,
    )
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(proto, full_check=True)
    # save_as_external_data=False keeps every weight inside the one file.
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path
