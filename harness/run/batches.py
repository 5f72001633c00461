"""What a method is fed: a split's images in batches, with labels in its task's training format,
and the fingerprint of the data it learns from."""

from __future__ import annotations

import hashlib

import torch

from harness.api.protocol import ImageBatches
from harness.boards.spec import Board
from harness.boards.tasks import task_spec
from harness.data.cache import SplitData


def data_fingerprint(board: Board, dataset_sha256: str) -> str:
    """Identifies a board's training data: part of every cache key of what a method learns."""
    parts = [board.name, board.split_sha256, dataset_sha256, str(board.resolution)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def split_batches(images: torch.Tensor, data: SplitData, board: Board, device: torch.device) -> ImageBatches:
    """Batches of `images` (a split's, or a corrupted version of them) with the split's labels in
    the task's training format."""
    task = task_spec(board)
    truth = task.truth(data.meta, board).astype(task.label_dtype)
    return ImageBatches(images, torch.from_numpy(truth), board.batch_size, device)
