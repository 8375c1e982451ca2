"""Production-size MRI: the full-width VGG19 pair at 256 px, measured as mri_bench does.

Part of tests/bench/production_bench.py. Both slice models (`SliceClassifier`, width 1.0)
with random weights, at 256 px input, are written as a model set (state_dicts and model
card) that mri_service loads with MRI_MODEL_DIR, into a temporary directory. Then, on a
generated 4 x 8-slice 256x256 series (4 x 4 quick), as mri_bench measures the demo set:
(a) the model-only and (a') the decode-included limits (tests/bench/mri_limit.py, torch
on one thread per core: with convolutions this large one thread is never the faster),
and (b) the series through the gateway to mri_service (embedded backend), end to end,
the median of 3 calls (1 quick) after a warm-up. Row: (b) / (a') >= 0.9, recorded as
the bench `production_mri`.

Random weights and denormals: a random deep network can push activations into float32's
subnormal range, where x86 arithmetic is many times slower, and the figures would then
say nothing about a trained model. This process calls `torch.set_flush_denormal(True)`.
mri_service does not, and has no setting for it, so the model set's batch normalisation
is calibrated as well (one pass over two of the series' slices sets every running mean
and variance, as a trained network's describe its inputs), and the part counts the
subnormal values one slice produces in every layer with flushing off: 0 means the
service runs on the same numbers as the limit. Targets are reported, not asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mri_service import domain
from mri_service.ingest import load_study
from mri_service.model import SliceClassifier
from mri_service.model_card import ModelCard, load_model_card, weights_file
from tests.bench import mri_bench, mri_limit, report
from tests.bench.production_bench import SEED, random_card_fields

TARGET_VS_LIMIT = 0.9
SIZE = 256
WIDTH = 1.0
CALIBRATION_SLICES = 2


@dataclass(frozen=True)
class Sizes:
    """How much the part does: the full run's, or BENCH_QUICK's short form."""

    slices: int  # per phase, 256x256
    repeats: int  # timed calls through the gateway, after a warm-up
    limit_repeats: int


FULL = Sizes(slices=8, repeats=3, limit_repeats=3)
QUICK = Sizes(slices=4, repeats=1, limit_repeats=1)


def calibrate(model: SliceClassifier, batch: torch.Tensor) -> None:
    """Sets every batch norm's running statistics to those of batch, in one pass.

    A trained network's statistics describe its inputs; random ones left at (0, 1) let
    the activations shrink or grow layer after layer.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def subnormal_activations(model: SliceClassifier, batch: torch.Tensor) -> int:
    """Returns how many subnormal values the model's layers output on batch, flushing off."""
    tiny = torch.finfo(torch.float32).tiny
    count = 0

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal count
        magnitude = output.abs()
        count += int(((magnitude > 0) & (magnitude < tiny)).sum())

    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [module.register_forward_hook(hook) for module in leaves]
    torch.set_flush_denormal(False)
    try:
        with torch.inference_mode():
            model(batch)
    finally:
        torch.set_flush_denormal(True)
        for handle in handles:
            handle.remove()
    return count


def write_models(model_dir: Path, series_zip: Path) -> int:
    """Writes the random full-width VGG19 pair at 256 px as a model set, batch norm calibrated.

    Returns the subnormal activations of one slice through both models, flushing off.
    """
    torch.manual_seed(SEED)
    planes = load_study(series_zip, SIZE, mri_limit.LIMITS).planes
    inputs = domain.model_inputs({p: s[:CALIBRATION_SLICES] for p, s in planes.items()})
    model_dir.mkdir(parents=True)
    subnormal = 0
    for name in domain.MODEL_NAMES:
        model = SliceClassifier(domain.MODEL_CHANNELS[name], width=WIDTH)
        batch = torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32))
        calibrate(model, batch)
        subnormal += subnormal_activations(model, batch[:1])
        torch.save(model.state_dict(), model_dir / weights_file(name))
    card = ModelCard(
        name="mri-vgg19-full-random",
        width=WIDTH,
        input_size=SIZE,
        threshold=0.5,
        training={"architecture": "SliceClassifier width 1.0, batch norm calibrated"},
        **random_card_fields(),
    )
    card.save(model_dir)
    load_model_card(model_dir)  # as the service reads it
    return subnormal


def main() -> int:
    """Builds the set, measures it, prints the table and records the row; 0 unless it crashed."""
    started = time.perf_counter()
    torch.set_flush_denormal(True)
    sizes = QUICK if report.quick() else FULL
    with tempfile.TemporaryDirectory(prefix="production-mri-") as tmp:
        work = Path(tmp)
        series = mri_bench.series_zip(work, "production", slices=sizes.slices, size=SIZE)
        print(f"building MRI: VGG19 pair, width {WIDTH}, {SIZE} px, random weights ...")
        model_dir = work / "mri-vgg19-full"
        subnormal = write_models(model_dir, series)
        limits = mri_limit.measure(
            series,
            mri_bench.BATCH_SLICES,
            sizes.limit_repeats,
            model_dir=model_dir,
            torch_counts=[mri_limit.threads()],
        )
        spool = work / "spool"
        spool.mkdir()
        with (
            mri_bench.service(spool, MRI_MODEL_DIR=str(model_dir)) as service,
            mri_bench.gateway_to(service, work / "gw") as gateway,
        ):
            run = mri_bench.median_run(gateway.address, series.read_bytes(), sizes.repeats)
    print()
    print(
        f"production-size MRI: VGG19 pair, width {WIDTH}, {SIZE} px input, random weights"
        f" (batch norm calibrated); 4 x {sizes.slices} slices of 256x256"
    )
    print(f"(a)  model-only limit: {limits.model_only:6.2f} slices/s (both models)")
    print(f"(a') decode-included limit: {limits.decode_included:6.2f} slices/s ({limits.best_way})")
    for configuration, value in limits.to_json().items():
        print(f"     {configuration:<28} {value:6.2f} slices/s")
    print(mri_bench.stage_line("(b) via gateway, embedded", run))
    print(f"subnormal activations of one slice through both models, flushing off: {subnormal}")
    row = report.ratio(
        "production-size MRI end to end / decode-included limit",
        report.Figure("VGG19 pair via gateway", run.slices / run.total_s, "slices/s"),
        report.Figure(
            f"decode-included limit ({limits.best_way})", limits.decode_included, "slices/s"
        ),
        ">=",
        TARGET_VS_LIMIT,
        report.Figure("model-only limit (beside)", limits.model_only, "slices/s"),
    )
    notes = {
        "model": f"VGG19 pair width {WIDTH}, {SIZE} px, random weights, batch norm calibrated",
        "series_slices": sizes.slices,
        "repeats": sizes.repeats,
        "stages_ms": vars(run),
        "limits_slices_per_s": limits.to_json(),
        "subnormal_activations_one_slice": subnormal,
    }
    report.finish("production_mri", [row], started, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
