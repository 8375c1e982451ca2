"""The production-size bench's helpers, on a small network: no timing is checked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from mri_service.model import SliceClassifier
from tests.bench import production_mri


def test_calibrate_sets_running_statistics_to_the_batch() -> None:
    torch.manual_seed(0)
    model = SliceClassifier(1, width=0.125)
    batch = torch.rand(4, 1, 32, 32) * 255
    first = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    production_mri.calibrate(model, batch)
    conv = model.features[0]
    with torch.no_grad():
        features = conv(batch / 127.5 - 1.0)
    mean, var = first.running_mean, first.running_var
    assert not model.training
    assert mean is not None and var is not None
    assert torch.allclose(mean, features.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(var, features.var(dim=(0, 2, 3), unbiased=True), rtol=1e-3, atol=1e-6)


@pytest.fixture
def flushing_restored() -> Iterator[None]:
    """Gives the process back with denormals not flushed, torch's default.

    Flushing is process-wide: left on, it changes the low bits of later tests' results.
    """
    yield
    torch.set_flush_denormal(False)


def test_subnormal_activations_counts_and_leaves_flushing_on(flushing_restored: None) -> None:
    model = SliceClassifier(1, width=0.125).eval()
    torch.set_flush_denormal(True)
    count = production_mri.subnormal_activations(model, torch.rand(1, 1, 32, 32) * 255)
    assert count >= 0
    assert not any(m._forward_hooks for m in model.modules())
