"""Batches by indexing one in-memory tensor on the training device: no DataLoader, no per-step copies.

Heavy tier (torch). The whole data set is loaded onto the training device once, already
scaled to the generator's value range (float32; uint8 with a per-batch scale when the
float copy would be too large). A batch is one ``index_select`` with a row of indices
that already sits on the device, so a step does no host-to-device copy and no host work
beyond picking the row.

Shuffling is by epoch permutations derived from (seed, stream, epoch), drawn on the host
from a CPU generator: the data order is then the same on every device (a run resumed
with another ``--device`` keeps its batches), and the sampler's whole state is a few
integers. The host turns the permutations into a schedule of `SCHEDULE_ROWS` batches of
indices at a time and uploads it in one copy (pinned and asynchronous on CUDA). The
state it reports is where the *consumed* batches end, not the prefetched ones, so a
resumed run draws exactly the batches it would have drawn. Every batch has the same
shape (the last short batch of an epoch is dropped), which a captured step needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_GOLDEN = 0x9E3779B97F4A7C15  # spreads (seed, stream, epoch) into well-separated seeds
# Batches of indices uploaded per copy: one small transfer every few hundred steps.
SCHEDULE_ROWS = 256
# Above this the data set stays uint8 on the device and each batch is scaled on the fly
# (Fashion-MNIST's 60k images are 188 MB as float32, far below it).
FLOAT_CACHE_BYTES = 2 << 30


class _Stream:
    """Epoch-wise shuffled draws from a fixed index set, dropping the last partial batch."""

    def __init__(self, indices: torch.Tensor, seed: int, stream: int):
        self.indices = indices
        self.seed = seed
        self.stream = stream
        self.epoch = 0
        self.pos = 0
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm_epoch != epoch:
            g = torch.Generator().manual_seed((self.seed * _GOLDEN + self.stream * 1_000_003 + epoch) % (2**63))
            self._perm = self.indices[torch.randperm(len(self.indices), generator=g)]
            self._perm_epoch = epoch
        return self._perm

    def rows(self, n: int, count: int, epoch: int, pos: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """``count`` batches of ``n`` indices from (epoch, pos) on, and the (epoch, pos) after each one.

        Same draws as taking batch after batch: a batch that would run past the end of the
        epoch starts the next epoch instead.
        """
        blocks, after = [], []
        while len(after) < count:
            fit = (len(self.indices) - pos) // n
            if fit <= 0:
                epoch, pos = epoch + 1, 0
                continue
            take = min(fit, count - len(after))
            blocks.append(self._permutation(epoch)[pos:pos + take * n].view(take, n))
            after.extend((epoch, pos + (i + 1) * n) for i in range(take))
            pos += take * n
        return torch.cat(blocks), after


class BatchSampler:
    """Draws (images, labels) batches for a layout: 'shuffled' or 'per-class'.

    ``batch_size`` is per batch for 'shuffled' and per class for 'per-class' (each batch
    then holds ``batch_size`` images of every class, grouped in ``classes`` order; its
    labels are then one constant tensor, which callers must not modify in place).
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
        device = torch.device(device)
        self.device = device
        self.batch_size = batch_size
        self.layout = layout
        self.classes = classes
        low, high = value_range
        self.scale = (high - low) / 255.0
        self.offset = low
        images = images_u8.contiguous().unsqueeze(1).to(device)
        # Scaled once, with the same float32 ops a per-batch scale would do, so the values
        # are bit-identical to scaling each batch.
        self.scaled = images.numel() * 4 <= FLOAT_CACHE_BYTES
        self.images = images.float().mul_(self.scale).add_(self.offset) if self.scaled else images
        self.labels = labels.to(device)
        cpu_labels = labels.cpu()
        if layout == "per-class":
            self.streams = [_Stream(torch.nonzero(cpu_labels == c).flatten(), seed, c) for c in classes]
            short = [c for c, s in zip(classes, self.streams) if len(s.indices) < batch_size]
            self._batch_labels = torch.tensor(classes, dtype=self.labels.dtype).repeat_interleave(batch_size).to(device)
        else:
            self.streams = [_Stream(torch.arange(len(cpu_labels)), seed, 99)]
            short = [] if len(cpu_labels) >= batch_size else ["all"]
            self._batch_labels = None
        if short:
            raise ValueError(f"too few training images for batch size {batch_size} (classes: {short})")
        self._schedule: torch.Tensor | None = None  # [rows, batch] indices on the device
        self._after: list[list[tuple[int, int]]] = []  # per row, each stream's (epoch, pos) after it
        self._row = 0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def rows_per_batch(self) -> int:
        return self.batch_size * len(self.streams)

    def _refill(self) -> None:
        """The next `SCHEDULE_ROWS` batches' indices, built on the host and uploaded in one copy."""
        blocks, afters = [], []
        for s in self.streams:
            rows, after = s.rows(self.batch_size, SCHEDULE_ROWS, s.epoch, s.pos)
            blocks.append(rows)
            afters.append(after)
        host = torch.cat(blocks, 1) if len(blocks) > 1 else blocks[0]  # [rows, K*B]: classes side by side
        if self.device.type == "cuda":
            self._schedule = host.pin_memory().to(self.device, non_blocking=True)
        else:
            self._schedule = host.to(self.device)
        self._after = [list(row) for row in zip(*afters)]
        self._row = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._schedule is None or self._row == len(self._after):
            if self._schedule is not None:  # the streams move on to where the schedule ends
                self._advance(len(self._after))
            self._refill()
        idx = self._schedule[self._row]
        self._row += 1
        images = self.images.index_select(0, idx)
        if not self.scaled:
            images = images.float().mul_(self.scale).add_(self.offset)
        labels = self._batch_labels if self._batch_labels is not None else self.labels.index_select(0, idx)
        return images, labels

    def _advance(self, rows: int) -> None:
        for s, (epoch, pos) in zip(self.streams, self._after[rows - 1]):
            s.epoch, s.pos = epoch, pos

    def state(self) -> dict:
        if self._schedule is not None and self._row:
            return {"streams": [[e, p] for e, p in self._after[self._row - 1]]}
        return {"streams": [[s.epoch, s.pos] for s in self.streams]}

    def load_state(self, state: dict) -> None:
        for s, (epoch, pos) in zip(self.streams, state["streams"]):
            s.epoch, s.pos = int(epoch), int(pos)
        self._schedule, self._after, self._row = None, [], 0
