"""The VGG19-layout slice classifier (16 convolutions in 5 blocks) with a width multiplier."""

from __future__ import annotations

import torch
from torch import nn

# VGG19's convolution widths per block ("configuration E"); each block ends in a max-pool.
VGG19_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)
# The shipped demo weights use 1/8 of VGG19's widths so both models run on two CPU
# cores; 1.0 is the full network, for GPU nodes.
DEMO_WIDTH = 0.125


def scaled(channels: int, width: float) -> int:
    """Returns a layer's width under the multiplier, at least 4 channels."""
    return max(4, round(channels * width))


class SliceClassifier(nn.Module):
    """Returns one logit per slice: how likely the slice shows a tumour.

    Input: float32 (N, C, H, W) in [0, 255], exactly what `domain.preprocess_slice`
    makes; the scaling to roughly [-1, 1] is inside the network so that every backend
    (in process or TorchServe) feeds the same values. H and W are multiples of 32.

    Layout: VGG19's 16 3x3 convolutions in 5 blocks with ReLU and max-pooling. Batch
    normalisation after each convolution lets a from-scratch network this deep train
    on a few hundred slices; the 4096-wide fully connected head is replaced by global
    average pooling and one hidden layer, because the original head alone would hold
    most of the parameters at 128 px input.
    """

    def __init__(self, in_channels: int, width: float = DEMO_WIDTH) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError("in_channels must be at least 1")
        if not 0.0 < width <= 1.0:
            raise ValueError("width must be in (0, 1]")
        self.in_channels = in_channels
        self.width = width
        layers: list[nn.Module] = []
        channels = in_channels
        for block in VGG19_BLOCKS:
            for out in block:
                out_channels = scaled(out, width)
                layers += [
                    nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                ]
                channels = out_channels
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        hidden = scaled(512, width)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(hidden, 1),
        )

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        """Returns logits of shape (N,)."""
        x = slices / 127.5 - 1.0
        logits: torch.Tensor = self.head(self.features(x))
        return logits.squeeze(1)


def count_convolutions(model: nn.Module) -> int:
    """Returns how many 2-D convolutions the model holds (16 for the VGG19 layout)."""
    return sum(1 for module in model.modules() if isinstance(module, nn.Conv2d))


def probabilities(model: SliceClassifier, batch: torch.Tensor) -> torch.Tensor:
    """Returns the sigmoid probability per slice, in inference mode."""
    with torch.inference_mode():
        return torch.sigmoid(model(batch))
