"""Trains the small classifier on a project's examples: split, augmentation, metrics, cancel."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  # torch's own convention
from PIL import Image

from servicekit.classifier.domain import ImageDomain
from trainer_service.errors import TrainingCancelled
from trainer_service.model import CROP_MARGIN, SmallCnn, to_tensor
from trainer_service.names import TrainParams

WEIGHT_DECAY = 1e-4
_MIN_CROP = 0.75  # smallest random crop, as a fraction of the stored side
_BRIGHTNESS = 0.2  # on the [-1, 1] scale
_CONTRAST = 0.2
# torch's global RNG is shared by every thread; only weight initialisation uses it, under this.
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics after one epoch, as the TrainingJob proto carries them."""

    epoch: int
    total_epochs: int
    loss: float
    accuracy: float
    validation_accuracy: float
    elapsed_seconds: float
    eta_seconds: float


@dataclass(frozen=True)
class Dataset:
    """Decoded examples at the stored side, with their label indices."""

    images: torch.Tensor  # (N, 3, stored, stored) in [-1, 1]
    labels: torch.Tensor  # (N,) int64
    class_count: int


def configure_torch(threads: int) -> None:
    """Fixes torch's thread count and asks for deterministic kernels; call once per process."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def stored_side(input_side: int) -> int:
    """Returns the side images are kept at before cropping to the model's input side."""
    return round(input_side * CROP_MARGIN)


def prepare(images: Sequence[Image.Image], input_side: int) -> torch.Tensor:
    """Returns images as the model reads them at inference: (N, 3, side, side)."""
    stored = torch.stack([to_tensor(image, stored_side(input_side)) for image in images])
    return resize(stored, input_side)


def image_domain(disease: str, labels: Sequence[str], input_side: int) -> ImageDomain:
    """Returns a trained model's domain for servicekit.classifier: its labels and `prepare`.

    The preprocessing is this module's, so that serving reads an image as training did.
    """

    def preprocess(image: Image.Image, side: int) -> np.ndarray:
        tensor: np.ndarray = prepare([image], side)[0].numpy()
        return tensor

    return ImageDomain(
        disease=disease,
        labels=tuple(labels),
        preprocess=preprocess,
        input_size=input_side,
        subject="a camera image",
        channels_first=True,
    )


def resize(batch: torch.Tensor, side: int) -> torch.Tensor:
    """Returns the batch resized to side x side, as training and inference both do it."""
    return F.interpolate(batch, size=(side, side), mode="bilinear", antialias=True)


def make_dataset(
    images: Sequence[Image.Image], labels: Sequence[int], class_count: int, input_side: int
) -> Dataset:
    """Returns the dataset of decoded images with their label indices."""
    side = stored_side(input_side)
    return Dataset(
        images=torch.stack([to_tensor(image, side) for image in images]),
        labels=torch.tensor(list(labels), dtype=torch.int64),
        class_count=class_count,
    )


def split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (train, validation) indices: per label, the same shuffle for the same seed.

    Every label keeps at least one example on each side, so a label with two examples
    is still both learnt and checked.
    """
    generator = torch.Generator().manual_seed(seed)
    train, validation = [], []
    for label in sorted(set(labels.tolist())):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held_out = min(len(members) - 1, max(1, round(len(members) * fraction)))
        validation.append(members[:held_out])
        train.append(members[held_out:])
    return torch.cat(train), torch.cat(validation)


def augment(batch: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """Returns random resized crops, horizontal flips and brightness/contrast jitter at side."""
    stored = batch.shape[-1]
    crops = []
    for image in batch:
        fraction = _MIN_CROP + (1 - _MIN_CROP) * float(torch.rand(1, generator=generator))
        extent = max(side // 2, round(stored * fraction))
        top, left = (
            int(torch.randint(0, stored - extent + 1, (1,), generator=generator)) for _ in range(2)
        )
        crop = image[:, top : top + extent, left : left + extent]
        if float(torch.rand(1, generator=generator)) < 0.5:
            crop = crop.flip(-1)
        crops.append(resize(crop.unsqueeze(0), side))
    out = torch.cat(crops)
    count = len(out)
    contrast = 1 + _CONTRAST * (2 * torch.rand(count, 1, 1, 1, generator=generator) - 1)
    brightness = _BRIGHTNESS * (2 * torch.rand(count, 1, 1, 1, generator=generator) - 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(-1, 1)


def new_network(class_count: int, seed: int) -> SmallCnn:
    """Returns a freshly initialised network, the same for the same seed."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCnn(class_count)


def accuracy_of(network: SmallCnn, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Returns the share of images the network labels right, in eval mode."""
    if len(images) == 0:
        return 0.0
    network.eval()
    with torch.inference_mode():
        predicted = network(images).argmax(dim=1)
    return float((predicted == labels).float().mean())


def train(
    dataset: Dataset,
    params: TrainParams,
    input_side: int,
    *,
    on_epoch: Callable[[EpochMetrics], None],
    cancelled: Callable[[], bool],
    started: float | None = None,
) -> tuple[SmallCnn, EpochMetrics]:
    """Trains a network and returns it in eval mode with the last epoch's metrics.

    `cancelled` is checked between batches; TrainingCancelled is raised when it says so.
    """
    started = time.monotonic() if started is None else started
    train_idx, val_idx = split(dataset.labels, params.validation_split, params.seed)
    val_images = resize(dataset.images[val_idx], input_side)
    val_labels = dataset.labels[val_idx]
    generator = torch.Generator().manual_seed(params.seed)
    network = new_network(dataset.class_count, params.seed)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=params.learning_rate, weight_decay=WEIGHT_DECAY
    )
    metrics: EpochMetrics | None = None
    for epoch in range(1, params.epochs + 1):
        network.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            if cancelled():
                raise TrainingCancelled
            batch_idx = order[start : start + params.batch_size]
            inputs = augment(dataset.images[batch_idx], input_side, generator)
            targets = dataset.labels[batch_idx]
            logits = network(inputs)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            loss_sum += float(loss.detach()) * len(batch_idx)
            correct += int((logits.argmax(dim=1) == targets).sum())
        elapsed = time.monotonic() - started
        metrics = EpochMetrics(
            epoch=epoch,
            total_epochs=params.epochs,
            loss=loss_sum / len(order),
            accuracy=correct / len(order),
            validation_accuracy=accuracy_of(network, val_images, val_labels),
            elapsed_seconds=elapsed,
            eta_seconds=elapsed / epoch * (params.epochs - epoch),
        )
        if not math.isfinite(metrics.loss):
            raise FloatingPointError(
                f"the loss diverged at epoch {epoch}; try a smaller learning rate"
            )
        on_epoch(metrics)
    network.eval()
    if metrics is None:
        raise ValueError("training needs at least one epoch")
    return network, metrics
