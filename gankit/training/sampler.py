"""Batches by indexing one in-memory uint8 tensor: no DataLoader, no per-sample transforms.

Heavy tier (torch). The whole data set lives on the training device as uint8; a batch
is one index into it and one fused scale to the generator's value range. Shuffling is
by epoch permutations derived from (seed, stream, epoch), so the sampler's whole state
is a few integers and a resumed run draws exactly the batches it would have drawn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_GOLDEN = 0x9E3779B97F4A7C15  # spreads (seed, stream, epoch) into well-separated seeds


class _Stream:
    """Epoch-wise shuffled draws from a fixed index set, dropping the last partial batch."""

    def __init__(self, indices: torch.Tensor, seed: int, stream: int):
        self.indices = indices
        self.seed = seed
        self.stream = stream
        self.epoch = 0
        self.pos = 0
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed((self.seed * _GOLDEN + self.stream * 1_000_003 + self.epoch) % (2**63))
            self._perm = self.indices[torch.randperm(len(self.indices), generator=g)]
        return self._perm

    def take(self, n: int) -> torch.Tensor:
        if self.pos + n > len(self.indices):
            self.epoch += 1
            self.pos = 0
            self._perm = None
        out = self._permutation()[self.pos:self.pos + n]
        self.pos += n
        return out


class BatchSampler:
    """Draws (images, labels) batches for a layout: 'shuffled' or 'per-class'.

    ``batch_size`` is per batch for 'shuffled' and per class for 'per-class' (each batch
    then holds ``batch_size`` images of every class, grouped in ``classes`` order).
    """

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, *, classes: tuple[int, ...],
                 batch_size: int, layout: str, seed: int, value_range: tuple[float, float],
                 image_size: int, device: torch.device):
        keep = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))
        images_u8, labels = images_u8[keep], labels[keep]
        if image_size != images_u8.shape[-1]:
            # Resize once up front (the Paddle recipe works at 32x32), not per batch.
            resized = F.interpolate(images_u8[:, None].float(), size=(image_size, image_size),
                                    mode="bilinear", align_corners=False)
            images_u8 = resized.round().clamp(0, 255).to(torch.uint8)[:, 0]
        self.images = images_u8.contiguous().to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.layout = layout
        self.classes = classes
        low, high = value_range
        self.scale = (high - low) / 255.0
        self.offset = low
        cpu_labels = labels.cpu()
        if layout == "per-class":
            self.streams = [_Stream(torch.nonzero(cpu_labels == c).flatten(), seed, c) for c in classes]
            short = [c for c, s in zip(classes, self.streams) if len(s.indices) < batch_size]
        else:
            self.streams = [_Stream(torch.arange(len(cpu_labels)), seed, 99)]
            short = [] if len(cpu_labels) >= batch_size else ["all"]
        if short:
            raise ValueError(f"too few training images for batch size {batch_size} (classes: {short})")

    def __len__(self) -> int:
        return len(self.labels)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.cat([s.take(self.batch_size) for s in self.streams]).to(self.images.device)
        images = self.images[idx].unsqueeze(1).float().mul_(self.scale).add_(self.offset)
        return images, self.labels[idx]

    def state(self) -> dict:
        return {"streams": [[s.epoch, s.pos] for s in self.streams]}

    def load_state(self, state: dict) -> None:
        for s, (epoch, pos) in zip(self.streams, state["streams"]):
            s.epoch, s.pos, s._perm = int(epoch), int(pos), None
